"""The cached feature files of ``extract-features``: writing them and reading one layer back.

``results/features/{model}/{dataset}_{split}.npz`` holds one float array per feature layer
(``feature1`` .. ``feature5``, ``[N, D]``), ``labels`` (int64 ``[N]`` for single-label
datasets, int8 ``[N, C]`` with 1/-1/0 for VOC's present/absent/difficult) and ``classes``
(``[C]`` strings). kNN and the VOC SVMs read them through :func:`read_layer`. No torch here:
the files are numpy archives.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sslzoo.errors import SslzooError

FEATURE_LAYERS = ("feature1", "feature2", "feature3", "feature4", "feature5")


def label_array(labels: Sequence[Any]) -> np.ndarray:
    """int64 ``[N]`` for single-label datasets, int8 ``[N, C]`` (1/-1/0) for multi-label ones."""
    array = np.asarray(labels)
    if array.ndim == 1:
        return array.astype(np.int64)
    if array.ndim == 2:
        return array.astype(np.int8)
    raise SslzooError(f"labels must be [N] or [N, C], got shape {array.shape}")


def save_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` through a temporary file and a rename (no truncated cache after a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: feature file not found; run `python -m sslzoo extract-features` for it")
    return path


def feature_layers(path: str | os.PathLike[str]) -> list[str]:
    """The ``featureN`` layers stored in a feature file, in order."""
    with np.load(_existing(path), allow_pickle=False) as data:
        return [name for name in FEATURE_LAYERS if name in data.files]


def read_layer(
    path: str | os.PathLike[str], layer: str, fix_layer: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(features [N, D], labels, classes)`` of one layer of a feature file, checked.

    Raises an :class:`SslzooError` naming the file when it is missing, lacks ``layer`` (the
    message ends in ``fix_layer``, e.g. "set 'layer' in the kNN config"), lacks its labels or
    classes, or holds NaN or infinite features.
    """
    path = _existing(path)
    with np.load(path, allow_pickle=False) as data:
        if layer not in data.files:
            raise SslzooError(f"{path}: no layer '{layer}' (has {sorted(data.files)}); {fix_layer}")
        for key in ("labels", "classes"):
            if key not in data.files:
                raise SslzooError(f"{path}: no '{key}' array; extract the features again")
        features, labels = data[layer], data["labels"]
        classes = [str(name) for name in data["classes"]]
    if not np.isfinite(features).all():
        raise SslzooError(f"{path}: layer '{layer}' holds NaN or infinite values; the backbone diverged")
    return features, labels, classes
