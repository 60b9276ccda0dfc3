"""BYOL: loss, EMA momentum schedule and update, frozen target, the two asymmetric views."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.transforms import functional as TF

from sslzoo.config import load_model_config
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.transforms import RandomGaussianBlur, view_pipeline
from sslzoo.errors import SslzooError
from sslzoo.methods.byol import BYOL
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


def tiny_byol(**kwargs: object) -> BYOL:
    torch.manual_seed(0)
    return BYOL(depth=18, projector=SMALL_MLP, predictor=SMALL_MLP, **kwargs)  # type: ignore[arg-type]


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine written out."""
    return (a * b).sum(1) / (a.pow(2).sum(1).sqrt() * b.pow(2).sum(1).sqrt())


def test_forward_loss_is_twice_the_sum_of_both_directions() -> None:
    model = tiny_byol()
    view1, view2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    out = model((view1, view2))
    with torch.no_grad():  # train-mode BN: the same inputs give the same outputs
        o1 = model.predictor(model.online_projection(view1))
        o2 = model.predictor(model.online_projection(view2))
        t1, t2 = model.target_projection(view1), model.target_projection(view2)
    by_hand = 2 * (-cos(o1, t2).mean() - cos(o2, t1).mean())
    assert out["loss"].item() == pytest.approx(by_hand.item(), abs=1e-5)
    assert -4.0 <= out["loss"].item() <= 4.0
    assert out["momentum"].item() == pytest.approx(0.99)


# 0.25: 1 - 0.01 (cos(pi / 4) + 1) / 2, where a linear ramp would give 0.9925
@pytest.mark.parametrize(
    ("progress", "momentum"), [(0.0, 0.99), (0.25, 0.9914644660940673), (0.5, 0.995), (1.0, 1.0)]
)
def test_ema_update_follows_the_cosine_momentum(progress: float, momentum: float) -> None:
    model = tiny_byol(base_momentum=0.99)
    with torch.no_grad():  # make online and target differ
        for param in model.backbone.parameters():
            param.add_(torch.randn_like(param))
        for param in model.projector.parameters():
            param.add_(torch.randn_like(param))
    online_before = [p.detach().clone() for p in [*model.backbone.parameters(), *model.projector.parameters()]]
    target_before = [p.detach().clone() for p in [*model.target_backbone.parameters(), *model.target_projector.parameters()]]
    predictor_before = [p.detach().clone() for p in model.predictor.parameters()]
    model.after_step(progress)
    assert model.momentum == pytest.approx(momentum, abs=1e-12)
    target_after = [*model.target_backbone.parameters(), *model.target_projector.parameters()]
    assert len(target_after) == len(online_before)
    for t_new, t_old, o_old in zip(target_after, target_before, online_before, strict=True):
        assert torch.allclose(t_new, momentum * t_old + (1 - momentum) * o_old, atol=1e-6)
    for o_new, o_old in zip([*model.backbone.parameters(), *model.projector.parameters()], online_before, strict=True):
        assert torch.equal(o_new, o_old)
    for p_new, p_old in zip(model.predictor.parameters(), predictor_before, strict=True):
        assert torch.equal(p_new, p_old)


def test_target_starts_as_a_copy_and_gets_no_gradient() -> None:
    model = tiny_byol()
    for online, target in zip(model.backbone.state_dict().values(), model.target_backbone.state_dict().values(), strict=True):
        assert torch.equal(online, target)
    out = model((torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)))
    out["loss"].backward()
    for param in [*model.target_backbone.parameters(), *model.target_projector.parameters()]:
        assert not param.requires_grad and param.grad is None
    for module in (model.backbone, model.projector, model.predictor):
        assert all(p.grad is not None for p in module.parameters())


def test_backbone_is_the_online_one_in_the_state_dict() -> None:
    model = tiny_byol()
    keys = list(model.state_dict())
    backbone_keys = [k for k in keys if k.startswith("backbone.")]
    assert backbone_keys == [f"backbone.{k}" for k in model.backbone.state_dict()]
    assert all(k.startswith(("backbone.", "projector.", "predictor.", "target_backbone.", "target_projector.")) for k in keys)


