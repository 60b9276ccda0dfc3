"""SimSiam: one network predicts its own projection of the other view, behind a stop-gradient.

Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021, as configured by
MMSelfSup 0.x ``simsiam_resnet50_8xb32-coslr-{100,200}e_in1k`` (mmselfsup/models/algorithms/simsiam.py,
mmselfsup/models/necks/nonlinear_neck.py, mmselfsup/models/heads/latent_pred_head.py,
mmselfsup/core/hooks/simsiam_hook.py, configs/selfsup/_base_/models/simsiam.py,
configs/selfsup/_base_/datasets/imagenet_mocov2.py):

- encoder: backbone -> global avgpool ``[B, C]`` -> projector ``C -> 2048 (BN, ReLU) -> 2048
  (BN, ReLU) -> 2048 (BN without affine)``, no biases (``NonLinearNeck(num_layers=3,
  with_last_bn_affine=False)``) -> ``z [B, 2048]``;
- predictor ``2048 -> 512 (BN, ReLU) -> 2048``, bias on the output fc only
  (``NonLinearNeck(with_bias=False, with_last_bn=False, with_last_bias=True)``) -> ``p [B, 2048]``;
- loss ``0.5 (h(p1, sg(z2)) + h(p2, sg(z1)))``, ``h = -mean cos`` and ``sg`` the stop-gradient:
  no gradient flows through the branch that gives the target. It lies in [-1, 1];
- the predictor's lr is fixed at the base lr while the rest follows the cosine schedule
  (``fix_pred_lr``: :meth:`SimSiam.param_groups` marks its group ``fix_lr``, which
  :func:`~sslzoo.runtime.schedules.per_group` leaves alone; the reference's ``SimSiamHook``).

Both views come from the same pipeline (MoCo v2's augmentation,
:func:`~sslzoo.data.transforms.view_pipeline` with one value per key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.data.transforms import TwoViews, view_pipeline
from sslzoo.errors import SslzooError
from sslzoo.losses import negative_cosine
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args
from sslzoo.models.mlp import MLP

# method_args keys -> the reference's values (configs/selfsup/_base_/models/simsiam.py and
# simsiam_resnet50_8xb32-coslr-200e_in1k.py)
METHOD_KEYS: dict[str, Any] = {"projector": {}, "predictor": {}, "fix_pred_lr": True}
PROJECTOR_KEYS: dict[str, Any] = {"hidden": 2048, "out": 2048}
PREDICTOR_KEYS: dict[str, Any] = {"hidden": 512}


class Projector(nn.Sequential):
    """``[N, C]`` -> ``[N, out]``: fc -> BN -> ReLU -> fc -> BN -> ReLU -> fc -> BN (no affine),
    fcs without bias: mmselfsup 0.x ``NonLinearNeck(num_layers=3, with_bias=False,
    with_last_bn_affine=False)``, PyTorch's default Linear init, BN weight 1 and bias 0."""

    # our layers under the reference neck's names (sslzoo.runtime.optim.reference_names)
    REFERENCE_NAMES: ClassVar[dict[str, str]] = {
        "0": "fc0", "1": "bn0", "3": "fc1", "4": "bn1", "6": "fc2", "7": "bn2",
    }  # fmt: skip

    def __init__(self, in_channels: int, hidden: int = 2048, out: int = 2048) -> None:
        super().__init__(
            nn.Linear(in_channels, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out, bias=False),
            nn.BatchNorm1d(out, affine=False),
        )


class SimSiam(nn.Module):
    """Backbone + projector (the encoder) + predictor; the loss stops the target's gradient.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone (True in the reference).
        conv_init: the backbone's conv init mode (``backbone.conv_init``).
        projector: ``hidden`` and ``out`` of :class:`Projector`.
        predictor: ``hidden`` of the predictor ``out -> hidden -> out``.
        fix_pred_lr: keep the predictor's lr at the base lr (:meth:`param_groups`).
    """

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = True,
        conv_init: str = DEFAULT_CONV_INIT,
        projector: Mapping[str, Any] | None = None,
        predictor: Mapping[str, Any] | None = None,
        fix_pred_lr: bool = True,
    ) -> None:
        super().__init__()
        projector = section_with_defaults(projector, PROJECTOR_KEYS, "method_args.projector")
        predictor = section_with_defaults(predictor, PREDICTOR_KEYS, "method_args.predictor")
        if min(int(projector["hidden"]), int(projector["out"]), int(predictor["hidden"])) < 1:
            raise SslzooError("model config method_args: projector and predictor sizes must be at least 1")
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        self.projector = Projector(
            self.backbone.out_channels, int(projector["hidden"]), int(projector["out"])
        )
        out = int(projector["out"])
        self.predictor = MLP(out, hidden=int(predictor["hidden"]), out=out, bias=False, last_bias=True)
        self.fix_pred_lr = bool(fix_pred_lr)

    @classmethod
    def from_config(cls, cfg: dict) -> SimSiam:
        """Build from a model config: ``backbone`` and ``method_args`` (:data:`METHOD_KEYS`)."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        return cls(
            **backbone_args(cfg),
            **args,
        )

    @staticmethod
    def views(cfg: dict) -> TwoViews:
        """Two draws of the one pipeline of ``cfg["views"]`` (keys of
        :data:`~sslzoo.data.transforms.BYOL_VIEW_KEYS`, one value each)."""
        views = dict(cfg.get("views") or {})
        for key in ("blur_p", "solarize_p"):
            if isinstance(views.get(key), (list, tuple)):
                raise SslzooError(
                    f"model config views.{key}: SimSiam's two views share one value, got {views[key]}"
                )
        return TwoViews(view_pipeline(views, 0), view_pipeline(views, 0))

    def param_groups(self, cfg: dict) -> list[dict[str, Any]]:
        """Everything but the predictor, then the predictor, marked ``fix_lr`` when
        ``fix_pred_lr`` (the reference's ``paramwise_options={'predictor': dict(fix_lr=True)}``);
        the first group's lr is the one the training log shows."""
        predictor = {id(p) for p in self.predictor.parameters()}
        rest = [p for p in self.parameters() if id(p) not in predictor]
        return [
            {"params": rest},
            {"params": list(self.predictor.parameters()), "fix_lr": self.fix_pred_lr},
        ]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``z [N, out]``: backbone, global avgpool, projector."""
        return self.projector(self.backbone(images)[0].mean(dim=(2, 3)))

    def forward(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Symmetric loss over the two views.

        Args:
            batch: ``(view1 [B, 3, H, W], view2 [B, 3, H, W])``, the collated :class:`TwoViews`.

        Returns:
            ``loss = 0.5 (h(p1, sg(z2)) + h(p2, sg(z1)))`` (:func:`~sslzoo.losses.negative_cosine`
            detaches its target).
        """
        view1, view2 = batch
        z1, z2 = self.encode(view1), self.encode(view2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
        return {"loss": loss}
