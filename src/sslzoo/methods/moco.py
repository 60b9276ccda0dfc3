"""MoCo v1 and v2: a query encoder contrasts each query with the key of the other view of its
image, encoded by a slow-moving (momentum) copy, against a queue of earlier keys.

He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020 (v1) and Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive
Learning", arXiv:2003.04297 (v2), as MMSelfSup 0.x configures them in
``mocov1_resnet50_8xb32-steplr-200e_in1k`` and ``mocov2_resnet50_8xb32-coslr-200e_in1k``
(mmselfsup/models/algorithms/moco.py, mmselfsup/models/necks/linear_neck.py,
mmselfsup/models/necks/mocov2_neck.py, mmselfsup/models/heads/contrastive_head.py,
mmselfsup/utils/batch_shuffle.py, configs/selfsup/_base_/models/mocov{1,2}.py):

- query ``q = normalize(neck(avgpool(backbone(view1))))`` ``[B, D]``; the neck is one fc
  ``C -> D`` in v1 (``LinearNeck``, ``neck.hidden: null``), fc -> ReLU -> fc ``C -> hidden -> D``
  in v2 (``MoCoV2Neck``), with biases, PyTorch's init;
- key ``k`` the same of ``view2`` through the key encoder (a copy of backbone + neck that takes no
  gradient), which first moves towards the query encoder, ``key <- m key + (1 - m) query``
  with ``m`` 0.999, at every forward in training (the reference's ``_momentum_update_key_encoder``
  at the top of ``forward_train``), and sees its batch shuffled (Shuffling BN, below);
- loss :func:`~sslzoo.models.contrastive.info_nce` of ``q . k`` against ``q . queue`` at
  temperature 0.07 (v1) or 0.2 (v2); then the keys of every process go into the queue
  (:class:`~sslzoo.models.queue.KeyQueue`, 65,536 keys: a buffer, with its pointer).

Shuffling BN (:mod:`sslzoo.models.shuffle_bn`). With several processes the keys' images are
shuffled across processes before the key encoder and its outputs put back in order after, as
the reference's ``batch_shuffle_ddp``; the BN statistics of a key then come from other images
than its query's. In a single process a shuffle cannot do that: BN sees the same whole batch in
any order, which lets the loss be lowered through the batch statistics (the positive key shares
them with its query) rather than through the images (MoCo section 3.3). The shuffle still runs
(it is a no-op there), and ``method_args.bn_splits`` > 1 follows MoCo's own single-GPU demo
(facebookresearch/moco colab/moco_cifar10_demo.ipynb): every BatchNorm2d of both backbones
normalises ``bn_splits`` interleaved groups of the batch separately (``bn_splits`` 8 makes one
process with the 8 x 32 batch of the full configs compute the statistics of 8 GPUs of 32), so a
shuffled key mostly falls into another group than its query. ``bn_splits`` 1 (the default) is
plain BN over each process's batch, as on the reference's 8 GPUs. The neck has no BN.

``self.backbone`` (the query backbone) is the one extracted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.data.contrastive_views import contrastive_views
from sslzoo.data.transforms import TwoViews
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args
from sslzoo.models.contrastive import info_nce
from sslzoo.models.queue import KeyQueue
from sslzoo.models.shuffle_bn import shuffle_across_processes, split_batch_norm, unshuffle_across_processes
from sslzoo.runtime.gather import gather_no_grad

# method_args keys -> MoCo v2's values (configs/selfsup/_base_/models/mocov2.py); neck.hidden
# null is v1's LinearNeck
NECK_KEYS: dict[str, Any] = {"hidden": 2048, "out": 128}
METHOD_KEYS: dict[str, Any] = {
    "temperature": 0.2,
    "momentum": 0.999,
    "queue_len": 65536,
    "neck": {},
    "bn_splits": 1,
}


def moco_neck(in_channels: int, hidden: int | None, out: int) -> nn.Module:
    """``[N, in_channels]`` -> ``[N, out]``: one fc (v1, ``hidden`` None) or fc -> ReLU -> fc (v2)."""
    if hidden is None:
        return nn.Linear(in_channels, out)
    return nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class MoCo(nn.Module):
    """Query backbone + neck, their momentum copy (key encoder) and the key queue.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone.
        conv_init: the backbone's conv init mode (``backbone.conv_init``).
        temperature: the InfoNCE temperature ``T``.
        momentum: ``m`` of the key encoder's update.
        queue_len: keys in the queue.
        neck: ``hidden`` (None for one fc) and ``out`` (the key dimension) of :func:`moco_neck`.
        bn_splits: BatchNorm groups per process batch in training (see the module docstring).
    """

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        temperature: float = 0.2,
        momentum: float = 0.999,
        queue_len: int = 65536,
        neck: Mapping[str, Any] | None = None,
        bn_splits: int = 1,
    ) -> None:
        super().__init__()
        neck = section_with_defaults(neck, NECK_KEYS, "method_args.neck")
        if temperature <= 0:
            raise SslzooError(f"model config method_args.temperature = {temperature}: must be positive")
        if not 0.0 <= momentum <= 1.0:
            raise SslzooError(f"model config method_args.momentum = {momentum}: must be in [0, 1]")
        if int(bn_splits) < 1:
            raise SslzooError(f"model config method_args.bn_splits = {bn_splits}: must be at least 1")
        hidden = None if neck["hidden"] is None else int(neck["hidden"])
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        self.neck = moco_neck(self.backbone.out_channels, hidden, int(neck["out"]))
        self.key_backbone = copy.deepcopy(self.backbone)
        self.key_neck = copy.deepcopy(self.neck)
        for param in self.key_parameters():
            param.requires_grad_(False)
        self.key_queue = KeyQueue(int(neck["out"]), int(queue_len))
        split_batch_norm(self.backbone, int(bn_splits))
        split_batch_norm(self.key_backbone, int(bn_splits))
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.bn_splits = int(bn_splits)

    @classmethod
    def from_config(cls, cfg: dict) -> MoCo:
        """Build from a model config; ``method_args``: ``temperature``, ``momentum``,
        ``queue_len``, ``neck``, ``bn_splits``. The protocol's global batch (``gpus`` x
        ``train.batch_size``) must fit in the queue; ``bn_splits`` > 1 must divide
        ``train.batch_size`` and cannot go with ``backbone.sync_bn``."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        backbone = cfg.get("backbone", {})
        batch = int(cfg.get("train", {}).get("batch_size", 1))
        if int(cfg.get("gpus", 1)) * batch > int(args["queue_len"]):
            raise SslzooError(
                f"model config method_args.queue_len = {args['queue_len']} holds less than one global batch "
                f"(gpus {cfg.get('gpus', 1)} x train.batch_size {batch}); raise queue_len"
            )
        if int(args["bn_splits"]) > 1 and (batch % int(args["bn_splits"]) or backbone.get("sync_bn", False)):
            raise SslzooError(
                f"model config method_args.bn_splits = {args['bn_splits']}: needs train.batch_size "
                f"({batch}) divisible by it and backbone.sync_bn false"
            )
        return cls(
            **backbone_args(cfg),
            **args,
        )

    @staticmethod
    def views(cfg: dict) -> TwoViews:
        """Two draws of the one pipeline of ``cfg["views"]``
        (:func:`~sslzoo.data.contrastive_views.contrastive_views`)."""
        return contrastive_views(cfg.get("views"))

    # ---- encoders

    def query_parameters(self) -> list[nn.Parameter]:
        """Parameters the momentum update reads from: query backbone then neck."""
        return list(self.backbone.parameters()) + list(self.neck.parameters())

    def key_parameters(self) -> list[nn.Parameter]:
        """Parameters the momentum update writes, matching :meth:`query_parameters` one to one."""
        return list(self.key_backbone.parameters()) + list(self.key_neck.parameters())

    def encode_query(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> unit queries ``[N, D]`` (float32)."""
        return F.normalize(self.neck(self.backbone(images)[0].mean(dim=(2, 3))).float(), dim=1)

    @torch.no_grad()
    def encode_key(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> unit keys ``[N, D]`` (float32, no gradient), the batch shuffled
        across processes through the key encoder and put back in order."""
        shuffled, unshuffle = shuffle_across_processes(images)
        keys = self.key_neck(self.key_backbone(shuffled)[0].mean(dim=(2, 3)))
        return unshuffle_across_processes(F.normalize(keys.float(), dim=1), unshuffle)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``key <- momentum * key + (1 - momentum) * query``, parameter by parameter."""
        keys, queries = self.key_parameters(), self.query_parameters()
        torch._foreach_mul_(keys, self.momentum)
        torch._foreach_add_(keys, [p.detach() for p in queries], alpha=1.0 - self.momentum)

    # ---- loss

    def forward(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """InfoNCE of the queries of ``view1`` against the keys of ``view2`` and the queue.

        Args:
            batch: ``(view1 [B, 3, H, W], view2 [B, 3, H, W])``: queries, keys.

        Returns:
            ``loss``. In training the key encoder is updated first and the keys of every process
            enter the queue after the loss.
        """
        view_q, view_k = batch
        query = self.encode_query(view_q)
        if self.training:
            self.momentum_update()
        key = self.encode_key(view_k)
        positive = (query * key).sum(dim=1, keepdim=True)  # [B, 1]
        negative = query @ self.key_queue.negatives()  # [B, queue_len]
        loss = info_nce(positive, negative, self.temperature)
        if self.training:
            self.key_queue.enqueue(gather_no_grad(key))
        return {"loss": loss}
