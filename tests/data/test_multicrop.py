"""Multi-crop views: counts and sizes per group, the default collate of views of different
sizes, the resolution runs one backbone pass takes, refused settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from sslzoo.data.multicrop import MultiCrop, multicrop_views, resolution_groups
from sslzoo.errors import SslzooError

SMALL = {
    "crops": [
        {"count": 2, "image_size": 32, "scale": [0.5, 1.0]},
        {"count": 3, "image_size": 16, "scale": [0.1, 0.3]},
    ],
}


def image(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_groups_give_their_count_of_views_at_their_size_in_order() -> None:
    transform = multicrop_views(SMALL)
    assert transform.counts == [2, 3]
    views = transform(image(0))
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3
    assert not torch.equal(views[0], views[1])  # each view its own draw


def test_reference_defaults_are_two_224_and_six_96_pixel_crops() -> None:
    transform = multicrop_views({})
    assert transform.counts == [2, 6]
    crops = [pipeline.transforms[0] for pipeline, _ in transform.groups]
    assert [c.size for c in crops] == [(224, 224), (96, 96)]
    assert [c.scale for c in crops] == [(0.14, 1.0), (0.05, 0.14)]


def test_default_collate_stacks_each_view_position() -> None:
    transform = multicrop_views(SMALL)
    batch = default_collate([(transform(image(i)), i) for i in range(4)])
    views, labels = batch
    assert [tuple(v.shape) for v in views] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 3
    assert labels.tolist() == [0, 1, 2, 3]


def test_resolution_groups_concatenate_consecutive_views_of_one_size() -> None:
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    c, d, e = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8, 8)
    runs = resolution_groups([a, b, c, d, e])
    assert [tuple(r.shape) for r in runs] == [(4, 3, 8, 8), (4, 3, 4, 4), (2, 3, 8, 8)]
    assert torch.equal(runs[0], torch.cat([a, b])) and torch.equal(runs[1], torch.cat([c, d]))
    assert runs[2] is e


def test_bad_settings_are_refused() -> None:
    with pytest.raises(SslzooError, match="views.blur_p"):
        multicrop_views({**SMALL, "blur_p": [1.0, 0.1]})
    with pytest.raises(SslzooError, match=r"views.crops\[0\]"):
        multicrop_views({"crops": [{"count": 2, "size": 32}]})
    with pytest.raises(SslzooError, match="views.crops"):
        multicrop_views({"crops": []})
    with pytest.raises(ValueError, match="at least one"):
        MultiCrop([])
