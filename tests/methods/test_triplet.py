"""Triplet: truncated triplet loss against a naive loop, symmetry, random input resizing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.config import load_model_config
from sslzoo.errors import SslzooError
from sslzoo.losses import truncated_triplet_loss
from sslzoo.methods.byol import BYOL
from sslzoo.methods.triplet import Triplet, random_size
from sslzoo.tables import load_model_entry

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
SMALL_MLP = {"hidden": 32, "out": 8}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def naive_triplet_loss(
    prediction: torch.Tensor, target: torch.Tensor, margin: float, gamma: float, negatives: int, skip: int
) -> float:
    """The loss written out row by row in plain Python floats."""
    n = prediction.shape[0]
    p = [row / row.norm() for row in prediction.double()]
    t = [row / row.norm() for row in target.double()]
    total = 0.0
    for i in range(n):
        d_ap = -2.0 * float(p[i] @ t[i])
        others = sorted(-2.0 * float(p[i] @ t[j]) for j in range(n) if j != i)
        kept = others[:negatives][skip:]
        d_an = sum(kept) / len(kept)
        total += max(0.0, -(d_an - gamma * d_ap) + margin)
    return total / n


@pytest.mark.parametrize(
    ("n", "margin", "negatives", "skip"),
    [(16, 100.0, 10, 1), (11, 100.0, 10, 1), (13, 0.0, 10, 1), (12, 0.5, 4, 2), (9, 1.0, 3, 0)],
)
def test_truncated_triplet_loss_matches_a_naive_loop(n: int, margin: float, negatives: int, skip: int) -> None:
    generator = torch.Generator().manual_seed(n)
    prediction = torch.randn(n, 6, generator=generator)
    target = prediction + 0.8 * torch.randn(n, 6, generator=generator)
    loss = truncated_triplet_loss(prediction, target, margin=margin, gamma=2.0, negatives=negatives, skip_hardest=skip)
    expected = naive_triplet_loss(prediction, target, margin, 2.0, negatives, skip)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_reference_margin_never_clips() -> None:
    # |d| <= 2: loss = 100 + 2 d_ap - d_an exactly, i.e. 100 - 4 cos_pos + 2 mean cos_neg
    generator = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(12, 5, generator=generator), torch.randn(12, 5, generator=generator)
    loss = truncated_triplet_loss(prediction, target)
    assert 100.0 - 6.0 <= loss.item() <= 100.0 + 6.0


def test_loss_needs_enough_negatives() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        truncated_triplet_loss(torch.randn(10, 4), torch.randn(10, 4))
    with pytest.raises(SslzooError, match="train.batch_size"):
        Triplet.from_config({"backbone": {"depth": 18}, "train": {"batch_size": 8}})


def tiny_triplet(resize: dict | None = None) -> Triplet:
    torch.manual_seed(0)
    return Triplet(depth=18, projector=SMALL_MLP, predictor=SMALL_MLP, resize=resize)


def test_loss_is_symmetric_over_the_views() -> None:
    model = tiny_triplet(resize={"online": None, "target": None})
    view1, view2 = torch.randn(12, 3, 16, 16), torch.randn(12, 3, 16, 16)
    forward = model((view1, view2))["loss"]
    swapped = model((view2, view1))["loss"]
    assert forward.item() == pytest.approx(swapped.item(), rel=1e-6)
    with torch.no_grad():
        o1 = model.predictor(model.online_projection(view1))
        o2 = model.predictor(model.online_projection(view2))
        t1, t2 = model.target_projection(view1), model.target_projection(view2)
    by_hand = naive_triplet_loss(o1, t2, 100.0, 2.0, 10, 1) + naive_triplet_loss(o2, t1, 100.0, 2.0, 10, 1)
    assert forward.item() == pytest.approx(by_hand, rel=1e-5)


def test_random_size_covers_the_inclusive_range() -> None:
    generator = torch.Generator().manual_seed(0)
    sizes = {random_size([96, 100], generator) for _ in range(300)}
    assert sizes == {96, 97, 98, 99, 100}


def test_forward_resizes_inputs_inside_the_configured_ranges() -> None:
    model = tiny_triplet(resize={"online": [8, 12], "target": [13, 16]})
    seen: dict[str, list[tuple[int, int]]] = {"online": [], "target": []}
    model.backbone.register_forward_pre_hook(lambda _m, args: seen["online"].append(tuple(args[0].shape[-2:])))
    model.target_backbone.register_forward_pre_hook(lambda _m, args: seen["target"].append(tuple(args[0].shape[-2:])))
    batch = (torch.randn(11, 3, 16, 16), torch.randn(11, 3, 16, 16))
    with torch.no_grad():
        for _ in range(6):
            model(batch)
    assert len(seen["online"]) == len(seen["target"]) == 12  # two views per network per iteration
    for (height, width) in seen["online"]:
        assert height == width and 8 <= height <= 12
    for (height, width) in seen["target"]:
        assert height == width and 13 <= height <= 16
    assert len(set(seen["online"])) > 1  # drawn afresh, not fixed


def test_resize_is_bilinear_without_antialias() -> None:
    model = tiny_triplet(resize={"online": [8, 8], "target": [16, 16]})
    images = torch.randn(2, 3, 16, 16)
    expected = torch.nn.functional.interpolate(images, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(model.online_input(images), expected)
    assert torch.equal(model.target_input(images), images)  # 16 -> 16 bilinear is the identity


def test_triplet_reuses_byol_with_biased_mlps() -> None:
    model = Triplet.from_config({"backbone": {"depth": 18}, "train": {"batch_size": 32}})
    assert isinstance(model, BYOL) and type(model).views is BYOL.views
    assert model.projector[3].bias is not None and model.predictor[3].bias is not None
    assert model.loss_scale == 1.0
    model.after_step(0.5)
    assert model.momentum == pytest.approx(0.995)


@pytest.mark.parametrize(
    "name",
    [
        "triplet_resnet50_8xb128-amp-accum4-coslr-200e_in1k",
        "triplet_resnet50_8xb128-amp-accum4-coslr-800e_in1k",
        "triplet_resnet18_mini",
    ],
)
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["method"] == "triplet"
    entry = load_model_entry(CONFIG_DIR / f"{name}.yaml")  # reported numbers use the table columns
    assert entry.method == "triplet" and (entry.reported != {}) == (cfg["backbone"]["depth"] == 50)
    train = cfg["train"]
    if cfg["backbone"]["depth"] == 50:
        assert cfg["gpus"] * train["batch_size"] * train["accumulate"] == 4096
        assert train["optimizer"]["name"] == "lars" and train["amp"] is True
    rng = np.random.default_rng(0)
    view1, view2 = Triplet.views(cfg)(Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)))
    assert view1.shape == view2.shape
    if cfg["backbone"]["depth"] == 18:
        model = Triplet.from_config(cfg)
        lo, hi = model.resize_args["online"]
        assert lo <= hi <= cfg["views"]["image_size"]
