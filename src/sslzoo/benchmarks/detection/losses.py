"""Box-regression losses of the detectors: torchvision's smooth L1, or L1 (protocol ``model.box_loss``).

torchvision's RPN and box head regress with a smooth L1 loss of ``beta = 1/9``, summed over the
positive samples and divided by the number of sampled anchors (RPN) or RoIs (box head).
MMDetection's configs of MMSelfSup's benchmarks (``configs/benchmarks/mmdetection/_base_/models/
faster_rcnn_r50_c4.py``, MMDetection ``configs/_base_/models/mask-rcnn_r50_fpn.py``) use
``L1Loss(loss_weight=1.0)`` for both, with the same normalisation (``avg_factor`` = sampled
anchors, resp. sampled RoIs); detectron2's defaults (``RPN.SMOOTH_L1_BETA`` and
``ROI_BOX_HEAD.SMOOTH_L1_BETA`` 0) are L1 too. ``beta = 0`` makes PyTorch's smooth L1 the L1 loss.

:func:`set_box_loss` switches a built torchvision detector to L1: its ``rpn`` and ``roi_heads``
become :class:`L1RegionProposalNetwork` / :class:`L1RoIHeads`, subclasses without state of
their own (the weights, the state dict and DDP are unaffected).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision.models.detection.roi_heads as roi_heads_module
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork

from sslzoo.errors import SslzooError

SMOOTH_L1_BETA = 1 / 9  # torchvision's RPN and fastrcnn_loss
BOX_LOSSES = ("smooth_l1", "l1")


def box_regression_loss(
    pred: torch.Tensor, target: torch.Tensor, beta: float, normalizer: int
) -> torch.Tensor:
    """``sum smooth_l1_beta(pred - target) / normalizer``; ``beta = 0`` is the L1 loss.

    Args:
        pred, target: ``[P, 4]`` box deltas of the P positive samples.
        beta: smooth L1's quadratic zone (``|x| < beta``: ``0.5 x^2 / beta``, else ``|x| - beta / 2``).
        normalizer: sampled anchors or RoIs (positives and negatives), at least 1.
    """
    return F.smooth_l1_loss(pred, target, beta=beta, reduction="sum") / max(normalizer, 1)


def fastrcnn_l1_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: list[torch.Tensor],
    regression_targets: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's ``fastrcnn_loss`` with the L1 box loss (MMDetection ``BBoxHead.loss``).

    Args:
        class_logits: ``[N, C + 1]`` over the N sampled RoIs of the batch.
        box_regression: ``[N, 4 (C + 1)]`` class-specific deltas.
        labels: per image ``[N_i]`` (0 = background); regression_targets: per image ``[N_i, 4]``.

    Returns:
        (cross-entropy over the N RoIs, L1 of the positives' deltas of their class summed / N).
    """
    label = torch.cat(labels, dim=0)
    targets = torch.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, label)
    positive = torch.where(label > 0)[0]
    deltas = box_regression.reshape(class_logits.shape[0], -1, 4)
    box_loss = box_regression_loss(deltas[positive, label[positive]], targets[positive], 0.0, label.numel())
    return classification_loss, box_loss


class L1RegionProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN with the L1 box loss (MMDetection ``RPNHead`` ``L1Loss``)."""

    def compute_loss(  # type: ignore[override]
        self,
        objectness: torch.Tensor,
        pred_bbox_deltas: torch.Tensor,
        labels: list[torch.Tensor],
        regression_targets: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BCE over the sampled anchors, L1 of the positives' deltas summed / sampled anchors).

        ``objectness``: ``[A]`` logits over all anchors of the batch; ``pred_bbox_deltas``: ``[A, 4]``;
        ``labels``: per image ``[A_i]`` (1 positive, 0 negative, -1 ignored / -2 between thresholds).
        """
        positive, negative = self.fg_bg_sampler(labels)
        positive = torch.where(torch.cat(positive, dim=0))[0]
        negative = torch.where(torch.cat(negative, dim=0))[0]
        sampled = torch.cat([positive, negative], dim=0)
        label = torch.cat(labels, dim=0)
        targets = torch.cat(regression_targets, dim=0)
        box_loss = box_regression_loss(pred_bbox_deltas[positive], targets[positive], 0.0, sampled.numel())
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], label[sampled])
        return objectness_loss, box_loss


class L1RoIHeads(RoIHeads):
    """torchvision's RoI heads with the L1 box loss: ``forward`` runs torchvision's with
    :func:`fastrcnn_l1_loss` in place of its module-level ``fastrcnn_loss`` (restored on return;
    a training forward runs in one thread)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        original = roi_heads_module.fastrcnn_loss
        roi_heads_module.fastrcnn_loss = fastrcnn_l1_loss
        try:
            return super().forward(*args, **kwargs)
        finally:
            roi_heads_module.fastrcnn_loss = original


def set_box_loss(model: nn.Module, kind: str) -> nn.Module:
    """Give a torchvision ``FasterRCNN`` / ``MaskRCNN`` the box loss ``kind`` (``model.box_loss``).

    ``smooth_l1`` leaves torchvision's (beta 1/9); ``l1`` switches the RPN and the RoI heads to
    :class:`L1RegionProposalNetwork` / :class:`L1RoIHeads`. Returns ``model``.
    """
    if kind not in BOX_LOSSES:
        raise SslzooError(f"model.box_loss must be one of {list(BOX_LOSSES)}, got {kind!r}")
    if kind == "l1":
        model.rpn.__class__ = L1RegionProposalNetwork
        model.roi_heads.__class__ = L1RoIHeads
    return model
