"""Relative-Loc: patch geometry, label <-> neighbour mapping, pairing, loss and weight decay groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sslzoo.config import load_model_config
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.transforms import sample_patch_boxes
from sslzoo.errors import SslzooError
from sslzoo.methods.relative_loc import (
    CENTRE,
    NEIGHBOURS,
    RelativeLoc,
    make_pairs,
    neighbour_offset,
)
from sslzoo.tables import load_model_entry

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
TINY = {"backbone": {"depth": 18}, "method_args": {"hidden": 16}, "train": {"optimizer": {"weight_decay": 1.0e-4}}}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_patch_larger_than_cell_is_refused() -> None:
    with pytest.raises(ValueError):
        sample_patch_boxes(64, 22)
    with pytest.raises(SslzooError, match="views.patch_size"):
        RelativeLoc.views({"views": {"resize": 73, "crop": 64, "patch_size": 22}})


def test_views_from_config_use_the_configured_sizes() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8))
    transform = RelativeLoc.views({"views": {"resize": 40, "crop": 36, "patch_size": 9, "grayscale_p": 1.0}})
    patches = transform(image)
    assert patches.shape == (9, 3, 9, 9)
    # grayscale_p 1: the three channels hold the same grey (before the per-channel normalisation)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    raw = patches * std + mean
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 1], raw[:, 2], atol=1e-5)


def test_label_maps_to_neighbour_position() -> None:
    # label order: row-major over the 3x3 grid, centre left out
    expected = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    assert [neighbour_offset(label) for label in range(8)] == expected
    assert CENTRE == 4 and NEIGHBOURS == (0, 1, 2, 3, 5, 6, 7, 8)


def test_make_pairs_puts_neighbour_first_and_centre_second() -> None:
    b, c = 3, 2
    features = torch.arange(b * 8 * c, dtype=torch.float32).view(b, 8, c)
    centre = -torch.arange(b * c, dtype=torch.float32).view(b, c) - 1
    pairs, labels = make_pairs(features, centre)
    assert pairs.shape == (8 * b, 2 * c) and labels.tolist() == list(range(8)) * b
    for row in range(8 * b):
        image, label = divmod(row, 8)
        assert torch.equal(pairs[row, :c], features[image, label])
        assert torch.equal(pairs[row, c:], centre[image])


def test_model_pairs_each_neighbour_with_its_own_centre() -> None:
    model = RelativeLoc.from_config(TINY)
    # identity neck/head and an embedding that reads the code written into each patch
    model.neck, model.head = nn.Identity(), nn.Identity()
    model.embed = lambda patches: patches[:, 0, 0, :1]  # type: ignore[method-assign]
    b = 2
    codes = torch.tensor([[10.0 * image + index for index in range(9)] for image in range(b)])
    patches = codes.view(b, 9, 1, 1, 1).expand(b, 9, 3, 4, 4).contiguous()
    pairs, labels = model.logits(patches)
    for row in range(8 * b):
        image, label = divmod(row, 8)
        assert labels[row] == label
        assert pairs[row, 0] == 10 * image + NEIGHBOURS[label]
        assert pairs[row, 1] == 10 * image + CENTRE


def test_loss_is_cross_entropy_by_hand() -> None:
    torch.manual_seed(0)
    model = RelativeLoc.from_config(TINY).eval()  # eval: no dropout, so two passes agree
    batch = torch.randn(2, 9, 3, 12, 12)
    out = model(batch)
    with torch.no_grad():
        logits, labels = model.logits(batch)
    assert logits.shape == (16, 8)
    by_hand = torch.stack([torch.logsumexp(row, 0) - row[label] for row, label in zip(logits, labels, strict=True)])
    assert torch.allclose(out["loss"], by_hand.mean(), atol=1e-6)
    hits = sum(int(row.argmax() == label) for row, label in zip(logits, labels, strict=True))
    assert out["accuracy"].item() == pytest.approx(100.0 * hits / 16)
    out["loss"].backward()
    assert model.backbone.conv1.weight.grad is not None and model.head.weight.grad is not None


def test_architecture_and_init() -> None:
    torch.manual_seed(0)
    model = RelativeLoc(depth=18, hidden=64, bn_momentum=0.003)
    fc, bn = model.neck[0], model.neck[1]
    assert (fc.in_features, fc.out_features) == (2 * 512, 64)
    assert isinstance(bn, nn.BatchNorm1d) and bn.momentum == 0.003
    assert isinstance(model.neck[3], nn.Dropout) and model.neck[3].p == 0.5
    assert (model.head.in_features, model.head.out_features) == (64, 8)
    assert abs(model.head.weight.std().item() - 0.005) < 0.001 and abs(fc.weight.std().item() - 0.01) < 0.001


def test_param_groups_give_neck_and_head_their_weight_decay() -> None:
    model = RelativeLoc.from_config(TINY)
    groups = model.param_groups(TINY)
    assert [group["weight_decay"] for group in groups] == [1.0e-4, 5.0e-4]
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[0]["params"]} == backbone_ids
    head_ids = {id(p) for p in groups[1]["params"]}
    assert head_ids == {id(p) for p in [*model.neck.parameters(), *model.head.parameters()]}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


def test_unknown_method_arg_is_refused() -> None:
    with pytest.raises(SslzooError, match="hiden"):
        RelativeLoc.from_config({"backbone": {"depth": 18}, "method_args": {"hiden": 8}})


@pytest.mark.parametrize("name", ["relative-loc_resnet50_8xb64-steplr-70e_in1k", "relative-loc_resnet18_mini"])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["method"] == "relative_loc"
    entry = load_model_entry(CONFIG_DIR / f"{name}.yaml")  # reported numbers use the table columns
    assert entry.method == "relative_loc" and (entry.reported != {}) == (cfg["backbone"]["depth"] == 50)
    transform = RelativeLoc.views(cfg)
    patches = transform(Image.new("RGB", (96, 96), (30, 60, 90)))
    assert patches.shape == (9, 3, cfg["views"]["patch_size"], cfg["views"]["patch_size"])
    if cfg["backbone"]["depth"] == 18:
        model = RelativeLoc.from_config(cfg)
        assert [g["weight_decay"] for g in model.param_groups(cfg)] == [1.0e-4, 5.0e-4]
