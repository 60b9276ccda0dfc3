"""BYOL: an online network predicts the projection of a slow-moving (EMA) target network.

Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, as configured by MMSelfSup 0.x
``byol_resnet50_8xb32-accum16-coslr-200e_in1k`` (mmselfsup/models/algorithms/byol.py,
mmselfsup/models/necks/nonlinear_neck.py, mmselfsup/models/heads/latent_pred_head.py,
mmselfsup/core/hooks/momentum_update_hook.py, configs/selfsup/_base_/datasets/imagenet_byol.py).

- online: backbone -> global avgpool -> projector ``C -> 4096 (BN, ReLU) -> 256`` (no last BN)
  -> predictor ``256 -> 4096 (BN, ReLU) -> 256``;
- target: a copy of backbone + projector, updated only by the exponential moving average
  ``t <- m t + (1 - m) o`` after each optimizer step, with
  ``m = 1 - (1 - m0) (cos(pi progress) + 1) / 2`` rising from ``m0`` (0.99) to 1 (parameters
  only; the target's BN running statistics follow its own forward passes, as in the reference);
- loss ``2 (h(o1, t2) + h(o2, t1))`` with ``h = -mean cos(prediction, target)``, exactly the
  reference's ``2. * (loss_1 + loss_2)``: it lies in [-4, 4]. The paper's
  ``sum (2 - 2 cos)`` is this plus the constant 4 (same gradients).

Projector/predictor biases are configurable: the reference's ``with_bias=True`` puts a bias on
the hidden fc and ``with_last_bias=False`` none on the output fc; ORL stage 1 does the same
(its ``NonLinearNeckSimCLR`` keeps ``fc0_bias=True``) with kaiming init, wanggrun/triplet has
one on both. ``self.backbone`` is the online backbone (the one extracted).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn
from torchvision import transforms

from sslzoo.config import section_with_defaults
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone

# views keys -> reference values (configs/selfsup/_base_/datasets/imagenet_byol.py); the
# two-element lists are (view 1, view 2).
VIEW_KEYS: dict[str, Any] = {
    "image_size": 224,
    "scale": [0.08, 1.0],
    "interpolation": "bicubic",
    "flip_p": 0.5,
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1},
    "color_jitter_p": 0.8,
    "grayscale_p": 0.2,
    "blur_sigma": [0.1, 2.0],
    "blur_p": [1.0, 0.1],
    "solarize_threshold": 128,
    "solarize_p": [0.0, 0.2],
}
MLP_KEYS: dict[str, Any] = {"hidden": 4096, "out": 256, "bias": True, "last_bias": False, "init": "default"}
METHOD_KEYS: dict[str, Any] = {"base_momentum": 0.99, "projector": {}, "predictor": {}}
INTERPOLATIONS = {
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "bicubic": transforms.InterpolationMode.BICUBIC,
}


# --------------------------------------------------------------------------- views


class RandomGaussianBlur:
    """With probability ``p``, PIL Gaussian blur with radius (std) uniform in ``sigma``
    (mmselfsup 0.x mmselfsup/datasets/pipelines/transforms.py ``GaussianBlur``)."""

    def __init__(self, sigma: Sequence[float], p: float) -> None:
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.p = float(p)

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.p <= 0 or torch.rand(()).item() >= self.p:
            return img
        lo, hi = self.sigma
        radius = lo + (hi - lo) * torch.rand(()).item()
        return img.filter(ImageFilter.GaussianBlur(radius=radius))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma}, p={self.p})"


def _pair(value: Any, key: str) -> tuple[Any, Any]:
    """A per-view setting: a two-element list (view 1, view 2) or one value for both."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise SslzooError(f"model config views.{key}: give one value or a list of two (view 1, view 2)")
        return value[0], value[1]
    return value, value


