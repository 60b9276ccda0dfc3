"""The scenes of the mini ImageNet, VOC, COCO and Cityscapes.

``render_imagenet_image`` (one large labelled object and small distractors),
``render_voc_image`` and ``render_coco_image`` (1-4 and 2-6 objects placed so each stays
annotatable) and ``render_cityscapes_image`` (a street in perspective with its labelIds map):
each re-renders one image from (seed, split, index).
"""

from __future__ import annotations

import numpy as np

from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.mini.looks import (
    CITYSCAPES_LABEL_IDS,
    COCO_CATEGORIES,
    IMAGENET_CLASSES,
    IMAGENET_DISTRACTORS,
)
from sslzoo.data.mini.painting import (
    Scene,
    _background,
    _finish,
    _instances,
    _paint,
    _place,
    _region_texture,
    _rng,
    _sample_shape,
)

# --------------------------------------------------------------------------------------------
# Scenes of each dataset
# --------------------------------------------------------------------------------------------


def _random_size(rng: np.random.Generator, long_side: int, short_range: tuple[int, int]) -> tuple[int, int]:
    """(H, W): long side fixed, short side random, landscape three times in four."""
    short = int(rng.integers(short_range[0], short_range[1] + 1))
    return (short, long_side) if rng.random() < 0.75 else (long_side, short)


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
