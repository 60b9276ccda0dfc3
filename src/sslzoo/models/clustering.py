"""k-means pseudo-labels and what DeepCluster and ODC derive from them.

mmselfsup 0.x ``mmselfsup/utils/clustering.py`` (``Kmeans``, ``preprocess_features``,
``run_kmeans``, from facebookresearch/deepcluster ``clustering.py``),
``mmselfsup/datasets/samplers/distributed_sampler.py`` (``set_uniform_indices``) and
``mmselfsup/models/algorithms/odc.py`` (``set_reweight``):

- :func:`preprocess_features`: PCA to ``pca_dim`` with whitening (faiss ``PCAMatrix``, eigen
  power -0.5; ``pca_dim`` -1 skips it), then every row L2-normalised;
- :func:`kmeans`: faiss k-means (Lloyd, 20 iterations, every point used, exact L2 index; faiss
  re-seeds an empty cluster during training by splitting a large one), then each point's nearest
  final centroid; on the GPU when the faiss build and CUDA allow, as the reference;
- :func:`uniform_cluster_order`: DeepCluster's sampling uniform over clusters;
- :func:`inverse_size_weights`: ODC's loss weights, cluster size to the power ``-pow``, normalised;
- :class:`DataSizedBuffers`: buffers sized by the dataset at the first clustering (the methods
  are built before the data is known) that ``load_state_dict`` gives the saved shapes.

faiss is a dependency of sslzoo (``faiss-cpu`` in pyproject.toml, ``faiss-gpu`` in
environment.yml); without it these raise an error naming the package.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from sslzoo.errors import SslzooError

KMEANS_ITERATIONS = 20  # run_kmeans: clus.niter = 20
MAX_POINTS_PER_CENTROID = 10_000_000  # run_kmeans: no subsampling of the training points
NAN_TOLERANCE = 0.001  # preprocess_features: up to 0.1% NaN after the PCA are set to 0


def faiss_module() -> ModuleType:
    """The faiss package, or an error that says how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise SslzooError(
            "DeepCluster and ODC cluster with faiss, which is not installed: "
            "pip install -c constraints.txt faiss-cpu (or conda install -c conda-forge faiss-gpu)"
        ) from err
    return faiss


def preprocess_features(features: np.ndarray, pca_dim: int) -> np.ndarray:
    """``[N, D]`` float32 -> PCA-reduced to ``pca_dim`` and whitened (skipped for -1), then rows
    L2-normalised (``x / (|x| + 1e-10)``): ``[N, pca_dim]`` (or ``[N, D]``) float32."""
    if features.dtype != np.float32 or features.ndim != 2:
        raise ValueError(f"expected float32 [N, D] features, got {features.dtype} {features.shape}")
    if np.isnan(features).any():
        raise SslzooError("the extracted features contain NaN: the training diverged; lower the lr")
    if pca_dim != -1:
        faiss = faiss_module()
        pca = faiss.PCAMatrix(features.shape[1], pca_dim, -0.5)
        pca.train(features)
        features = pca.apply(features)
        nan = np.isnan(features)
        if nan.mean() > NAN_TOLERANCE:
            raise SslzooError(f"{100 * nan.mean():.2f}% NaN after the PCA whitening (more than 0.1%)")
        features[nan] = 0.0
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / (norms + 1e-10)).astype(np.float32)


def _flat_l2_index(faiss: ModuleType, dim: int) -> Any:
    """An exact L2 index, on the current CUDA device when faiss has GPU support."""
    if hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available():
        config = faiss.GpuIndexFlatConfig()
        config.useFloat16 = False
        config.device = torch.cuda.current_device()
        return faiss.GpuIndexFlatL2(faiss.StandardGpuResources(), dim, config)
    return faiss.IndexFlatL2(dim)


