"""Making the run record of the running job: the torch, CUDA and device facts of
:class:`~sslzoo.run_record.RunRecord`.

The record's fields, the protocol side and the checks the tables run are in
:mod:`sslzoo.run_record`, which imports no torch (the table jobs read records without it).
"""

from __future__ import annotations

import torch

from sslzoo.io import git_revision
from sslzoo.run_record import ProtocolBatch, RunRecord, cpu_model, job_wall_time


def device_name(device: torch.device | None = None) -> str:
    """The GPU's name for a CUDA ``device`` (default: CUDA when available), else :func:`cpu_model`
    and the instruction set of the CPU kernels torch computes with, e.g. ``AMD EPYC (AVX2
    kernels)``: runs on other kernels round differently (:mod:`sslzoo.cpu_kernels`)."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()} kernels)"


def run_record(
    *,
    world_size: int,
    per_process_batch: int | None,
    accumulate: int | None,
    seed: int | None,
    device: torch.device | None = None,
    protocol: ProtocolBatch | None = None,
) -> RunRecord:
    """The record of the running job (see :mod:`sslzoo.run_record` for every field).

    Args:
        world_size: the job's process count (``DistContext.world_size``).
        per_process_batch: images per pass and process; None for steps that do not train.
        accumulate: micro-batches per optimizer step (1 without accumulation); None for steps
            that do not train.
        seed: the job's seed; None where the step has no randomness.
        device: the device the job computed on (default: CUDA when available, else the CPU).
        protocol: what the protocol asks for (:func:`protocol_batch`); None for steps that do
            not train.
    """
    total = (
        None
        if per_process_batch is None or accumulate is None
        else world_size * per_process_batch * accumulate
    )
    return RunRecord(
        world_size=int(world_size),
        per_process_batch=per_process_batch,
        accumulate=accumulate,
        total_batch=total,
        seed=seed,
        torch=str(torch.__version__),
        cuda=torch.version.cuda,
        cuda_available=bool(torch.cuda.is_available()),
        device=device_name(device),
        git_rev=git_revision(),
        wall_time_s=job_wall_time(),
        protocol=protocol,
    )
