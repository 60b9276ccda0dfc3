"""Pinning the CPU kernels torch computes with, so that a CPU run gives the same numbers on
every x86-64 machine that has those kernels.

torch picks its CPU kernels by what the processor offers: ATen's vectorised kernels
(``ATEN_CPU_CAPABILITY``: batch norm, activations, pooling, optimizer arithmetic), oneDNN's
convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's matrix products (``MKL_CBWR``, MKL's
conditional numerical reproducibility). Kernels for different instruction sets sum in different
orders, and minutes of training amplify those last-bit differences into different networks:
with the same code, seed and one thread per job, the mini BYOL's kNN k=20 on the mini ImageNet
was 37.0 on the machine where the mini zoo was first tuned and 29.6 on a machine with AVX2 and
no AVX-512 (random init: 31.6 on both). A run pinned to one
instruction set, on machines that all have it, computes the same kernels everywhere.

The workflow sets these variables for every job when the config's ``cpu_kernels`` names a set
(default ``native``, torch's own choice: pinning a machine to a smaller set than it has may also
give it slower kernels). The kernels a job actually used are in its run record (``device``),
since torch falls back to the best it has when the machine lacks the requested set: two records
of one model that name other kernels are not expected to agree to the last digit. This module
imports no torch: the variables must be set before torch is imported.
"""


from __future__ import annotations

from sslzoo.errors import SslzooError

# instruction set -> the environment that pins torch's three kernel families to it
KERNEL_ENV: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_CBWR": "AVX512"},
}
NATIVE = "native"  # torch's own choice: the best kernels of the machine


def kernel_env(name: str) -> dict[str, str]:
    """The environment variables that pin torch's CPU kernels to instruction set ``name``
    (a key of :data:`KERNEL_ENV`); empty for ``native``."""
    if name == NATIVE:
        return {}
    if name not in KERNEL_ENV:
        choices = ", ".join([NATIVE, *KERNEL_ENV])
        raise SslzooError(f"cpu_kernels: '{name}' is not one of {choices}")
    return dict(KERNEL_ENV[name])
