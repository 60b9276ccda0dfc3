"""ODC: online deep clustering, pseudo-labels that evolve with the network iteration by iteration.

Zhan, Xie, Liu, Ong, Loy, "Online Deep Clustering for Unsupervised Representation Learning",
CVPR 2020, as configured by MMSelfSup 0.x ``odc_resnet50_8xb64-steplr-440e_in1k``
(mmselfsup/models/algorithms/odc.py, mmselfsup/models/memories/odc_memory.py,
mmselfsup/models/necks/odc_neck.py, mmselfsup/models/heads/cls_head.py,
mmselfsup/core/hooks/odc_hook.py, mmselfsup/core/hooks/deepcluster_hook.py with
``init_memory=True``, configs/selfsup/_base_/datasets/imagenet_odc.py).

- Network: ResNet -> neck (global avgpool, fc ``C -> 512``, BN without affine (momentum 0.001),
  ReLU, dropout 0.5, fc ``512 -> 256``, ReLU) -> fc ``256 -> num_clusters`` (10,000).
- Start (:meth:`ODC.before_epoch` of the first epoch; the reference's ``DeepClusterHook`` before
  the run): the neck features of the whole training set (extraction pipeline, eval mode),
  L2-normalised (no PCA), faiss k-means: the labels; loss weights from the cluster sizes; the fc
  drawn again; the memory (:class:`~sslzoo.models.odc_memory.ODCMemory`) filled.
- Every forward: cross-entropy of the logits against the memory labels of the batch, weighted
  per class by :func:`~sslzoo.models.clustering.inverse_size_weights` (size ** -0.5); then the
  batch's neck features (training mode) update the samples memory (momentum 0.5) and relabel
  the batch; ``change_ratio`` is logged.
- After every optimizer step (:meth:`ODC.after_step`, the reference's ``ODCHook``): the
  centroids recomputed every ``centroids_update_interval`` (10) iterations, the clusters smaller
  than ``min_cluster`` (20) dissolved every ``small_clusters_interval`` (1), and the loss weights
  recomputed from the current labels.
- Every epoch samples ``N`` indices with replacement (``data.replace=True``).

The memory, the loss weights and the iteration count are buffers: a run resumed from an epoch
end continues exactly. Where the reference asserts that the first k-means left no cluster empty,
here an empty cluster is re-seeded by the small-cluster step after the first iteration, as any
cluster that empties out later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import DEFAULT_CONV_INIT, backbone_args
from sslzoo.models.clustering import cluster_features, inverse_size_weights
from sslzoo.models.odc_memory import ODCMemory
from sslzoo.models.pseudo_label_classifier import PseudoLabelClassifier, accuracy, sub_seeds

# method_args keys -> the reference's values
METHOD_KEYS: dict[str, Any] = {
    "num_clusters": 10000,  # num_classes = 10000 (head, memory_bank, clustering k)
    "pca_dim": -1,  # clustering=dict(type='Kmeans', k=num_classes, pca_dim=-1): no PCA
    "with_sobel": False,  # model with_sobel=False
    "neck": {},  # ODCNeck, NECK_KEYS
    "memory_momentum": 0.5,  # memory_bank momentum=0.5
    "min_cluster": 20,  # memory_bank min_cluster=20
    "centroids_update_interval": 10,  # ODCHook centroids_update_interval=10 (iterations)
    "small_clusters_interval": 1,  # ODCHook deal_with_small_clusters_interval=1
    "reweight_power": 0.5,  # reweight_pow=0.5 (set_reweight's default)
    "sample_with_replacement": True,  # data replace=True
    "head_momentum": 0.0,  # paramwise_options {'\\Ahead.': dict(momentum=0.)}
}
NECK_KEYS: dict[str, Any] = {"hidden": 512, "out": 256, "bn_momentum": 0.001, "dropout": 0.5}


class ODCNeck(nn.Module):
    """``[B, C, h, w]`` -> global avgpool -> fc -> BN (no affine) -> ReLU -> dropout -> fc -> ReLU
    ``[B, out]`` (mmselfsup 0.x ``ODCNeck``; the fcs keep PyTorch's default init)."""

    def __init__(self, in_channels: int, hidden: int, out: int, bn_momentum: float, dropout: float) -> None:
        super().__init__()
        self.fc0 = nn.Linear(in_channels, hidden)
        self.bn0 = nn.BatchNorm1d(hidden, momentum=bn_momentum, affine=False)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(hidden, out)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.fc0(maps.mean(dim=(2, 3)))))
        return F.relu(self.fc1(self.dropout(x)))


