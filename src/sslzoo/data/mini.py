"""The embedded mini datasets, written in the layouts of the real ones.

The mini workflow (config/mini.yaml) runs every model and benchmark end to end on CPU in
minutes; these datasets are its inputs:

- ``imagenet/``: ImageNet folders plus MMSelfSup list files (``meta/{train,val}.txt``,
  lines ``<wnid>/<file>.JPEG <label>``); 10 classes, 96x96 JPEG. Each image shows one large,
  centred, upright object whose class is the label, and up to two small distractors of other
  looks. Its objects' bodies are recoloured at random (their textures keep only light and
  shade), so that colour, which a randomly initialised network reads well, says little of the
  class: the shape, the parts above and below it and the texture pattern say it, and they are
  what a pretext task has to learn (the orientation of the parts for rotation prediction,
  their places for relative location).
- ``voc/VOCdevkit/VOC2007`` (trainval + test) and ``VOC2012`` (trainval, Segmentation
  train/val and an SBD-style ``trainaug.txt`` with ``SegmentationClassAug/``): the 20 VOC
  classes, 1-4 objects per image, Annotations XML, ``ImageSets/Main`` class lists
  (1 / -1 / 0 for "only difficult"), palette ``SegmentationClass`` PNGs (255 = border band and
  difficult objects).
- ``coco/``: ``train2017``/``val2017`` JPEGs named by 12-digit ids and
  ``annotations/instances_{train,val}2017.json`` with 8 real COCO categories, boxes
  ``[x, y, w, h]`` and polygon masks.
- ``cityscapes/``: ``leftImg8bit`` street scenes and ``gtFine`` ``labelIds`` PNGs.
- ``places205/``: Places205 as extracted, ``data/vision/torralba/deeplearning/images256/
  <letter>/<scene>/gsun_<md5>.jpg``, with list files ``meta/{train,val}.txt`` (also as
  ``trainvalsplit_places205/{train,val}_places205.csv``, the names Places205 ships), lines
  ``<letter>/<scene>/<file>.jpg <label>`` relative to ``images256``; 8 real scene classes
  (abbey, bedroom, coast, ...), each its own layout of sky, ground, buildings or furniture with
  objects of the class looks, 96x96 JPEG.
- ``inat18/``: iNaturalist 2018, ``train_val2018/<supercategory>/<category id>/<md5>.jpg`` and
  ``{train,val}2018.json`` (images, annotations, categories with their taxonomy); 10 real
  species of 4 supercategories, long-tailed train counts, 96x96 JPEG. The species of one
  supercategory share a look and differ only in colour and pattern: a fine-grained task.

Every object class has its own look: a shape (disk, star, heart, ...) filled with a texture cut
from a photo scikit-image ships (``skimage.data.chelsea``, ``brick``, ``grass``, ...), tinted for
the grey ones, with a part above it and one below (ears, mast, roof, ...; legs, wheels, pot,
...) in a colour of its own, drawn upright (+-25 degrees). Every instance varies it: size,
aspect, rotation, texture crop and zoom, colour jitter, shading, position. Backgrounds vary too (sky/ground horizons, smooth colour fields,
blurred photos). Boxes, masks and labels are computed from the painted pixels, so they agree.

Every random choice of one image comes from ``numpy.random.default_rng([seed, stream, index])``:
one image can be re-rendered on its own (``render_*_image``; the tests do), and the same seed
gives byte-identical files.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes, write_json

# --------------------------------------------------------------------------------------------
# Classes and their looks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """How every instance of one class is drawn: a body shape filled with a photo texture, and
    an upright arrangement of parts (keys of ``PARTS``) above and below it in ``part_colour``.

    ``tint`` multiplies a grey source (RGB in 0..1); colour sources ignore it. The parts give
    every class an "up" and a layout of its own: rotation prediction reads the orientation off
    the object, relative-location prediction the place of each part, and both have to tell the
    classes apart to do so.
    """

    shape: str
    source: str
    tint: tuple[float, float, float] | None = None
    top: str | None = None
    bottom: str | None = None
    part_colour: tuple[float, float, float] = (0.2, 0.2, 0.2)


# One look per VOC class; ImageNet and COCO classes reuse them (a "tabby" looks like a VOC
# "cat"), so features learned on the mini ImageNet transfer to the mini VOC and COCO.
LOOKS: dict[str, Look] = {
    "aeroplane": Look("cross", "moon", (0.75, 0.85, 1.0), "crown", "wheels", (0.85, 0.2, 0.15)),
    "bicycle": Look("horseshoe", "gravel", (0.45, 0.45, 0.55), "mast", "wheels", (0.1, 0.1, 0.1)),
    "bird": Look("triangle", "immunohistochemistry", None, "roof", "feet", (0.95, 0.6, 0.1)),
    "boat": Look("crescent", "coins", (1.0, 0.8, 0.45), "mast", "keel", (0.55, 0.3, 0.15)),
    "bottle": Look("capsule", "retina", None, "crown", "stand", (0.2, 0.55, 0.25)),
    "bus": Look("square", "text", (1.0, 0.85, 0.25), "roof", "wheels", (0.15, 0.15, 0.2)),
    "car": Look("hexagon", "rocket", None, "mast", "wheels", (0.12, 0.12, 0.14)),
    "cat": Look("heart", "chelsea", None, "ears", "feet", (0.35, 0.25, 0.2)),
    "chair": Look("ell", "brick", (0.8, 0.5, 0.3), None, "legs", (0.4, 0.25, 0.1)),
    "cow": Look("diamond", "checkerboard", (1.0, 0.95, 0.9), "horns", "legs", (0.85, 0.8, 0.6)),
    "diningtable": Look("tee", "coffee", None, None, "legs", (0.45, 0.3, 0.15)),
    "dog": Look("disk", "camera", (0.9, 0.65, 0.4), "ears", "legs", (0.3, 0.18, 0.1)),
    "horse": Look("arrow", "clock", (0.75, 0.5, 0.35), "mast", "legs", (0.2, 0.12, 0.08)),
    "motorbike": Look("star", "gravel", (1.0, 0.35, 0.3), "mast", "wheels", (0.15, 0.15, 0.15)),
    "person": Look("capsule", "astronaut", None, "ears", "feet", (0.9, 0.75, 0.6)),
    "pottedplant": Look("star", "grass", (0.4, 0.9, 0.35), "crown", "pot", (0.75, 0.4, 0.2)),
    "sheep": Look("disk", "cell", (1.0, 1.0, 0.9), "horns", "feet", (0.25, 0.22, 0.2)),
    "sofa": Look("square", "brick", (0.6, 0.35, 0.7), None, "feet", (0.3, 0.2, 0.35)),
    "train": Look("diamond", "colorwheel", None, "roof", "wheels", (0.25, 0.25, 0.3)),
    "tvmonitor": Look("horseshoe", "text", (0.4, 0.9, 1.0), "mast", "stand", (0.2, 0.2, 0.25)),
}

# The mini ImageNet: real ImageNet-1k wnids whose objects are VOC classes, drawn with that look.
IMAGENET_CLASSES: dict[str, str] = {
    "n02085620": "dog",  # Chihuahua
    "n02123045": "cat",  # tabby
    "n02389026": "horse",  # sorrel
    "n02403003": "cow",  # ox
    "n02412080": "sheep",  # ram
    "n02690373": "aeroplane",  # airliner
    "n02917067": "train",  # bullet train
    "n03991062": "pottedplant",  # pot, flowerpot
    "n04285008": "car",  # sports car
    "n04612504": "boat",  # yawl
}
# Distractors in ImageNet images use the other looks, so they never contradict the label.
IMAGENET_DISTRACTORS: tuple[str, ...] = tuple(c for c in VOC_CLASSES if c not in IMAGENET_CLASSES.values())

# The mini COCO: (real COCO category id, name, supercategory, look).
COCO_CATEGORIES: tuple[tuple[int, str, str, str], ...] = (
    (1, "person", "person", "person"),
    (2, "bicycle", "vehicle", "bicycle"),
    (3, "car", "vehicle", "car"),
    (16, "bird", "animal", "bird"),
    (17, "cat", "animal", "cat"),
    (18, "dog", "animal", "dog"),
    (44, "bottle", "kitchen", "bottle"),
    (62, "chair", "furniture", "chair"),
)

# Cityscapes labelIds drawn by the street-scene painter (cityscapesScripts, labels.py).
CITYSCAPES_LABEL_IDS: dict[str, int] = {
    "ego vehicle": 1,
    "road": 7,
    "sidewalk": 8,
    "building": 11,
    "pole": 17,
    "traffic sign": 20,
    "vegetation": 21,
    "terrain": 22,
    "sky": 23,
    "person": 24,
    "car": 26,
}
CITYSCAPES_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("aachen", "bremen"),
    "val": ("frankfurt", "lindau"),
}


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


# Random streams: one per (dataset, split); an image's generator is rng([seed, stream, index]).
_STREAMS: dict[str, int] = {
    "imagenet_train": 1,
    "imagenet_val": 2,
    "voc2007": 3,
    "voc2012": 4,
    "coco_train2017": 5,
    "coco_val2017": 6,
    "coco_ids": 7,
    "cityscapes_train": 8,
    "cityscapes_val": 9,
    "places205_train": 10,
    "places205_val": 11,
    "inat18_train": 12,
    "inat18_val": 13,
}


def _rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream], *index])


# --------------------------------------------------------------------------------------------
# Shapes: polygons in unit coordinates (radius about 1, y down), drawn filled (1) or cut (0)
# --------------------------------------------------------------------------------------------


def _circle(n: int = 48, r: float = 1.0, cx: float = 0.0, cy: float = 0.0, phase: float = 0.0) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False) + phase
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _star(points: int, outer: float, inner: float) -> np.ndarray:
    t = np.arange(2 * points) * np.pi / points - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) / 16.5


def _horseshoe(gap_deg: float = 80.0, r_in: float = 0.55, n: int = 40) -> np.ndarray:
    half = np.deg2rad(gap_deg) / 2
    t = np.linspace(np.pi / 2 + half, np.pi / 2 + 2 * np.pi - half, n)  # gap at the bottom
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    return np.concatenate([outer, r_in * outer[::-1]])


def _stadium(half_width: float = 0.42, half_height: float = 0.55, n: int = 16) -> np.ndarray:
    top = np.linspace(np.pi, 2 * np.pi, n)
    bottom = np.linspace(0.0, np.pi, n)
    upper = np.stack([half_width * np.cos(top), -half_height + half_width * np.sin(top)], axis=1)
    lower = np.stack([half_width * np.cos(bottom), half_height + half_width * np.sin(bottom)], axis=1)
    return np.concatenate([upper, lower])


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


SHAPES: dict[str, list[tuple[np.ndarray, int]]] = {
    "disk": [(_circle(), 1)],
    "square": [(_rect(-0.8, -0.8, 0.8, 0.8), 1)],
    "triangle": [(np.array([[0.0, -1.0], [0.95, 0.75], [-0.95, 0.75]]), 1)],
    "star": [(_star(5, 1.0, 0.45), 1)],
    "horseshoe": [(_horseshoe(), 1)],
    "cross": [(_rect(-1, -0.2, 1, 0.2), 1), (_rect(-0.2, -1, 0.2, 1), 1)],
    "hexagon": [(_circle(6, phase=np.pi / 6), 1)],
    "crescent": [(_circle(), 1), (_circle(r=0.85, cx=0.5, cy=-0.15), 0)],
    "heart": [(_heart(), 1)],
    "diamond": [(np.array([[0.0, -1.0], [0.65, 0.0], [0.0, 1.0], [-0.65, 0.0]]), 1)],
    "arrow": [(np.array([[0, -1], [0.8, -0.2], [-0.8, -0.2]]), 1), (_rect(-0.3, -0.2, 0.3, 1), 1)],
    "capsule": [(_stadium(), 1)],
    "ell": [(_rect(-0.7, -1, -0.15, 1), 1), (_rect(-0.7, 0.45, 0.75, 1), 1)],
    "tee": [(_rect(-0.9, -1, 0.9, -0.45), 1), (_rect(-0.25, -0.45, 0.25, 1), 1)],
}


def _mirrored(poly: np.ndarray) -> np.ndarray:
    return poly * np.array([-1.0, 1.0])


_EAR = np.array([[-0.75, -0.55], [-0.5, -1.45], [-0.1, -0.8]])
_HORN = np.array([[-0.45, -0.8], [-1.15, -1.35], [-1.05, -1.5], [-0.2, -0.95]])
_CROWN = np.array(
    [[-0.7, -0.7], [-0.7, -1.4], [-0.35, -1.0], [0.0, -1.5], [0.35, -1.0], [0.7, -1.4], [0.7, -0.7]]
)
# Parts above (y < 0) or below the body, in the body's unit coordinates, drawn over it.
PARTS: dict[str, list[tuple[np.ndarray, int]]] = {
    "ears": [(_EAR, 1), (_mirrored(_EAR), 1)],
    "horns": [(_HORN, 1), (_mirrored(_HORN), 1)],
    "mast": [(_rect(-0.09, -1.3, 0.09, -0.7), 1), (_circle(12, 0.22, 0.0, -1.35), 1)],
    "roof": [(np.array([[-0.95, -0.7], [0.0, -1.5], [0.95, -0.7]]), 1)],
    "crown": [(_CROWN, 1)],
    "legs": [(_rect(-0.65, 0.6, -0.4, 1.5), 1), (_rect(0.4, 0.6, 0.65, 1.5), 1)],
    "feet": [(_rect(-0.8, 0.8, -0.15, 1.15), 1), (_rect(0.15, 0.8, 0.8, 1.15), 1)],
    "wheels": [(_circle(16, 0.33, -0.55, 1.0), 1), (_circle(16, 0.33, 0.55, 1.0), 1)],
    "pot": [(np.array([[-0.65, 0.7], [0.65, 0.7], [0.45, 1.5], [-0.45, 1.5]]), 1)],
    "keel": [(np.array([[-1.0, 0.65], [1.0, 0.65], [0.0, 1.45]]), 1)],
    "stand": [(_rect(-0.1, 0.7, 0.1, 1.3), 1), (_rect(-0.6, 1.3, 0.6, 1.5), 1)],
}
_SHAPE_EXTENT = 2.4  # max |point| of a shape or part after aspect jitter (1.96 x e^0.2), in radii
BODY, TOP, BOTTOM = 1, 2, 3  # values of a shape's part map


def _draw_polygons(canvas: np.ndarray, ops: list[tuple[np.ndarray, int]], affine: np.ndarray) -> None:
    """Fill ``ops`` (unit polygons, value) into ``canvas`` [H, W] uint8 after ``affine`` [2, 3]."""
    for poly, value in ops:
        pts = poly @ affine[:, :2].T + affine[:, 2]
        cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], int(value), lineType=cv2.LINE_8, shift=4)


# --------------------------------------------------------------------------------------------
# Photo sources
# --------------------------------------------------------------------------------------------

# source name -> (skimage.data function, region to sample (y0, y1, x0, x1) as fractions)
_SOURCES: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "astronaut": ("astronaut", (0.0, 1.0, 0.0, 1.0)),
    "coffee": ("coffee", (0.05, 0.95, 0.1, 0.9)),
    "chelsea": ("chelsea", (0.05, 0.95, 0.15, 0.85)),
    "rocket": ("rocket", (0.0, 1.0, 0.3, 0.7)),
    "immunohistochemistry": ("immunohistochemistry", (0.0, 1.0, 0.0, 1.0)),
    "retina": ("retina", (0.25, 0.75, 0.25, 0.75)),
    "colorwheel": ("colorwheel", (0.15, 0.85, 0.15, 0.85)),
    "brick": ("brick", (0.0, 1.0, 0.0, 1.0)),
    "grass": ("grass", (0.0, 1.0, 0.0, 1.0)),
    "gravel": ("gravel", (0.0, 1.0, 0.0, 1.0)),
    "camera": ("camera", (0.0, 1.0, 0.0, 1.0)),
    "coins": ("coins", (0.0, 1.0, 0.0, 1.0)),
    "moon": ("moon", (0.0, 1.0, 0.0, 1.0)),
    "text": ("text", (0.0, 1.0, 0.0, 1.0)),
    "checkerboard": ("checkerboard", (0.0, 1.0, 0.0, 1.0)),
    "clock": ("clock", (0.0, 1.0, 0.0, 1.0)),
    "cell": ("cell", (0.0, 1.0, 0.0, 1.0)),
}
_SOURCE_MAX_SIDE = 256  # sources are shrunk once so that textures are not aliased


@functools.cache
def _source(name: str) -> np.ndarray:
    """The photo behind ``name`` as float32 [H, W, 3] in 0..1 (grey photos repeated)."""
    import skimage.data

    func, _ = _SOURCES[name]
    try:
        img = np.asarray(getattr(skimage.data, func)())
    except Exception as err:  # a scikit-image build without this photo
        raise SslzooError(
            f"skimage.data.{func}() failed ({err}); the mini datasets need scikit-image's bundled "
            "photos: reinstall scikit-image from its wheel"
        ) from err
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3].astype(np.float32) / 255.0
    scale = _SOURCE_MAX_SIDE / max(img.shape[:2])
    if scale < 1:
        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


@functools.cache
def _is_grey(name: str) -> bool:
    img = _source(name)
    return bool(
        np.abs(img[:, :, 0] - img[:, :, 1]).max() == 0 and np.abs(img[:, :, 0] - img[:, :, 2]).max() == 0
    )


def _texture(
    rng: np.random.Generator,
    look: Look,
    size: tuple[int, int],
    centre: tuple[float, float],
    radius: float,
    theta: float,
) -> np.ndarray:
    """A [H, W, 3] float32 layer of ``look``'s photo, mapped onto an object at ``centre``.

    A random window of the photo (35-70% of its sampling region) covers the object's diameter,
    rotated with the object, so the texture scale follows the object's size.
    """
    src = _source(look.source)
    sh, sw = src.shape[:2]
    y0, y1, x0, x1 = _SOURCES[look.source][1]
    ry0, ry1, rx0, rx1 = y0 * sh, y1 * sh, x0 * sw, x1 * sw
    span = rng.uniform(0.35, 0.7) * min(ry1 - ry0, rx1 - rx0)
    half = span / 2
    scy = rng.uniform(ry0 + half, max(ry0 + half, ry1 - half) + 1e-6)
    scx = rng.uniform(rx0 + half, max(rx0 + half, rx1 - half) + 1e-6)
    k = span / (2 * radius)  # source pixels per image pixel
    c, s = np.cos(theta), np.sin(theta)
    lin = k * np.array([[c, -s], [s, c]])
    offset = np.array([scx, scy]) - lin @ np.asarray(centre)
    warp = np.hstack([lin, offset[:, None]]).astype(np.float64)
    h, w = size
    layer = cv2.warpAffine(
        src, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
    )
    if look.tint is not None and _is_grey(look.source):
        layer = layer * np.asarray(look.tint, dtype=np.float32)
    return layer


def _jitter_colours(rng: np.random.Generator, pix: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter of ``pix`` [N, 3] (0..1)."""
    hue = np.deg2rad(rng.uniform(-20, 20) * strength)
    axis = np.ones(3) / np.sqrt(3)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(hue) * cross + (1 - np.cos(hue)) * (cross @ cross)  # about the grey axis
    pix = pix @ rot.T.astype(np.float32)
    grey = pix.mean(axis=1, keepdims=True)
    pix = grey + rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength) * (pix - grey)
    mean = pix.mean(axis=0, keepdims=True)
    pix = mean + rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength) * (pix - mean)
    return pix * rng.uniform(1 - 0.2 * strength, 1 + 0.2 * strength)


# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, size: tuple[int, int], cells: int, channels: int) -> np.ndarray:
    """Low-frequency noise [H, W, channels] in about -1..1 (a bicubic-upsampled random grid)."""
    h, w = size
    grid = rng.uniform(-1, 1, size=(cells, cells, channels)).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return field.reshape(h, w, channels)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A varied background [H, W, 3] float32: a tilted two-colour gradient, a smooth colour field
    or a blurred, faded photo.

    None of them has an "up": rotation prediction has to look at the objects (whose classes
    are drawn upright, +-25 degrees) instead of learning where the sky is.
    """
    h, w = size
    kind = rng.choice(3, p=[0.35, 0.35, 0.3])
    if kind == 0:  # two colours blended along a random direction
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = ((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)) / (0.5 * max(h, w))
        t = np.clip(0.5 + 0.5 * t * rng.uniform(0.7, 1.5), 0, 1)[:, :, None]
        first, second = rng.uniform(0.15, 0.85, size=3), rng.uniform(0.15, 0.85, size=3)
        img = first * (1 - t) + second * t + 0.08 * _smooth_field(rng, size, 6, 3)
    elif kind == 1:  # smooth colour field
        base = rng.uniform(0.2, 0.8, size=3)
        img = base + rng.uniform(0.1, 0.3) * _smooth_field(rng, size, int(rng.integers(2, 5)), 3)
    else:  # a strongly blurred, faded photo at any angle
        name = _BACKGROUND_SOURCES[int(rng.integers(len(_BACKGROUND_SOURCES)))]
        look = Look("disk", name, tuple(rng.uniform(0.4, 1.0, size=3)))
        radius = min(h, w) * rng.uniform(0.5, 1.0)
        layer = _texture(rng, look, size, (w / 2, h / 2), radius, rng.uniform(0, 2 * np.pi))
        layer = cv2.GaussianBlur(layer, (0, 0), 0.05 * min(h, w))
        img = 0.5 * layer + 0.5 * layer.mean(axis=(0, 1), keepdims=True) + 0.1
    return np.clip(img, 0, 1).astype(np.float32)


# Photos whose blurred colours make backgrounds (not the boldest class textures).
_BACKGROUND_SOURCES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "grass",
    "gravel",
    "camera",
    "moon",
    "brick",
)


def _finish(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Add mild sensor noise and quantise to uint8 [H, W, 3]."""
    noisy = canvas * 255.0 + rng.normal(0.0, 3.0, size=canvas.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Objects: placement (so annotations stay meaningful) and painting
# --------------------------------------------------------------------------------------------


@dataclass
class Instance:
    """One annotated object of a rendered scene."""

    name: str  # class name (VOC class, COCO category or ImageNet look)
    mask: np.ndarray  # bool [H, W]: the visible pixels, after occlusion
    full_area: int  # pixels of the whole shape, inside the image or not, occluded or not
    inside_area: int  # pixels of the whole shape inside the image

    @property
    def visible_fraction(self) -> float:
        return float(self.mask.sum()) / max(self.full_area, 1)

    @property
    def truncated(self) -> bool:
        return self.inside_area < self.full_area

    def box(self) -> tuple[int, int, int, int]:
        """Tight box of the visible pixels: (x0, y0, x1, y1), inclusive pixel indices."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@dataclass
class Scene:
    """A rendered image with its objects (painting order: later objects lie on top)."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    instances: list[Instance] = field(default_factory=list)
    label_map: np.ndarray | None = None  # uint8 [H, W] (Cityscapes labelIds)


@dataclass
class _Shape:
    name: str
    look: Look
    centre: tuple[float, float]
    radius: float
    theta: float
    mask: np.ndarray  # bool [H, W], the whole shape inside the image
    full_area: int
    parts: np.ndarray  # uint8 [H, W]: 0 outside, BODY, TOP or BOTTOM


def _sample_shape(
    rng: np.random.Generator,
    size: tuple[int, int],
    name: str,
    radius_frac: tuple[float, float],
    centre_box: tuple[float, float, float, float],
    max_rotation_deg: float,
) -> _Shape:
    """Draw ``name``'s shape with random radius, aspect, rotation and centre (box in fractions)."""
    h, w = size
    look = LOOKS[name]
    radius = rng.uniform(*radius_frac) * min(h, w)
    aspect = float(np.exp(rng.uniform(-0.2, 0.2)))
    theta = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    cx = rng.uniform(centre_box[0], centre_box[2]) * w
    cy = rng.uniform(centre_box[1], centre_box[3]) * h
    pad = int(np.ceil(radius * _SHAPE_EXTENT)) + 2
    c, s = np.cos(theta), np.sin(theta)
    lin = np.array([[c, -s], [s, c]]) @ np.diag([aspect, 1 / aspect]) * radius
    affine = np.hstack([lin, np.array([[cx + pad], [cy + pad]])])
    canvas = np.zeros((h + 2 * pad, w + 2 * pad), np.uint8)
    _draw_polygons(canvas, SHAPES[look.shape], affine)
    for part, value in ((look.top, TOP), (look.bottom, BOTTOM)):
        if part is not None:
            _draw_polygons(canvas, [(poly, value * on) for poly, on in PARTS[part]], affine)
    full = canvas.astype(bool)
    inside = canvas[pad : pad + h, pad : pad + w]
    return _Shape(name, look, (cx, cy), radius, theta, inside.astype(bool), int(full.sum()), inside.copy())


def _visible_ok(visible: np.ndarray, full_area: int, min_fraction: float, min_area: int) -> bool:
    """A visible region worth annotating: large enough, at most two parts, each with a body that
    survives a 3x3 erosion (no slivers, which the VOC border band would void entirely), and no
    holes (COCO polygons cannot hold them)."""
    area = int(visible.sum())
    if area < min_area or area < min_fraction * full_area:
        return False
    mask = visible.astype(np.uint8)
    count, components = cv2.connectedComponents(mask, connectivity=8)
    if count > 3:
        return False
    core = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    if np.bincount(components[core], minlength=count)[1:].min() < 8:
        return False
    _, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is None or bool((hierarchy[0][:, 3] < 0).all())


def _visible_masks(shapes: list[_Shape]) -> list[np.ndarray]:
    """Visible part of each shape: its mask minus every shape painted after it."""
    out: list[np.ndarray] = []
    cover = np.zeros_like(shapes[0].mask) if shapes else None
    for shape in reversed(shapes):
        out.append(shape.mask & ~cover)
        cover = cover | shape.mask
    return out[::-1]


def _place(
    rng: np.random.Generator,
    size: tuple[int, int],
    requests: list[tuple[str, tuple[float, float], tuple[float, float, float, float]]],
    min_fraction: float,
    min_area: int,
    max_rotation_deg: float = 25.0,
    tries: int = 25,
) -> list[_Shape]:
    """Place the requested objects (name, radius range, centre box) one after the other.

    A placement is kept when every object placed so far stays annotatable (``_visible_ok``);
    an object with no such placement in ``tries`` draws is left out.
    """
    placed: list[_Shape] = []
    for name, radius_frac, centre_box in requests:
        for _ in range(tries):
            shape = _sample_shape(rng, size, name, radius_frac, centre_box, max_rotation_deg)
            trial = [*placed, shape]
            visible = _visible_masks(trial)
            if all(
                _visible_ok(v, s.full_area, min_fraction, min_area)
                for v, s in zip(visible, trial, strict=True)
            ):
                placed.append(shape)
                break
    return placed


def _paint(
    rng: np.random.Generator, canvas: np.ndarray, shapes: list[_Shape], recolour: bool = False
) -> None:
    """Paint ``shapes`` in order onto ``canvas`` [H, W, 3] float32: texture, parts, jitter,
    shading, outline.

    ``recolour``: each object's texture keeps only its light and shade, mapped onto a random
    dark-to-bright colour ramp of its own (the mini ImageNet): an object's colour then says
    nothing of its class, which its shape, parts and texture pattern still do.
    """
    h, w = canvas.shape[:2]
    kernel = np.ones((3, 3), np.uint8)
    for shape in shapes:
        mask = shape.mask
        if not mask.any():
            continue
        layer = _texture(rng, shape.look, (h, w), shape.centre, shape.radius, shape.theta)
        if recolour:
            dark, bright = rng.uniform(0.0, 0.5, 3), rng.uniform(0.5, 1.0, 3)
            layer = (dark + (bright - dark) * layer.mean(axis=2, keepdims=True)).astype(np.float32)
        part = mask & (shape.parts > BODY)
        if part.any():  # parts: the class's part colour, with the light and shade of the texture
            lum = layer[part].mean(axis=1, keepdims=True)
            layer[part] = np.asarray(shape.look.part_colour, np.float32) * (0.7 + 0.6 * lum)
        pix = _jitter_colours(rng, layer[mask])
        ys, xs = np.nonzero(mask)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-9
        along = ((xs - shape.centre[0]) * direction[0] + (ys - shape.centre[1]) * direction[1]) / shape.radius
        pix = pix * (1 + rng.uniform(0.05, 0.25) * along)[:, None].astype(np.float32)
        canvas[mask] = pix
        edge = mask & ~cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
        canvas[edge] *= 0.55


def _instances(shapes: list[_Shape]) -> list[Instance]:
    visible = _visible_masks(shapes)
    return [
        Instance(s.name, v, s.full_area, int(s.mask.sum()))
        for s, v in zip(shapes, visible, strict=True)
        if v.any()
    ]


def _random_size(rng: np.random.Generator, long_side: int, short_range: tuple[int, int]) -> tuple[int, int]:
    """(H, W): long side fixed, short side random, landscape three times in four."""
    short = int(rng.integers(short_range[0], short_range[1] + 1))
    return (short, long_side) if rng.random() < 0.75 else (long_side, short)


# --------------------------------------------------------------------------------------------
# Scenes of each dataset
# --------------------------------------------------------------------------------------------

IMAGENET_SIZE = 96


def render_imagenet_image(seed: int, split: str, class_index: int, index: int) -> Scene:
    """Image ``index`` of class ``class_index`` (sorted wnids) of the mini ImageNet ``split``.

    Instances: distractors first, the labelled object last (on top, largest, near the centre).
    """
    rng = _rng(seed, f"imagenet_{split}", class_index, index)
    size = (IMAGENET_SIZE, IMAGENET_SIZE)
    wnid = sorted(IMAGENET_CLASSES)[class_index]
    canvas = _background(rng, size)
    n_distractors = int(rng.choice(3, p=[0.3, 0.4, 0.3]))
    shapes = [
        _sample_shape(
            rng,
            size,
            IMAGENET_DISTRACTORS[int(rng.integers(len(IMAGENET_DISTRACTORS)))],
            (0.07, 0.11),
            (0.1, 0.1, 0.9, 0.9),
            25.0,
        )
        for _ in range(n_distractors)
    ]
    shapes.append(
        _sample_shape(rng, size, IMAGENET_CLASSES[wnid], (0.2, 0.26), (0.42, 0.42, 0.58, 0.58), 25.0)
    )
    _paint(rng, canvas, shapes, recolour=True)
    return Scene(_finish(rng, canvas), _instances(shapes))


def _object_scene(
    rng: np.random.Generator,
    size: tuple[int, int],
    names: list[str],
    first_radius: tuple[float, float],
    other_radius: tuple[float, float],
) -> Scene:
    """A detection/segmentation scene: ``names`` placed so every object stays annotatable."""
    canvas = _background(rng, size)
    requests = [
        (name, first_radius if i == 0 else other_radius, (0.05, 0.05, 0.95, 0.95))
        for i, name in enumerate(names)
    ]
    shapes = _place(rng, size, requests, min_fraction=0.4, min_area=40)
    _paint(rng, canvas, shapes)
    return Scene(_finish(rng, canvas), _instances(shapes))


def render_voc_image(seed: int, year: str, index: int) -> Scene:
    """Image ``index`` (0-based, over all splits of that year) of the mini VOC ``year``."""
    rng = _rng(seed, f"voc{year}", index)
    size = _random_size(rng, 128, (88, 128))
    count = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
    names = [VOC_CLASSES[index % len(VOC_CLASSES)]]  # every class leads in 1/20 of the images
    names += [VOC_CLASSES[int(i)] for i in rng.integers(len(VOC_CLASSES), size=count - 1)]
    return _object_scene(rng, size, names, (0.16, 0.34), (0.1, 0.28))


def render_coco_image(seed: int, split: str, index: int) -> Scene:
    """Image ``index`` (row in the annotation file) of the mini COCO ``split`` (train2017/val2017)."""
    rng = _rng(seed, f"coco_{split}", index)
    size = _random_size(rng, int(rng.choice([128, 144, 160])), (96, 128))
    count = int(rng.integers(2, 7))
    looks = [c[3] for c in COCO_CATEGORIES]
    names = [looks[int(i)] for i in rng.integers(len(looks), size=count)]
    return _object_scene(rng, size, names, (0.12, 0.28), (0.08, 0.22))


CITYSCAPES_SIZE = (128, 256)  # (H, W)


def _region_texture(
    rng: np.random.Generator,
    source: str,
    tint: tuple[float, float, float],
    size: tuple[int, int],
    zoom: float,
) -> np.ndarray:
    """A texture layer over the whole image (no rotation), ``zoom`` source pixels per image pixel."""
    h, w = size
    radius = _SOURCE_MAX_SIDE * 0.3 / zoom
    return _texture(rng, Look("disk", source, tint), size, (w / 2, h / 2), radius, 0.0)


def render_cityscapes_image(seed: int, split: str, index: int) -> Scene:
    """Street scene ``index`` of the mini Cityscapes ``split``: image and labelIds map.

    Layout: sky, building facades left and right, sidewalk, a road in perspective towards a
    vanishing point, trees, poles with signs, cars on the road, people on the sidewalk, and
    the ego vehicle's hood along the bottom edge. Nearer things are painted later.
    """
    rng = _rng(seed, f"cityscapes_{split}", index)
    h, w = CITYSCAPES_SIZE
    ids = CITYSCAPES_LABEL_IDS
    canvas = np.zeros((h, w, 3), np.float32)
    labels = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]

    def fill(mask: np.ndarray, colour: np.ndarray, label: str) -> None:
        canvas[mask] = colour[mask] if colour.ndim == 3 else colour
        labels[mask] = ids[label]

    horizon = int(rng.uniform(0.38, 0.5) * h)
    vx = rng.uniform(0.4, 0.6) * w
    # sky
    top, low = (
        rng.uniform([0.3, 0.45, 0.7], [0.55, 0.7, 0.95]),
        rng.uniform([0.7, 0.8, 0.85], [0.9, 0.95, 1.0]),
    )
    t = np.clip(yy / max(horizon, 1), 0, 1)[:, :, None]
    fill(yy < horizon + 2, top * (1 - t) + low * t, "sky")
    # ground: sidewalk everywhere below the horizon, then terrain strips and the road
    paving = _region_texture(rng, "brick", tuple(rng.uniform(0.65, 0.85, 3)), (h, w), 3.0)
    fill(yy >= horizon, 0.35 + 0.5 * paving, "sidewalk")
    # facades on both sides of the vanishing point
    for side in (-1, 1):
        x_edge = vx + side * rng.uniform(12, 35)
        x = 0.0 if side < 0 else x_edge
        end = x_edge if side < 0 else float(w)
        while x < end:
            width = rng.uniform(25, 70)
            top_y = rng.uniform(0.02, 0.3) * h
            facade = (xx >= x) & (xx < min(x + width, end)) & (yy >= top_y) & (yy < horizon + 3)
            tint = tuple(rng.uniform(0.45, 1.0, 3))
            layer = _region_texture(rng, "brick", tint, (h, w), rng.uniform(1.5, 3.0))
            windows = ((yy - top_y) % 12 < 5) & ((xx - x) % 10 < 5) & (yy < horizon - 4)
            layer = np.where(windows[:, :, None], layer * 0.35, layer)
            fill(facade, layer, "building")
            x += width
    # road: a trapezoid from the vanishing point to the bottom edge, with lane dashes
    left_b, right_b = rng.uniform(-0.25, 0.12) * w, rng.uniform(0.88, 1.25) * w
    depth = np.clip((yy - horizon) / (h - horizon), 0, 1)
    road_l, road_r = vx - 3 + (left_b - vx + 3) * depth, vx + 3 + (right_b - vx - 3) * depth
    road = (yy >= horizon) & (xx >= road_l) & (xx <= road_r)
    if rng.random() < 0.6:  # a terrain strip along one kerb, beyond a narrow sidewalk
        band = (4 + 30 * depth) * rng.uniform(0.6, 1.0)
        kerb = road_l - (2 + 8 * depth) if rng.random() < 0.5 else road_r + (2 + 8 * depth)
        strip = (yy >= horizon) & (np.abs(xx - kerb) <= band) & ~road
        grass = _region_texture(rng, "grass", (0.75, 0.8, 0.4), (h, w), 2.0)
        fill(strip, grass, "terrain")
    asphalt = _region_texture(rng, "gravel", tuple(rng.uniform(0.35, 0.5, 3)), (h, w), 4.0)
    lane = (np.abs(xx - (road_l + road_r) / 2) < 0.5 + 2 * depth) & ((yy - horizon) % 14 < 7)
    fill(road, np.where(lane[:, :, None], 0.9, asphalt), "road")

    # things, far to near
    things: list[tuple[float, str]] = []
    things += [(rng.uniform(horizon + 6, h - 12), "car") for _ in range(int(rng.integers(1, 5)))]
    things += [(rng.uniform(horizon + 4, h - 10), "person") for _ in range(int(rng.integers(1, 5)))]
    things += [(rng.uniform(horizon + 3, h - 20), "tree") for _ in range(int(rng.integers(0, 4)))]
    things += [(rng.uniform(horizon + 3, h - 20), "pole") for _ in range(int(rng.integers(1, 4)))]
    for base, kind in sorted(things):
        scale = 0.15 + 0.85 * (base - horizon) / (h - horizon)
        d = (base - horizon) / (h - horizon)
        lo, hi = vx - 3 + (left_b - vx + 3) * d, vx + 3 + (right_b - vx - 3) * d
        if kind == "car":
            cw = scale * rng.uniform(60, 80)
            cx = rng.uniform(lo + cw / 2, max(lo + cw / 2, hi - cw / 2) + 1e-6)
            ch = 0.5 * cw
            body = (np.abs(xx - cx) <= cw / 2) & (yy <= base - 0.12 * ch) & (yy >= base - 0.6 * ch)
            cabin_half = cw * (0.3 - 0.12 * np.clip((base - 0.6 * ch - yy) / (0.4 * ch), 0, 1))
            cabin = (np.abs(xx - cx) <= cabin_half) & (yy < base - 0.6 * ch) & (yy >= base - ch)
            wheels = np.zeros((h, w), bool)
            for wx in (cx - 0.3 * cw, cx + 0.3 * cw):
                wheels |= (xx - wx) ** 2 + (yy - (base - 0.12 * ch)) ** 2 <= (0.12 * cw) ** 2
            paint = rng.uniform(0.1, 0.95, 3)
            shade = 1.0 - 0.3 * np.clip((yy - (base - ch)) / ch, 0, 1)[:, :, None]
            colour = paint * shade
            colour = np.where(
                (cabin & (yy > base - 0.92 * ch))[:, :, None], np.array([0.2, 0.25, 0.3]), colour
            )
            colour = np.where(wheels[:, :, None], 0.05, colour)
            fill(body | cabin | wheels, colour, "car")
        elif kind == "person":
            side = rng.choice([-1, 1])
            px = (lo - rng.uniform(4, 20) * scale) if side < 0 else (hi + rng.uniform(4, 20) * scale)
            ph = scale * rng.uniform(45, 60)
            head = (xx - px) ** 2 + (yy - (base - 0.88 * ph)) ** 2 <= (0.1 * ph) ** 2
            torso = (np.abs(xx - px) <= 0.14 * ph) & (yy >= base - 0.78 * ph) & (yy <= base - 0.42 * ph)
            legs = (
                (np.abs(np.abs(xx - px) - 0.06 * ph) <= 0.045 * ph) & (yy > base - 0.45 * ph) & (yy <= base)
            )
            shirt, trousers = rng.uniform(0.1, 0.95, 3), rng.uniform(0.05, 0.4, 3)
            colour = np.where(torso[:, :, None], shirt, trousers)
            colour = np.where(head[:, :, None], np.array([0.85, 0.65, 0.5]) * rng.uniform(0.6, 1.1), colour)
            fill(head | torso | legs, colour, "person")
        elif kind == "tree":
            side = rng.choice([-1, 1])
            tx = (lo - rng.uniform(8, 30) * scale) if side < 0 else (hi + rng.uniform(8, 30) * scale)
            th = scale * rng.uniform(70, 100)
            trunk = (np.abs(xx - tx) <= max(1.0, 0.04 * th)) & (yy <= base) & (yy >= base - 0.6 * th)
            crown = np.zeros((h, w), bool)
            for _ in range(int(rng.integers(3, 6))):
                ox, oy = rng.uniform(-0.2, 0.2) * th, rng.uniform(-0.95, -0.55) * th
                crown |= (xx - tx - ox) ** 2 + (yy - base - oy) ** 2 <= (rng.uniform(0.15, 0.25) * th) ** 2
            leaves = _region_texture(rng, "grass", (0.35, 0.75, 0.3), (h, w), 2.5)
            colour = np.where(trunk[:, :, None], np.array([0.35, 0.25, 0.15]), leaves)
            fill(trunk | crown, colour, "vegetation")
        else:  # a pole, with a sign on top
            side = rng.choice([-1, 1])
            px = (lo - rng.uniform(2, 10) * scale) if side < 0 else (hi + rng.uniform(2, 10) * scale)
            ph = scale * rng.uniform(70, 100)
            pole = (np.abs(xx - px) <= max(0.6, 0.012 * ph)) & (yy <= base) & (yy >= base - ph)
            fill(pole, np.array([0.5, 0.5, 0.52]) * rng.uniform(0.7, 1.2), "pole")
            size = max(2.0, 0.08 * ph)
            sign = (np.abs(xx - px) <= size) & (np.abs(yy - (base - ph)) <= size)
            colour = np.array([[0.85, 0.1, 0.1], [0.1, 0.3, 0.85], [0.95, 0.8, 0.1]])[int(rng.integers(3))]
            fill(sign, colour * np.ones((h, w, 1)), "traffic sign")
    hood = yy >= h - int(rng.integers(5, 10))
    fill(hood, np.array([0.12, 0.12, 0.14]) * (1 + 0.3 * (xx / w)[:, :, None]), "ego vehicle")
    return Scene(_finish(rng, np.clip(canvas, 0, 1)), [], labels)


