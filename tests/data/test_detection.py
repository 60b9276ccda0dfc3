"""VOC and COCO detection readers: hand-written files, the mini datasets, broken files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.data import mini
from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.detection import (
    CocoDetection,
    VocDetection,
    collate_detection,
    hflip_boxes,
    parse_voc_xml,
    spread_positions,
    voc_boxes_to_xyxy,
)
from sslzoo.errors import SslzooError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs NumPy 2

XML = """<annotation>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  <object><name>dog</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
  <object><name>cat</name><difficult>1</difficult>
    <bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax><ymax>24</ymax></bndbox></object>
</annotation>
"""


def make_voc(root: Path, ids: list[str], split: str = "trainval", w: int = 32, h: int = 24) -> Path:
    """A VOC{year}-style folder with one JPEG and the XML above per id."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(ids):
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[:, : w // 2] = 40 * (i + 1)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(XML.format(w=w, h=h))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_parse_voc_xml_reads_boxes_and_difficult(tmp_path):
    path = tmp_path / "000001.xml"
    path.write_text(XML.format(w=32, h=24))
    ann = parse_voc_xml(path)
    assert (ann.image_id, ann.width, ann.height) == ("000001", 32, 24)
    assert [(o.name, o.box, o.difficult) for o in ann.objects] == [
        ("dog", (1, 2, 10, 20), False),
        ("cat", (5, 6, 30, 24), True),
    ]


def test_voc_boxes_become_zero_based_like_detectron2():
    # 1-based inclusive (1..W) covers the whole image: [0, W] in coordinates
    out = voc_boxes_to_xyxy(np.array([[1, 1, 32, 24], [5, 6, 30, 24]]))
    np.testing.assert_array_equal(out, [[0, 0, 32, 24], [4, 5, 30, 24]])


def test_voc_dataset_targets_and_flip(tmp_path):
    voc07 = make_voc(tmp_path / "VOC2007", ["000001", "000002"])
    voc12 = make_voc(tmp_path / "VOC2012", ["2012_000001"])
    data = VocDetection([(voc07, "trainval"), (voc12, "trainval")], train=True, flip_prob=0.5)
    assert len(data) == 3
    image, target = data[0]  # no seed: never flipped
    assert (
        image.shape == (3, 24, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    )
    np.testing.assert_array_equal(target["boxes"].numpy(), [[0, 1, 10, 20], [4, 5, 30, 24]])
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("cat") + 1]
    assert target["difficult"].tolist() == [False, True] and int(target["index"]) == 0
    # a seed whose draw flips: the image is mirrored and the boxes with it
    seed = next(s for s in range(100) if np.random.default_rng(s).random() < 0.5)
    flipped, flipped_target = data[(0, seed)]
    torch.testing.assert_close(flipped, image.flip(-1))
    np.testing.assert_array_equal(flipped_target["boxes"].numpy(), [[22, 1, 32, 20], [2, 5, 28, 24]])
    kept = next(s for s in range(100) if np.random.default_rng(s).random() >= 0.5)
    torch.testing.assert_close(data[(0, kept)][0], image)
    # the test split is never flipped
    test = VocDetection([(voc07, "trainval")])
    torch.testing.assert_close(test[(0, seed)][0], image)
    images, targets = collate_detection([data[0], data[1]])
    assert len(images) == len(targets) == 2


def test_hflip_boxes_is_an_involution():
    boxes = torch.tensor([[0.0, 1.0, 10.0, 20.0], [3.5, 2.0, 31.0, 9.0]])
    torch.testing.assert_close(hflip_boxes(hflip_boxes(boxes, 32), 32), boxes)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("<annotation><size><width>3", "not a readable XML"),
        ("<annotation><object><name>dog</name></object></annotation>", "size/width"),
        (XML.replace("<xmax>10</xmax>", ""), "bndbox/xmax"),
        (XML.replace("<ymin>2</ymin>", "<ymin>two</ymin>"), "not a number"),
        (XML.replace("<name>dog</name>", "<name>wolf</name>"), "'wolf'"),
    ],
)
def test_broken_voc_annotation_names_the_file(tmp_path, text, needle):
    voc = make_voc(tmp_path / "VOC2007", ["000001", "000002"])
    bad = voc / "Annotations" / "000002.xml"
    bad.write_text(text.format(w=32, h=24) if "{w}" in text else text)
    with pytest.raises(SslzooError, match=needle) as info:
        VocDetection([(voc, "trainval")])
    assert str(bad) in str(info.value)


