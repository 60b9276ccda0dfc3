"""SimCLR: two views of each image, projected and contrasted against every other view of the
global batch (NT-Xent).

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, as configured by MMSelfSup 0.x ``simclr_resnet50_8xb32-coslr-200e_in1k``
(mmselfsup/models/algorithms/simclr.py, mmselfsup/models/necks/nonlinear_neck.py,
mmselfsup/models/heads/contrastive_head.py, mmselfsup/models/utils/gather_layer.py,
configs/selfsup/_base_/models/simclr.py, configs/selfsup/_base_/datasets/imagenet_simclr.py):

- both views ``[B, 3, H, W]`` go through the backbone as one batch ``[2B, 3, H, W]`` (its BN
  statistics are those of the ``2B`` images), then global average pooling ``[2B, C]``;
- neck ``C -> hidden (BN, ReLU) -> out (BN)``, no biases (``NonLinearNeck`` with
  ``num_layers=2``, ``with_bias=False``, ``with_last_bn=True``): ``z [2B, out]``;
- loss :func:`~sslzoo.models.contrastive.nt_xent` at temperature 0.1 over the global batch of
  ``2N = 2 B x processes`` projections, gathered across processes with the gradient flowing
  back to each process's own rows.

The gradient: each process's loss is the mean over its own ``2B`` rows (against all ``2N``),
and the gather sums the gradients the processes send to a row
(:func:`~sslzoo.runtime.gather.gather_with_grad`), so DDP's mean gradient equals that of one
process holding the whole batch, whatever the number of processes (lightly's NTXentLoss with
``gather_distributed=True``). MMSelfSup 0.x computes the full ``2N x 2N`` loss on every process
and keeps only the gradient of its own rows, which after DDP's mean is that gradient divided by
the number of processes (8): under LARS the adapted layers' steps do not depend on such a factor
(the trust ratio divides it out, up to the weight decay of 1e-6 in its denominator), but the
excluded ones (the BN weights and biases) take steps 8 times smaller there than here.

``self.backbone`` is the one extracted; the neck's layers carry the reference's names ``fc0``,
``bn0``, ``fc1``, ``bn1`` for the LARS exclusion patterns (``bn0``/``bn1`` excluded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.data.contrastive_views import contrastive_views
from sslzoo.data.transforms import TwoViews
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args
from sslzoo.models.contrastive import nt_xent

# method_args keys -> the reference's values (configs/selfsup/_base_/models/simclr.py)
NECK_KEYS: dict[str, Any] = {"hidden": 2048, "out": 128}
METHOD_KEYS: dict[str, Any] = {"temperature": 0.1, "neck": {}}


class SimCLRNeck(nn.Sequential):
    """fc -> BN -> ReLU -> fc -> BN, no biases: ``[N, in_channels]`` -> ``[N, out]``
    (mmselfsup 0.x ``NonLinearNeck(num_layers=2, with_bias=False, with_last_bn=True)``; PyTorch's
    Linear init, BN weight 1 and bias 0)."""

    # our layers under the reference's names, which the LARS exclusion patterns are matched against
    REFERENCE_NAMES: ClassVar[dict[str, str]] = {"0": "fc0", "1": "bn0", "3": "fc1", "4": "bn1"}

    def __init__(self, in_channels: int, hidden: int = 2048, out: int = 128) -> None:
        super().__init__(
            nn.Linear(in_channels, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out, bias=False),
            nn.BatchNorm1d(out),
        )


class SimCLR(nn.Module):
    """Backbone + :class:`SimCLRNeck`, trained with NT-Xent over the global batch.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone (the reference sets it).
        conv_init: the backbone's conv init mode (``backbone.conv_init``).
        temperature: NT-Xent's ``T``.
        neck: ``hidden`` and ``out`` widths of :class:`SimCLRNeck`.
    """

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        temperature: float = 0.1,
        neck: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        neck = section_with_defaults(neck, NECK_KEYS, "method_args.neck")
        if temperature <= 0:
            raise SslzooError(f"model config method_args.temperature = {temperature}: must be positive")
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        self.neck = SimCLRNeck(self.backbone.out_channels, int(neck["hidden"]), int(neck["out"]))
        self.temperature = float(temperature)

    @classmethod
    def from_config(cls, cfg: dict) -> SimCLR:
        """Build from a model config; ``method_args``: ``temperature``, ``neck``."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        return cls(
            **backbone_args(cfg),
            **args,
        )

    @staticmethod
    def views(cfg: dict) -> TwoViews:
        """Two draws of the one pipeline of ``cfg["views"]``
        (:func:`~sslzoo.data.contrastive_views.contrastive_views`)."""
        return contrastive_views(cfg.get("views"))

    def project(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``z [N, out]`` (backbone, global average pooling, neck)."""
        return self.neck(self.backbone(images)[0].mean(dim=(2, 3)))

    def forward(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """NT-Xent of the two views.

        Args:
            batch: ``(view1 [B, 3, H, W], view2 [B, 3, H, W])``.

        Returns:
            ``loss``: this process's share of the loss of the global batch.
        """
        view1, view2 = batch
        z = self.project(torch.cat([view1, view2]))
        return {"loss": nt_xent(z[: view1.shape[0]], z[view1.shape[0] :], self.temperature)}
