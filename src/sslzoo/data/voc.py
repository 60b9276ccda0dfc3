"""The Pascal VOC classification manifest: per image, one target 1/-1/0 for each of the 20 classes.

Read from the VOC devkit's per-class list files ``ImageSets/Main/<class>_<split>.txt``, lines
``<image id> <label>`` with label 1 (present), -1 (absent) or 0 (only difficult instances), the
source the VOC07 SVM protocol is built from (mmselfsup 0.x
``tools/data_converters/create_voc_data_files.py``; that script re-encodes the labels as
1/0/-1 = present/absent/ignore, we keep the devkit's own 1/-1/0).

Layout (``resources/manifests/voc07_{split}.json``), the classification manifest of
:mod:`sslzoo.data.manifest` with a list of 20 targets instead of one label::

    {"dataset": "voc07", "split": "trainval", "root": "<devkit year dir as given>",
     "classes": ["aeroplane", ..., "tvmonitor"],
     "samples": [["JPEGImages/000005.jpg", [-1, -1, ..., 1, ...]], ...]}

Images are sorted by id (as the reference's label files are); the classes are the 20 standard
names in their standard (alphabetical) order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.errors import SslzooError

VOC_TARGETS = (1, -1, 0)


def read_class_list(path: Path) -> dict[str, int]:
    """``<image id> -> label`` of one ``<class>_<split>.txt``; a bad line raises SslzooError naming it."""
    if not path.is_file():
        raise SslzooError(
            f"{path}: class list not found; the VOC devkit needs ImageSets/Main/<class>_<split>.txt "
            "for all 20 classes (check --devkit and --split)"
        )
    labels: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]) or int(parts[1]) not in VOC_TARGETS:
            raise SslzooError(f"{path}: line {number}: expected '<image id> 1|-1|0', got {line!r}")
        image_id = parts[0]
        if image_id in labels:
            raise SslzooError(f"{path}: line {number}: image {image_id} is listed twice")
        labels[image_id] = int(parts[1])
    if not labels:
        raise SslzooError(f"{path}: the class list names no images")
    return labels


def voc_classification_manifest(
    devkit_year_dir: str | os.PathLike[str], split: str, dataset: str | None = None
) -> dict[str, Any]:
    """The classification manifest of one VOC split (e.g. ``VOCdevkit/VOC2007``, ``trainval``).

    Args:
        devkit_year_dir: the folder holding ``ImageSets/Main`` and ``JPEGImages``; stored as given.
        split: the list-file split (``trainval``, ``test``, ``train``, ``val``).
        dataset: the manifest's dataset name; default ``voc07`` for a folder ``VOC2007`` (``vocYY``).

    Every class file must list the same images and every image must exist as
    ``JPEGImages/<id>.jpg``.
    """
    root = Path(devkit_year_dir)
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        raise SslzooError(f"{main}: not found; --devkit must be a VOC year folder such as VOCdevkit/VOC2007")
    if dataset is None:
        year = re.fullmatch(r"VOC(\d{4})", root.name)
        dataset = f"voc{year.group(1)[2:]}" if year else "voc"
    per_class = [read_class_list(main / f"{name}_{split}.txt") for name in VOC_CLASSES]
    ids = sorted(per_class[0])
    reference = set(ids)
    for name, labels in zip(VOC_CLASSES, per_class, strict=True):
        if set(labels) != reference:
            path = main / f"{name}_{split}.txt"
            other = main / f"{VOC_CLASSES[0]}_{split}.txt"
            extra = sorted(set(labels) - reference)
            missing = sorted(reference - set(labels))
            raise SslzooError(
                f"{path}: lists other images than {other} (extra {extra[:3]}, missing {missing[:3]}); "
                "every class list of a split must name the same images"
            )
    images = root / "JPEGImages"
    present = {entry.name for entry in os.scandir(images)} if images.is_dir() else set()
    absent = [image_id for image_id in ids if f"{image_id}.jpg" not in present]
    if absent:
        raise SslzooError(
            f"{images / (absent[0] + '.jpg')}: image not found ({len(absent)} of {len(ids)} images of "
            f"{main / (VOC_CLASSES[0] + '_' + split + '.txt')} are missing)"
        )
    samples = [[f"JPEGImages/{image_id}.jpg", [labels[image_id] for labels in per_class]] for image_id in ids]
    return {
        "dataset": dataset,
        "split": split,
        "root": str(devkit_year_dir),
        "classes": list(VOC_CLASSES),
        "samples": samples,
    }
