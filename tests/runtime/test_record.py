"""Making the run record: the versions, device and batch product of the running job."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from sslzoo.io import git_revision
from sslzoo.run_record import check_record, cpu_model, differs_from_protocol, protocol_batch
from sslzoo.runtime.record import device_name, run_record


def test_record_on_cpu_holds_the_versions_device_and_batch_product() -> None:
    protocol = protocol_batch("config/models/x.yaml", 8, per_process_batch=32, accumulate=16)
    record = run_record(
        world_size=2,
        per_process_batch=32,
        accumulate=4,
        seed=7,
        device=torch.device("cpu"),
        protocol=protocol,
    )
    assert record["total_batch"] == 2 * 32 * 4
    assert (record["world_size"], record["per_process_batch"], record["accumulate"], record["seed"]) == (
        2,
        32,
        4,
        7,
    )
    assert record["torch"] == torch.__version__ and record["cuda"] == torch.version.cuda
    assert record["cuda_available"] == torch.cuda.is_available()
    kernels = torch.backends.cpu.get_cpu_capability()
    assert record["device"] == f"{cpu_model()} ({kernels} kernels)" and record["git_rev"] == git_revision()
    assert record["protocol"] == protocol
    assert protocol["total_batch"] == 8 * 32 * 16 and protocol["config"] == "config/models/x.yaml"


def test_cpu_model_comes_from_cpuinfo_or_platform() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "model name" in cpuinfo.read_text():
        names = {
            line.partition(":")[2].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.partition(":")[0].strip() == "model name"
        }
        assert cpu_model() in names
    else:
        assert cpu_model() in (platform.processor(), platform.machine(), "unknown")
    if not torch.cuda.is_available():
        assert device_name() == f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()} kernels)"
    else:
        assert device_name() == torch.cuda.get_device_name()


def test_steps_that_do_not_train_have_no_batch_and_no_protocol() -> None:
    record = run_record(world_size=1, per_process_batch=None, accumulate=None, seed=None)
    assert record["total_batch"] is None and record["protocol"] is None
    assert not differs_from_protocol(record)
    assert check_record(record, "metrics.json: meta.run") == record


def test_the_device_names_the_cpu_kernels_the_process_computes_with() -> None:
    """A process whose kernels are pinned to the plain ones (ATEN_CPU_CAPABILITY=default)
    records them: two runs on other kernels are told apart in their records."""
    code = "from sslzoo.runtime.record import device_name; print(device_name(torch.device('cpu')))"
    out = subprocess.run(
        [sys.executable, "-c", f"import torch; {code}"],
        env=dict(os.environ, ATEN_CPU_CAPABILITY="default"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == f"{cpu_model()} (DEFAULT kernels)"
