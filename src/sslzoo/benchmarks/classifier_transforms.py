"""Train and test transforms of the supervised benchmarks (linear evaluation, semi-supervised
fine-tuning): PIL image -> normalised tensor.

:func:`build_train_transform` builds the augmentation of a protocol's ``train_transform``
(:class:`~sslzoo.benchmarks.linear_protocol.TrainTransformConfig`): RandomResizedCrop (ImageNet,
iNat18) or Resize + CenterCrop + RandomCrop (Places205), flip, ColorJitter and the AlexNet PCA
lighting noise :class:`Lighting` (mmselfsup 0.x ``mmselfsup/datasets/pipelines/transforms.py``
``Lighting``); :func:`build_eval_transform` the Resize + CenterCrop of ``eval_transform``. The
pipelines are those of mmselfsup 0.x ``configs/benchmarks/classification``
(``imagenet/resnet50_mhead_linear-8xb32-steplr-90e_in1k.py``, ``places205/...-28e_places205.py``,
``inaturalist2018/...-84e_inat18.py``; PROTOCOLS.md "Linear evaluation").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision import transforms

from sslzoo.benchmarks.linear_protocol import EvalTransformConfig, TrainTransformConfig
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD

# PCA of ImageNet RGB pixels in [0, 1] (Krizhevsky et al. 2012, as fb.resnet.torch and
# mmselfsup 0.x mmselfsup/datasets/pipelines/transforms.py Lighting): eigenvalues and the
# eigenvectors as COLUMNS (row = R, G, B).
IMAGENET_PCA_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class Lighting:
    """AlexNet-style PCA lighting noise on an RGB tensor ``[3, H, W]`` in [0, 1] (before Normalize).

    Draws ``alpha = alphastd * randn(3)`` from torch's global generator (seeded per epoch and
    worker) and adds the same offset ``eigvec @ (alpha * eigval)`` to every pixel.
    """

    def __init__(self, alphastd: float = 0.1) -> None:
        self.alphastd = alphastd
        self.eigval = torch.tensor(IMAGENET_PCA_EIGVAL)
        self.eigvec = torch.tensor(IMAGENET_PCA_EIGVEC)

    def offset(self, alpha: torch.Tensor) -> torch.Tensor:
        """The RGB offset ``[3]`` for the coefficients ``alpha`` ``[3]``."""
        return self.eigvec @ (alpha * self.eigval)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.alphastd == 0:
            return image
        alpha = torch.randn(3) * self.alphastd
        return image + self.offset(alpha).to(image.dtype).view(3, 1, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alphastd={self.alphastd})"


def build_train_transform(cfg: TrainTransformConfig) -> Callable[[Any], torch.Tensor]:
    """PIL image -> normalised ``[3, size, size]`` tensor with the protocol's augmentation."""
    steps: list[Callable[[Any], Any]]
    if cfg.crop == "random_resized":
        steps = [transforms.RandomResizedCrop(cfg.size)]
    else:
        steps = [
            transforms.Resize(cfg.resize),
            transforms.CenterCrop(cfg.resize),
            transforms.RandomCrop(cfg.size),
        ]
    if cfg.flip:
        steps.append(transforms.RandomHorizontalFlip())
    if cfg.color_jitter is not None:
        steps.append(transforms.ColorJitter(*cfg.color_jitter))
    steps.append(transforms.ToTensor())
    if cfg.lighting_std > 0:
        steps.append(Lighting(cfg.lighting_std))
    steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return transforms.Compose(steps)


def build_eval_transform(cfg: EvalTransformConfig) -> Callable[[Any], torch.Tensor]:
    """PIL image -> Resize(resize), CenterCrop(crop), normalised ``[3, crop, crop]`` tensor."""
    return transforms.Compose(
        [
            transforms.Resize(cfg.resize),
            transforms.CenterCrop(cfg.crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
