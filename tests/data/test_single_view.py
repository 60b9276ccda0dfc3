"""The single-view pipeline of NPID and the supervised baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.single_view import single_view_pipeline
from sslzoo.errors import SslzooError

# every random step off; scale 1 on a square image of the crop size keeps it whole
PLAIN = {
    "image_size": 24,
    "scale": [1.0, 1.0],
    "grayscale_p": 0.0,
    "color_jitter": {},
    "color_jitter_p": 0.0,
    "flip_p": 0.0,
}


def image(size: int = 24) -> Image.Image:
    rng = np.random.default_rng(2)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def normalised(img: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def test_plain_settings_give_the_normalised_image() -> None:
    torch.testing.assert_close(single_view_pipeline({}, PLAIN)(image()), normalised(image()))


def test_flip_and_grey_as_configured() -> None:
    flipped = single_view_pipeline({"flip_p": 1.0}, PLAIN)(image())
    torch.testing.assert_close(flipped, normalised(TF.hflip(image())))
    grey = single_view_pipeline({"grayscale_p": 1.0}, PLAIN)(image())
    torch.testing.assert_close(grey, normalised(TF.rgb_to_grayscale(image(), num_output_channels=3)))


def test_jitter_applies_with_its_probability() -> None:
    jittered = single_view_pipeline({"color_jitter": {"brightness": 0.9}, "color_jitter_p": 1.0}, PLAIN)
    plain = single_view_pipeline({"color_jitter": {"brightness": 0.9}, "color_jitter_p": 0.0}, PLAIN)
    torch.manual_seed(0)
    assert not torch.allclose(jittered(image()), normalised(image()))
    torch.testing.assert_close(plain(image()), normalised(image()))


def test_steps_in_the_reference_order_grey_before_jitter() -> None:
    steps = single_view_pipeline({}, PLAIN).transforms
    assert [type(step) for step in steps] == [
        transforms.RandomResizedCrop,
        transforms.RandomGrayscale,
        transforms.RandomApply,
        transforms.RandomHorizontalFlip,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert steps[0].interpolation == transforms.InterpolationMode.BILINEAR


@pytest.mark.parametrize(
    ("views", "key"),
    [
        ({"blur_p": 0.5}, "unknown key"),
        ({"image_size": 0}, "views.image_size"),
        ({"scale": [0.5, 0.2]}, "views.scale"),
        ({"flip_p": 2.0}, "views.flip_p"),
        ({"color_jitter": {"gamma": 0.1}}, "views.color_jitter"),
    ],
)
def test_bad_values_name_the_key(views: dict, key: str) -> None:
    with pytest.raises(SslzooError, match=key):
        single_view_pipeline(views, PLAIN)