def test_spread_positions_is_the_documented_rule_and_the_same_on_every_call():
    assert spread_positions(10, 4) == [0, 2, 5, 7]  # floor(k * 10 / 4), k = 0..3
    assert spread_positions(400, 100) == list(range(0, 400, 4))
    assert spread_positions(7, 3) == [0, 2, 4]
    for count, limit in ((400, 150), (40, 40), (1, 1), (13, 5)):
        expected = [int(np.floor(k * count / limit)) for k in range(limit)]
        assert spread_positions(count, limit) == expected == spread_positions(count, limit)
        assert len(set(expected)) == limit and expected == sorted(expected)
    assert spread_positions(5, None) == spread_positions(5, 5) == spread_positions(5, 9) == [0, 1, 2, 3, 4]
    with pytest.raises(SslzooError, match="max_images"):
        spread_positions(5, 0)


def test_select_keeps_the_chosen_images_renumbered(tmp_path):
    voc = make_voc(tmp_path / "VOC2007", ["000001", "000002", "000003", "000004"], split="test")
    data = VocDetection([(voc, "test")])
    subset = data.select([1, 3])
    assert len(subset) == 2 and len(data) == 4
    assert [p.stem for p in subset.images] == ["000002", "000004"]
    assert [a.image_id for a in subset.annotations] == ["000002", "000004"]
    torch.testing.assert_close(subset[1][0], data[3][0])
    assert int(subset[1][1]["index"]) == 1  # renumbered: predictions key by the subset's rows
    images, ann = make_coco(tmp_path / "coco")
    coco = CocoDetection(images, ann, train=False)
    assert coco.select([1]).image_ids == [9] and coco.image_ids == [5, 9]
    torch.testing.assert_close(coco.select([1])[0][0], coco[1][0])


def test_missing_voc_annotation_and_list(tmp_path):
    voc = make_voc(tmp_path / "VOC2007", ["000001"])
    (voc / "Annotations" / "000001.xml").unlink()
    with pytest.raises(SslzooError, match="000001.xml"):
        VocDetection([(voc, "trainval")])
    with pytest.raises(SslzooError, match="test.txt"):
        VocDetection([(voc, "test")])


def test_mini_voc07_12_reads_every_annotation(mini_root):
    devkit = mini_root / "voc" / "VOCdevkit"
    summary = json.loads((mini_root / "summary.json").read_text())["voc"]
    train = VocDetection([(devkit / "VOC2007", "trainval"), (devkit / "VOC2012", "trainval")], train=True)
    test = VocDetection([(devkit / "VOC2007", "test")])
    assert len(train) == summary["VOC2007"]["images"]["trainval"] + summary["VOC2012"]["images"]["trainval"]
    assert len(test) == summary["VOC2007"]["images"]["test"]
    n07 = summary["VOC2007"]["images"]["trainval"]
    objects07 = [o for a in train.annotations[:n07] + test.annotations for o in a.objects]
    assert len(objects07) == summary["VOC2007"]["instances"]
    assert sum(o.difficult for o in objects07) == summary["VOC2007"]["difficult"]
    for index in (0, len(test) - 1):
        image, target = test[index]
        h, w = image.shape[1:]
        boxes = target["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert set(target["labels"].tolist()) <= set(range(1, 21))


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def make_coco(root: Path) -> tuple[Path, Path]:
    """Two 20x30 images: one with a square (cat 17) and a crowd box (cat 1), one with nothing."""
    images = root / "images"
    images.mkdir(parents=True)
    for image_id in (5, 9):
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(images / f"{image_id:012d}.jpg")
    doc = {
        "images": [
            {"id": 5, "file_name": "000000000005.jpg", "width": 30, "height": 20},
            {"id": 9, "file_name": "000000000009.jpg", "width": 30, "height": 20},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 17,
                "bbox": [2, 3, 10, 8],
                "area": 80,
                "iscrowd": 0,
                "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]],
            },
            {
                "id": 2,
                "image_id": 5,
                "category_id": 1,
                "bbox": [15, 5, 10, 10],
                "area": 100,
                "iscrowd": 1,
                "segmentation": [[15, 5, 25, 5, 25, 15, 15, 15]],
            },
        ],
        "categories": [{"id": 17, "name": "cat"}, {"id": 1, "name": "person"}],
    }
    ann = root / "instances.json"
    ann.write_text(json.dumps(doc))
    return images, ann


