"""k-means pseudo-labels: faiss k-means against scikit-learn's Lloyd from the same start, the PCA
whitening against NumPy's eigendecomposition, the uniform-over-clusters order and ODC's loss
weights against hand values, and the buffers sized by the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from sslzoo.models.clustering import (
    DataSizedBuffers,
    cluster_features,
    inverse_size_weights,
    kmeans,
    preprocess_features,
    uniform_cluster_order,
)


def blobs(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(centres, dim))
    return (means[rng.integers(0, centres, n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize(("iterations", "seed"), [(2, 0), (20, 1), (5, 2)])
def test_kmeans_matches_scikit_learn_lloyd_from_the_same_start(iterations: int, seed: int) -> None:
    points = blobs(300, 6, 5, seed)
    init = points[np.random.default_rng(seed).choice(300, 7, replace=False)]
    ours = kmeans(points, 7, seed=123, iterations=iterations, init=init)
    reference = KMeans(7, init=init, n_init=1, max_iter=iterations, tol=0.0, algorithm="lloyd").fit(points)
    assert np.bincount(reference.labels_, minlength=7).min() > 0  # no empty cluster: same rules apply
    np.testing.assert_array_equal(ours, reference.labels_)


def test_kmeans_start_follows_the_seed() -> None:
    points = blobs(400, 4, 12, 3)
    same = kmeans(points, 10, seed=5, iterations=3)
    assert np.array_equal(same, kmeans(points, 10, seed=5, iterations=3))
    assert not np.array_equal(same, kmeans(points, 10, seed=6, iterations=3))
    assert same.dtype == np.int64 and same.shape == (400,) and 0 <= same.min() and same.max() < 10


def test_pca_whitening_and_l2_normalisation_match_numpy() -> None:
    features = blobs(200, 12, 4, 7) * np.linspace(0.5, 3.0, 12, dtype=np.float32)
    ours = preprocess_features(features, 5)
    centred = features.astype(np.float64) - features.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
    top = np.argsort(values)[::-1][:5]
    whitened = centred @ vectors[:, top] / np.sqrt(values[top])
    expected = whitened / np.linalg.norm(whitened, axis=1, keepdims=True)
    assert ours.shape == (200, 5) and ours.dtype == np.float32
    # eigenvector signs are arbitrary: compare the cosine similarities of all pairs
    np.testing.assert_allclose(ours @ ours.T, expected @ expected.T, atol=2e-4)


def test_without_pca_the_rows_are_only_normalised() -> None:
    features = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(preprocess_features(features, -1), [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)


def test_cluster_features_is_whitening_then_kmeans() -> None:
    features = blobs(250, 10, 6, 11)
    expected = kmeans(preprocess_features(features, 4), 6, seed=9)
    np.testing.assert_array_equal(cluster_features(features, 6, 4, seed=9), expected)


def test_uniform_order_draws_as_many_samples_from_every_cluster() -> None:
    # cluster 0 holds 90 samples, clusters 1..9 one each: int(99 / 10) + 1 = 10 draws per cluster,
    # 100 draws cut to 99
    labels = np.array([0] * 90 + list(range(1, 10)), dtype=np.int64)
    order = uniform_cluster_order(labels, 10, seed=0)
    assert order.shape == (99,) and order.dtype == np.int64
    counts = np.bincount(labels[order], minlength=10)
    assert sorted(counts.tolist()) == [9] + [10] * 9
    assert np.bincount(order, minlength=99)[90:].min() >= 9  # a singleton is drawn again and again
    big = order[labels[order] == 0]
    assert len(set(big.tolist())) == len(big)  # 90 > 10 members: drawn without replacement
    assert not np.array_equal(order, uniform_cluster_order(labels, 10, seed=1))


def test_uniform_order_skips_empty_clusters_and_wraps_to_the_dataset_size() -> None:
    # 12 clusters, 2 empty: 10 x (int(99 / 12) + 1) = 90 draws, padded by wrapping to 99
    labels = np.array([0] * 90 + list(range(1, 10)), dtype=np.int64)
    order = uniform_cluster_order(labels, 12, seed=3)
    assert order.shape == (99,)
    np.testing.assert_array_equal(order[90:], order[:9])
    assert sorted(np.bincount(labels[order[:90]], minlength=12).tolist()) == [0, 0] + [9] * 10


def test_inverse_size_weights_by_hand() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2])  # sizes 4, 1, 9 and an empty 3
    weights = inverse_size_weights(labels, 4, power=0.5)
    raw = [4**-0.5, 1.0, 9**-0.5, (1e-10) ** -0.5]
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([w / sum(raw) for w in raw], rel=1e-6)
    squared = inverse_size_weights(labels[:5], 2, power=1.0)
    assert squared.tolist() == pytest.approx([0.25 / 1.25, 1.0 / 1.25], rel=1e-6)


class Sized(DataSizedBuffers):
    data_sized = ("bank",)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", torch.zeros(0, 3))
        self.register_buffer("fixed", torch.zeros(2))


def test_data_sized_buffers_take_the_saved_shape_on_load() -> None:
    saved = Sized()
    saved.resize_buffer("bank", (5, 3), torch.float32).copy_(torch.arange(15.0).reshape(5, 3))
    fresh = Sized()
    assert fresh.bank.shape == (0, 3)
    fresh.load_state_dict(saved.state_dict())
    assert torch.equal(fresh.bank, saved.bank)
    with pytest.raises(RuntimeError, match="fixed"):  # other buffers keep the strict shape check
        fresh.load_state_dict({**saved.state_dict(), "fixed": torch.zeros(3)})
