"""Snapshots: the checkpoints of the epochs a model config lists under ``snapshots:``, kept by
the pretraining and extracted as models of their own (``<model>_ep<epoch>``,
:func:`sslzoo.config.snapshot_name`).

A reference may report numbers of an intermediate checkpoint of its run: Triplet (wanggrun/triplet
README) trains 1000 epochs (``configs/selfsup/triplet/r50_bs4096_accumulate4_ep1000_fp16_triplet_gpu3090.py``,
``checkpoint_config = dict(interval=10)``) and evaluates the linear head on ``ssl_ep940.pth``, the
detectors on ``release_ep800.pth``. Such a checkpoint is a row of the zoo with its own reported
numbers.

- Writing (:func:`keep_snapshot`, the loop's ``at_epoch_end`` hook): at the end of a listed
  epoch, before that epoch's resume state, rank 0 writes ``work/epoch_<epoch>.pth``
  (:meth:`~sslzoo.runtime.run_dir.RunDir.snapshot`) atomically, in the layout of ``final.pth``:
  ``{"state_dict", "meta": {"method", "config", "epoch", "git_rev"}}``. A run killed after it
  and resumed still has it; a run killed between it and the resume state redoes the epoch and
  writes it again (the same weights: resuming is exact).
- Resuming (:func:`check_kept`): a run resumed after a listed epoch whose checkpoint was never
  kept (the epoch was listed after the run had passed it) stops, naming the fix.
- Reading (:func:`extract_snapshot`): the kept checkpoint, checked against the run's
  ``final.pth`` (same epoch as listed, same training config), to a torchvision backbone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from sslzoo.checkpoints import (
    StateDict,
    backbone_state_dict,
    load_checkpoint,
    save_state_dict,
    to_torchvision,
)
from sslzoo.config import snapshot_epochs, training_config
from sslzoo.errors import SslzooError
from sslzoo.io import git_revision
from sslzoo.runtime.checkpoint import save_atomic
from sslzoo.runtime.dist import DistContext
from sslzoo.runtime.progress import say
from sslzoo.runtime.run_dir import RunDir, snapshot_path


def keep_snapshot(
    epoch: int, *, method: nn.Module, cfg: Mapping[str, Any], run_dir: RunDir, ctx: DistContext
) -> None:
    """Write ``run_dir/epoch_<epoch>.pth`` (rank 0, atomically) when ``epoch`` is one of the
    config's ``snapshots:``; call it at the end of every epoch, before the resume state."""
    if epoch not in snapshot_epochs(cfg) or not ctx.is_main:
        return
    state = {key: value.detach().cpu().contiguous() for key, value in method.state_dict().items()}
    meta = {"method": cfg["method"], "config": dict(cfg), "epoch": int(epoch), "git_rev": git_revision()}
    path = run_dir.snapshot(epoch)
    save_atomic({"state_dict": state, "meta": meta}, path)
    say(ctx, f"epoch {epoch}: kept {path} (snapshots)")


def check_kept(
    run_dir: RunDir, cfg: Mapping[str, Any], done_epochs: int, source: str | os.PathLike[str]
) -> None:
    """On resume after ``done_epochs``: every listed epoch up to there has its checkpoint.

    Raises:
        SslzooError: naming the missing files, the model config ``source`` and the two fixes.
    """
    missing = [
        epoch
        for epoch in snapshot_epochs(cfg)
        if epoch <= done_epochs and not run_dir.snapshot(epoch).is_file()
    ]
    if missing:
        files = ", ".join(str(run_dir.snapshot(epoch)) for epoch in missing)
        raise SslzooError(
            f"{run_dir.latest}: resuming after epoch {done_epochs}, but the checkpoint of snapshot "
            f"epoch(s) {missing} was never kept ({files}): they were listed under snapshots after the "
            f"run had passed them. Remove them from snapshots in {source}, or retrain from the start: "
            f"move {run_dir.path} aside and rerun"
        )


def extract_snapshot(
    final_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    epoch: int,
    out_path: str | os.PathLike[str],
) -> StateDict:
    """The backbone of the checkpoint the run of ``final_path`` kept at ``epoch``, written to
    ``out_path`` as a torchvision ResNet state dict (the backbone contract of
    :mod:`sslzoo.checkpoints`); returns it.

    Raises:
        SslzooError: the checkpoint was not kept (with the fix), is of another epoch, or belongs
            to a run with another training config than ``final_path``'s.
    """
    path = snapshot_path(work_dir, epoch)
    final = load_checkpoint(final_path)
    final_cfg = (final.get("meta") or {}).get("config") if isinstance(final, dict) else None
    if not isinstance(final_cfg, dict):
        raise SslzooError(f"{final_path}: no meta.config; expected the final checkpoint of our pretraining")
    if not path.is_file():
        # the run record names the model config the run was started with
        source = ((final["meta"].get("run") or {}).get("protocol") or {}).get("config") or "the model config"
        raise SslzooError(
            f"{path}: not found: the run of {final_path} kept no checkpoint of epoch {epoch} (the epoch "
            "was listed under snapshots after the run had passed it, or the work folder was moved). "
            f"Remove epoch {epoch} from snapshots in {source}, or retrain from the start: move "
            f"{Path(work_dir)} aside and rerun with --forcerun {final_path}"
        )
    snapshot = load_checkpoint(path)
    meta = snapshot.get("meta") or {}
    if meta.get("epoch") != int(epoch):
        raise SslzooError(f"{path}: holds epoch {meta.get('epoch')}, expected {epoch}")
    if training_config(meta.get("config") or {}) != training_config(final_cfg):
        raise SslzooError(
            f"{path}: written by a run with another training config than {final_path}; "
            f"retrain from the start: move {Path(work_dir)} aside and rerun with --forcerun {final_path}"
        )
    source = str(path)
    state_dict = to_torchvision(backbone_state_dict(snapshot, source), source)
    save_state_dict(state_dict, out_path)
    return state_dict