def view_pipeline(views: Mapping[str, Any], index: int) -> transforms.Compose:
    """The augmentation of view ``index`` (0 or 1) for the ``views`` config (keys of ``VIEW_KEYS``).

    RandomResizedCrop(image_size, scale, interpolation) -> flip -> ColorJitter with probability ->
    RandomGrayscale -> Gaussian blur -> solarize -> ToTensor -> Normalize(ImageNet).
    """
    views = section_with_defaults(views, VIEW_KEYS, "views")
    if views["interpolation"] not in INTERPOLATIONS:
        raise SslzooError(
            f"model config views.interpolation: {views['interpolation']!r} is not one of {sorted(INTERPOLATIONS)}"
        )
    jitter = section_with_defaults(views["color_jitter"], VIEW_KEYS["color_jitter"], "views.color_jitter")
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(
                int(views["image_size"]),
                scale=tuple(views["scale"]),
                interpolation=INTERPOLATIONS[views["interpolation"]],
            ),
            transforms.RandomHorizontalFlip(float(views["flip_p"])),
            transforms.RandomApply([transforms.ColorJitter(**jitter)], p=float(views["color_jitter_p"])),
            transforms.RandomGrayscale(float(views["grayscale_p"])),
            RandomGaussianBlur(views["blur_sigma"], _pair(views["blur_p"], "blur_p")[index]),
            transforms.RandomSolarize(
                float(views["solarize_threshold"]), p=float(_pair(views["solarize_p"], "solarize_p")[index])
            ),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class TwoViews:
    """Per-image transform: PIL image -> ``(view1 [3, S, S], view2 [3, S, S])`` from two pipelines."""

    def __init__(
        self, first: Callable[[Image.Image], torch.Tensor], second: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.first = first
        self.second = second

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.first(img), self.second(img)


# --------------------------------------------------------------------------- model


class MLP(nn.Sequential):
    """fc -> BatchNorm1d -> ReLU -> fc, no last BN: BYOL's projector and predictor.

    ``[N, in_channels]`` -> ``[N, out_channels]``. mmselfsup 0.x ``NonLinearNeck`` with
    ``num_layers=2, with_last_bn=False``.

    Args:
        bias: bias on the hidden fc (``with_bias``).
        last_bias: bias on the output fc (``with_last_bias``).
        init: ``default`` (PyTorch's Linear init, as mmselfsup), ``kaiming`` (normal, fan_in,
            ReLU gain, zero bias) or ``normal`` (std 0.01, zero bias), the last two being the
            projector and predictor init of wanggrun/triplet openselfsup/models/necks.py.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int = 4096,
        out: int = 256,
        bias: bool = True,
        last_bias: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__(
            nn.Linear(in_channels, hidden, bias=bias),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out, bias=last_bias),
        )
        if init not in ("default", "kaiming", "normal"):
            raise SslzooError(
                f"model config method_args: MLP init {init!r} is not one of default, kaiming, normal"
            )
        for layer in (self[0], self[3]):
            if init == "kaiming":
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            elif init == "normal":
                nn.init.normal_(layer.weight, std=0.01)
            if init != "default" and layer.bias is not None:
                nn.init.zeros_(layer.bias)


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``h = -mean_i cos(prediction_i, target_i)`` for ``[N, D]`` inputs, in float32; the target is
    detached (mmselfsup 0.x mmselfsup/models/heads/latent_pred_head.py ``LatentPredictHead``)."""
    p = F.normalize(prediction.float(), dim=1)
    t = F.normalize(target.detach().float(), dim=1)
    return -(p * t).sum(dim=1).mean()


def cosine_momentum(base_momentum: float, progress: float) -> float:
    """``m = 1 - (1 - m0) (cos(pi progress) + 1) / 2``: ``m0`` at progress 0, 1 at progress 1."""
    progress = min(max(float(progress), 0.0), 1.0)
    return 1.0 - (1.0 - base_momentum) * (math.cos(math.pi * progress) + 1.0) / 2.0


class BYOL(nn.Module):
    """Online backbone + projector + predictor and an EMA target backbone + projector.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone.
        base_momentum: ``m0`` of the cosine momentum schedule.
        projector: :class:`MLP` keyword arguments (``hidden``, ``out``, ``bias``, ``last_bias``,
            ``init``) for ``C -> hidden -> out``.
        predictor: the same for ``out -> hidden -> out``.
    """

    #: factor on ``pair_loss(o1, t2) + pair_loss(o2, t1)`` (the reference's ``2. * (...)``)
    loss_scale: float = 2.0

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        base_momentum: float = 0.99,
        projector: Mapping[str, Any] | None = None,
        predictor: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        projector = section_with_defaults(projector, MLP_KEYS, "method_args.projector")
        predictor = section_with_defaults(predictor, MLP_KEYS, "method_args.predictor")
        if not 0.0 <= base_momentum <= 1.0:
            raise SslzooError(f"model config method_args.base_momentum = {base_momentum}: must be in [0, 1]")
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual)
        self.projector = MLP(self.backbone.out_channels, **projector)
        self.predictor = MLP(int(projector["out"]), **predictor)
        self.target_backbone = copy.deepcopy(self.backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for param in self.target_parameters():
            param.requires_grad_(False)
        self.base_momentum = float(base_momentum)
        self.momentum = float(base_momentum)

    @classmethod
    def method_kwargs(cls, cfg: dict) -> dict[str, Any]:
        """Constructor arguments from a model config (``backbone`` and ``method_args``)."""
        args = section_with_defaults(cfg.get("method_args"), cls.method_keys(), "method_args")
        backbone = cfg.get("backbone", {})
        return {
            "depth": backbone.get("depth", 50),
            "zero_init_residual": backbone.get("zero_init_residual", False),
            **args,
        }

    @classmethod
    def method_keys(cls) -> dict[str, Any]:
        """The ``method_args`` keys this class takes, with the reference defaults."""
        return dict(METHOD_KEYS)

    @classmethod
    def from_config(cls, cfg: dict) -> BYOL:
        """Build from a model config; ``method_args``: ``base_momentum``, ``projector``, ``predictor``."""
        return cls(**cls.method_kwargs(cfg))

    @staticmethod
    def views(cfg: dict) -> TwoViews:
        """The two asymmetric augmentation pipelines of ``cfg["views"]`` (see ``VIEW_KEYS``)."""
        views = cfg.get("views") or {}
        return TwoViews(view_pipeline(views, 0), view_pipeline(views, 1))

    # ---- networks

    def online_parameters(self) -> list[nn.Parameter]:
        """Parameters the EMA reads from: online backbone then projector."""
        return list(self.backbone.parameters()) + list(self.projector.parameters())

    def target_parameters(self) -> list[nn.Parameter]:
        """Parameters the EMA writes, matching :meth:`online_parameters` one to one."""
        return list(self.target_backbone.parameters()) + list(self.target_projector.parameters())

    def online_projection(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> online projection ``[N, out]``."""
        return self.projector(self.backbone(images)[0].mean(dim=(2, 3)))

    @torch.no_grad()
    def target_projection(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> target projection ``[N, out]`` (no gradient)."""
        return self.target_projector(self.target_backbone(images)[0].mean(dim=(2, 3)))

    # ---- hooks a subclass may change

    def online_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the online network sees of a view (unchanged for BYOL)."""
        return images

    def target_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the target network sees of a view (unchanged for BYOL)."""
        return images

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of one (online prediction ``[N, D]``, target projection ``[N, D]``) pair: ``h``."""
        return negative_cosine(prediction, target)

    # ---- training

    def forward(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Symmetric loss over the two views.

        Args:
            batch: ``(view1 [B, 3, H, W], view2 [B, 3, H, W])``, the collated :class:`TwoViews`.

        Returns:
            ``loss`` = ``loss_scale * (pair_loss(o1, t2) + pair_loss(o2, t1))`` and ``momentum``
            (the current EMA momentum, detached).
        """
        view1, view2 = batch
        pred1 = self.predictor(self.online_projection(self.online_input(view1)))
        pred2 = self.predictor(self.online_projection(self.online_input(view2)))
        with torch.no_grad():
            target1 = self.target_projection(self.target_input(view1))
            target2 = self.target_projection(self.target_input(view2))
        loss = self.loss_scale * (self.pair_loss(pred1, target2) + self.pair_loss(pred2, target1))
        return {"loss": loss, "momentum": torch.tensor(self.momentum, device=loss.device)}

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """``target <- momentum * target + (1 - momentum) * online``, parameter by parameter."""
        targets, onlines = self.target_parameters(), self.online_parameters()
        if len(targets) != len(onlines):
            raise RuntimeError("target and online networks differ in their parameters")
        # one multi-tensor kernel per op instead of two per parameter (same arithmetic)
        torch._foreach_mul_(targets, momentum)
        torch._foreach_add_(targets, [p.detach() for p in onlines], alpha=1.0 - momentum)

    def after_step(self, progress: float) -> None:
        """Set the cosine momentum for ``progress`` (finished / total iterations) and update the
        target (mmselfsup 0.x mmselfsup/core/hooks/momentum_update_hook.py, which takes ``k / K``
        from the iterations finished before the step: one iteration earlier than here)."""
        self.momentum = cosine_momentum(self.base_momentum, progress)
        self.momentum_update(self.momentum)
