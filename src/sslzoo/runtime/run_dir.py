"""The work folder of a resumable training run: ``latest.pth``, ``train_log.jsonl`` and the
kept epoch checkpoints ``epoch_<N>.pth``.

``latest.pth`` holds what resuming needs (weights, optimizer, progress and the entries that
identify the run) and is written atomically (:func:`~sslzoo.runtime.checkpoint.save_atomic`).
``epoch_<N>.pth`` (:meth:`RunDir.snapshot`, mmcv's name for the checkpoint of epoch N) is a
checkpoint the run keeps beside it; nothing overwrites or removes it but a later write of the
same epoch. A state written for another run (:class:`RunIdentity` says what changed) is never
mixed with this one: it is moved with its log and kept checkpoints to ``superseded-<time>/``
and training starts over.
A benchmark step whose output is written removes ``latest.pth`` (:func:`discard_resume_state`):
the output is the run's result, and a model with its optimizer state per benchmark, model and
grid point would otherwise be most of the zoo's disk use.
``train_log.jsonl`` has one JSON object per optimizer step, with its ``iter`` (1-based); a
resumed run first drops the lines past the iteration it resumes from, since it redoes them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch

from sslzoo.runtime.checkpoint import save_atomic
from sslzoo.runtime.dist import DistContext, barrier
from sslzoo.runtime.progress import say

LATEST = "latest.pth"
TRAIN_LOG = "train_log.jsonl"
SNAPSHOT = "epoch_{epoch}.pth"


def snapshot_path(work_dir: str | os.PathLike[str], epoch: int) -> Path:
    """``work_dir/epoch_<epoch>.pth``: the checkpoint of ``epoch`` a run keeps (:meth:`RunDir.snapshot`)."""
    return Path(work_dir) / SNAPSHOT.format(epoch=int(epoch))


def discard_resume_state(work_dir: str | os.PathLike[str]) -> None:
    """Remove ``work_dir/latest.pth`` once the step that trained it has written its output;
    the log and kept epoch checkpoints stay. Safe on every process of a group (a missing file
    is no error)."""
    (Path(work_dir) / LATEST).unlink(missing_ok=True)


class RunIdentity(Protocol):
    """What makes a saved state this run's: compared on resume, saved with every state."""

    def changes(self, state: Mapping[str, Any]) -> list[str]:
        """What differs between the run that wrote ``state`` and this one (empty: resume it)."""
        ...

    def entries(self) -> dict[str, Any]:
        """The entries ``latest.pth`` carries beside the weights, optimizer and progress."""
        ...


@dataclass(frozen=True)
class Fingerprint:
    """A run identified by one JSON-able mapping (config, seed, input digests, ...), saved as
    ``latest.pth``'s ``fingerprint``; a state with another one belongs to another run."""

    value: dict[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", json.loads(json.dumps(self.value)))

    def changes(self, state: Mapping[str, Any]) -> list[str]:
        old = state.get("fingerprint")
        if old == self.value:
            return []
        old = old or {}
        keys = sorted(key for key in set(old) | set(self.value) if old.get(key) != self.value.get(key))
        return [f"{key} changed" for key in keys] or ["fingerprint changed"]

    def entries(self) -> dict[str, Any]:
        return {"fingerprint": self.value}


class RunDir:
    """``path/latest.pth`` and ``path/train_log.jsonl`` of one run (the folder is created)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.latest = self.path / LATEST
        self.log = self.path / TRAIN_LOG

    def resume_state(self, identity: RunIdentity, ctx: DistContext) -> dict[str, Any] | None:
        """The saved state (tensors on the CPU) when it belongs to this run, else None; a state
        of another run is set aside with a message naming what changed."""
        state = (
            torch.load(self.latest, map_location="cpu", weights_only=True) if self.latest.exists() else None
        )
        if state is None:
            return None
        changes = identity.changes(state)
        if not changes:
            return state
        # The protocol changed (Snakemake reruns the job because its params changed): the old
        # run cannot be continued, so it is set aside, never silently mixed with the new one.
        barrier(ctx)
        if ctx.is_main:
            aside = self.set_aside()
            say(
                ctx,
                f"{self.latest} was written with other settings ({', '.join(changes)}): "
                f"starting from scratch; the old state is kept in {aside}",
            )
        barrier(ctx)
        return None

    def snapshot(self, epoch: int) -> Path:
        """The kept checkpoint of ``epoch``: ``path/epoch_<epoch>.pth``."""
        return snapshot_path(self.path, epoch)

    def set_aside(self) -> Path:
        """Move ``latest.pth``, the log and the kept epoch checkpoints into
        ``superseded-<time>/``; return that folder."""
        aside = self.path / time.strftime("superseded-%Y%m%d-%H%M%S")
        aside.mkdir(parents=True, exist_ok=True)
        for path in (self.latest, self.log, *sorted(self.path.glob(SNAPSHOT.format(epoch="*")))):
            if path.exists():
                path.replace(aside / path.name)
        return aside

    def truncate_log(self, iterations: int, ctx: DistContext) -> None:
        """Keep the log lines of the first ``iterations`` iterations (rank 0), then wait for all."""
        if ctx.is_main and self.log.exists():
            kept = []
            for line in self.log.read_text().splitlines():
                try:
                    if json.loads(line)["iter"] <= iterations:
                        kept.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # a line cut by a kill: everything after it is stale too
            self.log.write_text("".join(f"{line}\n" for line in kept))
        barrier(ctx)

    @contextmanager
    def open_log(self, ctx: DistContext) -> Iterator[TextIO | None]:
        """The log opened for appending on rank 0; None on the other processes."""
        if not ctx.is_main:
            yield None
            return
        with open(self.log, "a") as handle:
            yield handle

    def save(self, state: dict[str, Any], ctx: DistContext) -> None:
        """Write ``latest.pth`` atomically on rank 0, then wait for every process."""
        if ctx.is_main:
            save_atomic(state, self.latest)
        barrier(ctx)
