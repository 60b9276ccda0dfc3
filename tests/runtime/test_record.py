"""Making the run record: the versions, device and batch product of the running job."""

from __future__ import annotations

import platform
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
    assert record["device"] == cpu_model() and record["git_rev"] == git_revision()
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
        assert device_name() == cpu_model()
    else:
        assert device_name() == torch.cuda.get_device_name()


def test_steps_that_do_not_train_have_no_batch_and_no_protocol() -> None:
    record = run_record(world_size=1, per_process_batch=None, accumulate=None, seed=None)
    assert record["total_batch"] is None and record["protocol"] is None
    assert not differs_from_protocol(record)
    assert check_record(record, "metrics.json: meta.run") == record