# --------------------------------------------------------------------------------------------
# Places205 scenes: one layout per scene class, objects drawn with the class looks
# --------------------------------------------------------------------------------------------

PLACES205_SIZE = 96


def _fill(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray | float) -> None:
    """Paint ``colour`` (an [H, W, 3] layer, an RGB triple or a grey level) where ``mask`` is set."""
    colour = np.asarray(colour, dtype=np.float32)
    canvas[mask] = colour[mask] if colour.ndim == 3 else colour


def _polygon_mask(size: tuple[int, int], points: list[tuple[float, float]] | np.ndarray) -> np.ndarray:
    """Bool [H, W]: the filled polygon with vertices ``points`` (x, y) in pixels."""
    canvas = np.zeros(size, np.uint8)
    pts = np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _sky(rng: np.random.Generator, size: tuple[int, int], horizon: float) -> np.ndarray:
    """A sky [H, W, 3]: blue (or overcast grey) darkening upwards from ``horizon``, with clouds."""
    h, w = size
    if rng.random() < 0.2:  # overcast
        grey = rng.uniform(0.55, 0.75)
        top, low = np.array([grey, grey, grey + 0.05]), np.full(3, min(grey + 0.15, 0.95))
    else:
        top = rng.uniform([0.2, 0.38, 0.65], [0.45, 0.6, 0.95])
        low = rng.uniform([0.65, 0.75, 0.85], [0.88, 0.92, 1.0])
    t = np.clip(np.arange(h, dtype=np.float32) / max(horizon, 1.0), 0, 1)[:, None, None]
    sky = np.broadcast_to(top * (1 - t) + low * t, (h, w, 3)).astype(np.float32)
    if rng.random() < 0.5:
        cloud = _smooth_field(rng, size, int(rng.integers(3, 6)), 1)
        cloud = np.clip((cloud - rng.uniform(0.1, 0.5)) * 3, 0, 1) * 0.8
        sky = sky * (1 - cloud) + 0.95 * cloud
    return sky


