"""The run record: its fields on this machine, the job's wall time, the protocol comparison."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sslzoo.errors import SslzooError
from sslzoo.io import git_revision
from sslzoo.run_record import (
    check_record,
    cpu_model,
    device_name,
    differs_from_protocol,
    process_age,
    protocol_batch,
    run_record,
)
from sslzoo.runtime.dist import DistContext


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


def test_protocol_batch_from_the_total_or_the_per_process_batch() -> None:
    total = protocol_batch("linear.yaml", 8, total_batch=256)
    assert (total["per_process_batch"], total["total_batch"], total["accumulate"]) == (256 // 8, 256, 1)
    per = protocol_batch(None, 4, per_process_batch=64, accumulate=2)
    assert (per["total_batch"], per["config"]) == (4 * 64 * 2, None)
    with pytest.raises(ValueError, match="per_process_batch or total_batch"):
        protocol_batch("x.yaml", 8, total_batch=256, per_process_batch=32)


def _record(world_size: int, per_process_batch: int, protocol_gpus: int, protocol_total: int) -> dict:
    return run_record(
        world_size=world_size,
        per_process_batch=per_process_batch,
        accumulate=1,
        seed=0,
        protocol=protocol_batch("p.yaml", protocol_gpus, total_batch=protocol_total),
    )


def test_differs_when_world_size_or_total_batch_differ() -> None:
    assert not differs_from_protocol(_record(8, 32, 8, 256))
    assert differs_from_protocol(_record(2, 128, 8, 256))  # same total, other world size
    assert differs_from_protocol(_record(8, 16, 8, 256))  # same world size, other total


def test_wall_time_is_the_age_of_the_job_process() -> None:
    code = "from sslzoo.run_record import job_wall_time; print(job_wall_time())"
    if process_age(os.getpid()) is None:
        pytest.skip("no /proc on this system: the wall time is None")
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    age = float(child.stdout)
    assert 0.0 <= age <= elapsed + 0.02  # the child lived within the parent's measured span
    # a torchrun worker reports the age of its launcher (here: this process)
    before = process_age(os.getpid())
    env = dict(os.environ, TORCHELASTIC_RUN_ID="test")
    worker = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert before is not None and float(worker.stdout) >= before
    assert process_age(2**22 + 12345) is None  # no such process


def test_training_record_splits_the_total_batch_over_the_processes() -> None:
    from sslzoo.benchmarks.classifier_loop import training_run_record

    record = training_run_record("linear_imagenet.yaml", 8, 256, 3, DistContext(world_size=2))
    assert (record["world_size"], record["per_process_batch"], record["total_batch"]) == (2, 128, 256)
    assert record["protocol"] is not None
    assert (record["protocol"]["gpus"], record["protocol"]["per_process_batch"]) == (8, 32)
    assert differs_from_protocol(record)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"world_size": 0}, "run.json: 'world_size' must be a positive integer"),
        ({"total_batch": "256"}, "run.json: 'total_batch' must be an integer or null"),
        ({"protocol": {"gpus": "8"}}, r"run.json: 'protocol.gpus' must be an integer"),
        ({"per_process_batch": None}, "run.json: a run with a protocol needs an integer 'per_process_batch'"),
    ],
)
def test_malformed_records_name_the_file_and_key(change: dict, message: str) -> None:
    record = {**_record(1, 32, 1, 32), **change}
    with pytest.raises(SslzooError, match=message):
        check_record(record, "run.json")
