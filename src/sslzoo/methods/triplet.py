"""Triplet: BYOL's architecture trained with a truncated triplet loss and random input resizing.

Wang, Wang, Wang, Torr, Lin, "Solving Inefficiency of Self-supervised Representation
Learning", ICCV 2021; reference wanggrun/triplet (openselfsup/models/triplet.py,
openselfsup/models/heads/triplet_loss_head.py,
configs/selfsup/triplet/r50_bs4096_accumulate4_ep1000_fp16_triplet_gpu3090.py).

Online/target networks, EMA momentum and views are :class:`~sslzoo.methods.byol.BYOL`'s. For
one (prediction ``p``, target ``t``) pair over the per-process batch of ``n``
(:func:`~sslzoo.losses.truncated_triplet_loss`):

- ``d_ij = -2 cos(p_i, t_j)``; the positive distance is ``d_ii``;
- the negative distance of row ``i`` is the mean of its ``negatives`` (10) smallest
  off-diagonal distances after dropping the ``skip_hardest`` (1) smallest;
- ``loss = mean_i max(0, -(d_an - gamma d_ap) + margin)``, ``MarginRankingLoss(margin=100)``
  with ``gamma = 2`` (``|d| <= 2``, so the hinge never clips).

The total is ``pair_loss(o1, t2) + pair_loss(o2, t1)`` (no factor 2, as the reference).

Random input resizing (reference ``forward_train``): each of the four network inputs of an
iteration (online view 1, online view 2, target view 2, target view 1) is resized, the whole
batch to one square size drawn uniformly from the integers in ``online`` [96, 224] resp.
``target`` [128, 224], by ``F.interpolate(mode="bilinear")`` without antialiasing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sslzoo.config import section_with_defaults
from sslzoo.errors import SslzooError
from sslzoo.losses import truncated_triplet_loss
from sslzoo.methods.byol import BYOL

LOSS_KEYS: dict[str, Any] = {"margin": 100.0, "gamma": 2.0, "negatives": 10, "skip_hardest": 1}
RESIZE_KEYS: dict[str, Any] = {
    "online": [96, 224],
    "target": [128, 224],
    "mode": "bilinear",
    "antialias": False,
}
# wanggrun/triplet: NonLinearNeckSimCLR(with_bias=True) on both fc layers; projector
# init_weights('kaiming'), predictor init_weights('normal') (std 0.01)
TRIPLET_PROJECTOR: dict[str, Any] = {"bias": True, "last_bias": True, "init": "kaiming"}
TRIPLET_PREDICTOR: dict[str, Any] = {"bias": True, "last_bias": True, "init": "normal"}


def random_size(bounds: Sequence[int], generator: torch.Generator | None = None) -> int:
    """An integer uniform in ``[bounds[0], bounds[1]]`` (both included)."""
    lo, hi = int(bounds[0]), int(bounds[1])
    return int(torch.randint(lo, hi + 1, (1,), generator=generator).item())


class Triplet(BYOL):
    """BYOL with the truncated triplet loss and random input resizing.

    Args:
        loss: ``margin``, ``gamma``, ``negatives``, ``skip_hardest`` of
            :func:`truncated_triplet_loss`.
        resize: ``online`` and ``target`` size ranges ``[lo, hi]`` (inclusive), ``mode`` of
            ``F.interpolate`` and ``antialias``; ``online: null`` / ``target: null`` turns
            resizing off for that network.
        **byol: :class:`BYOL` arguments; projector and predictor default to the reference's
            bias on both fc layers and its init (``TRIPLET_PROJECTOR``, ``TRIPLET_PREDICTOR``).
    """

    loss_scale = 1.0

    def __init__(
        self,
        loss: dict[str, Any] | None = None,
        resize: dict[str, Any] | None = None,
        **byol: Any,
    ) -> None:
        byol["projector"] = {**TRIPLET_PROJECTOR, **(byol.get("projector") or {})}
        byol["predictor"] = {**TRIPLET_PREDICTOR, **(byol.get("predictor") or {})}
        super().__init__(**byol)
        self.loss_args = section_with_defaults(loss, LOSS_KEYS, "method_args.loss")
        self.resize_args = section_with_defaults(resize, RESIZE_KEYS, "method_args.resize")
        for key in ("online", "target"):
            bounds = self.resize_args[key]
            if bounds is not None and (len(bounds) != 2 or not 0 < int(bounds[0]) <= int(bounds[1])):
                raise SslzooError(
                    f"model config method_args.resize.{key} = {bounds}: give [min, max] sizes with 0 < min <= max"
                )

    @classmethod
    def method_keys(cls) -> dict[str, Any]:
        return {**super().method_keys(), "loss": {}, "resize": {}}

    @classmethod
    def from_config(cls, cfg: dict) -> Triplet:
        """Build from a model config; ``method_args``: BYOL's plus ``loss`` and ``resize``.

        The truncation needs ``negatives + 1`` samples per process: a smaller
        ``train.batch_size`` raises :class:`SslzooError`."""
        method = cls(**cls.method_kwargs(cfg))
        batch_size = cfg.get("train", {}).get("batch_size")
        needed = int(method.loss_args["negatives"]) + 1
        if batch_size is not None and batch_size < needed:
            raise SslzooError(
                f"model config train.batch_size = {batch_size}: the truncated triplet loss mines "
                f"method_args.loss.negatives = {needed - 1} negatives per process; use a batch of at least {needed}"
            )
        return method

    def _resize(self, images: torch.Tensor, bounds: Sequence[int] | None) -> torch.Tensor:
        if bounds is None:
            return images
        size = random_size(bounds)  # the global torch RNG, which the trainer seeds per epoch and rank
        mode = self.resize_args["mode"]
        align = False if mode in ("bilinear", "bicubic") else None
        return F.interpolate(
            images,
            size=(size, size),
            mode=mode,
            align_corners=align,
            antialias=bool(self.resize_args["antialias"]),
        )

    def online_input(self, images: torch.Tensor) -> torch.Tensor:
        """The view resized to a random size in ``resize.online``."""
        return self._resize(images, self.resize_args["online"])

    def target_input(self, images: torch.Tensor) -> torch.Tensor:
        """The view resized to a random size in ``resize.target``."""
        return self._resize(images, self.resize_args["target"])

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:func:`truncated_triplet_loss` with the configured ``loss`` arguments."""
        return truncated_triplet_loss(
            prediction,
            target,
            margin=float(self.loss_args["margin"]),
            gamma=float(self.loss_args["gamma"]),
            negatives=int(self.loss_args["negatives"]),
            skip_hardest=int(self.loss_args["skip_hardest"]),
        )
