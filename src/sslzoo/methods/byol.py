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

The networks, the EMA update and the symmetric loss are
:class:`~sslzoo.models.momentum_pair.MomentumPair` (shared with Triplet and ORL), the MLP
:class:`~sslzoo.models.mlp.MLP`, ``h`` :func:`~sslzoo.losses.negative_cosine`, the momentum
:func:`~sslzoo.runtime.schedules.cosine_momentum` and the two views
:func:`~sslzoo.data.transforms.view_pipeline`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sslzoo.data.transforms import TwoViews, view_pipeline
from sslzoo.models.momentum_pair import MomentumPair


class BYOL(MomentumPair):
    """Online backbone + projector + predictor and an EMA target backbone + projector.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone.
        conv_init: the backbone's conv init mode (``backbone.conv_init``).
        base_momentum: ``m0`` of the cosine momentum schedule.
        projector: :class:`~sslzoo.models.mlp.MLP` keyword arguments (``hidden``, ``out``,
            ``bias``, ``last_bias``, ``init``) for ``C -> hidden -> out``.
        predictor: the same for ``out -> hidden -> out``.
    """

    @staticmethod
    def views(cfg: dict) -> TwoViews:
        """The two asymmetric augmentation pipelines of ``cfg["views"]`` (see
        :data:`~sslzoo.data.transforms.BYOL_VIEW_KEYS`)."""
        views = cfg.get("views") or {}
        return TwoViews(view_pipeline(views, 0), view_pipeline(views, 1))

    def forward(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Symmetric loss over the two views.

        Args:
            batch: ``(view1 [B, 3, H, W], view2 [B, 3, H, W])``, the collated :class:`TwoViews`.

        Returns:
            ``loss`` = ``loss_scale * (pair_loss(o1, t2) + pair_loss(o2, t1))`` and ``momentum``
            (the current EMA momentum, detached).
        """
        view1, view2 = batch
        loss = self.branch_loss(self.predictor, view1, view2)
        return {"loss": loss, "momentum": torch.tensor(self.momentum, device=loss.device)}
