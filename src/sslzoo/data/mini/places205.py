"""The mini Places205: one painter per scene class, ``render_places205_image`` and file names.

Eight real Places205 scene classes (``PLACES205_CLASSES``: abbey, bedroom, coast, forest_path,
highway, kitchen, mountain, pasture), each a layout of its own (``PLACES205_SCENES``) of sky,
ground, buildings or furniture, with objects drawn with the class looks (cows on the pasture,
cars on the highway, ...); ``places205_file`` names the files as Places205 does.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from sslzoo.data.mini.painting import (
    Scene,
    _finish,
    _ground,
    _jitter_colours,
    _paint,
    _rng,
    _sample_shape,
    _Shape,
    _sky,
    _smooth_field,
)

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
