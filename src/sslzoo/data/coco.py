"""The COCO image manifest: the images of an instances JSON, in that file's image order.

ORL (Jiahao000/ORL ``openselfsup/datasets/data_sources/coco_selective_search_json.py``) lists
``data["images"][i]["file_name"]`` in file order, and its proposals, kNN and correspondence files
address images by that row index. So the samples here are NOT sorted: row ``i`` of the manifest
is ``images[i]`` of the annotation file.

Layout (``resources/manifests/coco_{split}.json``), the manifest of :mod:`sslzoo.data.manifest`
for an unlabeled image set, plus the COCO image ids (``read_manifest`` ignores the extra key)::

    {"dataset": "coco", "split": "train", "root": "<images dir as given>", "classes": [],
     "samples": [["000000391895.jpg", -1], ...], "ids": [391895, ...]}
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from sslzoo.errors import SslzooError
from sslzoo.io import read_json


def _image_entries(annotations: Path) -> list[tuple[str, int]]:
    """(file_name, id) of every ``images`` entry of a COCO annotation file, in file order."""
    doc = read_json(annotations)
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise SslzooError(
            f"{annotations}: no 'images' list; pass a COCO instances file (annotations/instances_train2017.json)"
        )
    entries: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(images):
        name = item.get("file_name") if isinstance(item, dict) else None
        image_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(name, str) or not isinstance(image_id, int) or isinstance(image_id, bool):
            raise SslzooError(
                f"{annotations}: images[{i}] {item!r} lacks a string 'file_name' or an integer 'id'"
            )
        rel = PurePosixPath(name.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise SslzooError(f"{annotations}: images[{i}]: file_name {name!r} must be relative to --images")
        if name in seen:
            raise SslzooError(
                f"{annotations}: images[{i}]: {name} is listed twice (first as images[{seen[name]}])"
            )
        seen[name] = i
        entries.append((rel.as_posix(), image_id))
    if not entries:
        raise SslzooError(f"{annotations}: the 'images' list is empty")
    return entries


def _check_files_exist(images: Path, annotations: Path, names: list[str]) -> None:
    """Every image file exists; each folder is listed once (fast on 118k files)."""
    listing: dict[str, set[str]] = {}
    missing: list[int] = []
    for i, rel in enumerate(names):
        parent, _, name = rel.rpartition("/")
        if parent not in listing:
            folder = images / parent
            listing[parent] = (
                {e.name for e in os.scandir(folder) if e.is_file()} if folder.is_dir() else set()
            )
        if name not in listing[parent]:
            missing.append(i)
    if missing:
        first = missing[0]
        raise SslzooError(
            f"{annotations}: images[{first}]: {images / names[first]} does not exist ({len(missing)} of "
            f"{len(names)} listed images are missing); check that --images is the image folder of this "
            "annotation file (train2017 for instances_train2017.json)"
        )


def coco_manifest(
    images: str | os.PathLike[str], annotations: str | os.PathLike[str], split: str, dataset: str = "coco"
) -> dict[str, Any]:
    """The manifest of the images of ``annotations`` (a COCO instances JSON) under ``images``.

    Samples are ``[file_name, -1]`` in the JSON's image order; ``ids`` holds the COCO image id of
    each sample; ``root`` keeps ``images`` as given. A missing image raises SslzooError naming the
    first missing file and the JSON.
    """
    root, annotations = Path(images), Path(annotations)
    if not root.is_dir():
        raise SslzooError(f"{root}: image folder not found; check --images (the COCO train2017 folder)")
    entries = _image_entries(annotations)
    _check_files_exist(root, annotations, [name for name, _ in entries])
    return {
        "dataset": dataset,
        "split": split,
        "root": str(images),
        "classes": [],
        "samples": [[name, -1] for name, _ in entries],
        "ids": [image_id for _, image_id in entries],
    }