def kmeans(
    points: np.ndarray,
    k: int,
    seed: int,
    iterations: int = KMEANS_ITERATIONS,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """faiss k-means of ``points`` ``[N, D]`` float32 into ``k`` clusters: int64 ``[N]``, each
    point's nearest centroid after ``iterations`` Lloyd steps.

    ``seed`` picks the ``k`` random points that start the centroids (the reference draws it from
    NumPy's global generator, so that the start changes from epoch to epoch); ``init`` ``[k, D]``
    gives the start instead.
    """
    faiss = faiss_module()
    n, dim = points.shape
    if n < k:
        raise SslzooError(f"k-means of {n} samples into {k} clusters: use at most {n} clusters")
    clustering = faiss.Clustering(dim, k)
    clustering.seed = int(seed) % 2**31
    clustering.niter = iterations
    clustering.max_points_per_centroid = MAX_POINTS_PER_CENTROID
    clustering.min_points_per_centroid = 1  # only silences faiss's "few points" warning
    if init is not None:
        faiss.copy_array_to_vector(np.ascontiguousarray(init, dtype=np.float32).ravel(), clustering.centroids)
    index = _flat_l2_index(faiss, dim)
    points = np.ascontiguousarray(points, dtype=np.float32)
    clustering.train(points, index)  # the index ends holding the final centroids
    _, nearest = index.search(points, 1)
    return nearest[:, 0].astype(np.int64)


def cluster_features(features: np.ndarray, k: int, pca_dim: int, seed: int) -> np.ndarray:
    """The reference's ``Kmeans(k, pca_dim).cluster(features)``: :func:`preprocess_features`
    then :func:`kmeans`; int64 ``[N]`` labels in ``0..k-1``."""
    return kmeans(preprocess_features(features, pca_dim), k, seed)


def uniform_cluster_order(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """An epoch's sample order uniform over the non-empty clusters (``set_uniform_indices``).

    Each non-empty cluster, in label order, contributes ``int(N / k) + 1`` of its samples drawn
    at random (with replacement when it has no more than that many); the concatenation is
    shuffled and cut to ``N`` (or, with many empty clusters, repeated from its start up to
    ``N``, as the reference pads it). Returns int64 ``[N]`` dataset indices.
    """
    rng = np.random.default_rng(seed)
    size = len(labels)
    per_cluster = int(size / k) + 1
    members = np.argsort(labels, kind="stable")  # each cluster's samples in index order
    bounds = np.searchsorted(labels[members], np.arange(k + 1))
    picks = [
        rng.choice(members[lo:hi], per_cluster, replace=hi - lo <= per_cluster)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        if hi > lo
    ]
    order = np.concatenate(picks)
    rng.shuffle(order)
    return np.resize(order, size).astype(np.int64)


def inverse_size_weights(labels: torch.Tensor, k: int, power: float = 0.5) -> torch.Tensor:
    """ODC's loss weights (``set_reweight``): float32 ``[k]``, ``(1 / (size + 1e-10)) ** power``
    per cluster of the int64 ``labels`` ``[N]``, normalised to sum 1 (an empty cluster gets the
    largest weight; no sample carries it)."""
    histogram = torch.bincount(labels, minlength=k).float()
    inverse = (1.0 / (histogram + 1e-10)) ** power
    return inverse / inverse.sum()


class DataSizedBuffers(nn.Module):
    """A module whose buffers named in ``data_sized`` start empty and take their size from the
    data (:meth:`resize_buffer`); ``load_state_dict`` first gives them the saved shapes, so a
    resume state or checkpoint loads into a freshly built method."""

    data_sized: tuple[str, ...] = ()

    def resize_buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Replace buffer ``name`` by zeros of ``shape`` on its device; returns it."""
        old = getattr(self, name)
        self.register_buffer(name, torch.zeros(shape, dtype=dtype, device=old.device))
        return getattr(self, name)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in self.data_sized:
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                self.resize_buffer(name, tuple(saved.shape), saved.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args)
