"""Writing the mini datasets in the layouts of the real ones.

``MiniSizes`` says how many images each dataset holds (``inat18_train_counts``: the long tail of
the iNat18 train counts). One writer per dataset renders its images and writes its files: JPEG
and PNG images, list files, VOC Annotations XML, class lists and label PNGs, COCO and iNat18
JSON, Cityscapes labelIds. ``make_mini_data`` writes them all and ``summary.json`` (the
``make-mini-data`` step).
"""

from __future__ import annotations

import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.mini.inat18 import (
    INAT18_BY_ID,
    INAT18_SIZE,
    INAT18_SPECIES,
    inat18_file,
    render_inat18_image,
)
from sslzoo.data.mini.looks import CITYSCAPES_CITIES, CITYSCAPES_LABEL_IDS, COCO_CATEGORIES, IMAGENET_CLASSES
from sslzoo.data.mini.painting import Instance, Scene, _rng
from sslzoo.data.mini.places205 import (
    PLACES205_CLASSES,
    PLACES205_SIZE,
    places205_file,
    render_places205_image,
)
from sslzoo.data.mini.scenes import (
    CITYSCAPES_SIZE,
    IMAGENET_SIZE,
    render_cityscapes_image,
    render_coco_image,
    render_imagenet_image,
    render_voc_image,
)
from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes, write_json


@dataclass(frozen=True)
class MiniSizes:
    """How many images each mini dataset holds (the defaults are the mini zoo's)."""

    imagenet_train_per_class: int = 60
    imagenet_val_per_class: int = 50
    voc2007_trainval: int = 400
    voc2007_test: int = 400
    voc2012_seg_train: int = 50
    voc2012_seg_val: int = 50
    voc2012_det_only: int = 50  # in VOC2012 Main and in trainaug (SBD), not in Segmentation lists
    coco_train: int = 120
    coco_val: int = 40
    cityscapes_train_per_city: int = 8
    cityscapes_val_per_city: int = 4
    places205_train_per_class: int = 40
    places205_val_per_class: int = 15
    inat18_train_max: int = 40  # the most frequent species; the others follow a geometric long tail
    inat18_train_min: int = 10  # the rarest species
    inat18_val_per_class: int = 5


def inat18_train_counts(sizes: MiniSizes) -> dict[str, int]:
    """Train images per species: a geometric long tail from ``inat18_train_max`` (the first of
    ``INAT18_SPECIES``) down to ``inat18_train_min`` (the last)."""
    hi, lo = sizes.inat18_train_max, sizes.inat18_train_min
    if not 1 <= lo <= hi:
        raise SslzooError(f"MiniSizes: need 1 <= inat18_train_min ({lo}) <= inat18_train_max ({hi})")
    last = len(INAT18_SPECIES) - 1
    return {s.name: int(round(hi * (lo / hi) ** (k / last))) for k, s in enumerate(INAT18_SPECIES)}


# --------------------------------------------------------------------------------------------
# File writers
# --------------------------------------------------------------------------------------------


def _save_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=quality)