class ODC(PseudoLabelClassifier):
    """ResNet -> :class:`ODCNeck` -> fc over the memory's online clusters.

    Args:
        depth, zero_init_residual, conv_init: the backbone.
        num_clusters: clusters of the k-means, the memory and the fc.
        pca_dim: PCA-whitening dimension before the first k-means (-1: none, the reference's).
        with_sobel: the fixed Sobel input layer and a 2-channel stem.
        neck: :data:`NECK_KEYS` overrides.
        memory_momentum, min_cluster: :class:`~sslzoo.models.odc_memory.ODCMemory`.
        centroids_update_interval, small_clusters_interval: iterations between those updates.
        reweight_power: the loss weight of a cluster is proportional to its size ** -power.
        sample_with_replacement: each epoch draws ``N`` indices with replacement (else a shuffle).
        head_momentum: SGD momentum of the fc.
    """

    batch_fields = ("indices",)

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        num_clusters: int = 10000,
        pca_dim: int = -1,
        with_sobel: bool = False,
        neck: dict[str, Any] | None = None,
        memory_momentum: float = 0.5,
        min_cluster: int = 20,
        centroids_update_interval: int = 10,
        small_clusters_interval: int = 1,
        reweight_power: float = 0.5,
        sample_with_replacement: bool = True,
        head_momentum: float = 0.0,
    ) -> None:
        if num_clusters < 2:
            raise SslzooError(f"model config method_args.num_clusters = {num_clusters}: needs at least 2")
        if min(centroids_update_interval, small_clusters_interval) < 1:
            raise SslzooError("model config method_args.*_interval: iterations, at least 1")
        neck_args = section_with_defaults(neck, NECK_KEYS, "method_args.neck")
        super().__init__(
            lambda channels: (ODCNeck(channels, **neck_args), int(neck_args["out"])),
            depth=depth,
            zero_init_residual=zero_init_residual,
            conv_init=conv_init,
            num_clusters=num_clusters,
            with_sobel=with_sobel,
            head_momentum=head_momentum,
        )
        self.memory = ODCMemory(int(neck_args["out"]), num_clusters, memory_momentum, min_cluster)
        self.pca_dim = pca_dim
        self.centroids_update_interval = centroids_update_interval
        self.small_clusters_interval = small_clusters_interval
        self.reweight_power = reweight_power
        self.sample_with_replacement = sample_with_replacement
        self.register_buffer("loss_weight", torch.full((num_clusters,), 1.0 / num_clusters))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))
        # the same on every process by construction: DDP need not broadcast them every step
        self._ddp_params_and_buffers_to_ignore = [
            "memory.feature_bank",
            "memory.label_bank",
            "memory.centroids",
        ]

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ODC:
        """Build from a model config: ``backbone.*`` and the ``method_args`` of ``METHOD_KEYS``."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        return cls(
            **backbone_args(cfg),
            **args,
        )

    def set_reweight(self) -> None:
        """Loss weights from the memory's current labels."""
        self.loss_weight.copy_(
            inverse_size_weights(self.memory.label_bank, self.num_clusters, self.reweight_power)
        )

    def before_epoch(
        self, epoch: int, extract: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor], seed: int
    ) -> torch.Tensor | None:
        """Fill the memory from a k-means of the extracted features when it is empty (the run's
        first epoch); return the epoch's indices drawn with replacement (or None: a shuffle).

        Args:
            epoch: 0-based.
            extract: ``features_fn -> [N, D]`` over the whole training set in dataset order.
            seed: the epoch's seed (the same on every process).
        """
        kmeans_seed, head_seed, order_seed = sub_seeds(seed, 3)
        if not self.memory.initialized:
            features = extract(self.embed)
            labels = cluster_features(features.numpy(), self.num_clusters, self.pca_dim, kmeans_seed)
            self.memory.init_memory(features, torch.from_numpy(labels))
            self.set_reweight()
            self.reset_head(head_seed)
        if not self.sample_with_replacement:
            return None
        size = len(self.memory.label_bank)
        return torch.randint(size, (size,), generator=torch.Generator().manual_seed(order_seed))

    def forward(self, images: torch.Tensor, *, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` ``[B, 3, H, W]``, ``indices`` int64 ``[B]`` -> ``{"loss": weighted
        cross-entropy against the memory labels, "accuracy": top-1 %, "change_ratio"}``."""
        if not self.memory.initialized:
            raise SslzooError(
                "ODC's memory is empty: train it with sslzoo.engine.trainer.train, which calls "
                "before_epoch at every epoch start"
            )
        features = self.embed(images)
        logits = self.logits(features).float()
        targets = self.memory.label_bank[indices]
        loss = F.cross_entropy(logits, targets, weight=self.loss_weight)
        change_ratio = self.memory.update_samples_memory(indices, features.detach())
        return {"loss": loss, "accuracy": accuracy(logits, targets), "change_ratio": change_ratio}

    def after_step(self, progress: float) -> None:
        """The ``ODCHook`` after every iteration: centroids every ``centroids_update_interval``
        iterations, small clusters every ``small_clusters_interval``, then the loss weights."""
        self.iteration += 1
        done = int(self.iteration)
        if done % self.centroids_update_interval == 0:
            self.memory.update_centroids_memory()
        if done % self.small_clusters_interval == 0:
            self.memory.deal_with_small_clusters()
        self.set_reweight()
