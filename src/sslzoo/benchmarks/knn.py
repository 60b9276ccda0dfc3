"""Weighted k-nearest-neighbour classification on cached features.

The non-parametric classifier of Wu et al. 2018 ("Unsupervised Feature Learning via
Non-Parametric Instance Discrimination"), as used by mmselfsup
``tools/benchmarks/classification/knn_imagenet`` (PROTOCOLS.md "kNN classification"):

- rows L2-normalised, similarity = cosine (dot product of the normalised rows);
- the k most similar training rows vote for their class with weight ``exp(sim / T)`` (the
  protocol's T, 0.07, is the default of ``sslzoo/schemas/knn.schema.yaml``);
- classes ranked by summed vote (classes without votes last); top-1 and top-5 (among the first
  ``min(5, k)``) accuracy in %.

The accuracy is a pure function of the two feature matrices: test rows are processed in chunks
(to bound memory: ``chunk_size x N_train`` similarities at a time) and every choice between
equal values is fixed (the lower training index wins a tie for the k-th neighbour, the lower
class index wins a tie in the vote), so neither the chunk size nor the device order changes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sslzoo.benchmarks.feature_files import read_layer
from sslzoo.benchmarks.protocol_files import read_protocol
from sslzoo.errors import SslzooError
from sslzoo.io import git_revision, write_json
from sslzoo.runtime.record import run_record


@dataclass(frozen=True)
class KnnResult:
    """Accuracy (%) for one k."""

    k: int
    top1: float
    top5: float


def l2_normalize(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm, ``[N, D]`` (an all-zero row stays zero)."""
    return F.normalize(features, p=2, dim=1)


