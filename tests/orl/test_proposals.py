"""ORL stage 2a: selective-search proposals in shards, merged in manifest order, read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslzoo.cli import main as cli_main
from sslzoo.data.manifest import write_manifest
from sslzoo.errors import SslzooError
from sslzoo.io import write_json
from sslzoo.orl.proposals import (
    merge_proposals,
    parse_shard,
    proposals_per_second,
    propose_shard,
    read_proposals,
    read_proposals_for_manifest,
    selective_search,
    shard_rows,
    write_merged_proposals,
)


def _image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A small RGB uint8 image of a few noisy coloured rectangles (selective search finds regions)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), rng.integers(0, 256, 3), dtype=np.int64)
    for _ in range(4):
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[y : y + rng.integers(6, height // 2), x : x + rng.integers(6, width // 2)] = rng.integers(
            0, 256, 3
        )
    return np.clip(image + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A manifest of 6 tiny images of different sizes, in a non-sorted order, with COCO-like ids."""
    images = tmp_path / "images"
    images.mkdir()
    names = ["b.png", "a.png", "f.png", "c.png", "e.png", "d.png"]
    for seed, name in enumerate(names):
        Image.fromarray(_image(seed, 40 + 4 * seed, 56 + 2 * seed)).save(images / name)
    path = tmp_path / "coco_train.json"
    doc = {
        "dataset": "coco",
        "split": "train",
        "root": str(images),
        "classes": [],
        "samples": [[name, -1] for name in names],
        "ids": [101, 7, 55, 3, 999, 42],
    }
    write_manifest(doc, path)
    return path


@pytest.mark.parametrize("n_rows", [0, 1, 5, 6, 7, 64, 101])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 8, 64])
def test_shards_cover_every_row_once(n_rows: int, n_shards: int) -> None:
    shards = [shard_rows(n_rows, f"{i}-of-{n_shards}") for i in range(1, n_shards + 1)]
    assert sorted(row for rows in shards for row in rows) == list(range(n_rows))
    assert all(rows == list(range(i, n_rows, n_shards)) for i, rows in enumerate(shards))


@pytest.mark.parametrize(
    "shard", ["0-of-4", "5-of-4", "1-of-0", "3of4", "a-of-4", "-1-of-4", "1-of-4-of-5", ""]
)
def test_bad_shard_strings_are_refused(shard: str) -> None:
    with pytest.raises(SslzooError, match="i-of-n"):
        shard_rows(10, shard)


def test_shard_string_parses() -> None:
    assert parse_shard("3-of-64") == (3, 64) and parse_shard("1-of-1") == (1, 1)


def test_opencv_boxes_are_int_xywh_inside_the_image() -> None:
    image = _image(3, 48, 64)
    boxes = selective_search(image, "opencv")
    assert len(boxes) > 3
    for box in boxes:
        assert len(box) == 4 and all(type(v) is int for v in box)
        x, y, w, h = box
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= 64 and y + h <= 48
    # selective search ends with the region that merged everything: the whole image
    assert [0, 0, 64, 48] in boxes


def test_opencv_boxes_are_deterministic_in_order() -> None:
    """OpenCV ranks regions with libc rand(); reseeding per image makes the order repeat."""
    image = _image(5, 96, 128)
    first = selective_search(image, "opencv")
    selective_search(_image(6, 96, 128), "opencv")  # advances rand() in between
    again = selective_search(image.copy(), "opencv")
    assert again == first
    assert len(set(map(tuple, first))) == len(first)  # OpenCV already drops duplicate boxes


def test_opencv_gets_the_image_as_bgr() -> None:
    """The reference converts RGB to BGR before OpenCV: our result is OpenCV's on the BGR array."""
    import cv2

    image = _image(4, 48, 64)
    cv2.setNumThreads(1)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))
    search.switchToSelectiveSearchFast()
    expected = {tuple(int(v) for v in box) for box in search.process()}
    assert {tuple(box) for box in selective_search(image, "opencv")} == expected


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(SslzooError, match="unknown selective-search backend 'edgeboxes'"):
        selective_search(_image(0), "edgeboxes")


def test_selectivesearch_backend_without_the_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "selectivesearch", None)  # import raises ImportError
    with pytest.raises(SslzooError, match="pip install selectivesearch"):
        selective_search(_image(0), "selectivesearch")


