"""Shared inputs of the parity tests: the mini datasets and the cached features of a seeded random
ResNet-18, made once per pytest run, and the recorder of the compared numbers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from sslzoo.data.mini import MiniSizes, make_mini_data
from tests.parity.reference import Recorder

MINI_SEED = 0
BACKBONE_SEED = 0
FEATURES_CONFIG = Path(__file__).resolve().parents[2] / "config" / "benchmarks" / "features_mini.yaml"
# The mini VOC07 (all 20 classes) and ImageNet at sizes 3 does not divide (the process-count
# tests), enough ImageNet rows for k = 200 and for mmselfsup's kNN, which splits the test rows
# into 100 chunks (it needs at least 100); the other datasets as small as they go.
PARITY_SIZES = MiniSizes(
    imagenet_train_per_class=25,
    imagenet_val_per_class=13,
    voc2007_trainval=151,
    voc2007_test=149,
    voc2012_seg_train=2,
    voc2012_seg_val=2,
    voc2012_det_only=2,
    coco_train=2,
    coco_val=16,
    cityscapes_train_per_city=1,
    cityscapes_val_per_city=1,
    places205_train_per_class=1,
    places205_val_per_class=1,
    inat18_train_max=2,
    inat18_train_min=1,
    inat18_val_per_class=1,
)


@dataclass(frozen=True)
class MiniInputs:
    """Where the mini data, manifests, backbone and feature files of the parity tests are."""

    root: Path
    backbone: Path
    manifests: dict[str, Path]  # "voc07_trainval", "voc07_test", "imagenet_train", "imagenet_val"
    features: dict[str, Path]  # the same keys -> npz (extract-features' contract)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: the reference runs beside the test in a process of its own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def record() -> Recorder:
    """Collects the compared numbers (``SSLZOO_PARITY_RECORD``; see ``tests/parity/report.py``)."""
    return Recorder(os.environ.get("SSLZOO_PARITY_RECORD"))


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniInputs:
    """The mini datasets, their manifests, a seeded random ResNet-18 and its cached features."""
    return make_mini_inputs(tmp_path_factory.mktemp("parity_mini"))


def make_mini_inputs(root: Path) -> MiniInputs:
    """Write the mini datasets (``PARITY_SIZES``) under ``root``, their manifests, a seeded random
    ResNet-18 and its cached features (``features_mini.yaml``: feature1..5 of VOC07, avgpool of
    ImageNet), as the workflow makes them."""
    from sslzoo.benchmarks.features import extract_features
    from sslzoo.checkpoints import random_backbone
    from sslzoo.data.manifest import build_manifest, write_manifest
    from sslzoo.data.voc import voc_classification_manifest

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        make_mini_data(root / "data", seed=MINI_SEED, sizes=PARITY_SIZES)
        manifests = {}
        for split in ("trainval", "test"):
            manifest = voc_classification_manifest(root / "data" / "voc" / "VOCdevkit" / "VOC2007", split)
            write_manifest(manifest, root / f"voc07_{split}.json")
            manifests[f"voc07_{split}"] = root / f"voc07_{split}.json"
        for split in ("train", "val"):
            images = root / "data" / "imagenet"
            manifest = build_manifest("imagenet", images / split, split, images / "meta" / f"{split}.txt")
            write_manifest(manifest, root / f"imagenet_{split}.json")
            manifests[f"imagenet_{split}"] = root / f"imagenet_{split}.json"
        backbone = root / "random_r18.pth"
        random_backbone(18, BACKBONE_SEED, backbone)
        features = {}
        for name, manifest_path in manifests.items():
            dataset = name.split("_")[0]
            features[name] = root / "features" / f"{name}.npz"
            extract_features(backbone, manifest_path, FEATURES_CONFIG, dataset, features[name])
    finally:
        torch.set_num_threads(threads)
    with np.load(features["voc07_trainval"]) as data:
        labels = data["labels"]
    positives = (labels == 1).sum(axis=0)
    if positives.min() < 3:  # the 3-fold CV of the full SVM needs 3 present images of each class
        raise AssertionError(
            f"mini VOC07 trainval: a class has fewer than 3 present images ({positives.tolist()})"
        )
    return MiniInputs(root=root / "data", backbone=backbone, manifests=manifests, features=features)
