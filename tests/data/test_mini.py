"""The mini datasets: layouts, and labels, boxes and masks that agree with the pixels."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sslzoo.data import mini
from sslzoo.errors import SslzooError

from .conftest import MINI_SEED

# pycocotools' C extension predates NumPy 2's copy keyword; its DeprecationWarning is not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VOC07 = ("voc", "VOCdevkit", "VOC2007")
VOC12 = ("voc", "VOCdevkit", "VOC2012")
# A few rows of the real COCO category table (instances_val2017.json).
REAL_COCO = {
    1: "person",
    2: "bicycle",
    3: "car",
    16: "bird",
    17: "cat",
    18: "dog",
    44: "bottle",
    62: "chair",
    47: "cup",
    85: "clock",
}


def jpeg_matches(written: np.ndarray, rendered: np.ndarray) -> bool:
    """The JPEG holds the rendered image: off by compression error only (about 5; another image: 25+)."""
    return float(np.abs(written.astype(int) - rendered.astype(int)).mean()) < 8


def read_ids(path: Path) -> list[str]:
    return path.read_text().split()


def parse_voc_xml(path: Path) -> dict:
    root = ET.parse(path).getroot()
    objects = []
    for obj in root.findall("object"):
        box = [int(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(
            {"name": obj.find("name").text, "difficult": int(obj.find("difficult").text), "box": box}
        )
    size = root.find("size")
    return {
        "width": int(size.find("width").text),
        "height": int(size.find("height").text),
        "objects": objects,
    }


# ------------------------------------------------------------------------------------------ summary


def test_summary_is_written_last_and_counts_the_files(mini_root: Path) -> None:
    summary = json.loads((mini_root / "summary.json").read_text())
    assert summary["seed"] == MINI_SEED
    stamp = (mini_root / "summary.json").stat().st_mtime_ns
    newest = max(
        p.stat().st_mtime_ns for p in mini_root.rglob("*") if p.is_file() and p.name != "summary.json"
    )
    assert stamp >= newest
    for split in ("train", "val"):
        files = list((mini_root / "imagenet" / split).rglob("*.JPEG"))
        assert len(files) == summary["imagenet"]["images"][split]
    assert summary["imagenet"]["images"] == {"train": 600, "val": 200}
    voc07 = summary["voc"]["VOC2007"]["images"]
    jpegs = list(mini_root.joinpath(*VOC07, "JPEGImages").glob("*.jpg"))
    assert len(jpegs) == voc07["trainval"] + voc07["test"]
    for split in ("train2017", "val2017"):
        assert len(list((mini_root / "coco" / split).glob("*.jpg"))) == summary["coco"][split]["images"]
    for split in ("train", "val"):
        found = list((mini_root / "cityscapes" / "leftImg8bit" / split).rglob("*_leftImg8bit.png"))
        assert len(found) == summary["cityscapes"][split]["images"]


# ------------------------------------------------------------------------------------------ imagenet


@pytest.mark.parametrize("split", ["train", "val"])
def test_imagenet_list_files_match_the_class_folders(mini_root: Path, split: str) -> None:
    wnids = sorted(p.name for p in (mini_root / "imagenet" / split).iterdir())
    assert wnids == sorted(mini.IMAGENET_CLASSES)
    from_folders = {
        f"{wnid}/{f.name} {label}"
        for label, wnid in enumerate(wnids)
        for f in (mini_root / "imagenet" / split / wnid).iterdir()
    }
    lines = (mini_root / "imagenet" / "meta" / f"{split}.txt").read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(from_folders)
    assert set(lines) == from_folders
    for line in lines[:: len(lines) // 7]:
        with Image.open(mini_root / "imagenet" / split / line.split()[0]) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (96, 96))


def test_imagenet_label_is_the_dominant_object(mini_root: Path) -> None:
    wnids = sorted(mini.IMAGENET_CLASSES)
    for label in range(len(wnids)):
        index = 3 * label + 1
        scene = mini.render_imagenet_image(MINI_SEED, "train", label, index)
        areas = [inst.mask.sum() for inst in scene.instances]
        main = scene.instances[-1]
        assert main.name == mini.IMAGENET_CLASSES[wnids[label]]
        assert main.mask.sum() == max(areas) and main.mask.sum() > 0.08 * main.mask.size
        assert all(inst.name not in mini.IMAGENET_CLASSES.values() for inst in scene.instances[:-1])
        written = np.asarray(
            Image.open(mini_root / "imagenet" / "train" / wnids[label] / f"{wnids[label]}_{index + 1}.JPEG")
        )
        assert jpeg_matches(written, scene.image)
        assert not jpeg_matches(
            written, mini.render_imagenet_image(MINI_SEED, "train", label, index + 1).image
        )


def test_imagenet_classes_are_distinguishable_by_a_plain_nearest_neighbour(mini_root: Path) -> None:
    """Raw 16x16 colour thumbnails already beat chance: the labels carry visual signal."""

    def load(split: str) -> tuple[np.ndarray, np.ndarray]:
        feats, labels = [], []
        for line in (mini_root / "imagenet" / "meta" / f"{split}.txt").read_text().splitlines():
            rel, label = line.split()
            img = Image.open(mini_root / "imagenet" / split / rel).resize((16, 16), Image.BILINEAR)
            x = np.asarray(img, np.float32).ravel()
            feats.append((x - x.mean()) / (x.std() + 1e-6))
            labels.append(int(label))
        return np.stack(feats), np.array(labels)

    train_x, train_y = load("train")
    val_x, val_y = load("val")
    nearest = np.argmax(val_x @ train_x.T, axis=1)
    accuracy = (train_y[nearest] == val_y).mean()
    assert accuracy > 0.2  # chance is 0.1


# ------------------------------------------------------------------------------------------ VOC


def voc_images(mini_root: Path, parts: tuple[str, ...], split: str) -> list[str]:
    return read_ids(mini_root.joinpath(*parts, "ImageSets", "Main", f"{split}.txt"))


def test_voc_boxes_agree_with_segmentation_masks(mini_root: Path) -> None:
    base = mini_root.joinpath(*VOC07)
    ids = voc_images(mini_root, VOC07, "trainval") + voc_images(mini_root, VOC07, "test")
    checked = 0
    for image_id in ids:
        ann = parse_voc_xml(base / "Annotations" / f"{image_id}.xml")
        with Image.open(base / "JPEGImages" / f"{image_id}.jpg") as img:
            assert img.size == (ann["width"], ann["height"])
        seg_png = Image.open(base / "SegmentationClass" / f"{image_id}.png")
        assert seg_png.mode == "P" and seg_png.size == (ann["width"], ann["height"])
        seg = np.asarray(seg_png)
        assert set(np.unique(seg)) <= set(range(21)) | {255}
        in_boxes = np.zeros((21, *seg.shape), bool)  # per class: inside one of its boxes
        for obj in ann["objects"]:
            x0, y0, x1, y1 = (v - 1 for v in obj["box"])  # VOC boxes are 1-based and inclusive
            assert 0 <= x0 <= x1 < ann["width"] and 0 <= y0 <= y1 < ann["height"]
            cls = mini.VOC_CLASSES.index(obj["name"]) + 1
            in_boxes[cls, y0 : y1 + 1, x0 : x1 + 1] = True
            crop = seg[y0 : y1 + 1, x0 : x1 + 1]
            if obj["difficult"]:
                assert (crop == 255).any()  # difficult objects are void
                continue
            label, void = crop == cls, crop == 255
            # tight box: the object (its class inside, void along its outline) touches all four sides
            ys, xs = np.nonzero(label | void)
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (0, 0, crop.shape[1] - 1, crop.shape[0] - 1)
            # and its class pixels fill most of it (thin tips may be all border band)
            ys, xs = np.nonzero(label)
            assert len(ys) > 0.1 * crop.size, (image_id, obj)
            inner = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
            assert inner > 0.4 * crop.size, (image_id, obj)
            checked += 1
        for cls in range(1, 21):  # no pixel of a class outside that class's boxes
            assert not ((seg == cls) & ~in_boxes[cls]).any(), (image_id, cls)
    assert checked > 2 * len(ids) * 0.8


def test_voc_class_lists_match_the_annotations(mini_root: Path) -> None:
    for parts, splits in (
        (VOC07, ("train", "val", "trainval", "test")),
        (VOC12, ("train", "val", "trainval")),
    ):
        base = mini_root.joinpath(*parts)
        ids = {split: voc_images(mini_root, parts, split) for split in splits}
        assert set(ids["train"]).isdisjoint(ids["val"])
        assert sorted(ids["train"] + ids["val"]) == sorted(ids["trainval"])
        for split in splits:
            expected: dict[str, dict[str, int]] = {
                name: dict.fromkeys(ids[split], -1) for name in mini.VOC_CLASSES
            }
            for image_id in ids[split]:
                for obj in parse_voc_xml(base / "Annotations" / f"{image_id}.xml")["objects"]:
                    flag = 0 if obj["difficult"] else 1
                    expected[obj["name"]][image_id] = max(expected[obj["name"]][image_id], flag)
            for name in mini.VOC_CLASSES:
                lines = (base / "ImageSets" / "Main" / f"{name}_{split}.txt").read_text().splitlines()
                got = {line.split()[0]: int(line.split()[1]) for line in lines}
                assert got == expected[name], (parts, split, name)


def test_voc_scenes_hold_several_objects_of_every_class(mini_root: Path) -> None:
    base = mini_root.joinpath(*VOC07)
    for split in ("trainval", "test"):
        objects = [
            obj
            for image_id in voc_images(mini_root, VOC07, split)
            for obj in parse_voc_xml(base / "Annotations" / f"{image_id}.xml")["objects"]
        ]
        counts = {name: sum(o["name"] == name for o in objects) for name in mini.VOC_CLASSES}
        assert min(counts.values()) >= 8, counts
        assert len(objects) / len(voc_images(mini_root, VOC07, split)) >= 2.0
        difficult = sum(o["difficult"] for o in objects) / len(objects)
        assert 0.0 < difficult < 0.2


def test_voc2012_segmentation_and_trainaug_lists(mini_root: Path) -> None:
    base = mini_root.joinpath(*VOC12)
    seg = {
        s: read_ids(base / "ImageSets" / "Segmentation" / f"{s}.txt")
        for s in ("train", "val", "trainval", "trainaug")
    }
    main = set(voc_images(mini_root, VOC12, "trainval"))
    assert set(seg["train"]).isdisjoint(seg["val"])
    assert sorted(seg["train"] + seg["val"]) == sorted(seg["trainval"])
    assert set(seg["trainval"]) <= main
    assert set(seg["train"]) <= set(seg["trainaug"]) and set(seg["trainaug"]).isdisjoint(seg["val"])
    assert set(seg["trainaug"]) == main - set(seg["val"])  # SBD-style: every image but the seg val set
    for image_id in seg["trainval"]:
        official = np.asarray(Image.open(base / "SegmentationClass" / f"{image_id}.png"))
        aug = np.asarray(Image.open(base / "SegmentationClassAug" / f"{image_id}.png"))
        labelled = official != 255
        assert (aug[labelled] == official[labelled]).all()
        assert aug.max() <= 20
    for image_id in seg["trainaug"]:
        aug_png = Image.open(base / "SegmentationClassAug" / f"{image_id}.png")
        assert aug_png.mode == "L"
        with Image.open(base / "JPEGImages" / f"{image_id}.jpg") as img:
            assert img.size == aug_png.size
    assert not any((base / "SegmentationClass" / f"{i}.png").exists() for i in main - set(seg["trainval"]))


# ------------------------------------------------------------------------------------------ COCO


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_coco_polygons_agree_with_boxes_and_pixels(mini_root: Path, split: str) -> None:
    coco = COCO(str(mini_root / "coco" / "annotations" / f"instances_{split}.json"))
    assert {c["id"]: c["name"] for c in coco.dataset["categories"]}.items() <= REAL_COCO.items()
    assert len(coco.dataset["categories"]) >= 6
    used = {a["category_id"] for a in coco.dataset["annotations"]}
    assert used == set(coco.getCatIds())
    for ann in coco.dataset["annotations"]:
        assert ann["iscrowd"] == 0 and all(len(p) >= 6 for p in ann["segmentation"])
        m = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(m)
        x, y, w, h = ann["bbox"]
        assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (x, y, w, h)
        assert m.sum() == ann["area"]
    # the masks are the painted objects: re-render a few images and compare
    for index, image in enumerate(coco.dataset["images"][:12]):
        scene = mini.render_coco_image(MINI_SEED, split, index)
        written = np.asarray(Image.open(mini_root / "coco" / split / image["file_name"]))
        assert written.shape == scene.image.shape == (image["height"], image["width"], 3)
        assert jpeg_matches(written, scene.image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(anns) == len(scene.instances)
        for ann, inst in zip(anns, scene.instances, strict=True):
            assert (
                coco.cats[ann["category_id"]]["name"]
                == dict((c[3], c[1]) for c in mini.COCO_CATEGORIES)[inst.name]
            )
            assert (coco.annToMask(ann).astype(bool) == inst.mask).all()


def test_coco_image_ids_are_twelve_digit_file_names(mini_root: Path) -> None:
    train = json.loads((mini_root / "coco" / "annotations" / "instances_train2017.json").read_text())
    val = json.loads((mini_root / "coco" / "annotations" / "instances_val2017.json").read_text())
    for doc in (train, val):
        assert all(im["file_name"] == f"{im['id']:012d}.jpg" for im in doc["images"])
    assert {im["id"] for im in train["images"]}.isdisjoint(im["id"] for im in val["images"])
    ann_ids = [a["id"] for doc in (train, val) for a in doc["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))


def test_mask_polygons_rasterise_back_to_the_mask() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((40, 50), np.uint8)
        for _ in range(3):
            x, y, r = rng.integers(5, 45), rng.integers(5, 35), rng.integers(2, 9)
            mask[max(0, y - r) : y + r, max(0, x - r // 2) : x + r] = 1
        mask[10:12, 10:12] = 1
        mask[12:14, 12:14] = 1  # touching at a corner only
        mask = mask.astype(bool)
        import cv2

        _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if (hierarchy[0][:, 3] >= 0).any():
            continue  # polygons cannot hold holes; the generator never annotates such masks
        rle = mask_utils.merge(mask_utils.frPyObjects(mini.mask_polygons(mask), 40, 50))
        assert (mask_utils.decode(rle).astype(bool) == mask).all()


# ------------------------------------------------------------------------------------------ Cityscapes


def test_cityscapes_pairs_label_ids_and_pixels(mini_root: Path) -> None:
    valid = set(mini.CITYSCAPES_LABEL_IDS.values())
    ids = mini.CITYSCAPES_LABEL_IDS
    for split, cities in mini.CITYSCAPES_CITIES.items():
        images = sorted((mini_root / "cityscapes" / "leftImg8bit" / split).rglob("*_leftImg8bit.png"))
        assert {p.parent.name for p in images} == set(cities)
        for path in images:
            stem = path.name[: -len("_leftImg8bit.png")]
            city, seq, frame = stem.split("_")
            assert city == path.parent.name and len(seq) == len(frame) == 6
            label_path = mini_root / "cityscapes" / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            image = np.asarray(Image.open(path))
            labels = np.asarray(Image.open(label_path))
            assert image.shape == (128, 256, 3) and labels.shape == (128, 256)
            assert set(np.unique(labels)) <= valid and len(np.unique(labels)) >= 6
            sky, road = image[labels == ids["sky"]], image[labels == ids["road"]]
            assert sky[:, 2].mean() > sky[:, 0].mean() and sky.mean() > road.mean()
    scene = mini.render_cityscapes_image(MINI_SEED, "train", 0)
    first = (
        mini_root / "cityscapes" / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png"
    )
    assert (np.asarray(Image.open(first)) == scene.label_map).all()
    png = (
        mini_root / "cityscapes" / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    )
    assert (np.asarray(Image.open(png)) == scene.image).all()  # PNG is lossless


# ------------------------------------------------------------------------------------------ determinism


TINY = mini.MiniSizes(
    imagenet_train_per_class=2, imagenet_val_per_class=1, voc2007_trainval=4, voc2007_test=3,
    voc2012_seg_train=2, voc2012_seg_val=2, voc2012_det_only=2, coco_train=3, coco_val=2,
    cityscapes_train_per_city=1, cityscapes_val_per_city=1,
)  # fmt: skip


def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    mini.make_mini_data(tmp_path / "a", seed=3, sizes=TINY)
    stale = tmp_path / "b" / "imagenet" / "train" / "n00000000" / "old.JPEG"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from an earlier run")
    mini.make_mini_data(tmp_path / "b", seed=3, sizes=TINY)
    mini.make_mini_data(tmp_path / "c", seed=4, sizes=TINY)
    a, b, c = (file_bytes(tmp_path / name) for name in "abc")
    assert len(a) > 100
    assert a == b  # includes: the stale file of an earlier run is gone
    assert len(a) == len(c)
    images = [k for k in a if k.endswith((".jpg", ".JPEG", ".png")) and not k.startswith("coco/")]
    assert all(a[k] != c[k] for k in images)
    coco = [k for k in a if k.startswith("coco/") and k.endswith(".jpg")]
    assert set(coco).isdisjoint(c)  # COCO image ids are drawn from the seed too


def test_bad_seed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SslzooError, match="seed"):
        mini.make_mini_data(tmp_path, seed=-1, sizes=TINY)


def test_shapes_fit_the_padding_used_to_measure_their_full_area() -> None:
    """Truncation and visibility are measured on a canvas padded by _SHAPE_EXTENT radii."""
    for ops in mini.SHAPES.values():
        for polygon, _ in ops:
            assert np.linalg.norm(polygon, axis=1).max() * np.exp(0.2) <= mini._SHAPE_EXTENT
    rng = np.random.default_rng(0)
    for _ in range(30):  # an object hanging over a corner still counts its outside pixels
        shape = mini._sample_shape(rng, (40, 40), "diningtable", (0.5, 0.6), (0.0, 0.0, 0.05, 0.05), 25.0)
        assert shape.full_area > 2 * shape.mask.sum()