def test_reference_defaults_projector_and_predictor() -> None:
    model = BYOL.from_config({"backbone": {"depth": 18}})
    proj, pred = model.projector, model.predictor
    assert (proj[0].in_features, proj[0].out_features, proj[3].out_features) == (512, 4096, 256)
    assert (pred[0].in_features, pred[0].out_features, pred[3].out_features) == (256, 4096, 256)
    assert proj[0].bias is not None and proj[3].bias is None  # with_bias=True, with_last_bias=False


def square_image(size: int = 32) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def normalised(img: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


# every random step off except blur and solarize; scale 1 on a square image crops all of it
PLAIN = {
    "image_size": 32, "scale": [1.0, 1.0], "flip_p": 0.0, "color_jitter_p": 0.0, "grayscale_p": 0.0,
}


def test_views_differ_as_configured_solarize() -> None:
    img = square_image()
    transform = BYOL.views({"views": {**PLAIN, "blur_p": [0.0, 0.0], "solarize_p": [0.0, 1.0]}})
    view1, view2 = transform(img)
    assert torch.allclose(view1, normalised(img), atol=1e-6)
    assert torch.allclose(view2, normalised(ImageOps.solarize(img, 128)), atol=1e-6)
    assert not torch.allclose(view1, view2)


def test_views_differ_as_configured_blur() -> None:
    img = square_image()
    transform = BYOL.views({"views": {**PLAIN, "blur_p": [1.0, 0.0], "blur_sigma": [2.0, 2.0], "solarize_p": 0.0}})
    view1, view2 = transform(img)
    assert torch.allclose(view2, normalised(img), atol=1e-6)
    assert view1.std() < 0.8 * view2.std()  # blurred noise loses contrast


def test_reference_views_have_asymmetric_blur_and_solarize() -> None:
    first, second = view_pipeline({}, 0), view_pipeline({}, 1)
    blur = [t for pipeline in (first, second) for t in pipeline.transforms if isinstance(t, RandomGaussianBlur)]
    assert [b.p for b in blur] == [1.0, 0.1] and blur[0].sigma == (0.1, 2.0)
    solarize = [t for pipeline in (first, second) for t in pipeline.transforms if type(t).__name__ == "RandomSolarize"]
    assert [s.p for s in solarize] == [0.0, 0.2] and solarize[0].threshold == 128
    view1, view2 = BYOL.views({})(square_image(64))
    assert view1.shape == view2.shape == (3, 224, 224)


def test_bad_config_keys_are_refused() -> None:
    with pytest.raises(SslzooError, match="method_args.projector"):
        BYOL.from_config({"backbone": {"depth": 18}, "method_args": {"projector": {"hiden": 3}}})
    with pytest.raises(SslzooError, match="views"):
        BYOL.views({"views": {"blur": 1.0}})
    with pytest.raises(SslzooError, match="solarize_p"):
        BYOL.views({"views": {"solarize_p": [0.0, 0.1, 0.2]}})


@pytest.mark.parametrize("name", ["byol_resnet50_8xb32-accum16-coslr-200e_in1k", "byol_resnet18_mini"])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["method"] == "byol"
    entry = load_model_entry(CONFIG_DIR / f"{name}.yaml")  # reported numbers use the table columns
    assert entry.method == "byol" and (entry.reported != {}) == (cfg["backbone"]["depth"] == 50)
    view1, view2 = BYOL.views(cfg)(square_image(96))
    size = cfg["views"]["image_size"]
    assert view1.shape == view2.shape == (3, size, size)
    if cfg["backbone"]["depth"] == 18:
        model = BYOL.from_config(cfg)
        out = model((view1.unsqueeze(0).repeat(2, 1, 1, 1), view2.unsqueeze(0).repeat(2, 1, 1, 1)))
        assert torch.isfinite(out["loss"])