def test_selectivesearch_backend_boxes_are_int_xywh_inside_the_image() -> None:
    pytest.importorskip("selectivesearch")
    image = _image(2, 32, 40)
    boxes = selective_search(image, "selectivesearch")
    assert boxes and boxes == selective_search(image, "selectivesearch")
    for x, y, w, h in boxes:
        assert all(type(v) is int for v in (x, y, w, h))
        assert x >= 0 and y >= 0 and w >= 0 and h >= 0 and x + w <= 40 and y + h <= 32


def test_sharded_then_merged_equals_unsharded(manifest: Path, tmp_path: Path) -> None:
    whole = propose_shard(manifest, "1-of-1", progress=False)
    assert whole["indices"] == list(range(6)) and whole["shard"] == "1-of-1"
    direct = [
        selective_search(np.asarray(Image.open(manifest.parent / "images" / n)), "opencv")
        for n in ["b.png", "a.png", "f.png", "c.png", "e.png", "d.png"]
    ]
    assert whole["bbox"] == direct

    files = []
    for shard in ("2-of-2", "1-of-2"):  # any order
        doc = propose_shard(manifest, shard, progress=False)
        assert doc["indices"] == shard_rows(6, shard)
        files.append(tmp_path / f"{shard}.json")
        write_json(files[-1], doc, indent=None)
    merged = merge_proposals(manifest, files)
    assert merged["bbox"] == whole["bbox"]
    assert merged["images"] == {
        "file_name": ["b.png", "a.png", "f.png", "c.png", "e.png", "d.png"],
        "id": [101, 7, 55, 3, 999, 42],
    }

    out = tmp_path / "proposals.json"
    n_boxes = write_merged_proposals(manifest, files, out)
    assert n_boxes == sum(len(b) for b in whole["bbox"])
    assert json.loads(out.read_text()) == merged  # valid JSON, the same document
    assert len(out.read_text().splitlines()) == 6 + 2  # one image per line
    assert read_proposals_for_manifest(out, manifest) == whole["bbox"]
    arrays = read_proposals(out, 6, as_arrays=True)
    assert all(a.dtype == np.int32 and a.tolist() == b for a, b in zip(arrays, whole["bbox"], strict=True))


def _shard_file(tmp_path: Path, shard: str, n_rows: int = 6) -> Path:
    rows = shard_rows(n_rows, shard)
    path = tmp_path / f"{shard}.json"
    write_json(path, {"shard": shard, "indices": rows, "bbox": [[[r, 0, 1, 1]] for r in rows]}, indent=None)
    return path


def test_merge_orders_rows_by_manifest_row(manifest: Path, tmp_path: Path) -> None:
    files = [_shard_file(tmp_path, f"{i}-of-4") for i in (3, 1, 4, 2)]
    assert merge_proposals(manifest, files)["bbox"] == [[[r, 0, 1, 1]] for r in range(6)]


def test_merge_refuses_a_missing_shard_naming_it(manifest: Path, tmp_path: Path) -> None:
    files = [_shard_file(tmp_path, f"{i}-of-3") for i in (1, 3)]
    with pytest.raises(SslzooError, match="shard 2-of-3 is missing"):
        merge_proposals(manifest, files)


def test_merge_refuses_a_duplicate_shard_naming_both_files(manifest: Path, tmp_path: Path) -> None:
    first = _shard_file(tmp_path, "1-of-2")
    copy = tmp_path / "copy" / "1-of-2.json"
    copy.parent.mkdir()
    copy.write_text(first.read_text())
    with pytest.raises(SslzooError, match="shard 1-of-2 is given twice") as info:
        merge_proposals(manifest, [first, _shard_file(tmp_path, "2-of-2"), copy])
    assert str(copy) in str(info.value) and str(first) in str(info.value)