def nearest_neighbours(similarity: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar columns of each row, ordered by similarity, ties by lower column index.

    Args:
        similarity: ``[B, N]``, finite.
        k: 1 <= k <= N.

    Returns:
        values ``[B, k]`` (descending) and column indices ``[B, k]``.
    """
    kth = similarity.topk(k, dim=1).values[:, -1:]  # the k-th largest value is unambiguous
    greater = similarity > kth
    equal = similarity == kth
    needed = k - greater.sum(dim=1, keepdim=True)
    selected = greater | equal
    ambiguous = (equal.sum(dim=1, keepdim=True) > needed).squeeze(1).nonzero().squeeze(1)
    if ambiguous.numel():  # more columns tie for the last places than there are places: lowest indices
        ties = equal[ambiguous]
        keep = ties & (ties.cumsum(dim=1) <= needed[ambiguous])
        selected[ambiguous] = greater[ambiguous] | keep
    indices = selected.nonzero()[:, 1].view(similarity.shape[0], k)  # ascending column order per row
    values = similarity.gather(1, indices)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, indices.gather(1, order)


def weighted_votes(
    neighbour_similarity: torch.Tensor, neighbour_labels: torch.Tensor, num_classes: int, temperature: float
) -> torch.Tensor:
    """Class scores ``[B, C]``: the sum of ``exp(sim / T)`` over the neighbours of each class.

    Args:
        neighbour_similarity: ``[B, k]`` cosine similarities.
        neighbour_labels: ``[B, k]`` class indices of those neighbours.
    """
    weights = (neighbour_similarity / temperature).exp()
    one_hot = F.one_hot(neighbour_labels, num_classes).to(weights.dtype)
    return (one_hot * weights.unsqueeze(2)).sum(dim=1)


def knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int | None = None,
    *,
    chunk_size: int,
) -> list[KnnResult]:
    """Weighted kNN top-1/top-5 accuracy (%) of the test rows for each k.

    Args:
        train_features: ``[N, D]`` (any scale; rows are L2-normalised here).
        train_labels: ``[N]`` int64 class indices.
        test_features: ``[M, D]``.
        test_labels: ``[M]`` int64.
        ks: neighbour counts, each <= N.
        temperature: T in ``exp(sim / T)``.
        num_classes: C; default ``max label + 1``.
        chunk_size: test rows per similarity block (memory ``chunk_size x N``); no effect on the result.

    The computation runs on the device of ``train_features``.
    """
    if not ks or min(ks) < 1 or max(ks) > len(train_features):
        raise SslzooError(
            f"kNN: every k must be in 1..{len(train_features)} (the training rows), got {list(ks)}"
        )
    if chunk_size < 1:
        raise SslzooError(f"kNN: chunk_size must be >= 1, got {chunk_size}")
    if not (torch.isfinite(train_features).all() and torch.isfinite(test_features).all()):
        raise SslzooError("kNN: the features hold NaN or infinite values; the backbone diverged")
    device = train_features.device
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train = l2_normalize(train_features.float())
    train_labels = train_labels.to(device=device, dtype=torch.long)
    k_max = max(ks)
    top1 = dict.fromkeys(ks, 0)
    top5 = dict.fromkeys(ks, 0)
    for start in range(0, len(test_features), chunk_size):
        queries = l2_normalize(test_features[start : start + chunk_size].to(device).float())
        targets = test_labels[start : start + chunk_size].to(device=device, dtype=torch.long).unsqueeze(1)
        similarity, neighbours = nearest_neighbours(queries @ train.T, k_max)
        labels = train_labels[neighbours]
        for k in ks:
            votes = weighted_votes(similarity[:, :k], labels[:, :k], num_classes, temperature)
            ranked = torch.sort(votes, dim=1, descending=True, stable=True).indices
            correct = ranked[:, : min(5, k)] == targets
            top1[k] += int(correct[:, 0].sum())
            top5[k] += int(correct.any(dim=1).sum())
    total = len(test_features)
    return [KnnResult(k=k, top1=100.0 * top1[k] / total, top5=100.0 * top5[k] / total) for k in ks]


@dataclass(frozen=True)
class KnnConfig:
    """``config/benchmarks/knn*.yaml`` (keys and defaults: ``sslzoo/schemas/knn.schema.yaml``)."""

    layer: str
    ks: tuple[int, ...]
    temperature: float
    chunk_size: int


def load_knn_config(path: str | os.PathLike[str]) -> tuple[KnnConfig, dict[str, Any]]:
    """The validated config and the file's mapping with every value filled (recorded in metrics.json)."""
    raw, cfg = read_protocol(path, "knn")
    config = KnnConfig(
        layer=cfg["layer"],
        ks=tuple(cfg["ks"]),
        temperature=float(cfg["temperature"]),
        chunk_size=cfg["chunk_size"],
    )
    return config, {
        **raw,
        "layer": config.layer,
        "ks": list(config.ks),
        "temperature": config.temperature,
        "chunk_size": config.chunk_size,
    }


def _load_split(path: str | os.PathLike[str], layer: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of ``layer``, int64 labels and class names of one feature file."""
    features, labels, classes = read_layer(path, layer, "set 'layer' in the kNN config")
    if labels.ndim != 1:
        raise SslzooError(f"{path}: kNN needs single-label data, labels have shape {labels.shape}")
    return features, labels.astype(np.int64), classes


def knn_benchmark(
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    benchmark_name: str,
    model_name: str,
) -> dict[str, Any]:
    """Run kNN on two feature files and write ``results/benchmarks/{benchmark}/{model}/metrics.json``.

    ``benchmark_name`` (a benchmark of :mod:`sslzoo.benchmarks.registry`) and ``model_name`` are
    the names ``meta`` records. The file holds ``"k=10"``.. (top-1 %) and ``meta`` with the top-5
    accuracies, the config, the inputs and the run record ``run`` (:mod:`sslzoo.run_record`; its
    batch fields are null: the feature files do not record the batch they were extracted with,
    and nothing is trained here).
    """
    config, raw_config = load_knn_config(config_path)
    train_x, train_y, train_classes = _load_split(train_path, config.layer)
    test_x, test_y, test_classes = _load_split(test_path, config.layer)
    if train_classes != test_classes:
        raise SslzooError(
            f"{train_path} and {test_path}: different class lists; extract both from the same dataset"
        )
    if train_x.shape[1] != test_x.shape[1]:
        raise SslzooError(
            f"{train_path} and {test_path}: feature widths differ ({train_x.shape[1]} vs {test_x.shape[1]})"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with torch.no_grad():
        results = knn_classify(
            torch.from_numpy(train_x).to(device),
            torch.from_numpy(train_y),
            torch.from_numpy(test_x),
            torch.from_numpy(test_y),
            ks=config.ks,
            temperature=config.temperature,
            num_classes=len(train_classes),
            chunk_size=config.chunk_size,
        )
    out_path = Path(out_path)
    metrics: dict[str, Any] = {f"k={result.k}": result.top1 for result in results}
    metrics["meta"] = {
        "benchmark": benchmark_name,
        "model": model_name,
        "config": raw_config,
        "config_path": str(config_path),
        "git_rev": git_revision(),
        "train": str(train_path),
        "test": str(test_path),
        "num_train": int(len(train_x)),
        "num_test": int(len(test_x)),
        "top5": {f"k={result.k}": result.top5 for result in results},
        # one process, no training and no randomness: no batch, no seed (sslzoo.run_record)
        "run": run_record(world_size=1, per_process_batch=None, accumulate=None, seed=None, device=device),
    }
    write_json(out_path, metrics)
    return metrics
