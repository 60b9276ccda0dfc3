"""Classes of the mini datasets and how their objects are drawn.

``LOOKS`` gives every VOC class a :class:`Look`: a body shape filled with a photo texture, a
part above it and one below in a colour of its own, drawn upright. The mini ImageNet
(``IMAGENET_CLASSES``, with ``IMAGENET_DISTRACTORS``) and COCO (``COCO_CATEGORIES``) reuse these
looks; ``CITYSCAPES_LABEL_IDS`` and ``CITYSCAPES_CITIES`` are the classes and cities of the
street scenes. ``SHAPES`` (bodies) and ``PARTS`` are polygons in unit coordinates;
``_draw_polygons`` fills them into a canvas after an affine map, and ``BODY``, ``TOP`` and
``BOTTOM`` are the values of a shape's part map.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sslzoo.data.constants import VOC_CLASSES

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