def test_coco_targets_labels_masks(tmp_path):
    images, ann = make_coco(tmp_path)
    test = CocoDetection(images, ann, train=False)
    assert test.category_ids == [1, 17] and test.classes == ("person", "cat") and len(test) == 2
    image, target = test[0]
    assert image.shape == (3, 20, 30)
    np.testing.assert_array_equal(target["boxes"].numpy(), [[2, 3, 12, 11], [15, 5, 25, 15]])
    assert target["labels"].tolist() == [2, 1] and target["iscrowd"].tolist() == [0, 1]
    masks = target["masks"]
    assert masks.shape == (2, 20, 30) and masks.dtype == torch.uint8
    ys, xs = np.nonzero(masks[0].numpy())
    # the polygon rasterises inside its box, covering most of it
    assert xs.min() >= 2 and xs.max() <= 12 and ys.min() >= 3 and ys.max() <= 11 and masks[0].sum() >= 60
    assert test[1][1]["boxes"].shape == (0, 4) and test[1][1]["masks"].shape == (0, 20, 30)

    train = CocoDetection(images, ann, train=True)  # crowd dropped, empty image skipped
    assert train.image_ids == [5]
    seed = next(s for s in range(100) if np.random.default_rng(s).random() < 0.5)
    flipped_image, flipped = train[(0, seed)]
    np.testing.assert_array_equal(flipped["boxes"].numpy(), [[18, 3, 28, 11]])
    torch.testing.assert_close(flipped["masks"][0], train[0][1]["masks"][0].flip(-1))
    torch.testing.assert_close(flipped_image, train[0][0].flip(-1))


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda text, doc: "{not json", "not valid JSON"),
        (lambda text, doc: json.dumps({k: v for k, v in doc.items() if k != "annotations"}), "'annotations'"),
        (lambda text, doc: json.dumps({**doc, "annotations": [{"id": 1, "image_id": 5}]}), "lacks"),
        (lambda text, doc: json.dumps([1, 2]), "COCO JSON object"),
    ],
)
def test_broken_coco_file_names_the_file(tmp_path, mutate, needle):
    images, ann = make_coco(tmp_path)
    ann.write_text(mutate(ann.read_text(), json.loads(ann.read_text())))
    with pytest.raises(SslzooError, match=needle) as info:
        CocoDetection(images, ann)
    assert str(ann) in str(info.value)


def test_coco_unknown_category_and_bad_segmentation(tmp_path):
    images, ann = make_coco(tmp_path)
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["category_id"] = 99
    ann.write_text(json.dumps(doc))
    with pytest.raises(SslzooError, match="unknown category 99"):
        CocoDetection(images, ann)[0]
    doc["annotations"][0]["category_id"] = 17
    doc["annotations"][0]["segmentation"] = {"counts": 7}
    ann.write_text(json.dumps(doc))
    with pytest.raises(SslzooError, match="malformed segmentation"):
        CocoDetection(images, ann)[0]


def test_mini_coco_masks_lie_in_their_boxes(mini_root):
    coco = mini_root / "coco"
    data = CocoDetection(coco / "val2017", coco / "annotations" / "instances_val2017.json", train=False)
    assert data.classes == tuple(c[1] for c in sorted(mini.COCO_CATEGORIES))
    for index in (0, len(data) - 1):
        image, target = data[index]
        assert target["masks"].shape[1:] == image.shape[1:]
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            ys, xs = np.nonzero(mask.numpy())
            assert (
                xs.min() >= box[0] - 1
                and xs.max() <= box[2]
                and ys.min() >= box[1] - 1
                and ys.max() <= box[3]
            )
