"""Atomic state files: a training job's resume state and final weights are written through a
temporary file and a rename, so a kill mid-write leaves the previous file intact.

(Reading and converting other people's checkpoint formats is :mod:`sslzoo.checkpoints`.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file in the same folder and a rename: a kill mid-write
    leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
