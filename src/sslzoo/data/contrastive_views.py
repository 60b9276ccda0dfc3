"""The symmetric two-view augmentation of the contrastive methods (SimCLR, MoCo v1, MoCo v2).

Both views of an image come from the same pipeline (two independent draws), whose steps run in
the order the reference lists them; the references differ in that order as well as in their
values:

- SimCLR (mmselfsup 0.x configs/selfsup/_base_/datasets/imagenet_simclr.py):
  crop, flip, jitter (p 0.8), grayscale, blur;
- MoCo v1 (configs/selfsup/_base_/datasets/imagenet_mocov1.py): crop, grayscale, jitter
  (always applied), flip; grayscale before jitter, so hue and saturation do nothing to a grey view;
- MoCo v2 (configs/selfsup/_base_/datasets/imagenet_mocov2.py): crop, jitter (p 0.8),
  grayscale, blur, flip.

``views.steps`` lists the steps of the pipeline in order (``crop`` first: it fixes the output
size); each is followed by ToTensor and the ImageNet Normalize. The reference's
``RandomResizedCrop`` is torchvision's (bilinear unless told otherwise), its ``GaussianBlur``
PIL's blur of a radius uniform in ``blur_sigma`` (:class:`~sslzoo.data.transforms.RandomGaussianBlur`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image
from torchvision import transforms

from sslzoo.config import section_with_defaults
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.transforms import INTERPOLATIONS, RandomGaussianBlur, TwoViews
from sslzoo.errors import SslzooError

# views keys -> SimCLR's values (configs/selfsup/_base_/datasets/imagenet_simclr.py)
CONTRASTIVE_VIEW_KEYS: dict[str, Any] = {
    "image_size": 224,
    "scale": [0.08, 1.0],
    "interpolation": "bilinear",
    "steps": ["crop", "flip", "jitter", "grayscale", "blur"],
    "flip_p": 0.5,
    "color_jitter": {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2},
    "color_jitter_p": 0.8,
    "grayscale_p": 0.2,
    "blur_sigma": [0.1, 2.0],
    "blur_p": 0.5,
}
# step -> the views keys only it reads (crop's are always read)
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "crop": ("image_size", "scale", "interpolation"),
    "flip": ("flip_p",),
    "jitter": ("color_jitter", "color_jitter_p"),
    "grayscale": ("grayscale_p",),
    "blur": ("blur_sigma", "blur_p"),
}


def _check_steps(given: Mapping[str, Any], steps: list[str]) -> None:
    """``steps``: known names, each once, ``crop`` first; no key of a step left out is given."""
    unknown = [step for step in steps if step not in STEP_KEYS]
    if unknown or len(set(steps)) != len(steps) or not steps or steps[0] != "crop":
        raise SslzooError(
            f"model config views.steps = {steps}: list each of {list(STEP_KEYS)} at most once, "
            "in the order the reference applies them, crop first"
        )
    unused = sorted(
        key for step, keys in STEP_KEYS.items() if step not in steps for key in keys if key in given
    )
    if unused:
        raise SslzooError(
            f"model config views: {unused} belong to steps missing from views.steps {steps}; "
            "drop the keys or add their step"
        )


def contrastive_pipeline(views: Mapping[str, Any] | None) -> transforms.Compose:
    """One view's augmentation for the ``views`` config (keys of :data:`CONTRASTIVE_VIEW_KEYS`):
    the listed ``steps`` in order, then ToTensor and Normalize(ImageNet).

    PIL RGB image -> float tensor ``[3, image_size, image_size]``.
    """
    given = dict(views or {})
    cfg = section_with_defaults(given, CONTRASTIVE_VIEW_KEYS, "views")
    steps = [str(step) for step in cfg["steps"]]
    _check_steps(given, steps)
    if cfg["interpolation"] not in INTERPOLATIONS:
        raise SslzooError(
            f"model config views.interpolation: {cfg['interpolation']!r} is not one of {sorted(INTERPOLATIONS)}"
        )
    jitter = section_with_defaults(
        cfg["color_jitter"], CONTRASTIVE_VIEW_KEYS["color_jitter"], "views.color_jitter"
    )
    build: dict[str, Callable[[], Callable[[Image.Image], Image.Image]]] = {
        "crop": lambda: transforms.RandomResizedCrop(
            int(cfg["image_size"]),
            scale=tuple(cfg["scale"]),
            interpolation=INTERPOLATIONS[cfg["interpolation"]],
        ),
        "flip": lambda: transforms.RandomHorizontalFlip(float(cfg["flip_p"])),
        "jitter": lambda: transforms.RandomApply(
            [transforms.ColorJitter(**jitter)], p=float(cfg["color_jitter_p"])
        ),
        "grayscale": lambda: transforms.RandomGrayscale(float(cfg["grayscale_p"])),
        "blur": lambda: RandomGaussianBlur(cfg["blur_sigma"], float(cfg["blur_p"])),
    }
    return transforms.Compose(
        [build[step]() for step in steps]
        + [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def contrastive_views(views: Mapping[str, Any] | None) -> TwoViews:
    """PIL image -> ``(view1 [3, S, S], view2 [3, S, S])``, two draws of :func:`contrastive_pipeline`."""
    pipeline = contrastive_pipeline(views)
    return TwoViews(pipeline, pipeline)
