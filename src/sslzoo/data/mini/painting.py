"""What the scenes of every mini dataset are painted with.

- random streams: ``_rng(seed, stream, *index)``, one generator per image, so one image can be
  re-rendered on its own;
- photo sources: textures cut from the photos scikit-image ships (``_source``, ``_texture``,
  ``_region_texture``) and colour jitter;
- backgrounds: gradients, smooth colour fields and blurred photos (``_background``), skies and
  textured ground (``_sky``, ``_ground``), sensor noise and quantisation (``_finish``);
- objects: a look's shape sampled in an image (``_sample_shape``), placed so every object stays
  annotatable (``_place``), painted (``_paint``), and the :class:`Scene` and :class:`Instance`
  records that carry an image and its annotations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
import skimage.data

from sslzoo.data.mini.looks import (
    _SHAPE_EXTENT,
    BODY,
    BOTTOM,
    LOOKS,
    PARTS,
    SHAPES,
    TOP,
    Look,
    _draw_polygons,
)
from sslzoo.errors import SslzooError

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
