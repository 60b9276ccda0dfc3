"""The mini datasets: layouts, and labels, boxes and masks that agree with the pixels."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sslzoo.data import mini
from sslzoo.data.inat import inat_manifest
from sslzoo.data.manifest import classification_manifest
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
    sizes = mini.MiniSizes()
    assert summary["imagenet"]["images"] == {
        "train": 10 * sizes.imagenet_train_per_class,
        "val": 10 * sizes.imagenet_val_per_class,
    }
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
    cityscapes_train_per_city=1, cityscapes_val_per_city=1, places205_train_per_class=1,
    places205_val_per_class=1, inat18_train_max=2, inat18_train_min=1, inat18_val_per_class=1,
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
    assert any(k.startswith("places205/") for k in a) and any(k.startswith("inat18/") for k in a)
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
    for ops in [*mini.SHAPES.values(), *mini.PARTS.values()]:
        for polygon, _ in ops:
            assert np.linalg.norm(polygon, axis=1).max() * np.exp(0.2) <= mini._SHAPE_EXTENT
    rng = np.random.default_rng(0)
    for _ in range(30):  # an object hanging over a corner still counts its outside pixels
        shape = mini._sample_shape(rng, (40, 40), "diningtable", (0.5, 0.6), (0.0, 0.0, 0.05, 0.05), 25.0)
        assert shape.full_area > 2 * shape.mask.sum()


def test_impossible_long_tail_is_refused_before_anything_is_deleted(tmp_path: Path) -> None:
    kept = tmp_path / "imagenet" / "train" / "n00000000" / "kept.JPEG"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"an earlier run")
    sizes = mini.MiniSizes(inat18_train_max=3, inat18_train_min=5)
    with pytest.raises(SslzooError, match="inat18_train_min"):
        mini.make_mini_data(tmp_path, seed=0, sizes=sizes)
    assert kept.read_bytes() == b"an earlier run"


# ------------------------------------------------------------------------------------------ Places205

# A few rows of the real Places205 category list (categories_places205.csv), ours among them.
REAL_PLACES205 = {
    "abbey", "airport_terminal", "alley", "bedroom", "coast", "forest_path", "forest_road",
    "highway", "kitchen", "kitchenette", "mountain", "mountain_snowy", "pasture", "skyscraper",
}  # fmt: skip


def places205_images(mini_root: Path) -> Path:
    return mini_root / "places205" / mini.PLACES205_IMAGES


def read_places205_list(mini_root: Path, split: str) -> list[str]:
    return (mini_root / "places205" / "meta" / f"{split}.txt").read_text().splitlines()


def test_places205_list_files_match_the_scene_folders(mini_root: Path) -> None:
    base = mini_root / "places205"
    images = places205_images(mini_root)
    assert images.as_posix().endswith("places205/data/vision/torralba/deeplearning/images256")
    assert set(mini.PLACES205_CLASSES) <= REAL_PLACES205 and len(mini.PLACES205_CLASSES) == 8
    sizes = mini.MiniSizes()
    split_of: dict[str, str] = {}
    for split, per_class in (
        ("train", sizes.places205_train_per_class),
        ("val", sizes.places205_val_per_class),
    ):
        lines = read_places205_list(mini_root, split)
        assert lines == sorted(lines)
        shipped = base / "trainvalsplit_places205" / f"{split}_places205.csv"
        assert shipped.read_text().splitlines() == lines
        labels = []
        for line in lines:
            rel, label = line.split(" ")
            letter, scene, name = rel.split("/")
            assert letter == scene[0] and re.fullmatch(r"gsun_[0-9a-f]{32}\.jpg", name), rel
            assert int(label) == sorted(mini.PLACES205_CLASSES).index(scene), line
            assert rel not in split_of, f"{rel} listed in {split_of.get(rel)} and {split}"
            split_of[rel] = split
            labels.append(int(label))
        assert np.bincount(labels).tolist() == [per_class] * len(mini.PLACES205_CLASSES)
    on_disk = {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()}
    assert on_disk == set(split_of)  # train and val share the scene folders, as in Places205
    for rel in sorted(split_of)[::41]:
        with Image.open(images / rel) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (96, 96))


def test_places205_manifest_reads_the_list_files(mini_root: Path) -> None:
    images = places205_images(mini_root)
    for split in ("train", "val"):
        manifest = classification_manifest(
            "places205", images, split, mini_root / "places205" / "meta" / f"{split}.txt"
        )
        assert manifest["classes"] == [f"{s[0]}/{s}" for s in sorted(mini.PLACES205_CLASSES)]
        expected = sorted(
            (line.split()[0], int(line.split()[1])) for line in read_places205_list(mini_root, split)
        )
        assert [tuple(s) for s in manifest["samples"]] == expected


def test_places205_files_hold_their_rendered_scenes(mini_root: Path) -> None:
    for label, scene in enumerate(mini.PLACES205_CLASSES):
        index = label  # 0..7, within the 15 val images per class
        path = places205_images(mini_root) / mini.places205_file("val", scene, index)
        written = np.asarray(Image.open(path))
        assert jpeg_matches(written, mini.render_places205_image(MINI_SEED, "val", label, index).image)
        assert not jpeg_matches(
            written, mini.render_places205_image(MINI_SEED, "val", label, index + 1).image
        )


def thumbnails(paths: list[Path]) -> np.ndarray:
    """Standardised 16x16 colour thumbnails [N, 768]."""
    feats = []
    for path in paths:
        x = np.asarray(Image.open(path).resize((16, 16), Image.BILINEAR), np.float32).ravel()
        feats.append((x - x.mean()) / (x.std() + 1e-6))
    return np.stack(feats)


def test_places205_scenes_are_recognisable_by_a_plain_nearest_neighbour(mini_root: Path) -> None:
    images = places205_images(mini_root)
    data = {}
    for split in ("train", "val"):
        pairs = [line.split() for line in read_places205_list(mini_root, split)]
        data[split] = thumbnails([images / rel for rel, _ in pairs]), np.array([int(y) for _, y in pairs])
    (train_x, train_y), (val_x, val_y) = data["train"], data["val"]
    accuracy = (train_y[np.argmax(val_x @ train_x.T, axis=1)] == val_y).mean()
    assert accuracy > 0.4  # chance is 1/8


# ------------------------------------------------------------------------------------------ iNat18


INAT_CATEGORY_KEYS = {"id", "name", "supercategory", "kingdom", "phylum", "class", "order", "family", "genus"}


def read_inat(mini_root: Path, split: str) -> dict:
    return json.loads((mini_root / "inat18" / f"{split}2018.json").read_text())


def test_inat18_json_loads_and_names_every_file(mini_root: Path) -> None:
    root = mini_root / "inat18"
    by_id = sorted(mini.INAT18_SPECIES, key=lambda s: s.id)
    image_ids: set[int] = set()
    listed: set[str] = set()
    for split in ("train", "val"):
        doc = read_inat(mini_root, split)
        manifest = inat_manifest(root / f"{split}2018.json", root, split)  # checks that files exist
        assert manifest["classes"] == [s.name for s in by_id]
        categories = {c["id"]: c for c in doc["categories"]}
        assert all(set(c) == INAT_CATEGORY_KEYS for c in doc["categories"])
        assert [categories[s.id]["name"] for s in by_id] == manifest["classes"]
        category_of = {a["image_id"]: a["category_id"] for a in doc["annotations"]}
        assert len(category_of) == len(doc["annotations"]) == len(doc["images"])
        label_of = {cid: k for k, cid in enumerate(sorted(categories))}
        expected = []
        for image in doc["images"]:
            assert image["id"] not in image_ids  # ids are unique across train and val
            image_ids.add(image["id"])
            top, supercategory, category_id, name = image["file_name"].split("/")
            category = categories[category_of[image["id"]]]
            assert top == "train_val2018" and re.fullmatch(r"[0-9a-f]{32}\.jpg", name)
            assert (supercategory, int(category_id)) == (category["supercategory"], category["id"])
            with Image.open(root / image["file_name"]) as img:
                assert img.format == "JPEG" and img.size == (image["width"], image["height"])
            listed.add(image["file_name"])
            expected.append((image["file_name"], label_of[category["id"]]))
        assert [tuple(s) for s in manifest["samples"]] == sorted(expected)
    on_disk = {p.relative_to(root).as_posix() for p in (root / "train_val2018").rglob("*") if p.is_file()}
    assert on_disk == listed


def test_inat18_class_counts_are_the_designed_long_tail(mini_root: Path) -> None:
    sizes = mini.MiniSizes()
    summary = json.loads((mini_root / "summary.json").read_text())["inat18"]
    counts = {}
    for split in ("train", "val"):
        doc = read_inat(mini_root, split)
        names = {c["id"]: c["name"] for c in doc["categories"]}
        counts[split] = Counter(names[a["category_id"]] for a in doc["annotations"])
        assert summary["images"][split] == len(doc["images"])
    train = [counts["train"][s.name] for s in mini.INAT18_SPECIES]  # designed most to least frequent
    assert train[0] == sizes.inat18_train_max and train[-1] == sizes.inat18_train_min
    assert all(a > b for a, b in zip(train, train[1:], strict=False))
    ratio = (sizes.inat18_train_min / sizes.inat18_train_max) ** (1 / (len(train) - 1))
    assert all(abs(n - sizes.inat18_train_max * ratio**k) <= 0.5 for k, n in enumerate(train))
    assert summary["train_per_class"] == dict(counts["train"])
    assert set(counts["val"].values()) == {sizes.inat18_val_per_class}
    assert len(counts["val"]) == len(mini.INAT18_SPECIES)


def test_inat18_species_of_a_supercategory_differ_only_in_colour_and_pattern(mini_root: Path) -> None:
    looks: dict[str, set[str]] = {}
    for species in mini.INAT18_SPECIES:
        looks.setdefault(species.supercategory, set()).add(species.look)
    assert all(len(v) == 1 for v in looks.values())  # one shape and texture per supercategory
    assert len(set.union(*looks.values())) == len(looks) >= 3
    per_super = Counter(s.supercategory for s in mini.INAT18_SPECIES)
    assert min(per_super.values()) >= 2
    # the pixels: a plain nearest neighbour finds the supercategory far more often than the species
    root = mini_root / "inat18"
    data = {}
    for split in ("train", "val"):
        manifest = inat_manifest(root / f"{split}2018.json", root, split)
        labels = np.array([label for _, label in manifest["samples"]])
        data[split] = thumbnails([root / rel for rel, _ in manifest["samples"]]), labels
    (train_x, train_y), (val_x, val_y) = data["train"], data["val"]
    supercategory = np.array([s.supercategory for s in sorted(mini.INAT18_SPECIES, key=lambda s: s.id)])
    nearest = train_y[np.argmax(val_x @ train_x.T, axis=1)]
    species_accuracy = (nearest == val_y).mean()
    super_accuracy = (supercategory[nearest] == supercategory[val_y]).mean()
    assert species_accuracy > 0.2  # chance is 1/10: colour and pattern carry the species
    assert super_accuracy > species_accuracy + 0.2  # but most confusions stay within the supercategory


def test_inat18_files_hold_their_rendered_organism(mini_root: Path) -> None:
    by_id = sorted(mini.INAT18_SPECIES, key=lambda s: s.id)
    for label, species in enumerate(by_id):
        scene = mini.render_inat18_image(MINI_SEED, "train", label, 1)
        written = np.asarray(Image.open(mini_root / "inat18" / mini.inat18_file("train", species, 1)))
        assert jpeg_matches(written, scene.image)
        assert not jpeg_matches(written, mini.render_inat18_image(MINI_SEED, "train", label, 2).image)
        (organism,) = scene.instances
        assert organism.name == species.name and organism.mask.mean() > 0.08


def test_every_look_is_drawn_upright_with_its_parts_above_and_below() -> None:
    """The orientation cue of rotation prediction: parts above the body, parts below it."""
    rng = np.random.default_rng(0)
    for name, look in mini.LOOKS.items():
        shape = mini._sample_shape(rng, (96, 96), name, (0.22, 0.22), (0.5, 0.5, 0.5, 0.5), 0.0)
        ys = np.nonzero(shape.parts)[0]
        rows = {
            value: ys[shape.parts[shape.parts > 0] == value] for value in (mini.TOP, mini.BODY, mini.BOTTOM)
        }
        assert len(rows[mini.BODY]) > 0, name
        if look.top is not None:
            assert rows[mini.TOP].mean() < rows[mini.BODY].mean(), name
        if look.bottom is not None:
            assert rows[mini.BOTTOM].mean() > rows[mini.BODY].mean(), name
        assert shape.mask.sum() == (shape.parts > 0).sum()


def test_imagenet_classes_differ_in_parts_not_in_body_colour() -> None:
    """Each mini ImageNet class has its own (top, bottom) part pair; the body's colours are redrawn
    per object, so two bodies of one class differ in colour as much as two of different classes."""
    pairs = [(mini.LOOKS[look].top, mini.LOOKS[look].bottom) for look in mini.IMAGENET_CLASSES.values()]
    assert len(set(pairs)) == len(pairs)

    def body_colour(name: str, index: int) -> np.ndarray:
        rng = np.random.default_rng([7, index])
        canvas = np.zeros((96, 96, 3), np.float32)
        shape = mini._sample_shape(rng, (96, 96), name, (0.22, 0.26), (0.45, 0.45, 0.55, 0.55), 25.0)
        mini._paint(rng, canvas, [shape], recolour=True)
        return canvas[shape.parts == mini.BODY].mean(axis=0)

    names = list(mini.IMAGENET_CLASSES.values())
    colours = np.array([[body_colour(name, i) for i in range(8)] for name in names])  # [class, object, 3]
    within = np.linalg.norm(colours - colours.mean(axis=1, keepdims=True), axis=2).mean()
    between = np.linalg.norm(colours.mean(axis=1) - colours.mean(axis=(0, 1)), axis=1).mean()
    assert within > 2 * between
