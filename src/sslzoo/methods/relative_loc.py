"""Relative-Loc: predict where a neighbouring patch lies relative to the centre patch.

Doersch, Gupta, Efros, "Unsupervised Visual Representation Learning by Context Prediction",
ICCV 2015, as configured by MMSelfSup 0.x ``relative-loc_resnet50_8xb64-steplr-70e_in1k``
(mmselfsup/datasets/relative_loc.py, mmselfsup/models/algorithms/relative_loc.py,
mmselfsup/models/necks/relative_loc_neck.py, mmselfsup/models/heads/cls_head.py).

Per image: Resize 292 -> RandomCrop 255 -> RandomGrayscale 0.66, then a 3x3 grid of 85 px
cells with one random 64x64 crop inside each cell (no explicit gap), every patch normalised
with the ImageNet statistics. The 8 (neighbour, centre) pairs of an image carry the labels
0..7: label ``l`` is the neighbour at grid index ``NEIGHBOURS[l]`` in row-major order::

    0 1 2
    3 c 4
    5 6 7

The per-image transform is :class:`~sslzoo.data.transforms.RelativeLocPatches`. The shared
backbone embeds every patch, global average pooling gives ``C`` features, the pair
is concatenated (neighbour first, centre second, ``2C``) and classified by fc-BN-ReLU-Dropout
-> fc(8) with cross-entropy.

The reference feeds every centre patch through the backbone eight times (once per pair). Here
the backbone runs once on the ``8B`` neighbours and once on the ``B`` centres, as two batches
like the reference's two calls, and each centre feature is repeated for its eight pairs. With
batch-norm statistics per call, this gives the same forward and backward pass at 9/16 of the
backbone cost; only the unbiased running-variance correction differs (``N/(N-1)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.data.transforms import PATCH_GRID as GRID  # patches per side
from sslzoo.data.transforms import RelativeLocPatches
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args

CENTRE = GRID * GRID // 2  # grid index of the centre patch (4)
NEIGHBOURS: tuple[int, ...] = tuple(i for i in range(GRID * GRID) if i != CENTRE)  # label -> grid index
NUM_CLASSES = len(NEIGHBOURS)  # 8

VIEW_KEYS = {"resize": 292, "crop": 255, "grayscale_p": 0.66, "patch_size": 64}
METHOD_KEYS = {"hidden": 4096, "dropout": 0.5, "bn_momentum": 0.003, "head_weight_decay": 5.0e-4}


def neighbour_offset(label: int) -> tuple[int, int]:
    """(row, column) offset of the neighbour with ``label`` relative to the centre patch."""
    index = NEIGHBOURS[label]
    return index // GRID - GRID // 2, index % GRID - GRID // 2


def make_pairs(features: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate each neighbour feature with its image's centre feature.

    Args:
        features: neighbour features ``[B, 8, C]`` in label order (``NEIGHBOURS``).
        centre: centre-patch features ``[B, C]``.

    Returns:
        pairs ``[8B, 2C]`` (neighbour, centre) image-major, and labels int64 ``[8B]``
        (0..7 repeated per image).
    """
    b, n, c = features.shape
    pairs = torch.cat([features, centre.unsqueeze(1).expand(b, n, c)], dim=2).reshape(b * n, 2 * c)
    labels = torch.arange(n, device=features.device).repeat(b)
    return pairs, labels


