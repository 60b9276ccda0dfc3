"""The contrastive methods' views: the steps run in the listed order with the configured values,
as the three reference pipelines (SimCLR, MoCo v1, MoCo v2) list them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from sslzoo.config import load_model_config
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.contrastive_views import contrastive_pipeline, contrastive_views
from sslzoo.data.transforms import RandomGaussianBlur
from sslzoo.errors import SslzooError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"


def colour_image(size: int = 32) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def normalised(img: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def kinds(pipeline: transforms.Compose) -> list[str]:
    """The transform names in order, a RandomApply named by what it applies."""
    return [
        f"RandomApply({type(t.transforms[0]).__name__})"
        if isinstance(t, transforms.RandomApply)
        else type(t).__name__
        for t in pipeline.transforms
    ]


TAIL = ["ToTensor", "Normalize"]
# the reference's train_pipeline of each config, step by step
REFERENCE_ORDER = {
    "simclr_resnet50_8xb32-coslr-200e_in1k": [
        "RandomResizedCrop", "RandomHorizontalFlip", "RandomApply(ColorJitter)", "RandomGrayscale",
        "RandomGaussianBlur", *TAIL,
    ],
    "mocov1_resnet50_8xb32-steplr-200e_in1k": [
        "RandomResizedCrop", "RandomGrayscale", "RandomApply(ColorJitter)", "RandomHorizontalFlip", *TAIL,
    ],
    "mocov2_resnet50_8xb32-coslr-200e_in1k": [
        "RandomResizedCrop", "RandomApply(ColorJitter)", "RandomGrayscale", "RandomGaussianBlur",
        "RandomHorizontalFlip", *TAIL,
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFERENCE_ORDER))
def test_the_full_configs_build_the_reference_pipelines(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    pipeline = contrastive_pipeline(cfg["views"])
    assert kinds(pipeline) == REFERENCE_ORDER[name]
    views = cfg["views"]
    crop = pipeline.transforms[0]
    assert crop.size == (224, 224) and crop.scale == tuple(views["scale"])
    assert crop.interpolation == transforms.InterpolationMode.BILINEAR  # torchvision's default
    by_kind = dict(zip(kinds(pipeline), pipeline.transforms, strict=True))
    jitter = by_kind["RandomApply(ColorJitter)"]
    assert jitter.p == views["color_jitter_p"]
    colour = jitter.transforms[0]
    assert (colour.brightness, colour.contrast, colour.saturation) == tuple(
        (1 - views["color_jitter"][key], 1 + views["color_jitter"][key])
        for key in ("brightness", "contrast", "saturation")
    )
    assert colour.hue == (-views["color_jitter"]["hue"], views["color_jitter"]["hue"])
    assert by_kind["RandomGrayscale"].p == views["grayscale_p"]
    if "RandomGaussianBlur" in by_kind:
        blur = by_kind["RandomGaussianBlur"]
        assert (blur.sigma, blur.p) == (tuple(views["blur_sigma"]), views["blur_p"])
    view1, view2 = contrastive_views(views)(colour_image(64))
    assert view1.shape == view2.shape == (3, 224, 224)
    assert not torch.equal(view1, view2)  # two independent draws


# every random step certain or off; scale 1 on a square image crops all of it
CERTAIN = {"image_size": 32, "scale": [1.0, 1.0], "color_jitter_p": 1.0, "grayscale_p": 1.0}
HUE_ONLY = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.5}


def test_grayscale_before_jitter_leaves_the_hue_shift_nothing_to_do() -> None:
    """MoCo v1's order: a grey image has no hue to shift, so the view is the grey image."""
    img = colour_image()
    torch.manual_seed(0)
    grey_first = contrastive_pipeline(
        {**CERTAIN, "steps": ["crop", "grayscale", "jitter"], "color_jitter": HUE_ONLY}
    )(img)
    grey = TF.to_grayscale(img, num_output_channels=3)
    torch.testing.assert_close(grey_first, normalised(grey), atol=0.02, rtol=0)
    torch.manual_seed(0)
    jitter_first = contrastive_pipeline(
        {**CERTAIN, "steps": ["crop", "jitter", "grayscale"], "color_jitter": HUE_ONLY}
    )(img)
    assert (jitter_first - normalised(grey)).abs().max() > 0.2  # the shifted colours grey differently


def test_steps_left_out_are_not_applied() -> None:
    img = colour_image()
    whole = {"image_size": 32, "scale": [1.0, 1.0]}
    plain = contrastive_pipeline({**whole, "steps": ["crop"]})(img)
    torch.testing.assert_close(plain, normalised(img), atol=1e-6, rtol=0)
    blurred = contrastive_pipeline(
        {**whole, "steps": ["crop", "blur"], "blur_p": 1.0, "blur_sigma": [2.0, 2.0]}
    )
    assert isinstance(blurred.transforms[1], RandomGaussianBlur)
    assert blurred(img).std() < 0.8 * plain.std()


@pytest.mark.parametrize(
    ("views", "message"),
    [
        ({"steps": ["crop", "solarize"]}, "views.steps"),
        ({"steps": ["flip", "crop"]}, "crop first"),
        ({"steps": ["crop", "flip", "flip"]}, "at most once"),
        ({"steps": ["crop", "flip"], "blur_p": 0.5}, r"\['blur_p'\] belong to steps missing"),
        ({"blur": 0.5}, "unknown key"),
        ({"color_jitter": {"hue": 0.1, "gamma": 1}}, "views.color_jitter"),
        ({"interpolation": "nearest"}, "views.interpolation"),
    ],
)
def test_bad_views_are_refused(views: dict, message: str) -> None:
    with pytest.raises(SslzooError, match=message):
        contrastive_pipeline(views)
