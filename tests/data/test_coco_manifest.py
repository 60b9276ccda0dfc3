"""The COCO manifest: images in the instances JSON's order, with their COCO ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sslzoo.cli import main as cli_main
from sslzoo.data.coco import coco_manifest
from sslzoo.data.manifest import read_manifest
from sslzoo.errors import SslzooError

# (id, file_name) in the annotation file's order: deliberately neither id- nor name-sorted
IMAGES = [
    (391895, "000000391895.jpg"),
    (9, "000000000009.jpg"),
    (522418, "000000522418.jpg"),
    (25, "x/25.jpg"),
]


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "train2017"
    for _, name in IMAGES:
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6)).save(images / name)
    annotations = tmp_path / "instances_train2017.json"
    doc = {
        "images": [{"id": i, "file_name": n, "width": 8, "height": 6} for i, n in IMAGES],
        "annotations": [],
        "categories": [],
    }
    annotations.write_text(json.dumps(doc))
    return images, annotations


def test_samples_follow_the_json_image_order_with_their_ids(coco: tuple[Path, Path], tmp_path: Path) -> None:
    images, annotations = coco
    out = tmp_path / "coco_train.json"
    assert (
        cli_main(
            [
                "coco-manifest",
                "--images",
                str(images),
                "--annotations",
                str(annotations),
                "--split",
                "train",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    manifest = read_manifest(out)
    assert manifest["samples"] == [[name, -1] for _, name in IMAGES]
    assert manifest["ids"] == [i for i, _ in IMAGES]
    assert manifest["classes"] == [] and manifest["dataset"] == "coco" and manifest["split"] == "train"
    assert manifest["root"] == str(images)


def test_root_is_kept_as_given(coco: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    images, annotations = coco
    monkeypatch.chdir(tmp_path)
    assert coco_manifest("train2017", annotations, "train")["root"] == "train2017"


def test_a_missing_image_names_the_file_and_the_json(coco: tuple[Path, Path]) -> None:
    images, annotations = coco
    (images / IMAGES[2][1]).unlink()
    (images / IMAGES[3][1]).unlink()
    with pytest.raises(SslzooError, match=r"images\[2\]: .*000000522418.jpg does not exist \(2 of 4") as info:
        coco_manifest(images, annotations, "train")
    assert str(annotations) in str(info.value)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"annotations": []}, "no 'images' list"),
        ({"images": []}, "'images' list is empty"),
        ({"images": [{"id": 1}]}, "lacks a string 'file_name'"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "a.jpg"}]}, "listed twice"),
        ({"images": [{"id": 1, "file_name": "../a.jpg"}]}, "must be relative"),
    ],
)
def test_malformed_annotation_files_are_refused(tmp_path: Path, doc: dict, message: str) -> None:
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(doc))
    with pytest.raises(SslzooError, match=message) as info:
        coco_manifest(tmp_path, annotations, "train")
    assert str(annotations) in str(info.value)


def test_a_missing_image_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SslzooError, match="image folder not found"):
        coco_manifest(tmp_path / "nope", tmp_path / "instances.json", "train")