def _save_png(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _write_imagenet(root: Path, seed: int, sizes: MiniSizes) -> dict:
    """``root/imagenet/{train,val}/<wnid>/*.JPEG`` and the MMSelfSup lists ``root/imagenet/meta``."""
    wnids = sorted(IMAGENET_CLASSES)
    counts = {}
    for split, per_class in (
        ("train", sizes.imagenet_train_per_class),
        ("val", sizes.imagenet_val_per_class),
    ):
        lines = []
        for label, wnid in enumerate(wnids):
            for i in range(per_class):
                if split == "train":
                    name = f"{wnid}_{i + 1}.JPEG"
                else:  # ImageNet val numbering, classes interleaved
                    name = f"ILSVRC2012_val_{i * len(wnids) + label + 1:08d}.JPEG"
                scene = render_imagenet_image(seed, split, label, i)
                _save_jpeg(root / "imagenet" / split / wnid / name, scene.image)
                lines.append(f"{wnid}/{name} {label}")
        _write_lines(root / "imagenet" / "meta" / f"{split}.txt", sorted(lines))
        counts[split] = len(lines)
    return {"classes": wnids, "images": counts, "size": IMAGENET_SIZE}


def voc_palette() -> list[int]:
    """The Pascal VOC colour map (768 values) used by SegmentationClass PNGs."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


VOC_BORDER = 255  # void label: object borders and difficult objects


def voc_is_difficult(instance: Instance) -> bool:
    """Hard to see: under 55% of the shape visible, or a visible box side under 8 pixels."""
    x0, y0, x1, y1 = instance.box()
    return instance.visible_fraction < 0.55 or min(x1 - x0 + 1, y1 - y0 + 1) < 8


def _voc_label_maps(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(SegmentationClass map with the 255 border band and void difficult objects, plain class map)."""
    h, w = scene.image.shape[:2]
    plain = np.zeros((h, w), np.uint8)
    instance_ids = np.zeros((h, w), np.int32)
    void = np.zeros((h, w), bool)
    for k, inst in enumerate(scene.instances, start=1):
        plain[inst.mask] = VOC_CLASSES.index(inst.name) + 1
        instance_ids[inst.mask] = k
        if voc_is_difficult(inst):
            void |= inst.mask
    kernel = np.ones((3, 3), np.uint8)
    ids_f = instance_ids.astype(np.float32)
    border = cv2.dilate(ids_f, kernel) != cv2.erode(ids_f, kernel)  # both sides of every outline
    official = plain.copy()
    official[border | void] = VOC_BORDER
    return official, plain


def _voc_xml(folder: str, image_id: str, scene: Scene, segmented: bool) -> bytes:
    h, w = scene.image.shape[:2]
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "sslzoo mini VOC"
    size = ET.SubElement(root, "size")
    for key, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "1" if segmented else "0"
    for inst in scene.instances:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = inst.name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "1" if inst.truncated else "0"
        ET.SubElement(obj, "difficult").text = "1" if voc_is_difficult(inst) else "0"
        box = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = inst.box()
        for key, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1 + 1), ("ymax", y1 + 1)):
            ET.SubElement(box, key).text = str(value)  # VOC boxes: 1-based, inclusive
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _voc_class_lists(base: Path, split: str, ids: list[str], presence: dict[str, dict[str, int]]) -> None:
    """``ImageSets/Main/{split}.txt`` and ``<class>_{split}.txt`` (1 present, 0 only difficult, -1 absent)."""
    main = base / "ImageSets" / "Main"
    _write_lines(main / f"{split}.txt", ids)
    for name in VOC_CLASSES:
        _write_lines(main / f"{name}_{split}.txt", [f"{i} {presence[i].get(name, -1):2d}" for i in ids])


def _write_voc_year(
    devkit: Path, seed: int, year: str, splits: dict[str, list[str]], segmented: set[str], aug: set[str]
) -> dict:
    """Render every image of ``splits`` (ids in render order) into ``devkit/VOC{year}``."""
    base = devkit / f"VOC{year}"
    palette = voc_palette()
    presence: dict[str, dict[str, int]] = {}
    instances = difficult = 0
    index = 0
    for ids in splits.values():
        for image_id in ids:
            scene = render_voc_image(seed, year, index)
            index += 1
            _save_jpeg(base / "JPEGImages" / f"{image_id}.jpg", scene.image)
            xml = _voc_xml(f"VOC{year}", image_id, scene, image_id in segmented)
            atomic_write_bytes(base / "Annotations" / f"{image_id}.xml", xml)
            official, plain = _voc_label_maps(scene)
            if image_id in segmented:
                png = Image.fromarray(official, mode="P")
                png.putpalette(palette)
                _save_png(base / "SegmentationClass" / f"{image_id}.png", png)
            if image_id in aug:
                _save_png(base / "SegmentationClassAug" / f"{image_id}.png", Image.fromarray(plain, mode="L"))
            flags: dict[str, int] = {}
            for inst in scene.instances:
                hard = voc_is_difficult(inst)
                flags[inst.name] = max(flags.get(inst.name, 0), 0 if hard else 1)
                instances += 1
                difficult += hard
            presence[image_id] = flags
    return {"presence": presence, "instances": instances, "difficult": difficult}


