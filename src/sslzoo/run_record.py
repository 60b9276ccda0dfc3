"""The run record: how a job actually ran, beside what its protocol asks for.

A number can only be compared with the model zoo's when the run behind it is known: how many
processes trained it, with which batch, on which device and software. Every benchmark writes
this record into its ``metrics.json`` under ``meta.run``; pretraining writes it into
``final.pth``'s ``meta["run"]`` and as ``results/pretrain/{model}/run.json``. The tables read it
and footnote a row whose world size or total batch differs from its protocol's
(:func:`differs_from_protocol`).

A record (:class:`RunRecord`, built by :func:`sslzoo.runtime.record.run_record`, which adds
the torch facts; this module imports no torch, so the table jobs read records without it) holds:

- ``world_size``: processes of the job (torchrun workers; 1 for a plain process).
- ``per_process_batch``: images per forward/backward pass and process.
- ``accumulate``: micro-batches per optimizer step (1 where the step has no accumulation).
- ``total_batch``: ``world_size x per_process_batch x accumulate``, images per optimizer step.
- ``seed``: the seed the job was given; None for steps without randomness (kNN, full VOC SVM).
- ``torch``: ``torch.__version__``.
- ``cuda``: ``torch.version.cuda``, the CUDA runtime torch was built with (None on CPU-only builds).
- ``cuda_available``: whether the job could use a CUDA device.
- ``device``: the GPU's name (``torch.cuda.get_device_name``) when the job ran on one, else the
  CPU model (``model name`` of /proc/cpuinfo, else ``platform.processor()``).
- ``git_rev``: the sslzoo commit (:func:`sslzoo.io.git_revision`).
- ``wall_time_s``: seconds from the start of the job's process (under torchrun: of the torchrun
  launcher, i.e. of ``python -m sslzoo --nproc-per-node N``) to the making of the record; None
  where /proc is not available. A resumed job counts its own time only.
- ``protocol``: what the protocol asks for (:class:`ProtocolBatch`), None for steps that do not
  train: ``config`` (the protocol file), ``gpus`` (the reference's process count),
  ``per_process_batch``, ``accumulate``, ``total_batch``.

The steps that do not train (kNN, VOC SVM, low-shot SVM) read cached features written by
``extract-features``, whose files do not record the batch they were computed with (the batch
of a frozen forward pass does not change the features): their batch fields and ``protocol``
are None, their ``world_size`` is 1 (they run as one process).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, TypedDict

from sslzoo.errors import SslzooError


class ProtocolBatch(TypedDict):
    """The process count and batch a protocol file asks for.

    Attributes:
        config: the protocol file (model config or benchmark protocol).
        gpus: the reference's process count (the 8 of ``8xb32``).
        per_process_batch: images per pass and process in the reference.
        accumulate: micro-batches per optimizer step (1 without accumulation).
        total_batch: ``gpus x per_process_batch x accumulate``.
    """

    config: str | None
    gpus: int
    per_process_batch: int
    accumulate: int
    total_batch: int


class RunRecord(TypedDict):
    """How one job ran (the fields are described in the module docstring)."""

    world_size: int
    per_process_batch: int | None
    accumulate: int | None
    total_batch: int | None
    seed: int | None
    torch: str
    cuda: str | None
    cuda_available: bool
    device: str
    git_rev: str
    wall_time_s: float | None
    protocol: ProtocolBatch | None


def protocol_batch(
    config: str | os.PathLike[str] | None,
    gpus: int,
    *,
    per_process_batch: int | None = None,
    total_batch: int | None = None,
    accumulate: int = 1,
) -> ProtocolBatch:
    """The protocol's side of a record; give the per-process batch or the total, not both.

    Model configs state the batch per process (``train.batch_size``), benchmark protocols the
    total over processes (``batch_size``); the other value follows from ``gpus`` and
    ``accumulate`` (a total must divide by ``gpus x accumulate``: the protocol validators check it).
    """
    if (per_process_batch is None) == (total_batch is None):
        raise ValueError("protocol_batch: give per_process_batch or total_batch")
    if total_batch is not None:
        per_process_batch = total_batch // (gpus * accumulate)
    return ProtocolBatch(
        config=None if config is None else str(config),
        gpus=int(gpus),
        per_process_batch=int(per_process_batch),
        accumulate=int(accumulate),
        total_batch=int(per_process_batch * gpus * accumulate),
    )


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else ``platform.processor()`` or the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def process_age(pid: int) -> float | None:
    """Seconds since process ``pid`` started (from /proc, 0.01 s resolution); None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        start_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22, starttime
        ticks_per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return round(max(uptime - start_ticks / ticks_per_second, 0.0), 2)


def job_wall_time() -> float | None:
    """Seconds since the job started: the age of this process, or under torchrun (a worker)
    the age of the torchrun launcher that started it (the job's own process)."""
    pid = os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else os.getpid()
    return process_age(pid)


def differs_from_protocol(record: RunRecord) -> bool:
    """Whether the run's world size or total batch differs from its protocol's (False without a protocol)."""
    protocol = record.get("protocol")
    if not protocol:
        return False
    return record["world_size"] != protocol["gpus"] or record["total_batch"] != protocol["total_batch"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_record(record: Any, source: str) -> RunRecord:
    """``record`` if it has the fields :func:`differs_from_protocol` and the tables read, else an
    :class:`SslzooError` naming ``source`` (the file and key it came from) and the fix."""
    fix = "rerun the job that wrote it"
    if not isinstance(record, dict):
        raise SslzooError(f"{source}: expected a run record (a JSON object); {fix}")
    if not _is_int(record.get("world_size")) or record["world_size"] < 1:
        raise SslzooError(
            f"{source}: 'world_size' must be a positive integer, got {record.get('world_size')!r}; {fix}"
        )
    for key in ("per_process_batch", "accumulate", "total_batch"):
        if record.get(key) is not None and not _is_int(record[key]):
            raise SslzooError(f"{source}: '{key}' must be an integer or null, got {record[key]!r}; {fix}")
    protocol = record.get("protocol")
    if protocol is not None:
        if not isinstance(protocol, dict):
            raise SslzooError(f"{source}: 'protocol' must be an object or null, got {protocol!r}; {fix}")
        for key in ("gpus", "per_process_batch", "accumulate", "total_batch"):
            if not _is_int(protocol.get(key)):
                raise SslzooError(
                    f"{source}: 'protocol.{key}' must be an integer, got {protocol.get(key)!r}; {fix}"
                )
        for key in ("per_process_batch", "accumulate", "total_batch"):
            if not _is_int(record.get(key)):
                raise SslzooError(f"{source}: a run with a protocol needs an integer '{key}'; {fix}")
    return record  # type: ignore[return-value]
