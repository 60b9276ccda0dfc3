"""iNaturalist 2018 JSON -> classification manifest; malformed files name the field."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest

from sslzoo.data.inat import inat_manifest
from sslzoo.errors import SslzooError

ANNOTATIONS = {
    "info": {"year": 2018},
    "images": [
        {"id": 10, "file_name": "train_val2018/Plantae/9/b.jpg", "width": 8, "height": 8},
        {"id": 11, "file_name": "train_val2018/Aves/2/a.jpg", "width": 8, "height": 8},
        {"id": 12, "file_name": "train_val2018/Plantae/5/c.jpg", "width": 8, "height": 8},
        {"id": 13, "file_name": "train_val2018/Aves/2/d.jpg", "width": 8, "height": 8},
    ],
    "annotations": [
        {"id": 0, "image_id": 10, "category_id": 9},
        {"id": 1, "image_id": 11, "category_id": 2},
        {"id": 2, "image_id": 12, "category_id": 5},
        {"id": 3, "image_id": 13, "category_id": 2},
    ],
    "categories": [
        {"id": 9, "name": "Quercus robur", "supercategory": "Plantae"},
        {"id": 2, "name": "Pica pica", "supercategory": "Aves"},
        {"id": 5, "name": "Bellis perennis", "supercategory": "Plantae"},
    ],
}


def _write(tmp_path: Path, data: dict, images: bool = True) -> Path:
    if images:
        for image in ANNOTATIONS["images"]:
            (tmp_path / image["file_name"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / image["file_name"]).write_bytes(b"jpeg")
    path = tmp_path / "train2018.json"
    path.write_text(json.dumps(data))
    return path


def test_manifest_from_a_hand_written_file(tmp_path: Path) -> None:
    manifest = inat_manifest(_write(tmp_path, ANNOTATIONS), tmp_path, "train")
    assert (
        manifest["dataset"] == "inat18" and manifest["split"] == "train" and manifest["root"] == str(tmp_path)
    )
    # classes sorted by category id: 2, 5, 9
    assert manifest["classes"] == ["Pica pica", "Bellis perennis", "Quercus robur"]
    assert manifest["samples"] == [
        ["train_val2018/Aves/2/a.jpg", 0],
        ["train_val2018/Aves/2/d.jpg", 0],
        ["train_val2018/Plantae/5/c.jpg", 1],
        ["train_val2018/Plantae/9/b.jpg", 2],
    ]


def test_step_writes_a_manifest_the_dataset_reads(tmp_path: Path) -> None:
    from sslzoo.data.manifest import read_manifest
    from sslzoo.steps import inat_manifest as step

    parser = argparse.ArgumentParser()
    step.add_arguments(parser)
    out = tmp_path / "manifests" / "inat18_train.json"
    step.main(
        parser.parse_args(
            [
                "--json",
                str(_write(tmp_path, ANNOTATIONS)),
                "--images",
                str(tmp_path),
                "--split",
                "train",
                "--out",
                str(out),
            ]  # fmt: skip
        )
    )
    assert read_manifest(out)["samples"][3] == ["train_val2018/Plantae/9/b.jpg", 2]


def test_repeated_category_names_are_told_apart_by_id(tmp_path: Path) -> None:
    data = copy.deepcopy(ANNOTATIONS)
    data["categories"][2]["name"] = "Pica pica"
    assert inat_manifest(_write(tmp_path, data), tmp_path, "train")["classes"] == [
        "Pica pica (2)",
        "Pica pica (5)",
        "Quercus robur",
    ]


def _broken(change) -> dict:
    data = copy.deepcopy(ANNOTATIONS)
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_broken(lambda d: d.pop("annotations")), "missing key 'annotations'"),
        (_broken(lambda d: d["images"][1].pop("file_name")), r"images\[1\]\.file_name is missing"),
        (_broken(lambda d: d["images"][0].update(id="10")), r"images\[0\]\.id must be int"),
        (_broken(lambda d: d["images"][2].update(file_name="../x.jpg")), r"images\[2\]\.file_name '\.\./x\.jpg'"),
        (_broken(lambda d: d["images"][3].update(id=10)), r"images\[3\]\.id 10 is also the id of images\[0\]"),
        (_broken(lambda d: d["annotations"][1].update(category_id=77)), r"annotations\[1\]\.category_id 77"),
        (_broken(lambda d: d["annotations"][2].update(image_id=99)), r"annotations\[2\]\.image_id 99"),
        (_broken(lambda d: d["annotations"].append({"image_id": 10, "category_id": 2})), r"annotations\[4\]\.category_id gives image 10 a second"),
        (_broken(lambda d: d["annotations"].pop(2)), r"images\[2\] has no entry in 'annotations'"),
        (_broken(lambda d: d["categories"][0].pop("name")), r"categories\[0\]\.name is missing"),
        (_broken(lambda d: d["categories"][1].update(id=9)), r"categories\[1\]\.id 9 is also the id of categories\[0\]"),
        (_broken(lambda d: d.update(categories={"id": 1})), "'categories' must be a list"),
    ],
)  # fmt: skip
def test_malformed_files_name_the_file_and_the_field(tmp_path: Path, data: dict, message: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(SslzooError, match=message) as err:
        inat_manifest(path, tmp_path, "train")
    assert str(path) in str(err.value)


def test_missing_images_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, ANNOTATIONS)
    (tmp_path / "train_val2018/Plantae/5/c.jpg").unlink()
    with pytest.raises(SslzooError, match=r"train_val2018/Plantae/5/c\.jpg does not exist .*1 of 4"):
        inat_manifest(path, tmp_path, "train")
    assert len(inat_manifest(path, tmp_path, "train", check_files=False)["samples"]) == 4