def _write_voc(root: Path, seed: int, sizes: MiniSizes) -> dict:
    """``root/voc/VOCdevkit/VOC2007`` (trainval, test) and ``VOC2012`` (trainval, seg + aug lists)."""
    devkit = root / "voc" / "VOCdevkit"
    summary: dict = {}

    # VOC2007: every image segmented; train/val are the two halves of trainval.
    n_tv, n_test = sizes.voc2007_trainval, sizes.voc2007_test
    trainval = [f"{i:06d}" for i in range(1, n_tv + 1)]
    test = [f"{i:06d}" for i in range(n_tv + 1, n_tv + n_test + 1)]
    splits07 = {"trainval": trainval, "test": test}
    result = _write_voc_year(devkit, seed, "2007", splits07, set(trainval + test), set())
    base = devkit / "VOC2007"
    lists07 = {"train": trainval[0::2], "val": trainval[1::2], "trainval": trainval, "test": test}
    for split, ids in lists07.items():
        _voc_class_lists(base, split, sorted(ids), result["presence"])
        _write_lines(base / "ImageSets" / "Segmentation" / f"{split}.txt", sorted(ids))
    summary["VOC2007"] = {
        "images": {k: len(v) for k, v in lists07.items()},
        "instances": result["instances"],
        "difficult": result["difficult"],
    }

    # VOC2012: trainval only; Segmentation train/val; SBD-style trainaug = seg train + extra images.
    ids12 = [
        f"2012_{i:06d}"
        for i in range(1, sizes.voc2012_seg_train + sizes.voc2012_seg_val + sizes.voc2012_det_only + 1)
    ]
    seg_train = ids12[: sizes.voc2012_seg_train]
    seg_val = ids12[sizes.voc2012_seg_train : sizes.voc2012_seg_train + sizes.voc2012_seg_val]
    extra = ids12[sizes.voc2012_seg_train + sizes.voc2012_seg_val :]
    half = len(extra) // 2
    result = _write_voc_year(devkit, seed, "2012", {"trainval": ids12}, set(seg_train + seg_val), set(ids12))
    base = devkit / "VOC2012"
    lists12 = {"train": seg_train + extra[:half], "val": seg_val + extra[half:], "trainval": ids12}
    for split, ids in lists12.items():
        _voc_class_lists(base, split, sorted(ids), result["presence"])
    seg_lists = {
        "train": seg_train,
        "val": seg_val,
        "trainval": seg_train + seg_val,
        "trainaug": seg_train + extra,
    }
    for split, ids in seg_lists.items():
        _write_lines(base / "ImageSets" / "Segmentation" / f"{split}.txt", sorted(ids))
    summary["VOC2012"] = {
        "images": {k: len(v) for k, v in lists12.items()},
        "segmentation": {k: len(v) for k, v in seg_lists.items()},
        "instances": result["instances"],
        "difficult": result["difficult"],
    }
    summary["classes"] = list(VOC_CLASSES)
    return summary


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons [[x0, y0, x1, y1, ...], ...] of a hole-free bool mask [H, W].

    Traced on the mask upsampled 2x, so the polygons follow pixel edges: pycocotools
    rasterises them back to the same pixels (checked in tests/data/test_mini.py).
    """
    up = cv2.resize(
        mask.astype(np.uint8), (mask.shape[1] * 2, mask.shape[0] * 2), interpolation=cv2.INTER_NEAREST
    )
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) < 3:
            continue
        pts = contour.reshape(-1, 2).astype(np.float64) / 2 + 0.25
        polygons.append([round(float(v), 2) for v in pts.ravel()])
    return polygons


def _write_coco(root: Path, seed: int, sizes: MiniSizes) -> dict:
    """``root/coco/{train2017,val2017}/<id>.jpg`` and ``annotations/instances_{split}.json``."""
    n_train, n_val = sizes.coco_train, sizes.coco_val
    ids = _rng(seed, "coco_ids").choice(np.arange(1, 600_000), size=n_train + n_val, replace=False)
    split_ids = {
        "train2017": sorted(int(i) for i in ids[:n_train]),
        "val2017": sorted(int(i) for i in ids[n_train:]),
    }
    look_to_cat = {look: cat_id for cat_id, _, _, look in COCO_CATEGORIES}
    categories = [{"id": c, "name": n, "supercategory": s} for c, n, s, _ in COCO_CATEGORIES]
    summary: dict = {"categories": [c[1] for c in COCO_CATEGORIES]}
    next_ann = 1
    for split, image_ids in split_ids.items():
        images, annotations = [], []
        for index, image_id in enumerate(image_ids):
            scene = render_coco_image(seed, split, index)
            file_name = f"{image_id:012d}.jpg"
            _save_jpeg(root / "coco" / split / file_name, scene.image)
            h, w = scene.image.shape[:2]
            images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
            for inst in scene.instances:
                x0, y0, x1, y1 = inst.box()
                annotations.append(
                    {
                        "id": next_ann,
                        "image_id": image_id,
                        "category_id": look_to_cat[inst.name],
                        "segmentation": mask_polygons(inst.mask),
                        "area": float(inst.mask.sum()),
                        "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)],
                        "iscrowd": 0,
                    }
                )
                next_ann += 1
        doc = {
            "info": {"description": "sslzoo mini COCO", "version": "1.0", "year": 2017},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        write_json(root / "coco" / "annotations" / f"instances_{split}.json", doc, indent=None)
        summary[split] = {"images": len(images), "annotations": len(annotations)}
    return summary


def _write_cityscapes(root: Path, seed: int, sizes: MiniSizes) -> dict:
    """``root/cityscapes/leftImg8bit/{split}/<city>/*`` and ``gtFine/{split}/<city>/*_labelIds.png``."""
    summary: dict = {"label_ids": CITYSCAPES_LABEL_IDS, "size": list(CITYSCAPES_SIZE)}
    per_city = {"train": sizes.cityscapes_train_per_city, "val": sizes.cityscapes_val_per_city}
    for split, cities in CITYSCAPES_CITIES.items():
        index = 0
        for city in cities:
            for k in range(per_city[split]):
                scene = render_cityscapes_image(seed, split, index)
                index += 1
                stem = f"{city}_{k:06d}_000019"
                _save_png(
                    root / "cityscapes" / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                    Image.fromarray(scene.image),
                )
                _save_png(
                    root / "cityscapes" / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                    Image.fromarray(scene.label_map, mode="L"),
                )
        summary[split] = {"cities": list(cities), "images": index}
    return summary


PLACES205_IMAGES = "data/vision/torralba/deeplearning/images256"  # under places205/, as extracted


def _write_places205(root: Path, seed: int, sizes: MiniSizes) -> dict:
    """``root/places205/<PLACES205_IMAGES>/<letter>/<scene>/gsun_*.jpg`` and the list files
    ``root/places205/meta/{train,val}.txt`` (lines ``<letter>/<scene>/<file>.jpg <label>``,
    relative to ``images256``), also under the names Places205 ships them with,
    ``trainvalsplit_places205/{train,val}_places205.csv``."""
    base = root / "places205"
    counts = {}
    for split, per_class in (
        ("train", sizes.places205_train_per_class),
        ("val", sizes.places205_val_per_class),
    ):
        lines = []
        for label, scene in enumerate(PLACES205_CLASSES):
            for i in range(per_class):
                rel = places205_file(split, scene, i)
                _save_jpeg(base / PLACES205_IMAGES / rel, render_places205_image(seed, split, label, i).image)
                lines.append(f"{rel} {label}")
        lines.sort()
        _write_lines(base / "meta" / f"{split}.txt", lines)
        _write_lines(base / "trainvalsplit_places205" / f"{split}_places205.csv", lines)
        counts[split] = len(lines)
    return {
        "classes": [f"{scene[0]}/{scene}" for scene in PLACES205_CLASSES],
        "images": counts,
        "size": PLACES205_SIZE,
    }


def _write_inat18(root: Path, seed: int, sizes: MiniSizes) -> dict:
    """``root/inat18/train_val2018/<supercategory>/<id>/*.jpg`` and ``root/inat18/{train,val}2018.json``
    in the iNat 2018 format (file names relative to ``root/inat18``)."""
    base = root / "inat18"
    train_counts = inat18_train_counts(sizes)
    categories = [
        {
            "id": s.id,
            "name": s.name,
            "supercategory": s.supercategory,
            **dict(zip(("kingdom", "phylum", "class", "order", "family", "genus"), s.taxonomy, strict=True)),
        }
        for s in INAT18_BY_ID
    ]
    image_id = 0
    counts = {}
    for split in ("train", "val"):
        images, annotations = [], []
        for label, species in enumerate(INAT18_BY_ID):
            per_class = train_counts[species.name] if split == "train" else sizes.inat18_val_per_class
            for i in range(per_class):
                rel = inat18_file(split, species, i)
                _save_jpeg(base / rel, render_inat18_image(seed, split, label, i).image)
                images.append(
                    {
                        "id": image_id,
                        "file_name": rel,
                        "width": INAT18_SIZE,
                        "height": INAT18_SIZE,
                        "license": 1,
                        "rights_holder": "sslzoo",
                    }
                )
                annotations.append({"id": image_id, "image_id": image_id, "category_id": species.id})
                image_id += 1
        doc = {
            "info": {
                "year": 2018,
                "version": "1.0",
                "description": "sslzoo mini iNaturalist 2018",
                "contributor": "sslzoo",
                "url": "",
                "date_created": "2018-01-01 00:00:00",
            },
            "images": images,
            "categories": categories,
            "annotations": annotations,
            "licenses": [{"id": 1, "name": "synthetic", "url": ""}],
        }
        write_json(base / f"{split}2018.json", doc, indent=None)
        counts[split] = len(images)
    return {
        "classes": [s.name for s in INAT18_BY_ID],
        "images": counts,
        "train_per_class": train_counts,
        "val_per_class": sizes.inat18_val_per_class,
        "size": INAT18_SIZE,
    }


GENERATED = ("imagenet", "voc", "coco", "cityscapes", "places205", "inat18")


def make_mini_data(out: Path, seed: int = 0, sizes: MiniSizes | None = None) -> dict:
    """Write the mini datasets under ``out`` and, last, ``out/summary.json``; return the summary.

    Writes ``imagenet/``, ``voc/``, ``coco/``, ``cityscapes/``, ``places205/`` and ``inat18/``
    (layouts in the package docstring, sslzoo.data.mini; how many images each holds: ``sizes``, default
    ``MiniSizes()``). Existing folders of those names are replaced (nothing else under ``out``
    is touched), so a rerun never leaves stale images behind. The summary holds the seed, the
    sizes and each dataset's classes and image counts (per class for the long-tailed iNat18).
    Same seed and sizes give byte-identical files.

    Raises:
        SslzooError: a negative or non-integer seed, or sizes with ``inat18_train_min`` outside
            ``1..inat18_train_max``; both before anything is written.
    """
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise SslzooError(
            f"mini data seed must be a non-negative integer, got {seed!r} (config key mini_data.seed)"
        )
    sizes = sizes or MiniSizes()
    inat18_train_counts(sizes)  # refuses an impossible long tail before anything is deleted
    out = Path(out)
    start = time.perf_counter()
    (out / "summary.json").unlink(missing_ok=True)
    for name in GENERATED:
        if (out / name).exists():
            shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "seed": int(seed),
        "sizes": asdict(sizes),
        "imagenet": _write_imagenet(out, seed, sizes),
        "voc": _write_voc(out, seed, sizes),
        "coco": _write_coco(out, seed, sizes),
        "cityscapes": _write_cityscapes(out, seed, sizes),
        "places205": _write_places205(out, seed, sizes),
        "inat18": _write_inat18(out, seed, sizes),
    }
    write_json(out / "summary.json", summary)
    summary["seconds"] = round(
        time.perf_counter() - start, 2
    )  # returned, not written: files stay reproducible
    return summary
