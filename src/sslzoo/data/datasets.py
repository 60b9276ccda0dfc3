"""Readers for manifests (see :mod:`sslzoo.data.manifest`): what training and feature jobs load."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from sslzoo.data.images import load_rgb
from sslzoo.data.manifest import read_manifest


class ManifestDataset(Dataset):
    """A manifest as a torch Dataset: ``dataset[i] -> (transform(image), label)``.

    Images are opened lazily (in the DataLoader workers) and converted to RGB. ``labels`` is an
    int64 array in manifest order: [N] class indices (-1 for unlabeled images), or [N, C] targets
    in {-1, 0, 1} for a multi-label manifest (VOC07); ``classes`` names what they index. A
    multi-label sample comes out as an int64 array [C], which the default collate stacks to [B, C].
    """

    def __init__(
        self, manifest_path: str | os.PathLike[str], transform: Callable[[Image.Image], Any] | None = None
    ):
        manifest = read_manifest(manifest_path)
        self.manifest_path = Path(manifest_path)
        self.dataset: str = manifest["dataset"]
        self.split: str = manifest["split"]
        self.root = Path(manifest["root"])
        self.classes: list[str] = list(manifest["classes"])
        self.samples: list[tuple[str, int | tuple[int, ...]]] = [
            (rel, tuple(label) if isinstance(label, list) else int(label))
            for rel, label in manifest["samples"]
        ]
        self.labels: np.ndarray = np.array([label for _, label in self.samples], dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, index: int) -> Path:
        """Full path of sample ``index``."""
        return self.root / self.samples[index][0]

    def __getitem__(self, index: int) -> tuple[Any, int | np.ndarray]:
        image = load_rgb(self.path(index))
        if self.transform is not None:
            image = self.transform(image)
        label = self.samples[index][1]
        return image, np.asarray(label, dtype=np.int64) if isinstance(label, tuple) else label


class IndexedDataset(Dataset):
    """``dataset[i] -> (*dataset[i], i)``: a ``(views, label)`` dataset with each sample's index
    appended, for the methods that keep per-sample state (a memory bank, cluster assignments)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (*self.dataset[index], index)