def _ground(
    rng: np.random.Generator,
    size: tuple[int, int],
    source: str,
    low: tuple[float, float, float],
    high: tuple[float, float, float],
    zoom: tuple[float, float] = (1.5, 3.0),
) -> np.ndarray:
    """A tinted photo texture [H, W, 3] over the whole image (grass, gravel, brick ...)."""
    tint = tuple(float(v) for v in rng.uniform(low, high))
    layer = _region_texture(rng, source, tint, size, rng.uniform(*zoom))
    return 0.3 * np.asarray(tint, np.float32) + 0.9 * layer


def _arched_windows(
    size: tuple[int, int],
    yy: np.ndarray,
    xx: np.ndarray,
    centres: list[float],
    top: float,
    width: float,
    height: float,
) -> np.ndarray:
    """Bool [H, W]: round-headed windows (a rectangle under a half disk) at x ``centres``."""
    mask = np.zeros(size, bool)
    r = width / 2
    for cx in centres:
        mask |= (np.abs(xx - cx) <= r) & (yy >= top + r) & (yy <= top + height)
        mask |= (xx - cx) ** 2 + (yy - top - r) ** 2 <= r**2
    return mask


def _scene_abbey(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """A stone church on grass: nave with a gable roof, a bell tower with a spire, arched windows."""
    h, w = size
    horizon = rng.uniform(0.64, 0.8) * h
    canvas = _sky(rng, size, horizon)
    _fill(canvas, yy >= horizon, _ground(rng, size, "grass", (0.3, 0.55, 0.15), (0.5, 0.8, 0.35)))
    stone = _ground(rng, size, "brick", (0.65, 0.6, 0.5), (0.9, 0.85, 0.72), (2.0, 3.5))
    slate, rust = np.array([1.0, 0.95, 1.05]), np.array([0.6, 0.2, 0.0])
    roof = rng.uniform(0.2, 0.4) * slate + rng.uniform(0, 0.15) * rust
    x0, x1 = rng.uniform(0.06, 0.28) * w, rng.uniform(0.72, 0.94) * w
    top, base = rng.uniform(0.38, 0.52) * h, horizon + rng.uniform(1, 4)
    apex = top - rng.uniform(0.1, 0.2) * h
    _fill(canvas, _polygon_mask(size, [(x0 - 2, top + 1), (x1 + 2, top + 1), ((x0 + x1) / 2, apex)]), roof)
    _fill(canvas, (xx >= x0) & (xx <= x1) & (yy >= top) & (yy <= base), stone)
    tw = rng.uniform(0.13, 0.2) * w
    tx = x0 - rng.uniform(0, 0.06) * w if rng.random() < 0.5 else x1 - tw + rng.uniform(0, 0.06) * w
    t_top = rng.uniform(0.14, 0.26) * h
    _fill(canvas, (xx >= tx) & (xx <= tx + tw) & (yy >= t_top) & (yy <= base), stone * 0.85)
    spire = [
        (tx - 1, t_top + 0.5),
        (tx + tw + 1, t_top + 0.5),
        (tx + tw / 2, t_top - rng.uniform(0.08, 0.18) * h),
    ]
    _fill(canvas, _polygon_mask(size, spire), roof)
    glass = rng.uniform([0.03, 0.03, 0.05], [0.15, 0.12, 0.25])
    n = int(rng.integers(2, 5))
    free = (x0 + 3, tx - 3) if tx > (x0 + x1) / 2 else (tx + tw + 3, x1 - 3)
    centres = list(np.linspace(free[0] + 3, free[1] - 3, n)) if free[1] - free[0] > 12 else []
    ww = rng.uniform(3, 5)
    windows = _arched_windows(size, yy, xx, centres, top + rng.uniform(4, 8), ww, rng.uniform(8, 13))
    _fill(canvas, windows, glass)
    _fill(canvas, _arched_windows(size, yy, xx, [tx + tw / 2], t_top + 4, ww * 0.8, 7), glass)
    if rng.random() < 0.5:  # rose window in the gable
        cx, cy = (x0 + x1) / 2, top - (top - apex) * 0.35
        _fill(canvas, (xx - cx) ** 2 + (yy - cy) ** 2 <= rng.uniform(2.0, 3.5) ** 2, glass)
    people = int(rng.choice(3, p=[0.5, 0.3, 0.2]))
    box = (0.05, min(horizon / h + 0.06, 0.9), 0.95, 0.95)
    return canvas, [_sample_shape(rng, size, "person", (0.05, 0.08), box, 10.0) for _ in range(people)]


def _scene_bedroom(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """A bedroom wall and floor with a bed (headboard, blanket, pillows), a window or picture."""
    h, w = size
    floor_y = rng.uniform(0.55, 0.7) * h
    wall = rng.uniform(0.55, 0.95, 3)
    canvas = np.broadcast_to(wall, (h, w, 3)) + 0.05 * _smooth_field(rng, size, 3, 3)
    if rng.random() < 0.3:  # striped wallpaper
        period = rng.uniform(5, 10)
        canvas = np.where(((xx % period) < period / 2)[:, :, None], canvas * 0.88, canvas)
    canvas = np.ascontiguousarray(canvas, dtype=np.float32)
    if rng.random() < 0.6:  # wooden planks converging towards the back wall
        wood = rng.uniform([0.45, 0.28, 0.15], [0.7, 0.48, 0.3])
        u = (xx - w / 2) / (yy - floor_y + 10) * rng.uniform(3, 6)
        floor = np.where(((u % 1) < 0.12)[:, :, None], wood * 0.7, wood)
        floor = floor + 0.04 * _smooth_field(rng, size, 5, 1)
    else:  # carpet
        floor = rng.uniform(0.25, 0.8, 3) + 0.05 * _smooth_field(rng, size, 4, 3)
    _fill(canvas, yy >= floor_y, floor)
    _fill(canvas, np.abs(yy - floor_y) < 1.2, rng.uniform(0.8, 0.95))  # skirting board
    bx0 = rng.uniform(0.04, 0.3) * w
    bx1 = min(bx0 + rng.uniform(0.5, 0.68) * w, w - 2)
    head_top, blanket_top = floor_y - rng.uniform(0.2, 0.32) * h, floor_y - rng.uniform(0.06, 0.12) * h
    if rng.random() < 0.75:  # a window or a picture above the bed's head
        fx0, fy0 = rng.uniform(0.1, 0.6) * w, rng.uniform(0.05, 0.15) * h
        fx1, fy1 = fx0 + rng.uniform(0.18, 0.32) * w, min(fy0 + rng.uniform(0.15, 0.25) * h, head_top - 3)
        frame = (xx >= fx0) & (xx <= fx1) & (yy >= fy0) & (yy <= fy1)
        inner = (xx >= fx0 + 2) & (xx <= fx1 - 2) & (yy >= fy0 + 2) & (yy <= fy1 - 2)
        if rng.random() < 0.5:
            _fill(canvas, frame, rng.uniform(0.85, 1.0))
            _fill(canvas, inner, _sky(rng, size, fy1))
            _fill(
                canvas,
                inner & ((np.abs(xx - (fx0 + fx1) / 2) < 0.8) | (np.abs(yy - (fy0 + fy1) / 2) < 0.8)),
                0.95,
            )
        else:
            _fill(canvas, frame, rng.uniform(0.1, 0.4, 3))
            _fill(canvas, inner, rng.uniform(0.2, 0.9, 3) + 0.15 * _smooth_field(rng, size, 3, 3))
    wood = rng.uniform([0.25, 0.15, 0.08], [0.5, 0.35, 0.22])
    _fill(canvas, (xx >= bx0) & (xx <= bx1) & (yy >= head_top) & (yy <= floor_y + 3), wood)
    blanket = rng.uniform(0.2, 0.9, 3)
    pattern = rng.choice(3)
    layer = np.broadcast_to(blanket, (h, w, 3)) + 0.05 * _smooth_field(rng, size, 4, 3)
    if pattern == 1:
        layer = np.where((((xx - bx0) % rng.uniform(5, 9)) < 2.5)[:, :, None], layer * 0.7, layer)
    elif pattern == 2:
        p = rng.uniform(5, 9)
        layer = np.where((((xx // p) + (yy // p)) % 2 == 0)[:, :, None], layer * 0.75, layer)
    bed_bottom = rng.uniform(0.86, 0.98) * h
    spread = rng.uniform(2, 6)
    bed = _polygon_mask(
        size,
        [
            (bx0 - 1, blanket_top),
            (bx1 + 1, blanket_top),
            (bx1 + spread, bed_bottom),
            (bx0 - spread, bed_bottom),
        ],
    )
    _fill(canvas, bed, layer)
    _fill(canvas, bed & (yy < blanket_top + rng.uniform(3, 5)), rng.uniform(0.85, 0.98))  # sheet fold
    pillows = int(rng.integers(1, 3))
    pw = (bx1 - bx0) / pillows
    for k in range(pillows):
        cx, cy = bx0 + pw * (k + 0.5), blanket_top - rng.uniform(1, 3)
        pillow = ((xx - cx) / (0.38 * pw)) ** 2 + ((yy - cy) / rng.uniform(3, 4.5)) ** 2 <= 1
        _fill(canvas, pillow, rng.uniform(0.85, 1.0) * np.array([1.0, 1.0, 0.97]))
    if rng.random() < 0.5:  # a bedside table with a lamp
        nx = bx1 + 3 if rng.random() < 0.5 and bx1 < w - 16 else max(bx0 - 15, 1)
        ny = floor_y - rng.uniform(8, 12)
        _fill(canvas, (xx >= nx) & (xx <= nx + 12) & (yy >= ny) & (yy <= floor_y + 5), wood * 1.2)
        shade = [(nx + 3, ny - 7), (nx + 9, ny - 7), (nx + 11, ny - 1), (nx + 1, ny - 1)]
        _fill(canvas, _polygon_mask(size, shade), rng.uniform([0.85, 0.75, 0.5], [1.0, 0.95, 0.75]))
    return canvas, []


def _scene_coast(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """Sky over the sea, waves, a foam line and a sandy beach; sometimes a cliff, a boat, a bird."""
    h, w = size
    horizon = rng.uniform(0.3, 0.5) * h
    canvas = _sky(rng, size, horizon)
    shore = rng.uniform(0.62, 0.82) * h + rng.uniform(1, 4) * np.sin(
        xx * rng.uniform(0.05, 0.15) + rng.uniform(0, 6.3)
    )
    deep, shallow = (
        rng.uniform([0.05, 0.2, 0.35], [0.15, 0.4, 0.6]),
        rng.uniform([0.1, 0.45, 0.55], [0.3, 0.7, 0.75]),
    )
    t = np.clip((yy - horizon) / np.maximum(shore - horizon, 1), 0, 1)[:, :, None]
    sea = deep * (1 - t) + shallow * t
    waves = np.sin(
        yy * rng.uniform(0.8, 1.4) + 2.5 * np.sin(xx * rng.uniform(0.1, 0.3) + rng.uniform(0, 6.3))
    )
    sea = np.where((waves > 0.85)[:, :, None], sea + 0.2, sea)
    _fill(canvas, yy >= horizon, sea)
    sand = _ground(rng, size, "gravel", (0.75, 0.65, 0.45), (0.95, 0.85, 0.65), (2.0, 4.0))
    _fill(canvas, yy >= shore, sand)
    _fill(canvas, np.abs(yy - shore) < rng.uniform(1.0, 2.0), 0.93)
    if rng.random() < 0.35:  # a cliff rising from one side
        x_in = rng.uniform(0.15, 0.35) * w
        top = horizon - rng.uniform(0.1, 0.25) * h
        pts = [
            (-1, top),
            (x_in * 0.6, top + 3),
            (x_in, horizon + 4),
            (x_in * 1.3, float(shore.min()) + 2),
            (-1, h),
        ]
        if rng.random() < 0.5:
            pts = [(w - x, y) for x, y in pts]
        rock = _ground(rng, size, "gravel", (0.3, 0.25, 0.2), (0.5, 0.42, 0.35), (1.5, 2.5))
        _fill(canvas, _polygon_mask(size, pts), rock)
    shapes = []
    if rng.random() < 0.5:
        y0, y1 = horizon / h + 0.06, float(shore.min()) / h - 0.06
        if y1 > y0:
            shapes.append(_sample_shape(rng, size, "boat", (0.06, 0.1), (0.15, y0, 0.85, y1), 10.0))
    if rng.random() < 0.2:
        shapes.append(
            _sample_shape(rng, size, "bird", (0.04, 0.07), (0.1, 0.05, 0.9, horizon / h * 0.8), 25.0)
        )
    return canvas, shapes


def _scene_forest_path(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """Dense foliage and tree trunks either side of a light path winding into the distance."""
    h, w = size
    canvas = _ground(rng, size, "grass", (0.12, 0.3, 0.08), (0.3, 0.55, 0.2), (1.5, 3.0))
    if rng.random() < 0.5:  # sky through the canopy
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(-0.05, 0.15) * h
        gap = ((xx - cx) / rng.uniform(8, 20)) ** 2 + ((yy - cy) / rng.uniform(6, 14)) ** 2
        light = np.clip(1.5 - gap, 0, 1)[:, :, None] * rng.uniform(0.6, 0.9)
        canvas = canvas * (1 - light) + rng.uniform(0.8, 0.95) * light
    vx, vy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.55) * h
    undergrowth = _ground(rng, size, "grass", (0.25, 0.45, 0.12), (0.45, 0.7, 0.28), (2.0, 4.0))
    _fill(canvas, yy >= vy, undergrowth)
    depth = np.clip((yy - vy) / (h - vy), 0, 1)
    bend = rng.uniform(-0.25, 0.25) * w
    centre = vx + bend * depth**2
    half = 0.5 + rng.uniform(0.22, 0.42) * w * depth
    path = (yy >= vy) & (np.abs(xx - centre) <= half)
    dirt = _ground(rng, size, "gravel", (0.5, 0.38, 0.25), (0.75, 0.62, 0.45), (2.0, 4.0))
    _fill(canvas, path, dirt)
    trunks = sorted(
        (rng.uniform(1.2, 6.0), rng.uniform(0, w), rng.uniform(vy + 2, h))
        for _ in range(int(rng.integers(5, 11)))
    )
    bark = rng.uniform([0.18, 0.1, 0.05], [0.4, 0.28, 0.15])
    for width, x, base in trunks:  # thin (far) first
        row = min(int(base), h - 1)
        if abs(x - centre[row, 0]) < half[row, 0] + width:  # keep the path clear
            x = centre[row, 0] + np.sign(x - centre[row, 0] + 1e-6) * (half[row, 0] + width + 1)
        shade = 1 - 0.4 * np.clip((xx - x) / width, -1, 1)[:, :, None] ** 2
        _fill(canvas, (np.abs(xx - x) <= width / 2) & (yy <= base), bark * shade)
    shapes = []
    if rng.random() < 0.25:
        shapes.append(_sample_shape(rng, size, "person", (0.06, 0.1), (0.4, 0.65, 0.6, 0.85), 8.0))
    return canvas, shapes


def _scene_highway(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """A multi-lane road in perspective with lane markings and cars, grass verges, sometimes a sign."""
    h, w = size
    horizon = rng.uniform(0.38, 0.52) * h
    canvas = _sky(rng, size, horizon)
    _fill(canvas, yy >= horizon, _ground(rng, size, "grass", (0.3, 0.45, 0.15), (0.55, 0.7, 0.35)))
    if rng.random() < 0.5:  # a distant tree line
        band = horizon - rng.uniform(1, 4) + 2 * _smooth_field(rng, (1, w), 8, 1)[0, :, 0]
        _fill(canvas, (yy >= band) & (yy < horizon + 1), rng.uniform([0.1, 0.2, 0.08], [0.25, 0.38, 0.2]))
    vx = rng.uniform(0.35, 0.65) * w
    left_b, right_b = rng.uniform(-0.5, 0.05) * w, rng.uniform(0.95, 1.5) * w
    depth = np.clip((yy - horizon) / (h - horizon), 0, 1)
    road_l, road_r = vx - 1 + (left_b - vx + 1) * depth, vx + 1 + (right_b - vx - 1) * depth
    road = (yy >= horizon) & (xx >= road_l) & (xx <= road_r)
    grey = rng.uniform(0.3, 0.45)
    asphalt = (
        _ground(rng, size, "gravel", (grey, grey, grey + 0.02), (grey, grey, grey + 0.04), (3.0, 5.0)) * 0.8
    )
    _fill(canvas, road, asphalt)
    line_w = 0.3 + 1.0 * depth
    edge = road & ((np.abs(xx - road_l - 2 * depth) < line_w) | (np.abs(xx - road_r + 2 * depth) < line_w))
    _fill(canvas, edge, rng.choice([0.92, 0.85]) * np.array([1.0, 1.0, rng.choice([1.0, 0.3])]))
    lanes = int(rng.integers(2, 5))
    dashes = (np.sqrt(depth) * rng.uniform(6, 10) + rng.uniform(0, 1)) % 1 < 0.5
    for k in range(1, lanes):
        x_line = road_l + (road_r - road_l) * k / lanes
        _fill(canvas, road & dashes & (np.abs(xx - x_line) < line_w), 0.92)
    if rng.random() < 0.3:  # an overhead sign on two posts
        sx = rng.uniform(0.1, 0.6) * w
        sy = rng.uniform(0.08, 0.2) * h
        sw, sh = rng.uniform(0.2, 0.35) * w, rng.uniform(0.08, 0.14) * h
        for px in (sx + 1, sx + sw - 1):
            _fill(canvas, (np.abs(xx - px) < 0.8) & (yy >= sy) & (yy <= horizon + 4), 0.5)
        _fill(
            canvas, (xx >= sx) & (xx <= sx + sw) & (yy >= sy) & (yy <= sy + sh), np.array([0.05, 0.45, 0.2])
        )
    y0 = min(horizon / h + 0.12, 0.85)
    cars = int(rng.integers(1, 4))
    return canvas, [
        _sample_shape(rng, size, "car", (0.05, 0.1), (0.25, y0, 0.75, 0.9), 8.0) for _ in range(cars)
    ]


def _scene_kitchen(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """Tiled wall, wall cabinets, a counter with bottles on it, base cabinets, sometimes an oven."""
    h, w = size
    counter_y = rng.uniform(0.5, 0.62) * h
    floor_y = rng.uniform(0.88, 0.97) * h
    tile = rng.uniform(0.7, 0.97, 3)
    p = rng.uniform(5, 9)
    grout = ((xx % p) < 1) | ((yy % p) < 1)
    canvas = np.where(grout[:, :, None], tile * 0.75, tile).astype(np.float32)
    if rng.random() < 0.5:
        finish = rng.uniform([0.45, 0.3, 0.18], [0.7, 0.5, 0.32])  # wood
    else:
        finish = rng.uniform(0.6, 0.95, 3)  # painted
    door = rng.uniform(12, 20)
    offset = rng.uniform(0, door)

    def cabinets(mask: np.ndarray, handle_y: np.ndarray) -> None:
        _fill(canvas, mask, finish)
        _fill(canvas, mask & (((xx - offset) % door) < 1), finish * 0.6)
        handle = mask & (np.abs(((xx - offset) % door) - door / 2) < 1.5) & handle_y
        _fill(canvas, handle, 0.2)

    if rng.random() < 0.75:
        upper_y = rng.uniform(0.18, 0.3) * h
        ux0, ux1 = rng.uniform(0, 0.2) * w, rng.uniform(0.6, 1.0) * w
        cabinets((xx >= ux0) & (xx <= ux1) & (yy <= upper_y), np.abs(yy - upper_y + 3) < 1)
    if rng.random() < 0.45:  # a window over the counter
        wx0 = rng.uniform(0.15, 0.55) * w
        wx1, wy0, wy1 = wx0 + rng.uniform(0.2, 0.3) * w, counter_y - rng.uniform(0.22, 0.3) * h, counter_y - 4
        frame = (xx >= wx0) & (xx <= wx1) & (yy >= wy0) & (yy <= wy1)
        _fill(canvas, frame, 0.95)
        inner = (xx >= wx0 + 2) & (xx <= wx1 - 2) & (yy >= wy0 + 2) & (yy <= wy1 - 2)
        _fill(canvas, inner, _sky(rng, size, wy1))
    top_h = rng.uniform(2, 4)
    cabinets((yy >= counter_y + top_h) & (yy <= floor_y), np.abs(yy - counter_y - top_h - 3) < 1)
    worktop = _ground(rng, size, "gravel", (0.15, 0.15, 0.15), (0.9, 0.88, 0.85), (3.0, 5.0))
    _fill(canvas, (yy >= counter_y) & (yy < counter_y + top_h), worktop)
    if rng.random() < 0.4:  # an oven door in the base cabinets
        ox = rng.uniform(0.1, 0.65) * w
        oven = (
            (xx >= ox)
            & (xx <= ox + rng.uniform(16, 22))
            & (yy >= counter_y + top_h + 2)
            & (yy <= floor_y - 2)
        )
        _fill(canvas, oven, rng.uniform(0.15, 0.3))
        ys, xs = np.nonzero(oven)
        if len(ys):
            glass = (
                oven
                & (yy >= ys.min() + 5)
                & (yy <= ys.max() - 4)
                & (xx >= xs.min() + 3)
                & (xx <= xs.max() - 3)
            )
            _fill(canvas, glass, 0.05)
    light, dark = rng.uniform(0.6, 0.95, 3), rng.uniform(0.1, 0.45, 3)
    q = rng.uniform(6, 10)
    floor = np.where(((xx // q + yy // q) % 2 == 0)[:, :, None], light, dark)
    _fill(canvas, yy > floor_y, floor)
    n = int(rng.integers(1, 4))
    cy = counter_y / h - 0.08
    return canvas, [
        _sample_shape(rng, size, "bottle", (0.05, 0.075), (0.1, cy - 0.01, 0.9, cy), 5.0) for _ in range(n)
    ]


def _ridge(rng: np.random.Generator, w: int, top: float, bottom: float, peaks: int) -> np.ndarray:
    """A jagged skyline [W] (y in pixels): ``peaks`` summits near ``top`` alternating with saddles
    near ``bottom``, and a rough random walk along the whole line."""
    span = bottom - top
    xs = np.sort(rng.uniform(-0.1 * w, 1.1 * w, size=2 * peaks + 1))
    summit = np.arange(len(xs)) % 2 == 1
    ys = np.where(summit, top, bottom) + np.where(summit, 1, -1) * rng.uniform(0, 0.35, len(xs)) * span
    line = np.interp(np.arange(w, dtype=np.float64), xs, ys)
    return (line + np.cumsum(rng.normal(0, 0.8, size=w)) * 0.5).astype(np.float32)


def _scene_mountain(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """Two ranges of jagged peaks (a hazy far one, often snow-capped, and a rocky near one)."""
    h, w = size
    base = rng.uniform(0.6, 0.78) * h
    canvas = _sky(rng, size, base)
    top, bottom = rng.uniform(0.06, 0.2) * h, rng.uniform(0.4, 0.55) * h
    far = _ridge(rng, w, top, bottom, int(rng.integers(2, 5)))[None, :]
    haze = rng.uniform([0.4, 0.45, 0.55], [0.6, 0.65, 0.78])
    rock = _ground(rng, size, "gravel", (0.3, 0.3, 0.32), (0.5, 0.5, 0.55), (2.0, 4.0))
    far_mask = yy >= far
    _fill(canvas, far_mask, 0.6 * haze + 0.4 * rock)
    if rng.random() < 0.7:  # snow caps
        cap = far_mask & (yy < far + rng.uniform(4, 10)) & (yy < rng.uniform(0.3, 0.45) * h)
        _fill(canvas, cap, rng.uniform(0.88, 1.0) * np.array([0.97, 0.98, 1.0]))
    near = _ridge(rng, w, rng.uniform(0.3, 0.45) * h, base, int(rng.integers(1, 4)))[None, :]
    near_rock = _ground(rng, size, "gravel", (0.25, 0.2, 0.15), (0.45, 0.4, 0.32), (1.5, 3.0))
    _fill(canvas, yy >= near, near_rock)
    if rng.random() < 0.6:  # a green valley floor
        meadow = _ground(rng, size, "grass", (0.25, 0.4, 0.12), (0.45, 0.6, 0.25))
        _fill(canvas, yy >= base + 2 * _smooth_field(rng, (1, w), 5, 1)[0, :, 0], meadow)
    shapes = []
    if rng.random() < 0.3:
        shapes.append(_sample_shape(rng, size, "bird", (0.04, 0.07), (0.1, 0.04, 0.9, 0.12), 25.0))
    return canvas, shapes


def _scene_pasture(
    rng: np.random.Generator, size: tuple[int, int], yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, list[_Shape]]:
    """Rolling green fields under the sky, a tree line, sometimes a fence, grazing animals."""
    h, w = size
    horizon = rng.uniform(0.3, 0.5) * h
    canvas = _sky(rng, size, horizon)
    if rng.random() < 0.6:  # trees along the horizon
        crowns = np.zeros(size, bool)
        for x in np.sort(rng.uniform(0, w, size=int(rng.integers(4, 12)))):
            r = rng.uniform(2, 6)
            crowns |= (xx - x) ** 2 + (yy - horizon + r * 0.6) ** 2 <= r**2
        _fill(canvas, crowns, rng.uniform([0.1, 0.22, 0.06], [0.25, 0.4, 0.16]))
    grass = _ground(rng, size, "grass", (0.45, 0.62, 0.18), (0.7, 0.85, 0.4), (2.0, 4.0))
    hill = horizon + rng.uniform(0.5, 3) * np.sin(xx * rng.uniform(0.03, 0.08) + rng.uniform(0, 6.3))
    _fill(canvas, yy >= hill, grass)
    if rng.random() < 0.5:  # a nearer field in another shade
        second = (
            hill + rng.uniform(0.1, 0.25) * h + 3 * np.sin(xx * rng.uniform(0.03, 0.08) + rng.uniform(0, 6.3))
        )
        _fill(canvas, yy >= second, grass * rng.uniform(0.8, 1.15))
    if rng.random() < 0.5:  # a fence
        rail = rng.uniform(0.6, 0.75) * h
        colour = rng.choice([0.9, 0.4]) * np.array([1.0, 0.85, 0.7])
        gap = rng.uniform(4, 7)
        spacing = rng.uniform(8, 14)
        rails = (np.abs(yy - rail) < 0.7) | (np.abs(yy - rail - gap) < 0.7)
        posts = ((xx % spacing) < 1.3) & (yy >= rail - 2) & (yy <= rail + gap + 4)
        _fill(canvas, rails | posts, colour)
    animals = ("cow", "sheep", "horse")
    n = int(rng.integers(1, 5))
    box = (0.05, min(horizon / h + 0.1, 0.85), 0.95, 0.92)
    return canvas, [
        _sample_shape(rng, size, animals[int(rng.integers(3))], (0.06, 0.11), box, 10.0) for _ in range(n)
    ]


# The mini Places205: real Places205 scene names (folder ``<first letter>/<name>``), one layout each.
PLACES205_SCENES = {
    "abbey": _scene_abbey,
    "bedroom": _scene_bedroom,
    "coast": _scene_coast,
    "forest_path": _scene_forest_path,
    "highway": _scene_highway,
    "kitchen": _scene_kitchen,
    "mountain": _scene_mountain,
    "pasture": _scene_pasture,
}
PLACES205_CLASSES: tuple[str, ...] = tuple(sorted(PLACES205_SCENES))


def render_places205_image(seed: int, split: str, class_index: int, index: int) -> Scene:
    """Image ``index`` of scene class ``class_index`` (``PLACES205_CLASSES``) of the mini Places205.

    The scene's layout (sky, ground, buildings, furniture) plus its objects drawn with their
    class looks (cars on the highway, cows on the pasture, ...), then photographed: a random
    crop (50-100% of the side), tilted by up to 6 degrees, a mirror image half of the time, and
    colour jitter (hue +-24 degrees). Labels are per image (no instances).
    """
    rng = _rng(seed, f"places205_{split}", class_index, index)
    size = (PLACES205_SIZE, PLACES205_SIZE)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float32)
    canvas, shapes = PLACES205_SCENES[PLACES205_CLASSES[class_index]](rng, size, yy, xx)
    canvas = np.ascontiguousarray(canvas, dtype=np.float32)
    _paint(rng, canvas, shapes)
    h, w = size
    zoom = rng.uniform(0.5, 1.0)  # source pixels per output pixel
    tilt = np.deg2rad(rng.uniform(-6, 6))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    c, s = np.cos(tilt) * zoom, np.sin(tilt) * zoom
    lin = np.array([[c, -s], [s, c]]) @ np.diag([flip, 1.0])
    centre = np.array([w, h]) / 2 + rng.uniform(-0.5, 0.5, 2) * np.array([w, h]) * (1 - zoom)
    warp = np.hstack([lin, (centre - lin @ (np.array([w, h]) / 2))[:, None]])
    canvas = cv2.warpAffine(
        canvas, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
    )
    canvas = _jitter_colours(rng, canvas.reshape(-1, 3), strength=1.2).reshape(h, w, 3)
    return Scene(_finish(rng, np.clip(canvas, 0, 1)))


def places205_file(split: str, scene: str, index: int) -> str:
    """``<letter>/<scene>/gsun_<32 hex>.jpg`` (relative to ``images256``), as Places205 names files."""
    digest = hashlib.md5(f"places205/{split}/{scene}/{index}".encode()).hexdigest()
    return f"{scene[0]}/{scene}/gsun_{digest}.jpg"


# --------------------------------------------------------------------------------------------
# iNaturalist 2018 species: colour and pattern variations of a few base looks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Species:
    """One mini iNat18 category: a base look recoloured, with an optional pattern.

    ``taxonomy`` is (kingdom, phylum, class, order, family, genus), the 2018 category fields.
    """

    id: int
    name: str
    supercategory: str
    taxonomy: tuple[str, str, str, str, str, str]
    look: str  # key of LOOKS: the shape and the texture whose light and shade the colour keeps
    colour: tuple[float, float, float]
    pattern: str = "plain"  # plain, stripes, spots, centre (a disk in the middle)
    pattern_colour: tuple[float, float, float] = (0.08, 0.07, 0.06)


_AVES = ("Animalia", "Chordata", "Aves", "Passeriformes")
_LEPIDOPTERA = ("Animalia", "Arthropoda", "Insecta", "Lepidoptera")
_ASTERACEAE = ("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae")
_AGARICOMYCETES = ("Fungi", "Basidiomycota", "Agaricomycetes")

# Real species and taxonomy; ids lie in their supercategory's block of the 2018 id space
# (Aves 805-2062, Fungi 2089-2409, Insecta 2410-4440, Plantae 4937-7853) but are not the real
# species' ids. Listed from the most to the least frequent (the long tail of MiniSizes).
# Species of one supercategory share a look: they differ only in colour and pattern.
INAT18_SPECIES: tuple[Species, ...] = (
    Species(1026, "Cardinalis cardinalis", "Aves", (*_AVES, "Cardinalidae", "Cardinalis"), "bird", (0.8, 0.15, 0.1)),
    Species(3214, "Danaus plexippus", "Insecta", (*_LEPIDOPTERA, "Nymphalidae", "Danaus"), "cat", (0.92, 0.5, 0.1), "stripes"),
    Species(1121, "Cyanocitta cristata", "Aves", (*_AVES, "Corvidae", "Cyanocitta"), "bird", (0.3, 0.48, 0.85), "stripes"),
    Species(7410, "Taraxacum officinale", "Plantae", (*_ASTERACEAE, "Taraxacum"), "pottedplant", (0.98, 0.85, 0.15)),
    Species(3580, "Vanessa cardui", "Insecta", (*_LEPIDOPTERA, "Nymphalidae", "Vanessa"), "cat", (0.9, 0.55, 0.2), "spots"),
    Species(1352, "Passerina cyanea", "Aves", (*_AVES, "Cardinalidae", "Passerina"), "bird", (0.22, 0.38, 0.85)),
    Species(2150, "Amanita muscaria", "Fungi", (*_AGARICOMYCETES, "Agaricales", "Amanitaceae", "Amanita"), "sheep", (0.85, 0.15, 0.08), "spots", (0.95, 0.93, 0.85)),
    Species(3429, "Papilio glaucus", "Insecta", (*_LEPIDOPTERA, "Papilionidae", "Papilio"), "cat", (0.95, 0.8, 0.22), "stripes"),
    Species(6342, "Rudbeckia hirta", "Plantae", (*_ASTERACEAE, "Rudbeckia"), "pottedplant", (0.95, 0.72, 0.12), "centre", (0.25, 0.13, 0.05)),
    Species(2163, "Amanita pantherina", "Fungi", (*_AGARICOMYCETES, "Agaricales", "Amanitaceae", "Amanita"), "sheep", (0.52, 0.36, 0.2), "spots", (0.95, 0.93, 0.85)),
)  # fmt: skip
# Labels follow category ids, as the 2018 files are read (sslzoo.data.inat).
INAT18_BY_ID: tuple[Species, ...] = tuple(sorted(INAT18_SPECIES, key=lambda s: s.id))
INAT18_SIZE = 96


def inat18_train_counts(sizes: MiniSizes) -> dict[str, int]:
    """Train images per species: a geometric long tail from ``inat18_train_max`` (the first of
    ``INAT18_SPECIES``) down to ``inat18_train_min`` (the last)."""
    hi, lo = sizes.inat18_train_max, sizes.inat18_train_min
    if not 1 <= lo <= hi:
        raise SslzooError(f"MiniSizes: need 1 <= inat18_train_min ({lo}) <= inat18_train_max ({hi})")
    last = len(INAT18_SPECIES) - 1
    return {s.name: int(round(hi * (lo / hi) ** (k / last))) for k, s in enumerate(INAT18_SPECIES)}


def _nature_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Out-of-focus foliage, leaf litter or sky [H, W, 3], independent of the species."""
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    if kind == 0:
        layer = _ground(rng, size, "grass", (0.2, 0.4, 0.12), (0.45, 0.7, 0.3), (1.5, 3.0))
    elif kind == 1:
        layer = _ground(rng, size, "gravel", (0.38, 0.28, 0.18), (0.6, 0.48, 0.32), (1.5, 3.0))
    else:
        layer = _sky(rng, size, size[0])
    layer = cv2.GaussianBlur(np.ascontiguousarray(layer), (0, 0), rng.uniform(0.8, 2.0))
    return np.clip(layer + 0.06 * _smooth_field(rng, size, 4, 3), 0, 1).astype(np.float32)


def _paint_species(rng: np.random.Generator, canvas: np.ndarray, shape: _Shape, species: Species) -> None:
    """Paint ``shape`` in the species' colour (keeping the look's texture as light and shade),
    its pattern in object coordinates (turns with the object) at a per-individual contrast,
    colour jitter, shading and outline."""
    mask = shape.mask
    if not mask.any():
        return
    h, w = canvas.shape[:2]
    layer = _texture(rng, shape.look, (h, w), shape.centre, shape.radius, shape.theta)
    lum = layer[mask].mean(axis=1)
    lum = (lum / (lum.mean() + 1e-6))[:, None]
    ys, xs = np.nonzero(mask)
    dx, dy = (xs - shape.centre[0]) / shape.radius, (ys - shape.centre[1]) / shape.radius
    c, s = np.cos(shape.theta), np.sin(shape.theta)
    u, v = c * dx + s * dy, -s * dx + c * dy  # object coordinates
    if species.pattern == "stripes":
        period = rng.uniform(0.3, 0.45)
        marked = ((v / period + rng.uniform(0, 1)) % 1) < rng.uniform(0.2, 0.32)
    elif species.pattern == "spots":
        count = int(rng.integers(4, 10))
        centres = rng.choice(len(xs), size=min(count, len(xs)), replace=False)
        radius = rng.uniform(0.08, 0.14)
        marked = np.zeros(len(xs), bool)
        for k in centres:
            marked |= (u - u[k]) ** 2 + (v - v[k]) ** 2 <= radius**2
    elif species.pattern == "centre":
        marked = u**2 + v**2 <= rng.uniform(0.2, 0.32) ** 2
    else:
        marked = np.zeros(len(xs), bool)
    base = np.asarray(species.colour, np.float32) * (0.6 + 0.4 * lum)
    contrast = rng.uniform(0.55, 0.85)  # how strongly the pattern shows on this individual
    ink = np.asarray(species.pattern_colour, np.float32) * (0.85 + 0.15 * lum)
    mark = (1 - contrast) * base + contrast * ink
    pix = _jitter_colours(rng, np.where(marked[:, None], mark, base), strength=0.5)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    along = (dx * direction[0] + dy * direction[1]).astype(np.float32)
    canvas[mask] = pix * (1 + rng.uniform(0.05, 0.2) * along)[:, None]
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    canvas[edge] *= 0.55


def render_inat18_image(seed: int, split: str, class_index: int, index: int) -> Scene:
    """Image ``index`` of category ``class_index`` (position in ``INAT18_BY_ID``, the label) of
    the mini iNat18 ``split``: one organism, large and near the centre, on a natural background."""
    rng = _rng(seed, f"inat18_{split}", class_index, index)
    species = INAT18_BY_ID[class_index]
    size = (INAT18_SIZE, INAT18_SIZE)
    canvas = _nature_background(rng, size)
    shape = _sample_shape(rng, size, species.look, (0.2, 0.27), (0.4, 0.4, 0.6, 0.6), 30.0)
    _paint_species(rng, canvas, shape, species)
    instance = Instance(species.name, shape.mask, shape.full_area, int(shape.mask.sum()))
    return Scene(_finish(rng, np.clip(canvas, 0, 1)), [instance])


def inat18_file(split: str, species: Species, index: int) -> str:
    """``train_val2018/<supercategory>/<category id>/<32 hex>.jpg``, as iNat 2018 names files."""
    digest = hashlib.md5(f"inat18/{split}/{species.id}/{index}".encode()).hexdigest()
    return f"train_val2018/{species.supercategory}/{species.id}/{digest}.jpg"


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
    (layouts in the module docstring; how many images each holds: ``sizes``, default
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
