"""iNaturalist 2018 annotation files -> classification manifests (:mod:`sslzoo.data.manifest` layout).

The competition's ``train2018.json`` / ``val2018.json`` are COCO-like::

    {"images": [{"id": 0, "file_name": "train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg", ...}],
     "annotations": [{"id": 0, "image_id": 0, "category_id": 7477}],
     "categories": [{"id": 7477, "name": "Spermophilus tridecemlineatus", ...}]}

``file_name`` is relative to the dataset root (``--images``). Classes are the categories sorted
by id (8142 in 2018; label = position, so train and val agree), named by ``name``; a name that
occurs more than once gets its id appended (``"Aster (123)"``). Every image needs exactly one
category. This is the data behind mmselfsup 0.x's ``configs/benchmarks/classification/
inaturalist2018`` (there as list files ``meta/train.txt`` / ``meta/val.txt``).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from sslzoo.errors import SslzooError
from sslzoo.io import read_json

DATASET = "inat18"


def _field(record: Any, key: str, kind: type, where: str, source: Path) -> Any:
    if not isinstance(record, dict):
        raise SslzooError(f"{source}: {where} must be an object, got {record!r}")
    if key not in record:
        raise SslzooError(f"{source}: {where}.{key} is missing")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SslzooError(f"{source}: {where}.{key} must be {kind.__name__}, got {value!r}")
    return value


def _list(data: dict[str, Any], key: str, source: Path) -> list[Any]:
    if key not in data:
        raise SslzooError(
            f"{source}: missing key '{key}' (an iNaturalist 2018 train or val file has images, annotations "
            "and categories; the test file has no labels)"
        )
    if not isinstance(data[key], list):
        raise SslzooError(f"{source}: '{key}' must be a list, got {type(data[key]).__name__}")
    return data[key]


def _class_names(categories: list[Any], source: Path) -> tuple[list[str], dict[int, int]]:
    """Class names in id order and category id -> label."""
    seen: dict[int, int] = {}
    named: list[tuple[int, str]] = []
    for index, category in enumerate(categories):
        where = f"categories[{index}]"
        cid = _field(category, "id", int, where, source)
        name = _field(category, "name", str, where, source)
        if cid in seen:
            raise SslzooError(f"{source}: {where}.id {cid} is also the id of categories[{seen[cid]}]")
        seen[cid] = index
        named.append((cid, name))
    if not named:
        raise SslzooError(f"{source}: 'categories' is empty")
    named.sort()
    counts: dict[str, int] = {}
    for _, name in named:
        counts[name] = counts.get(name, 0) + 1
    classes = [name if counts[name] == 1 else f"{name} ({cid})" for cid, name in named]
    return classes, {cid: label for label, (cid, _) in enumerate(named)}


def _check_files_exist(root: Path, paths: list[str], source: Path) -> None:
    """Every image exists under ``root``; lists each folder once."""
    listing: dict[str, set[str]] = {}
    missing = []
    for rel in paths:
        parent, _, name = rel.rpartition("/")
        if parent not in listing:
            folder = root / parent
            listing[parent] = (
                {e.name for e in os.scandir(folder) if e.is_file()} if folder.is_dir() else set()
            )
        if name not in listing[parent]:
            missing.append(rel)
    if missing:
        raise SslzooError(
            f"{source}: images[].file_name {missing[0]} does not exist under {root} ({len(missing)} of "
            f"{len(paths)} images are missing); --images must be the folder holding train_val2018/"
        )


def inat_manifest(
    json_path: str | os.PathLike[str], images: str | os.PathLike[str], split: str, check_files: bool = True
) -> dict[str, Any]:
    """The classification manifest of one iNaturalist 2018 split.

    Args:
        json_path: ``train2018.json`` or ``val2018.json``.
        images: the folder ``file_name`` is relative to (kept as given in ``root``).
        split: split name stored in the manifest.
        check_files: fail when a listed image does not exist.

    Raises:
        SslzooError: naming the file and the field (``annotations[3].category_id``) that is wrong.
    """
    source = Path(json_path)
    data = read_json(source)
    if not isinstance(data, dict):
        raise SslzooError(f"{source}: expected a JSON object with images, annotations and categories")
    image_records = _list(data, "images", source)
    annotations = _list(data, "annotations", source)
    classes, label_of = _class_names(_list(data, "categories", source), source)

    path_of: dict[int, tuple[str, int]] = {}
    for index, image in enumerate(image_records):
        where = f"images[{index}]"
        image_id = _field(image, "id", int, where, source)
        file_name = _field(image, "file_name", str, where, source)
        rel = PurePosixPath(file_name.replace("\\", "/"))
        if not file_name or rel.is_absolute() or ".." in rel.parts:
            raise SslzooError(
                f"{source}: {where}.file_name {file_name!r} must be a relative path without '..'"
            )
        if image_id in path_of:
            raise SslzooError(
                f"{source}: {where}.id {image_id} is also the id of images[{path_of[image_id][1]}]"
            )
        path_of[image_id] = (rel.as_posix(), index)

    label_for: dict[int, tuple[int, int]] = {}
    for index, annotation in enumerate(annotations):
        where = f"annotations[{index}]"
        image_id = _field(annotation, "image_id", int, where, source)
        category_id = _field(annotation, "category_id", int, where, source)
        if image_id not in path_of:
            raise SslzooError(f"{source}: {where}.image_id {image_id} is not the id of any entry of 'images'")
        if category_id not in label_of:
            raise SslzooError(
                f"{source}: {where}.category_id {category_id} is not the id of any entry of 'categories'"
            )
        label = label_of[category_id]
        if image_id in label_for and label_for[image_id][0] != label:
            raise SslzooError(
                f"{source}: {where}.category_id gives image {image_id} a second category "
                f"(annotations[{label_for[image_id][1]}] gave another); each image needs one"
            )
        label_for.setdefault(image_id, (label, index))

    unlabelled = [index for image_id, (_, index) in path_of.items() if image_id not in label_for]
    if unlabelled:
        raise SslzooError(
            f"{source}: images[{unlabelled[0]}] has no entry in 'annotations' ({len(unlabelled)} images "
            "without a category); use the train or val file, the test file has no labels"
        )
    if not path_of:
        raise SslzooError(f"{source}: 'images' is empty")
    samples = sorted((rel, label_for[image_id][0]) for image_id, (rel, _) in path_of.items())
    if check_files:
        _check_files_exist(Path(images), [rel for rel, _ in samples], source)
    return {
        "dataset": DATASET,
        "split": split,
        "root": str(images),
        "classes": classes,
        "samples": [[rel, label] for rel, label in samples],
    }
