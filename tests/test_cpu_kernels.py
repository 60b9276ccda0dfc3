"""Pinned CPU kernels: the environment of each instruction set, and that torch obeys it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sslzoo.cpu_kernels import KERNEL_ENV, NATIVE, kernel_env
from sslzoo.errors import SslzooError

REPO = Path(__file__).resolve().parents[1]


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def test_native_sets_nothing_and_each_set_pins_all_three_kernel_families() -> None:
    assert kernel_env(NATIVE) == {}
    for name in KERNEL_ENV:
        env = kernel_env(name)
        assert set(env) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"}
        assert env["ATEN_CPU_CAPABILITY"] == name and env["MKL_CBWR"] == name.upper()
    kernel_env("avx2")["MKL_CBWR"] = "changed"  # a copy: the table stays as it is
    assert KERNEL_ENV["avx2"]["MKL_CBWR"] == "AVX2"


def test_an_unknown_set_is_refused_with_the_choices() -> None:
    with pytest.raises(SslzooError, match="'sse' is not one of native, avx2, avx512"):
        kernel_env("sse")


def test_the_schema_knows_every_set_and_defaults_to_native() -> None:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["cpu_kernels"]["enum"] == [NATIVE, *KERNEL_ENV]
    assert schema["properties"]["cpu_kernels"]["default"] == NATIVE


def _in_a_process(env: dict[str, str], code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif("avx2" not in _cpu_flags(), reason="this CPU has no AVX2")
def test_torch_computes_with_the_pinned_kernels() -> None:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    assert _in_a_process(kernel_env("avx2"), code) == "AVX2"
    assert _in_a_process({"ATEN_CPU_CAPABILITY": "default"}, code) == "DEFAULT"