def test_merge_refuses_shards_of_another_manifest_or_run(manifest: Path, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    foreign = _shard_file(tmp_path / "other", "1-of-2", n_rows=9)  # rows of a 9-image manifest
    with pytest.raises(SslzooError, match="made for another manifest") as info:
        merge_proposals(manifest, [foreign, _shard_file(tmp_path, "2-of-2")])
    assert str(foreign) in str(info.value)
    with pytest.raises(SslzooError, match="of another run"):
        merge_proposals(manifest, [_shard_file(tmp_path, "1-of-2"), _shard_file(tmp_path, "2-of-3")])


def test_unreadable_image_stops_the_shard_naming_the_file(manifest: Path) -> None:
    broken = manifest.parent / "images" / "f.png"  # row 2: in shard 1-of-2
    broken.write_bytes(b"not a png")
    assert propose_shard(manifest, "2-of-2", progress=False)["indices"] == [1, 3, 5]
    with pytest.raises(SslzooError, match="cannot read image") as info:
        propose_shard(manifest, "1-of-2", progress=False)
    assert str(broken) in str(info.value)


def test_read_accepts_the_reference_layout(tmp_path: Path) -> None:
    """ORL's published file: only "bbox", one line, and a single box squeezed to a flat list."""
    path = tmp_path / "train2017_selective_search_proposal.json"
    path.write_text('{"bbox": [[[0, 0, 10, 20], [3, 4, 5, 6]], [1, 2, 3, 4], [], [[7, 8, 9, 10]]]}')
    expected = [[[0, 0, 10, 20], [3, 4, 5, 6]], [[1, 2, 3, 4]], [], [[7, 8, 9, 10]]]
    assert read_proposals(path, 4, file_names=["a", "b", "c", "d"]) == expected
    arrays = read_proposals(path, 4, as_arrays=True)
    assert [a.shape for a in arrays] == [(2, 4), (1, 4), (0, 4), (1, 4)]
    assert [a.tolist() for a in arrays] == expected


def test_read_streams_across_buffer_boundaries(tmp_path: Path, monkeypatch) -> None:
    """Values cut at the end of a read buffer (numbers, lists) are parsed whole."""
    import sslzoo.orl.proposals as proposals

    bbox = [[[i, j * 1234567, 10 + i, 20] for j in range(i % 4)] for i in range(50)]
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"info": {"note": "x" * 30}, "bbox": bbox, "extra": [1, 22, 333]}))
    init = proposals._JsonStream.__init__
    monkeypatch.setattr(proposals._JsonStream, "__init__", lambda self, h, p: init(self, h, p, chunk_chars=7))
    assert read_proposals(path, 50) == bbox


def test_read_refuses_a_wrong_image_count_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "proposals.json"
    path.write_text('{"bbox": [[[0, 0, 1, 1]], []]}')
    with pytest.raises(SslzooError, match="proposals for 2 images but the manifest m.json has 3") as info:
        read_proposals(path, 3, manifest_path="m.json")
    assert str(path) in str(info.value)
    with pytest.raises(SslzooError, match="more than the 1 images"):
        read_proposals(path, 1)


def test_read_refuses_another_image_order(tmp_path: Path) -> None:
    path = tmp_path / "proposals.json"
    path.write_text('{"bbox": [[], []], "images": {"file_name": ["a.jpg", "b.jpg"], "id": [1, 2]}}')
    with pytest.raises(SslzooError, match="image 0 is 'a.jpg' but row 0 of the manifest m.json is 'b.jpg'"):
        read_proposals(path, 2, ["b.jpg", "a.jpg"], "m.json")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"boxes": []}', "no 'bbox' list"),
        ('{"bbox": [[[1, 2, 3]]]}', r"is not \[x, y, w, h\]"),
        ('{"bbox": [[[0, 0, 1, 1]]', "not valid JSON"),
        ('{"bbox": [[]]} []', "extra data"),
    ],
)
def test_read_refuses_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SslzooError, match=message):
        read_proposals(path, 1)


def test_steps_write_shards_and_the_merged_file(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "proposals"
    for shard in ("1-of-2", "2-of-2"):
        assert (
            cli_main(
                [
                    "orl-proposals",
                    "--manifest",
                    str(manifest),
                    "--shard",
                    shard,
                    "--backend",
                    "opencv",
                    "--out",
                    str(out / f"{shard}.json"),
                ]
            )
            == 0
        )
    merged = tmp_path / "proposals.json"
    shards = [str(out / "1-of-2.json"), str(out / "2-of-2.json")]
    assert cli_main(["orl-merge-proposals", "--manifest", str(manifest), "--out", str(merged), *shards]) == 0
    assert read_proposals_for_manifest(merged, manifest) == merge_proposals(manifest, shards)["bbox"]
    assert (
        cli_main(["orl-merge-proposals", "--manifest", str(manifest), "--out", str(merged), shards[0]]) == 2
    )


def test_proposals_per_second_is_a_rate(manifest: Path) -> None:
    paths = sorted((manifest.parent / "images").glob("*.png"))[:2]
    assert proposals_per_second(paths, "opencv") > 0
