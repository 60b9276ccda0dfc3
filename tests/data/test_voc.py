"""The VOC classification manifest from a tiny hand-written devkit folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.voc import voc_classification_manifest
from sslzoo.errors import SslzooError
from sslzoo.steps import voc_manifest as voc_manifest_step

# image -> {class: label}; every other class is -1 (absent)
LABELS = {
    "000012": {"car": 1},
    "000005": {"chair": 1, "diningtable": 0},  # a table that is only difficult
    "000009": {"person": 1, "horse": 1},
}


def _devkit(root: Path, split: str = "trainval") -> Path:
    year = root / "VOCdevkit" / "VOC2007"
    main = year / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (year / "JPEGImages").mkdir()
    for image_id in LABELS:
        (year / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"")
    for name in VOC_CLASSES:
        lines = [
            f"{image_id} {LABELS[image_id].get(name, -1):2d}" for image_id in LABELS
        ]  # VOC pads: "000012  1"
        (main / f"{name}_{split}.txt").write_text("\n".join(lines) + "\n")
    return year


def test_manifest_of_a_tiny_devkit(tmp_path):
    year = _devkit(tmp_path)
    manifest = voc_classification_manifest(year, "trainval")
    assert manifest["dataset"] == "voc07" and manifest["split"] == "trainval"
    assert manifest["root"] == str(year)
    assert manifest["classes"] == list(VOC_CLASSES) and len(VOC_CLASSES) == 20
    assert [path for path, _ in manifest["samples"]] == [
        "JPEGImages/000005.jpg",
        "JPEGImages/000009.jpg",
        "JPEGImages/000012.jpg",
    ]
    targets = {path: dict(zip(VOC_CLASSES, labels, strict=True)) for path, labels in manifest["samples"]}
    chair = targets["JPEGImages/000005.jpg"]
    assert chair["chair"] == 1 and chair["diningtable"] == 0 and chair["car"] == -1
    assert sum(value == 1 for value in targets["JPEGImages/000009.jpg"].values()) == 2
    assert targets["JPEGImages/000012.jpg"]["car"] == 1


def test_step_writes_the_manifest(tmp_path):
    year = _devkit(tmp_path)
    parser = argparse.ArgumentParser()
    voc_manifest_step.add_arguments(parser)
    out = tmp_path / "manifests" / "voc07_trainval.json"
    voc_manifest_step.main(
        parser.parse_args(["--devkit", str(year), "--split", "trainval", "--out", str(out)])
    )
    written = json.loads(out.read_text())
    assert written == voc_classification_manifest(year, "trainval")


@pytest.mark.parametrize("line", ["000005 2", "000005", "000005 1 extra", "000005 yes"])
def test_a_malformed_line_names_the_file_and_line(tmp_path, line):
    year = _devkit(tmp_path)
    path = year / "ImageSets" / "Main" / "dog_trainval.txt"
    lines = path.read_text().splitlines()
    lines[1] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SslzooError, match=r"dog_trainval\.txt: line 2"):
        voc_classification_manifest(year, "trainval")


def test_missing_and_inconsistent_files_are_errors(tmp_path):
    year = _devkit(tmp_path)
    with pytest.raises(SslzooError, match=r"aeroplane_test\.txt"):
        voc_classification_manifest(year, "test")
    (year / "JPEGImages" / "000009.jpg").unlink()
    with pytest.raises(SslzooError, match=r"000009\.jpg"):
        voc_classification_manifest(year, "trainval")
    (year / "JPEGImages" / "000009.jpg").write_bytes(b"")
    cat = year / "ImageSets" / "Main" / "cat_trainval.txt"
    cat.write_text(cat.read_text() + "000777 -1\n")
    with pytest.raises(SslzooError, match=r"cat_trainval\.txt: lists other images"):
        voc_classification_manifest(year, "trainval")
    with pytest.raises(SslzooError, match="ImageSets/Main"):
        voc_classification_manifest(tmp_path, "trainval")
