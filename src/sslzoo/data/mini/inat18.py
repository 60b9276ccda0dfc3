"""The mini iNaturalist 2018: its species, their painter, ``render_inat18_image`` and file names.

``INAT18_SPECIES``: ten real species of four supercategories with their taxonomy, from the most
to the least frequent; the species of one supercategory share a look and differ only in colour
and pattern (a fine-grained task). ``INAT18_BY_ID`` orders them by category id, the label
order; ``inat18_file`` names the files as iNat 2018 does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from sslzoo.data.mini.painting import (
    Instance,
    Scene,
    _finish,
    _ground,
    _jitter_colours,
    _rng,
    _sample_shape,
    _Shape,
    _sky,
    _smooth_field,
    _texture,
)

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
