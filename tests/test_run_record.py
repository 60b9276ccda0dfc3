"""The run record's format: the protocol side, the job's wall time, the protocol comparison, the
checks the tables run, and the module imports no torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sslzoo.errors import SslzooError
from sslzoo.run_record import (
    check_record,
    differs_from_protocol,
    process_age,
    protocol_batch,
)
from sslzoo.runtime.dist import DistContext
from sslzoo.runtime.record import run_record


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


def test_the_record_format_imports_no_torch() -> None:
    """The table jobs read records through this module and the tables, without torch."""
    code = (
        "import sys; import sslzoo.run_record, sslzoo.tables; "
        "print(sorted(name for name in ('torch', 'torchvision') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
