"""Classification manifests from class folders and from MMSelfSup list files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sslzoo.data.manifest import build_manifest, read_manifest, write_manifest
from sslzoo.data.mini import MiniSizes
from sslzoo.errors import SslzooError
from sslzoo.steps import manifest as manifest_step


def make_tree(root: Path, layout: dict[str, list[str]]) -> Path:
    """Create empty-content image files ``root/<folder>/<name>`` (the manifest never opens them)."""
    for folder, names in layout.items():
        for name in names:
            path = root / folder / name if folder else root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"jpeg")
    return root


@pytest.mark.parametrize("split", ["train", "val"])
def test_folder_and_list_manifests_of_the_mini_imagenet_agree(mini_root: Path, split: str) -> None:
    images = mini_root / "imagenet" / split
    listed = build_manifest("imagenet", images, split, mini_root / "imagenet" / "meta" / f"{split}.txt")
    scanned = build_manifest("imagenet", images, split)
    assert listed == scanned
    assert listed["dataset"] == "imagenet" and listed["split"] == split and listed["root"] == str(images)
    assert listed["classes"] == sorted(p.name for p in images.iterdir())
    files = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.JPEG"))
    assert [rel for rel, _ in listed["samples"]] == files
    assert all(listed["classes"][label] == rel.split("/")[0] for rel, label in listed["samples"])


def test_list_labels_name_classes_by_folder(tmp_path: Path) -> None:
    images = make_tree(tmp_path / "img", {"b": ["1.jpg", "2.jpg"], "a": ["3.jpg"], "c/sub": ["4.png"]})
    lst = tmp_path / "list.txt"
    lst.write_text("b/1.jpg 1\nb/2.jpg 1\n\na/3.jpg 0\nc/sub/4.png 2\n")
    manifest = build_manifest("imagenet", images, "train", lst)
    assert manifest["classes"] == ["a", "b", "c/sub"]
    assert manifest["samples"] == [["a/3.jpg", 0], ["b/1.jpg", 1], ["b/2.jpg", 1], ["c/sub/4.png", 2]]


def test_flat_list_names_classes_by_label(tmp_path: Path) -> None:
    images = make_tree(
        tmp_path / "val", {"": ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000001.JPEG"]}
    )
    lst = tmp_path / "val.txt"
    lst.write_text("ILSVRC2012_val_00000001.JPEG 2\nILSVRC2012_val_00000002.JPEG 0\n")
    manifest = build_manifest("imagenet", images, "val", lst)
    assert manifest["classes"] == ["0", "1", "2"]
    assert manifest["samples"] == [["ILSVRC2012_val_00000001.JPEG", 2], ["ILSVRC2012_val_00000002.JPEG", 0]]


def test_places205_uses_the_same_reader(tmp_path: Path) -> None:
    images = make_tree(tmp_path / "img", {"a/abbey": ["x.jpg"], "b/bar": ["y.jpg"]})
    lst = tmp_path / "train_places205.csv"
    lst.write_text("a/abbey/x.jpg 0\nb/bar/y.jpg 1\n")
    places = build_manifest("places205", images, "train", lst)
    assert places["dataset"] == "places205" and places["classes"] == ["a/abbey", "b/bar"]
    assert places["samples"] == build_manifest("imagenet", images, "train", lst)["samples"]


def test_missing_listed_file_names_the_list_line_and_path(tmp_path: Path) -> None:
    images = make_tree(tmp_path / "img", {"a": ["1.jpg", "2.jpg"]})
    lst = tmp_path / "train.txt"
    lst.write_text("a/1.jpg 0\na/2.jpg 0\na/gone.jpg 0\n")
    with pytest.raises(SslzooError) as err:
        build_manifest("imagenet", images, "train", lst)
    message = str(err.value)
    assert str(lst) in message and "line 3" in message and str(images / "a" / "gone.jpg") in message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("a/1.jpg 0\nb/2.jpg 0\n", "line 2: label 0"),  # one label, two folders
        ("a/1.jpg 0\na/2.jpg 1\n", "line 2: folder a"),  # one folder, two labels
        ("a/1.jpg 0\na/1.jpg 0\n", "line 2: a/1.jpg is listed twice"),
        ("a/1.jpg\n", "line 1: expected"),
        ("a/1.jpg zero\n", "line 1: expected"),
        ("a/1.jpg 0\nb/2.jpg 2\n", "labels [1] never occur"),
        ("../a/1.jpg 0\n", "without '..'"),
        ("\n\n", "names no images"),
    ],
)
def test_malformed_list_files_are_refused(tmp_path: Path, content: str, fragment: str) -> None:
    images = make_tree(tmp_path / "img", {"a": ["1.jpg", "2.jpg"], "b": ["2.jpg"]})
    lst = tmp_path / "list.txt"
    lst.write_text(content)
    with pytest.raises(SslzooError, match=str(lst).replace(".", r"\.")) as err:
        build_manifest("imagenet", images, "train", lst)
    assert fragment in str(err.value)


def test_empty_or_missing_datasets_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SslzooError, match="no class folders"):
        build_manifest("imagenet", tmp_path / "empty", "train")
    make_tree(tmp_path / "one", {"a": ["1.jpg"], "b": ["notes.txt"]})
    with pytest.raises(SslzooError, match=r"one/b: class folder holds no images"):
        build_manifest("imagenet", tmp_path / "one", "train")
    with pytest.raises(SslzooError, match="image folder not found"):
        build_manifest("imagenet", tmp_path / "nowhere", "train")
    with pytest.raises(SslzooError, match="list file not found"):
        build_manifest("imagenet", tmp_path / "one", "train", tmp_path / "nowhere.txt")
    with pytest.raises(SslzooError, match="no manifest builder for dataset 'coco'"):
        build_manifest("coco", tmp_path / "one", "train")


def test_folder_scan_skips_hidden_entries_and_other_files(tmp_path: Path) -> None:
    images = make_tree(
        tmp_path / "img", {"a": ["1.JPG", "notes.txt", ".2.jpg"], ".cache": ["3.jpg"], "a/.x": ["4.jpg"]}
    )
    manifest = build_manifest("imagenet", images, "train")
    assert manifest["classes"] == ["a"] and manifest["samples"] == [["a/1.JPG", 0]]


def test_manifest_step_writes_a_readable_manifest(mini_root: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    manifest_step.add_arguments(parser)
    out = tmp_path / "manifests" / "imagenet_val.json"
    images = str(mini_root / "imagenet" / "val")
    args = parser.parse_args(
        [
            "--dataset",
            "imagenet",
            "--images",
            images,
            "--list",
            str(mini_root / "imagenet" / "meta" / "val.txt"),
            "--split",
            "val",
            "--out",
            str(out),
        ]
    )
    manifest_step.main(args)
    written = json.loads(out.read_text())
    assert written == read_manifest(out)
    val_images = 10 * MiniSizes().imagenet_val_per_class
    assert (
        written["root"] == images and len(written["samples"]) == val_images and len(written["classes"]) == 10
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", "mnist", "--images", images, "--split", "val", "--out", str(out)])


def test_read_manifest_refuses_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_manifest(
        {"dataset": "imagenet", "split": "train", "root": ".", "classes": ["a"], "samples": [["x", 1]]}, path
    )
    with pytest.raises(SslzooError, match=r"m\.json: sample 0"):
        read_manifest(path)
    write_manifest({"dataset": "imagenet", "split": "train"}, path)
    with pytest.raises(SslzooError, match="missing root, classes, samples"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("label", "ok"),
    [
        (0, True),
        (1, True),
        (-1, True),  # unlabeled image set
        (2, False),
        (-2, False),
        (True, False),
        ([1, -1], True),  # one target per class (VOC07)
        ([0, 0], True),
        ([1], False),
        ([1, 2], False),
        ([1, True], False),
        ("0", False),
    ],
)
def test_read_manifest_label_kinds(tmp_path: Path, label: object, ok: bool) -> None:
    path = tmp_path / "m.json"
    manifest = {
        "dataset": "d",
        "split": "train",
        "root": ".",
        "classes": ["a", "b"],
        "samples": [["x", label]],
    }
    write_manifest(manifest, path)
    if ok:
        assert read_manifest(path)["samples"] == [["x", label]]
    else:
        with pytest.raises(SslzooError, match=r"m\.json: sample 0 .*class index in 0\.\.1"):
            read_manifest(path)
