"""NPID: non-parametric instance discrimination against a memory bank of every sample's feature.

Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018
(arXiv:1805.01978), as configured by MMSelfSup 0.x ``npid_resnet50_8xb32-steplr-200e_in1k``
(mmselfsup/models/algorithms/npid.py, mmselfsup/models/necks/linear_neck.py,
mmselfsup/models/heads/contrastive_head.py, mmselfsup/models/memories/simple_memory.py,
configs/selfsup/_base_/models/npid.py, configs/selfsup/_base_/datasets/imagenet_npid.py):

- ``f = normalize(fc(avgpool(backbone(x))))`` ``[B, D]`` (the ``LinearNeck`` ``C -> D``, D = 128,
  torch's default Linear init);
- positives ``v_i`` ``[B, D]``: the bank rows of the batch's own samples (``indices``, the
  ``batch_fields`` contract of :mod:`sslzoo.methods`); negatives ``[B, K, D]``: ``K = neg_num``
  rows per sample drawn uniformly from the whole bank (``ensure_neg``: never the sample itself);
- loss: the reference's ``ContrastiveHead``, softmax cross-entropy with the positive at index 0
  of the logits ``[f . v_i, f . n_1, ..., f . n_K] / T`` (T = 0.07), averaged over the batch.
  This is the non-parametric softmax of the paper's Eq. 2 over the sampled rows, not the binary
  NCE of its Eq. 6 (which MMSelfSup does not implement);
- after the loss the bank rows ``indices`` take ``f`` by momentum
  (:class:`~sslzoo.models.memory_bank.MemoryBank`); the loss reads the rows as they were before.

``self.backbone`` is the ResNet (the one extracted); the bank is ``memory_bank.features`` in the
state dict, so a resumed run continues from the same bank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision import transforms

from sslzoo.config import section_with_defaults
from sslzoo.data.single_view import single_view_pipeline
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args
from sslzoo.models.memory_bank import MemoryBank

# views keys -> reference values (configs/selfsup/_base_/datasets/imagenet_npid.py): RandomResizedCrop
# 224 (0.2, 1), RandomGrayscale 0.2, ColorJitter(0.4, 0.4, 0.4, 0.4) always, RandomHorizontalFlip
NPID_VIEW_KEYS: dict[str, Any] = {
    "image_size": 224,
    "scale": [0.2, 1.0],
    "grayscale_p": 0.2,
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.4},
    "color_jitter_p": 1.0,
    "flip_p": 0.5,
}
# method_args keys -> reference values (configs/selfsup/_base_/models/npid.py; NPID's ensure_neg default)
METHOD_KEYS: dict[str, Any] = {
    "feat_dim": 128,
    "neg_num": 65536,
    "ensure_neg": False,
    "temperature": 0.07,
    "memory_bank": {},
}
MEMORY_BANK_KEYS: dict[str, Any] = {"length": 1281167, "momentum": 0.5}


def instance_nce_loss(
    features: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Softmax cross-entropy of each sample's positive among its negatives (``ContrastiveHead``).

    Args:
        features: ``[B, D]`` (L2-normalised).
        positives: ``[B, D]``, the bank rows of the samples themselves.
        negatives: ``[B, K, D]``, the sampled bank rows.
        temperature: ``T``.

    Returns:
        ``mean_b -log softmax([f_b . p_b, f_b . n_b1, ..., f_b . n_bK] / T)[0]``, a scalar.
    """
    positive = (features * positives).sum(dim=1, keepdim=True)
    negative = torch.bmm(negatives, features.unsqueeze(2)).squeeze(2)
    logits = torch.cat([positive, negative], dim=1).float() / temperature
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


class NPID(nn.Module):
    """ResNet + avgpool + ``fc(C, feat_dim)`` trained to tell each sample from bank negatives.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone.
        conv_init: the backbone's conv init mode (``backbone.conv_init``).
        feat_dim: ``D``, the neck's output and the bank's row size.
        neg_num: ``K`` negatives per sample.
        ensure_neg: redraw a negative that is the sample itself.
        temperature: ``T`` of the softmax.
        memory_bank: ``length`` (rows: the training set's size) and ``momentum`` (the weight of
            the new feature) of :class:`~sslzoo.models.memory_bank.MemoryBank`.
    """

    batch_fields = ("indices",)

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        feat_dim: int = 128,
        neg_num: int = 65536,
        ensure_neg: bool = False,
        temperature: float = 0.07,
        memory_bank: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        bank = section_with_defaults(memory_bank, MEMORY_BANK_KEYS, "method_args.memory_bank")
        if int(neg_num) < 1 or float(temperature) <= 0:
            raise SslzooError(
                f"model config method_args: neg_num {neg_num} must be at least 1 and temperature "
                f"{temperature} above 0"
            )
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        self.neck = nn.Linear(self.backbone.out_channels, int(feat_dim))
        self.memory_bank = MemoryBank(int(bank["length"]), int(feat_dim), float(bank["momentum"]))
        # every process writes the same rows (the update gathers the batches of all), so the banks
        # stay equal without DDP broadcasting rank 0's (1.28M x 128 floats) before every forward
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, ["memory_bank.features"])
        self.neg_num, self.ensure_neg, self.temperature = int(neg_num), bool(ensure_neg), float(temperature)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> NPID:
        """Build from a model config (``backbone`` and ``method_args``, keys of :data:`METHOD_KEYS`)."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        return cls(
            **backbone_args(cfg),
            **args,
        )

    @staticmethod
    def views(cfg: dict[str, Any]) -> transforms.Compose:
        """One view per image (:func:`~sslzoo.data.single_view.single_view_pipeline` over
        :data:`NPID_VIEW_KEYS`): ``PIL image -> [3, S, S]``."""
        return single_view_pipeline(cfg.get("views"), NPID_VIEW_KEYS)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> L2-normalised ``[N, feat_dim]``."""
        return F.normalize(self.neck(self.backbone(images)[0].mean(dim=(2, 3))), dim=1)

    def forward(self, images: torch.Tensor, *, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` ``[B, 3, H, W]`` and their dataset ``indices`` ``[B]`` -> ``{"loss"}``;
        then the bank rows ``indices`` are updated (under DDP with every process's batch)."""
        features = self.embed(images)
        batch, dim = features.shape
        positives = self.memory_bank.lookup(indices)
        drawn = self.memory_bank.sample(batch * self.neg_num, exclude=indices if self.ensure_neg else None)
        negatives = self.memory_bank.features.index_select(0, drawn).view(batch, self.neg_num, dim)
        loss = instance_nce_loss(
            features, positives.to(features.dtype), negatives.to(features.dtype), self.temperature
        )
        self.memory_bank.update(indices, features.detach())
        return {"loss": loss}
