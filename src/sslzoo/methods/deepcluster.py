"""DeepCluster: classify k-means clusters of the network's own features, re-clustered every epoch.

Caron, Bojanowski, Joulin, Douze, "Deep Clustering for Unsupervised Learning of Visual
Features", ECCV 2018, as configured by MMSelfSup 0.x
``deepcluster-sobel_resnet50_8xb64-steplr-200e_in1k`` (mmselfsup/models/algorithms/deepcluster.py,
mmselfsup/core/hooks/deepcluster_hook.py, mmselfsup/utils/clustering.py,
mmselfsup/datasets/deepcluster.py, mmselfsup/datasets/samplers/distributed_sampler.py,
mmselfsup/models/necks/avgpool2d_neck.py, mmselfsup/models/heads/cls_head.py).

At the start of every epoch (:meth:`DeepCluster.before_epoch`; the reference's hook runs before
the run and after every ``interval`` epochs, the same points), steps 1-3 every
``cluster_interval`` epochs (1, the reference's), step 4 every epoch:

1. features ``[N, C]`` of the whole training set: the centre crops of the extraction pipeline
   through [Sobel ->] backbone -> global average pool, in eval mode;
2. PCA to ``pca_dim`` (256) with whitening, rows L2-normalised, faiss k-means into
   ``num_clusters`` (10,000) clusters, 20 iterations: the pseudo-labels ``labels`` ``[N]``
   (:func:`~sslzoo.models.clustering.cluster_features`; faiss re-seeds clusters that empty out
   during the iterations, and a cluster left empty at the end is never sampled);
3. the fc ``C -> num_clusters`` drawn again (normal std 0.01);
4. the epoch's sample order uniform over the clusters
   (:func:`~sslzoo.models.clustering.uniform_cluster_order`), ``N`` samples.

Training: cross-entropy of ``fc(avgpool(backbone(sobel(view))))`` ``[B, num_clusters]`` against
``labels[indices]`` ``[B]``; the fc has no SGD momentum. ``labels`` is a buffer (in the
checkpoint): a run resumed between two clusterings continues with it, one resumed at a
clustering epoch computes it again from the restored weights and the epoch's seed, exactly as
the uninterrupted run did.

With ``with_sobel`` (the reference's), the backbone's stem takes the 2 Sobel channels: its
backbone is only evaluated right by a benchmark that applies the same Sobel layer first.
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
from sslzoo.models.clustering import cluster_features, uniform_cluster_order
from sslzoo.models.pseudo_label_classifier import PseudoLabelClassifier, accuracy, sub_seeds

# method_args keys -> the reference's values
METHOD_KEYS: dict[str, Any] = {
    "num_clusters": 10000,  # clustering=dict(type='Kmeans', k=num_classes), num_classes = 10000
    "pca_dim": 256,  # clustering pca_dim=256
    "with_sobel": True,  # DeepCluster(with_sobel=True) (the algorithm's default)
    "uniform_sampling": True,  # DeepClusterHook unif_sampling=True
    "cluster_interval": 1,  # DeepClusterHook interval=1 (epochs)
    "head_momentum": 0.0,  # paramwise_options {'\\Ahead.': dict(momentum=0.)}
}


class GlobalAvgPool(nn.Module):
    """``[B, C, h, w]`` -> ``[B, C]`` (``AvgPool2dNeck`` flattened)."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=(2, 3))


class DeepCluster(PseudoLabelClassifier):
    """[Sobel ->] ResNet -> global average pool -> fc over the epoch's k-means clusters.

    Args:
        depth, zero_init_residual, conv_init: the backbone.
        num_clusters: k of the k-means and classes of the fc.
        pca_dim: PCA-whitening dimension before the k-means (-1: none).
        with_sobel: the fixed Sobel input layer and a 2-channel stem.
        uniform_sampling: each epoch samples uniformly over the clusters (else the plain shuffle).
        cluster_interval: epochs between two clusterings (and head draws).
        head_momentum: SGD momentum of the fc.
    """

    batch_fields = ("indices",)
    data_sized = ("labels",)

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        num_clusters: int = 10000,
        pca_dim: int = 256,
        with_sobel: bool = True,
        uniform_sampling: bool = True,
        cluster_interval: int = 1,
        head_momentum: float = 0.0,
    ) -> None:
        if num_clusters < 2:
            raise SslzooError(f"model config method_args.num_clusters = {num_clusters}: needs at least 2")
        if pca_dim != -1 and pca_dim < 1:
            raise SslzooError(f"model config method_args.pca_dim = {pca_dim}: a dimension, or -1 for no PCA")
        if cluster_interval < 1:
            raise SslzooError(
                f"model config method_args.cluster_interval = {cluster_interval}: epochs, at least 1"
            )
        super().__init__(
            lambda channels: (GlobalAvgPool(), channels),
            depth=depth,
            zero_init_residual=zero_init_residual,
            conv_init=conv_init,
            num_clusters=num_clusters,
            with_sobel=with_sobel,
            head_momentum=head_momentum,
        )
        self.pca_dim = pca_dim
        self.uniform_sampling = uniform_sampling
        self.cluster_interval = cluster_interval
        self.register_buffer("labels", torch.zeros(0, dtype=torch.int64))  # [N] once clustered
        # the same on every process by construction: DDP need not broadcast them every step
        self._ddp_params_and_buffers_to_ignore = ["labels"]

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> DeepCluster:
        """Build from a model config: ``backbone.*`` and the ``method_args`` of ``METHOD_KEYS``."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        return cls(
            **backbone_args(cfg),
            **args,
        )

    def before_epoch(
        self, epoch: int, extract: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor], seed: int
    ) -> torch.Tensor | None:
        """Cluster the training set's features and draw the fc again (every ``cluster_interval``
        epochs, and whenever there are no labels yet); return the epoch's order.

        Args:
            epoch: 0-based.
            extract: ``features_fn -> [N, C]`` over the whole training set in dataset order.
            seed: the epoch's seed (the same on every process): the k-means start, the fc and
                the order.

        Returns:
            int64 ``[N]`` dataset indices uniform over the clusters, or None (plain shuffle).
        """
        kmeans_seed, head_seed, order_seed = sub_seeds(seed, 3)
        if epoch % self.cluster_interval == 0 or self.labels.numel() == 0:
            features = extract(self.embed).numpy()
            labels = cluster_features(features, self.num_clusters, self.pca_dim, kmeans_seed)
            if self.labels.shape != labels.shape:
                self.resize_buffer("labels", labels.shape, torch.int64)
            self.labels.copy_(torch.from_numpy(labels))
            self.reset_head(head_seed)
        if not self.uniform_sampling:
            return None
        labels = self.labels.cpu().numpy()
        return torch.from_numpy(uniform_cluster_order(labels, self.num_clusters, order_seed))

    def forward(self, images: torch.Tensor, *, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` ``[B, 3, H, W]``, ``indices`` int64 ``[B]`` (dataset positions) ->
        ``{"loss": cross-entropy against labels[indices], "accuracy": top-1 %}``."""
        if self.labels.numel() == 0:
            raise SslzooError(
                "DeepCluster has no cluster assignments: train it with sslzoo.engine.trainer.train, "
                "which calls before_epoch at every epoch start"
            )
        targets = self.labels[indices]
        logits = self.logits(self.embed(images)).float()
        return {"loss": F.cross_entropy(logits, targets), "accuracy": accuracy(logits, targets)}
