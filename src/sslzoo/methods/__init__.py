"""Pretraining methods, one file each (model + loss). ``METHODS`` maps config names to classes.

The contract every method class follows (the engine relies on nothing else):

- ``Method.from_config(cfg: dict) -> Method`` builds it from a model config
  (``config/models/<name>.yaml``, validated by ``sslzoo/schemas/model.schema.yaml``).
- ``Method.views(cfg: dict) -> Callable[[PIL.Image.Image], Any]``: the per-image transform
  that turns one decoded RGB image into what ``forward`` expects for one sample (collated by
  the default collate function).
- ``method.backbone``: the :class:`~sslzoo.models.backbone.ResNetBackbone` that is extracted
  after training (its keys are ``backbone.*`` in the checkpoint).
- ``method(batch) -> dict[str, Tensor]`` with the scalar ``"loss"`` to minimise plus any other
  scalars to log; ``batch`` is the collated output of ``views`` already on the device.
- optional ``batch_fields: tuple[str, ...]`` (class attribute), a subset of ``("labels",
  "indices")``: ``forward`` then also gets ``labels=`` (int64 [B], the manifest's class indices;
  the supervised baseline) and/or ``indices=`` (int64 [B], the samples' positions in the
  dataset; memory banks and cluster assignments) as keyword arguments, on the device.
- optional ``method.before_step(iteration: int)`` called before each optimiser step, after its
  backward passes, with ``iteration`` = optimiser steps already taken (SwAV drops the gradient
  of its prototypes there while they are frozen).
- optional ``method.after_step(progress: float)`` called after each optimiser step with
  ``progress`` = finished iterations / total iterations in [0, 1] (BYOL's EMA update).
- optional ``method.param_groups(cfg: dict) -> list[dict]`` for per-group weight decay, or a
  group the lr schedule leaves at its base lr (``fix_lr=True``, SimSiam's predictor).
- optional ``Method.build_dataset(cfg: dict, manifest_path, correspondence=None) -> Dataset``
  (a classmethod) for a method that reads more than one image per sample: the pretrain step
  then trains on its dataset (samples ``(views, label)``, ``views`` collated as above) instead of
  ``ManifestDataset(manifest_path, Method.views(cfg))``. ``correspondence`` is the pretrain
  step's ``--correspondence`` file; a method that needs it and gets None raises SslzooError
  naming the option (ORL stage 3).
- optional ``method.before_epoch(epoch: int, extract, seed: int) -> Sequence[int] | None``,
  called by the trainer at the start of every epoch (0-based ``epoch``, the resumed one
  included) before its first batch, for methods whose per-epoch state comes from the whole
  training set (DeepCluster's clusters, ODC's memory). ``extract(fn)`` runs
  ``fn: [B, 3, H, W] -> [B, D]`` over every training sample read through the optional
  ``Method.extract_views(cfg)`` transform (staticmethod, a deterministic pipeline) with the
  method in eval mode and no gradient, and returns float32 ``[N, D]`` on the CPU in dataset
  order, the same on every process. ``seed`` is the epoch's seed, the same on every process.
  The return value, ``N`` dataset indices over all processes, replaces the epoch's shuffle
  (None keeps it). A resumed epoch calls it again with the restored weights: whatever it sets
  must follow from those, the data and ``seed``, and live in buffers if later epochs need it.
"""

from __future__ import annotations

from torch import nn

from sslzoo.methods.byol import BYOL
from sslzoo.methods.deepcluster import DeepCluster
from sslzoo.methods.moco import MoCo
from sslzoo.methods.npid import NPID
from sslzoo.methods.odc import ODC
from sslzoo.methods.orl import ORL
from sslzoo.methods.relative_loc import RelativeLoc
from sslzoo.methods.rotation_pred import RotationPred
from sslzoo.methods.simclr import SimCLR
from sslzoo.methods.simsiam import SimSiam
from sslzoo.methods.supervised import Supervised
from sslzoo.methods.swav import SwAV
from sslzoo.methods.triplet import Triplet

METHODS: dict[str, type[nn.Module]] = {
    "relative_loc": RelativeLoc,
    "rotation_pred": RotationPred,
    "byol": BYOL,
    "triplet": Triplet,
    "orl": ORL,
    "npid": NPID,
    "supervised": Supervised,
    "simclr": SimCLR,
    # MoCo v1 and v2 are one class; their configs differ in method_args and views (one table
    # page each, as MMSelfSup's configs/selfsup/mocov1 and mocov2)
    "mocov1": MoCo,
    "mocov2": MoCo,
    "simsiam": SimSiam,
    "swav": SwAV,
    "deepcluster": DeepCluster,
    "odc": ODC,
}


def build_method(cfg: dict) -> nn.Module:
    """The method named by ``cfg["method"]``, built from the model config."""
    return METHODS[cfg["method"]].from_config(cfg)
