"""ODC's samples memory (a feature and a pseudo-label per sample) and centroids memory.

Zhan, Xie, Liu, Ong, Loy, "Online Deep Clustering for Unsupervised Representation Learning",
CVPR 2020, as mmselfsup 0.x ``mmselfsup/models/memories/odc_memory.py`` (``ODCMemory``):

- :meth:`ODCMemory.init_memory`: the features (L2-normalised) and k-means labels of the whole
  training set; each centroid the mean of its members' features (an empty cluster's stays 0);
- :meth:`ODCMemory.update_samples_memory` (every forward): ``f <- normalise((1 - m) f + m x)``
  for the batch's normalised features ``x`` (all processes' batches), then each sample's label
  becomes its most similar centroid (dot product); returns the fraction of labels that changed;
- :meth:`ODCMemory.update_centroids_memory`: centroids recomputed as the members' mean;
- :meth:`ODCMemory.deal_with_small_clusters`: the samples of every cluster smaller than
  ``min_cluster`` move to their most similar centroid among the other clusters; then each such
  (now empty) cluster takes half of the largest cluster, split by 2-means (scikit-learn
  ``KMeans(n_clusters=2, random_state=0, max_iter=20)`` with the 10 starts of the scikit-learn
  of the reference's time), and both centroids are recomputed.

``feature_bank`` ``[N, D]`` and ``label_bank`` ``[N]`` are sized by the data at
:meth:`~ODCMemory.init_memory` (empty before); all three are buffers (the reference keeps them
outside the checkpoint, here a resumed run continues from them). Under DDP every process keeps
the same copy: the batches' indices and features are gathered and every process applies the
same updates (the reference keeps the features on rank 0 and broadcasts its results).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from sklearn.cluster import KMeans

from sslzoo.errors import SslzooError
from sslzoo.models.clustering import DataSizedBuffers

EPS = 1e-10  # the reference's normalisation guard
SPLIT_KMEANS = {"n_clusters": 2, "random_state": 0, "max_iter": 20, "n_init": 10}


def l2_normalise(features: torch.Tensor) -> torch.Tensor:
    """Rows divided by ``norm + 1e-10``."""
    return features / (features.norm(dim=1, keepdim=True) + EPS)


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's ``tensor`` ``[n, ...]`` concatenated in rank order (itself in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def last_occurrences(indices: torch.Tensor) -> torch.Tensor:
    """Positions of the last occurrence of each distinct value of ``indices`` ``[n]``: a batch
    drawn with replacement may hold a sample twice, and the later row wins, as the reference's
    sequential CPU write."""
    _, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(len(indices), device=indices.device)
    last = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.int64, device=indices.device)
    return last.scatter_reduce(0, inverse, positions, reduce="amax")


class ODCMemory(DataSizedBuffers):
    """The samples and centroids memories of ODC.

    Args:
        feat_dim: ``D``, the neck's output dimension.
        num_classes: ``K`` clusters.
        momentum: ``m`` of the sample-feature update (0.5).
        min_cluster: clusters smaller than this are dissolved and re-seeded (20).
    """

    data_sized = ("feature_bank", "label_bank")

    def __init__(self, feat_dim: int, num_classes: int, momentum: float = 0.5, min_cluster: int = 20) -> None:
        super().__init__()
        self.feat_dim, self.num_classes = feat_dim, num_classes
        self.momentum, self.min_cluster = momentum, min_cluster
        self.register_buffer("feature_bank", torch.zeros(0, feat_dim))
        self.register_buffer("label_bank", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("centroids", torch.zeros(num_classes, feat_dim))

    @property
    def initialized(self) -> bool:
        """Whether :meth:`init_memory` ran (in this run or the one a resume state came from)."""
        return self.feature_bank.numel() > 0

    @torch.no_grad()
    def init_memory(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fill the memory from ``features`` ``[N, D]`` and k-means ``labels`` int64 ``[N]``."""
        size = features.shape[0]
        self.resize_buffer("feature_bank", (size, self.feat_dim), torch.float32)
        self.resize_buffer("label_bank", (size,), torch.int64)
        self.feature_bank.copy_(l2_normalise(features.float()))
        self.label_bank.copy_(labels)
        self.centroids.zero_()
        self.update_centroids_memory()

    def histogram(self) -> torch.Tensor:
        """Cluster sizes, int64 ``[K]``."""
        return torch.bincount(self.label_bank, minlength=self.num_classes)

    def _member_means(self, clusters: torch.Tensor) -> torch.Tensor:
        """Mean feature of the members of each of ``clusters`` ``[c]`` -> ``[c, D]`` (NaN when empty)."""
        sums = torch.zeros_like(self.centroids).index_add_(0, self.label_bank, self.feature_bank)
        counts = self.histogram().to(sums.dtype)
        return sums[clusters] / counts[clusters].unsqueeze(1)

    @torch.no_grad()
    def update_centroids_memory(self, clusters: list[int] | None = None) -> None:
        """Recompute the centroids of ``clusters`` (default: every non-empty cluster; an empty
        one keeps its centroid)."""
        if clusters is None:
            chosen = torch.nonzero(self.histogram() > 0)[:, 0]
        else:
            chosen = torch.as_tensor(clusters, dtype=torch.int64, device=self.centroids.device)
        self.centroids[chosen] = self._member_means(chosen)

    @torch.no_grad()
    def update_samples_memory(self, indices: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Move the batch's memory features towards ``features`` ``[B, D]`` and relabel them.

        Returns the fraction (0-dim tensor) of the gathered batch whose label changed.
        """
        if not self.initialized:
            raise SslzooError("the ODC memory is used before init_memory (before_epoch fills it)")
        indices = _gather(indices.to(self.label_bank.device))
        normalised = _gather(l2_normalise(features.float()))
        moved = (1.0 - self.momentum) * self.feature_bank[indices] + self.momentum * normalised
        moved = l2_normalise(moved)
        new_labels = (self.centroids @ moved.T).argmax(dim=0)
        change_ratio = (new_labels != self.label_bank[indices]).float().mean()
        keep = last_occurrences(indices)
        self.feature_bank[indices[keep]] = moved[keep]
        self.label_bank[indices[keep]] = new_labels[keep]
        return change_ratio

    @torch.no_grad()
    def deal_with_small_clusters(self) -> None:
        """Dissolve the clusters smaller than ``min_cluster`` and re-seed each from the largest."""
        histogram = self.histogram()
        small = torch.nonzero(histogram < self.min_cluster)[:, 0]
        if len(small) == 0:
            return
        if len(small) == self.num_classes:
            raise SslzooError(
                f"every ODC cluster has fewer than min_cluster = {self.min_cluster} samples "
                f"({len(self.label_bank)} samples, {self.num_classes} clusters): lower "
                "method_args.min_cluster or method_args.num_clusters"
            )
        is_small = torch.zeros(self.num_classes, dtype=torch.bool, device=histogram.device)
        is_small[small] = True
        members = torch.nonzero(is_small[self.label_bank])[:, 0]
        if len(members):
            kept = torch.nonzero(~is_small)[:, 0]
            similarity = self.centroids[kept] @ self.feature_bank[members].T  # [kept, members]
            self.label_bank[members] = kept[similarity.argmax(dim=0)]
        for empty in small.tolist():
            self._redirect_empty_cluster(empty)

    def _redirect_empty_cluster(self, empty: int) -> None:
        """Give the empty cluster ``empty`` one half of the largest cluster (2-means split)."""
        largest = int(self.histogram().argmax())
        members = torch.nonzero(self.label_bank == largest)[:, 0].cpu().numpy()
        if len(members) < 2:
            raise SslzooError(
                f"the largest ODC cluster has {len(members)} sample(s): too few samples for "
                f"{self.num_classes} clusters; lower method_args.num_clusters"
            )
        features = self.feature_bank[torch.from_numpy(members).to(self.feature_bank.device)].cpu().numpy()
        if np.isnan(features).any():
            raise SslzooError("NaN in the ODC memory features: the training diverged; lower the lr")
        split = KMeans(**SPLIT_KMEANS).fit(features).labels_
        second = members[split == 1]
        if len(second) == 0 or len(second) == len(members):
            # the reference's fallback: a random half (seeded here by the cluster, for a resumable run)
            rng = np.random.default_rng(largest)
            second = np.setdiff1d(members, rng.choice(members, len(members) // 2, replace=False))
        self.label_bank[torch.from_numpy(second).to(self.label_bank.device)] = empty
        self.update_centroids_memory([largest, empty])
