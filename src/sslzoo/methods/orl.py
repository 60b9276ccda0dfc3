"""ORL stage 3: BYOL on whole images plus BYOL on corresponding regions within and across images.

Xie, Zhan, Liu, Ong, Loy, "Unsupervised Object-Level Representation Learning from Scene
Images", NeurIPS 2021; reference Jiahao000/ORL (openselfsup/models/orl.py,
openselfsup/datasets/orl.py, openselfsup/datasets/data_sources/coco_orl_json.py,
configs/selfsup/orl/coco/stage3/r50_bs512_ep800.py).

Model: BYOL's online backbone + projector and its EMA target
(:class:`~sslzoo.models.momentum_pair.MomentumPair`, one of each, shared by the three branches),
with three predictors of the same shape: ``predictor`` (global), ``intra_predictor`` (intra-RoI)
and ``inter_predictor`` (inter-RoI). Each branch is BYOL's symmetric loss on its pair of inputs
(:meth:`~sslzoo.models.momentum_pair.MomentumPair.branch_loss`),

    ``L_b = loss_scale * (h(q_b(o(x1)), t(x2)) + h(q_b(o(x2)), t(x1)))``, ``h = -mean cos``,

(``loss_scale`` = 2, our BYOL form), and ``loss = w_g L_global + w_intra L_intra +
w_inter L_inter`` with weights 1. The reference's head writes each direction as ``2 - 2 cos``:
its ``loss_global``, ``loss_local_intra``, ``loss_local_inter`` are ours + 4 each (same gradients).

BN running statistics: every forward pass of the online backbone in train mode normalises with
its batch's statistics and, in the reference, also moves the running statistics (momentum 0.1)
that a frozen backbone uses in the benchmarks. The RoI crops go through after the global views,
so the running statistics end up about three quarters those of RoI crops (``roi_size`` px
zoomed-in boxes) rather than of whole images. ``roi_running_stats: false`` keeps the online
backbone's running statistics to the global views: the RoI passes still normalise with their
own batch statistics (the same losses and gradients) but leave the running ones as they are.

Data: :class:`~sslzoo.data.orl_dataset.ORLDataset` (the global views and the intra- and
inter-RoI crop pairs of each image, from the stage-2 correspondence file); the RoI crops and
their pipelines are in :mod:`sslzoo.data.transforms`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.data.orl_dataset import ORLDataset
from sslzoo.data.transforms import TwoViews, split_views, view_pipeline
from sslzoo.errors import SslzooError
from sslzoo.models.mlp import MLP, MLP_KEYS
from sslzoo.models.momentum_pair import MomentumPair

# Jiahao000/ORL: NonLinearNeckSimCLR(with_bias=False) keeps its default fc0_bias=True (a bias on
# the hidden fc, none on the output fc); projector and predictors init_weights(init_linear='kaiming')
ORL_MLP: dict[str, Any] = {"bias": True, "last_bias": False, "init": "kaiming"}
ORL_KEYS: dict[str, Any] = {
    "global_loss_weight": 1.0,
    "local_intra_loss_weight": 1.0,
    "local_inter_loss_weight": 1.0,
    "roi_running_stats": True,
}
BRANCHES: tuple[str, ...] = ("global", "intra", "inter")


# --------------------------------------------------------------------------- model


def check_orl_config(cfg: Mapping[str, Any]) -> None:
    """A stage-3 config names its stage-1 model and carries the stage-2 protocol."""
    missing = [key for key in ("stage1", "stage2") if key not in cfg]
    if missing:
        raise SslzooError(
            f"model config (method orl): missing {', '.join(missing)}; give stage1: <the config/models/ name of the "
            "stage-1 BYOL model> and stage2: {knn: {...}, correspondence: {...}} (see config/models/orl_*.yaml)"
        )


class ORL(MomentumPair):
    """BYOL's networks with three predictor heads: global, intra-RoI and inter-RoI.

    Args:
        global_loss_weight, local_intra_loss_weight, local_inter_loss_weight: the branch weights.
        roi_running_stats: whether the RoI crops' passes move the online backbone's BN running
            statistics (True: the reference; False: only the global views do).
        **byol: :class:`~sslzoo.models.momentum_pair.MomentumPair` (BYOL's) arguments; projector
            and predictors default to the reference's bias on the hidden fc only and kaiming
            init (``ORL_MLP``).
    """

    def __init__(
        self,
        global_loss_weight: float = 1.0,
        local_intra_loss_weight: float = 1.0,
        local_inter_loss_weight: float = 1.0,
        roi_running_stats: bool = True,
        **byol: Any,
    ) -> None:
        byol["projector"] = {**ORL_MLP, **(byol.get("projector") or {})}
        byol["predictor"] = {**ORL_MLP, **(byol.get("predictor") or {})}
        super().__init__(**byol)
        projector = section_with_defaults(byol["projector"], MLP_KEYS, "method_args.projector")
        predictor = section_with_defaults(byol["predictor"], MLP_KEYS, "method_args.predictor")
        self.intra_predictor = MLP(int(projector["out"]), **predictor)
        self.inter_predictor = MLP(int(projector["out"]), **predictor)
        self.loss_weights = {
            "global": float(global_loss_weight),
            "intra": float(local_intra_loss_weight),
            "inter": float(local_inter_loss_weight),
        }
        if not isinstance(roi_running_stats, bool):
            raise SslzooError(
                f"model config method_args.roi_running_stats = {roi_running_stats!r}: must be true or false"
            )
        self.roi_running_stats = roi_running_stats

    @classmethod
    def method_keys(cls) -> dict[str, Any]:
        return {**super().method_keys(), **ORL_KEYS}

    @classmethod
    def from_config(cls, cfg: dict) -> ORL:
        """Build from a stage-3 model config; ``method_args``: BYOL's plus the three loss weights.

        Raises:
            SslzooError: ``stage1`` or ``stage2`` missing, or a ``views`` key neither BYOL nor ORL knows.
        """
        check_orl_config(cfg)
        split_views(cfg.get("views"))
        return cls(**cls.method_kwargs(cfg))

    @staticmethod
    def views(cfg: dict) -> TwoViews:
        """The two global views (BYOL's pipelines on the ``views`` keys BYOL knows)."""
        byol_views, _ = split_views(cfg.get("views"))
        return TwoViews(view_pipeline(byol_views, 0), view_pipeline(byol_views, 1))

    @classmethod
    def build_dataset(
        cls,
        cfg: dict,
        manifest_path: str | os.PathLike[str],
        correspondence: str | os.PathLike[str] | None = None,
    ) -> ORLDataset:
        """The engine's dataset hook: :class:`ORLDataset` of the manifest and the stage-2 file."""
        if correspondence is None:
            raise SslzooError(
                "method orl (ORL stage 3) trains on the stage-2 correspondence file: pass "
                "--correspondence results/orl/<model>/correspondence.json to the pretrain step"
            )
        return ORLDataset(manifest_path, correspondence, cfg)

    def heads(self) -> dict[str, nn.Module]:
        """Branch name -> its predictor."""
        return {"global": self.predictor, "intra": self.intra_predictor, "inter": self.inter_predictor}

    @contextmanager
    def frozen_running_stats(self) -> Iterator[None]:
        """Within: the online backbone's BN layers normalise with batch statistics in train mode
        but leave their running statistics unchanged (momentum 0: ``r <- 1 r + 0 batch``)."""
        layers = [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in layers]
        for m in layers:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, (momentum, tracked) in zip(layers, saved, strict=True):
                m.momentum = momentum
                m.num_batches_tracked.copy_(tracked)

    def forward(self, batch: Mapping[str, Sequence[torch.Tensor]]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Weighted sum of the three branch losses.

        Args:
            batch: the collated :class:`ORLDataset` views, ``{"global": (g1, g2), "intra": (i1, i2),
                "inter": (k1, k2)}``, each ``[B, 3, H, W]``.

        Returns:
            ``loss``; ``loss_global``, ``loss_local_intra``, ``loss_local_inter`` (weighted,
            detached; the reference's names); ``momentum``.
        """
        heads = self.heads()
        branches = {}
        for name in BRANCHES:
            if name == "global" or self.roi_running_stats:
                branches[name] = self.loss_weights[name] * self.branch_loss(heads[name], *batch[name])
                continue
            with self.frozen_running_stats():
                branches[name] = self.loss_weights[name] * self.branch_loss(heads[name], *batch[name])
        loss = branches["global"] + branches["intra"] + branches["inter"]
        return {
            "loss": loss,
            "loss_global": branches["global"].detach(),
            "loss_local_intra": branches["intra"].detach(),
            "loss_local_inter": branches["inter"].detach(),
            "momentum": torch.tensor(self.momentum, device=loss.device),
        }