class RelativeLoc(nn.Module):
    """Backbone + relative-location neck and 8-way classifier.

    Args:
        depth: ResNet depth of the shared backbone.
        zero_init_residual: torchvision's option for the backbone.
        conv_init: the backbone's conv init mode (``backbone.conv_init``, :class:`ResNetBackbone`).
        hidden: width of the neck fc (4096 in the reference).
        dropout: dropout probability after the neck (``nn.Dropout()``'s 0.5 in the reference).
        bn_momentum: momentum of the neck's BatchNorm1d (0.003 in the reference).
        head_weight_decay: weight decay of the neck and classifier (5e-4 in the reference; the
            backbone uses the optimizer's ``weight_decay``).

    Init follows the reference: neck fc normal(std 0.01), classifier fc normal(std 0.005), biases
    zero, BN weight one.
    """

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        hidden: int = 4096,
        dropout: float = 0.5,
        bn_momentum: float = 0.003,
        head_weight_decay: float = 5.0e-4,
    ) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        channels = self.backbone.out_channels
        self.neck = nn.Sequential(
            nn.Linear(2 * channels, hidden),
            nn.BatchNorm1d(hidden, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(hidden, NUM_CLASSES)
        self.head_weight_decay = head_weight_decay
        nn.init.normal_(self.neck[0].weight, std=0.01)
        nn.init.zeros_(self.neck[0].bias)
        nn.init.normal_(self.head.weight, std=0.005)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_config(cls, cfg: dict) -> RelativeLoc:
        """Build from a model config: ``backbone.depth``/``zero_init_residual``/``conv_init`` and ``method_args``
        keys ``hidden``, ``dropout``, ``bn_momentum``, ``head_weight_decay``."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        return cls(
            **backbone_args(cfg),
            hidden=int(args["hidden"]),
            dropout=float(args["dropout"]),
            bn_momentum=float(args["bn_momentum"]),
            head_weight_decay=float(args["head_weight_decay"]),
        )

    @staticmethod
    def views(cfg: dict) -> RelativeLocPatches:
        """The per-image transform from ``views`` keys ``resize``, ``crop``, ``grayscale_p``,
        ``patch_size`` (reference defaults 292, 255, 0.66, 64)."""
        views = section_with_defaults(cfg.get("views"), VIEW_KEYS, "views")
        return RelativeLocPatches(
            resize=int(views["resize"]),
            crop=int(views["crop"]),
            grayscale_p=float(views["grayscale_p"]),
            patch_size=int(views["patch_size"]),
        )

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled last-stage features: ``[N, 3, P, P]`` -> ``[N, C]``."""
        return self.backbone(patches)[0].mean(dim=(2, 3))

    def logits(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier scores for every (neighbour, centre) pair.

        Args:
            patches: ``[B, 9, 3, P, P]`` grid patches in row-major order.

        Returns:
            logits ``[8B, 8]`` and labels int64 ``[8B]``.
        """
        if patches.dim() != 5 or patches.shape[1] != GRID * GRID:
            raise ValueError(f"expected patches [B, 9, 3, P, P], got {list(patches.shape)}")
        b = patches.shape[0]
        neighbours = patches[:, list(NEIGHBOURS)].flatten(0, 1)
        neighbour_features = self.embed(neighbours).view(b, NUM_CLASSES, -1)
        centre_features = self.embed(patches[:, CENTRE])
        pairs, labels = make_pairs(neighbour_features, centre_features)
        return self.head(self.neck(pairs)), labels

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy of the 8-way relative position.

        Args:
            batch: ``[B, 9, 3, P, P]``, the collated output of :class:`RelativeLocPatches`.

        Returns:
            ``loss`` (mean cross-entropy over the ``8B`` pairs) and ``accuracy`` (top-1 % of the
            pairs, detached).
        """
        logits, labels = self.logits(batch)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean() * 100.0
        return {"loss": loss, "accuracy": accuracy}

    def param_groups(self, cfg: dict) -> list[dict]:
        """Backbone at ``train.optimizer.weight_decay``; neck and classifier at ``head_weight_decay``
        (mmselfsup 0.x ``paramwise_options``: ``\\Aneck.`` and ``\\Ahead.`` -> 5e-4)."""
        weight_decay = float(cfg["train"]["optimizer"].get("weight_decay", 0.0))
        return [
            {"params": list(self.backbone.parameters()), "weight_decay": weight_decay},
            {
                "params": list(self.neck.parameters()) + list(self.head.parameters()),
                "weight_decay": self.head_weight_decay,
            },
        ]
