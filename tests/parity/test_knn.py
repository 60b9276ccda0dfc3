"""kNN: ``sslzoo.benchmarks.knn`` against mmselfsup 0.11.0 ``mmselfsup/models/utils/knn_classifier.py``
(borrowed from DINO's ``eval_knn.py``) on the cached avgpool features of the mini ImageNet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslzoo.benchmarks.knn import knn_benchmark, knn_classify
from tests.parity.reference import Recorder, load_knn_classifier

KS = (10, 20, 100, 200)  # config/benchmarks/knn*.yaml
TEMPERATURE = 0.07


def _load(path: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    with np.load(path) as data:
        return torch.from_numpy(data["avgpool"]), torch.from_numpy(data["labels"]), len(data["classes"])


def test_knn_top1_and_top5_equal_the_reference_for_every_k(
    mini: Any, tmp_path: Path, record: Recorder
) -> None:
    knn_classifier = load_knn_classifier()
    train_x, train_y, num_classes = _load(mini.features["imagenet_train"])
    test_x, test_y, _ = _load(mini.features["imagenet_val"])
    assert len(test_x) >= 100  # the reference splits the test rows into 100 chunks
    ours = knn_classify(train_x, train_y, test_x, test_y, KS, TEMPERATURE, num_classes, chunk_size=256)
    config = tmp_path / "knn.yaml"
    config.write_text(f"layer: avgpool\nks: {list(KS)}\ntemperature: {TEMPERATURE}\n")
    metrics = knn_benchmark(
        mini.features["imagenet_train"], mini.features["imagenet_val"], config,
        tmp_path / "knn_imagenet" / "random" / "metrics.json", benchmark_name="knn_imagenet", model_name="random",
    )  # fmt: skip
    for result in ours:
        top1, top5 = knn_classifier(train_x, train_y, test_x, test_y, result.k, TEMPERATURE, num_classes)
        record.add("knn", k=result.k, ours_top1=result.top1, reference_top1=top1, ours_top5=result.top5,
                   reference_top5=top5)  # fmt: skip
        assert result.top1 == top1, result.k
        assert result.top5 == top5, result.k
        assert metrics[f"k={result.k}"] == top1
