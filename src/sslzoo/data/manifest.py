"""Manifests: the (image, label) list of one dataset split, built once, read by every later job.

Classification layout (``resources/manifests/{dataset}_{split}.json``)::

    {"dataset": "imagenet", "split": "train", "root": "<images dir as given>",
     "classes": ["n01440764", ...], "samples": [["n01440764/x.JPEG", 0], ...]}

Paths are relative to ``root``; labels index ``classes``; samples are sorted by path, so the
same images give the same manifest whichever way they were found.

Two sources, as MMSelfSup reads them (mmselfsup 0.x mmselfsup/datasets/data_sources/
image_list.py and imagenet.py):

- class folders ``<root>/<class>/**/<image>``: classes are the folder names, sorted;
- a list file with lines ``<relpath> <label>``: labels as written; a class is named after the
  folder its images share (``n01440764/x.JPEG 0`` -> ``classes[0] = "n01440764"``), or, for a
  flat list (``ILSVRC2012_val_00000001.JPEG 65``), after its label ("65").

Datasets are a plain dict, ``BUILDERS``: ImageNet-style classification (``imagenet``,
``places205``) now; detection and segmentation manifests (VOC, COCO) add their own builder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from sslzoo.errors import SslzooError
from sslzoo.io import read_json, write_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

Samples = list[tuple[str, int]]


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def scan_class_folders(images: Path) -> tuple[list[str], Samples]:
    """Classes (sorted sub-folder names) and samples (path relative to ``images``, label).

    Hidden folders and non-image files are skipped; images may sit in nested folders. A class
    folder without images is an error (its label would never occur).
    """
    if not images.is_dir():
        raise SslzooError(
            f"{images}: image folder not found; check --images (config datasets.<name>.<split>.images)"
        )
    classes = sorted(e.name for e in os.scandir(images) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise SslzooError(
            f"{images}: no class folders (<images>/<class>/<image>); for a flat folder pass an MMSelfSup "
            "list file with --list (config datasets.<name>.<split>.list)"
        )
    samples: Samples = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(images / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(images).as_posix()
            found += [
                (f"{rel_dir}/{f}", label) for f in filenames if is_image_file(f) and not f.startswith(".")
            ]
        if not found:
            raise SslzooError(
                f"{images / name}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "remove it or add its images"
            )
        samples += found
    return classes, sorted(samples)


def _parse_list(list_file: Path) -> list[tuple[int, str, int]]:
    """(line number, relative path, label) for every non-empty line of an MMSelfSup list file."""
    if not list_file.is_file():
        raise SslzooError(
            f"{list_file}: list file not found; check --list (config datasets.<name>.<split>.list)"
        )
    entries = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise SslzooError(f"{list_file}: line {number}: expected '<relative path> <label>', got {line!r}")
        path, label = parts[0], int(parts[1])
        if label < 0:
            raise SslzooError(f"{list_file}: line {number}: negative label {label}")
        rel = PurePosixPath(path.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise SslzooError(
                f"{list_file}: line {number}: {path!r} must be relative to --images, without '..'"
            )
        entries.append((number, rel.as_posix(), label))
    return entries


def _check_files_exist(images: Path, list_file: Path, entries: list[tuple[int, str, int]]) -> None:
    """Every listed file exists; lists each folder once (fast on a million files)."""
    listing: dict[str, set[str]] = {}
    missing = []
    for number, rel, _ in entries:
        parent, _, name = rel.rpartition("/")
        if parent not in listing:
            folder = images / parent
            listing[parent] = (
                {e.name for e in os.scandir(folder) if e.is_file()} if folder.is_dir() else set()
            )
        if name not in listing[parent]:
            missing.append((number, rel))
    if missing:
        number, rel = missing[0]
        raise SslzooError(
            f"{list_file}: line {number}: {images / rel} does not exist ({len(missing)} of {len(entries)} "
            "listed files are missing); check that --images is the folder the list's paths are relative to"
        )


def read_list_file(images: Path, list_file: Path) -> tuple[list[str], Samples]:
    """Classes and samples of an MMSelfSup list file whose paths are relative to ``images``."""
    entries = _parse_list(list_file)
    if not entries:
        raise SslzooError(f"{list_file}: the list file names no images")
    seen: dict[str, int] = {}
    for number, rel, _ in entries:
        if rel in seen:
            raise SslzooError(
                f"{list_file}: line {number}: {rel} is listed twice (first on line {seen[rel]})"
            )
        seen[rel] = number
    _check_files_exist(images, list_file, entries)

    parents = {str(PurePosixPath(rel).parent) for _, rel, _ in entries}
    n_classes = max(label for _, _, label in entries) + 1
    if parents == {"."}:  # a flat list: classes are named by their label
        classes = [str(i) for i in range(n_classes)]
    else:
        name_of: dict[int, tuple[str, int]] = {}
        label_of: dict[str, tuple[int, int]] = {}
        for number, rel, label in entries:
            folder = str(PurePosixPath(rel).parent)
            if folder == ".":
                raise SslzooError(
                    f"{list_file}: line {number}: {rel} has no class folder while other lines have one; "
                    "use one layout for the whole list"
                )
            if label in name_of and name_of[label][0] != folder:
                first = name_of[label]
                raise SslzooError(
                    f"{list_file}: line {number}: label {label} is used for folder {folder} but line {first[1]} "
                    f"uses it for {first[0]}; each label must name one class folder"
                )
            if folder in label_of and label_of[folder][0] != label:
                first = label_of[folder]
                raise SslzooError(
                    f"{list_file}: line {number}: folder {folder} has label {label} but line {first[1]} gives it "
                    f"label {first[0]}; each class folder must have one label"
                )
            name_of.setdefault(label, (folder, number))
            label_of.setdefault(folder, (label, number))
        unused = [i for i in range(n_classes) if i not in name_of]
        if unused:
            raise SslzooError(
                f"{list_file}: labels {unused[:10]} never occur (labels run 0..{n_classes - 1}), so their class "
                "names are unknown; relabel the list with consecutive labels"
            )
        classes = [name_of[i][0] for i in range(n_classes)]
    samples = sorted((rel, label) for _, rel, label in entries)
    return classes, samples


def classification_manifest(
    dataset: str, images: str | os.PathLike[str], split: str, list_file: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The manifest of a single-label classification split (ImageNet, Places205 layouts).

    ``root`` keeps ``images`` as given (a relative path stays relative to the working directory,
    as in the workflow).
    """
    root = Path(images)
    if list_file is not None:
        classes, samples = read_list_file(root, Path(list_file))
    else:
        classes, samples = scan_class_folders(root)
    if not samples:
        raise SslzooError(f"{root}: dataset {dataset} split {split} holds no images")
    return {
        "dataset": dataset,
        "split": split,
        "root": str(images),
        "classes": classes,
        "samples": [[rel, label] for rel, label in samples],
    }


BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "imagenet": classification_manifest,
    "places205": classification_manifest,
}


def build_manifest(
    dataset: str, images: str | os.PathLike[str], split: str, list_file: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Dispatch to the dataset's builder (``BUILDERS``)."""
    if dataset not in BUILDERS:
        raise SslzooError(
            f"no manifest builder for dataset {dataset!r}; known: {', '.join(sorted(BUILDERS))}"
        )
    return BUILDERS[dataset](dataset, images, split, list_file)


def write_manifest(manifest: dict[str, Any], out: str | os.PathLike[str]) -> None:
    """Write ``manifest`` atomically as compact JSON (a million samples stay a small file)."""
    write_json(out, manifest, indent=None)


def _valid_label(label: Any, n_classes: int) -> bool:
    """A class index in ``0..n_classes-1``; -1 (no label: an unlabeled image set such as COCO
    train for pretraining); or, for a multi-label set (VOC07), one target in {-1, 0, 1} per class."""
    if isinstance(label, bool):
        return False
    if isinstance(label, int):
        return label == -1 or 0 <= label < n_classes
    return (
        isinstance(label, list)
        and len(label) == n_classes
        and all(isinstance(t, int) and not isinstance(t, bool) and t in (-1, 0, 1) for t in label)
    )


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a manifest; a malformed one raises SslzooError naming it.

    A sample is ``[relpath, label]`` with ``label`` a class index, -1 (unlabeled), or a list of
    one target per class in {-1, 0, 1} (VOC07 classification, see :mod:`sslzoo.data.voc`).
    """
    manifest = read_json(path)
    missing = [
        k
        for k in ("dataset", "split", "root", "classes", "samples")
        if not isinstance(manifest, dict) or k not in manifest
    ]
    if missing:
        raise SslzooError(f"{path}: not a manifest (missing {', '.join(missing)}); rerun the manifest step")
    n_classes = len(manifest["classes"])
    for i, sample in enumerate(manifest["samples"]):
        if not (isinstance(sample, list) and len(sample) == 2 and isinstance(sample[0], str)):
            raise SslzooError(f"{path}: sample {i} {sample!r} is not [path, label]; rerun the manifest step")
        if not _valid_label(sample[1], n_classes):
            raise SslzooError(
                f"{path}: sample {i} {sample!r}: the label is not a class index in 0..{n_classes - 1}, -1 "
                f"(unlabeled) or {n_classes} targets in {{-1, 0, 1}}; rerun the manifest step"
            )
    if not manifest["samples"]:
        raise SslzooError(f"{path}: the manifest lists no images; rerun the manifest step")
    return manifest
