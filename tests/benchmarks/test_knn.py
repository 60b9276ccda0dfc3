"""Weighted kNN against a plain-Python implementation; chunking, ties and the metrics file."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sslzoo.benchmarks.knn import knn_classify, nearest_neighbours
from sslzoo.errors import SslzooError
from sslzoo.steps import knn_benchmark as knn_step

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"


def _clustered(num_train: int, num_test: int, num_classes: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    train_y = rng.integers(0, num_classes, num_train)
    test_y = rng.integers(0, num_classes, num_test)
    train_x = centres[train_y] + 1.5 * rng.normal(size=(num_train, dim))
    test_x = centres[test_y] + 1.5 * rng.normal(size=(num_test, dim))
    return train_x.astype(np.float32), train_y, test_x.astype(np.float32), test_y


def _naive_knn(
    train_x, train_y, test_x, test_y, k: int, temperature: float, num_classes: int
) -> tuple[float, float]:
    """One test row at a time, plain Python lists and math.exp.

    Every class is ranked, those without votes last (mmselfsup sorts the full score vector).
    """

    def unit(row):
        norm = math.sqrt(sum(float(v) ** 2 for v in row))
        return [float(v) / norm for v in row]

    train = [unit(row) for row in train_x]
    hits1 = hits5 = 0
    for row, target in zip(test_x, test_y, strict=True):
        query = unit(row)
        sims = [
            (sum(a * b for a, b in zip(query, other, strict=True)), index)
            for index, other in enumerate(train)
        ]
        sims.sort(key=lambda pair: (-pair[0], pair[1]))
        votes = dict.fromkeys(range(num_classes), 0.0)
        for sim, index in sims[:k]:
            votes[int(train_y[index])] += math.exp(sim / temperature)
        ranked = [label for label, _ in sorted(votes.items(), key=lambda item: (-item[1], item[0]))]
        hits1 += ranked[0] == target
        hits5 += target in ranked[: min(5, k)]
    return 100.0 * hits1 / len(test_x), 100.0 * hits5 / len(test_x)


def test_matches_naive_implementation_for_several_k() -> None:
    train_x, train_y, test_x, test_y = _clustered(120, 40, 8, 12, seed=0)
    ks = (1, 3, 10, 20, 100)
    results = knn_classify(
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
        ks=ks,
        temperature=0.07,
        num_classes=8,
        chunk_size=16,
    )
    assert [result.k for result in results] == list(ks)
    for result in results:
        top1, top5 = _naive_knn(train_x, train_y, test_x, test_y, result.k, 0.07, 8)
        assert result.top1 == pytest.approx(top1, abs=1e-9), result.k
        assert result.top5 == pytest.approx(top5, abs=1e-9), result.k
    assert 12.5 < results[2].top1 < 100.0  # above chance (8 classes): the data carry signal


def test_result_does_not_depend_on_chunk_size() -> None:
    train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in _clustered(300, 97, 10, 16, seed=1))
    runs = [
        knn_classify(
            train_x, train_y, test_x, test_y, ks=(10, 20, 100, 200), temperature=0.07, chunk_size=chunk
        )
        for chunk in (1, 7, 32, 1000)
    ]
    assert all(run == runs[0] for run in runs[1:])


def test_ties_go_to_the_lower_training_index_and_lower_class() -> None:
    v, w = [1.0, 0.0], [0.0, 1.0]
    train_x = torch.tensor([w, v, v, v, w])
    train_y = torch.tensor([3, 2, 0, 1, 3])
    values, indices = nearest_neighbours(torch.tensor([[0.5, 1.0, 1.0, 1.0, 0.5]]), 2)
    assert indices.tolist() == [[1, 2]] and values.tolist() == [[1.0, 1.0]]
    # k=1: the tie between rows 1, 2, 3 goes to row 1 (class 2)
    (k1,) = knn_classify(train_x, train_y, torch.tensor([v]), torch.tensor([2]), (1,), 0.07, 4, chunk_size=8)
    assert k1.top1 == 100.0
    # k=2: rows 1 and 2 (classes 2 and 0) with equal votes; the lower class (0) is predicted
    (k2,) = knn_classify(train_x, train_y, torch.tensor([v]), torch.tensor([0]), (2,), 0.07, 4, chunk_size=8)
    assert k2.top1 == 100.0 and k2.top5 == 100.0


def test_k_larger_than_training_set_is_an_error() -> None:
    x = torch.randn(5, 3)
    with pytest.raises(SslzooError, match="1..5"):
        knn_classify(
            x,
            torch.zeros(5, dtype=torch.long),
            x,
            torch.zeros(5, dtype=torch.long),
            (10,),
            0.07,
            chunk_size=8,
        )


def test_knn_step_writes_metrics_with_meta(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = _clustered(250, 30, 5, 8, seed=2)
    classes = np.array(["n0", "n1", "n2", "n3", "n4"])
    np.savez(tmp_path / "train.npz", avgpool=train_x, labels=train_y, classes=classes)
    np.savez(tmp_path / "val.npz", avgpool=test_x, labels=test_y, classes=classes)
    out = tmp_path / "results" / "benchmarks" / "knn_imagenet" / "my-model" / "metrics.json"
    parser = argparse.ArgumentParser()
    knn_step.add_arguments(parser)
    knn_step.main(
        parser.parse_args(
            [
                "--train",
                str(tmp_path / "train.npz"),
                "--test",
                str(tmp_path / "val.npz"),
                "--config",
                str(CONFIG_DIR / "knn_mini.yaml"),
                "--benchmark",
                "knn_imagenet",
                "--model",
                "my-model",
                "--out",
                str(out),
            ]
        )
    )
    metrics = json.loads(out.read_text())
    assert [key for key in metrics if key != "meta"] == ["k=10", "k=20", "k=100", "k=200"]
    for k in (10, 200):
        top1, top5 = _naive_knn(train_x, train_y, test_x, test_y, k, 0.07, 5)
        assert metrics[f"k={k}"] == pytest.approx(top1, abs=1e-9)
        assert metrics["meta"]["top5"][f"k={k}"] == pytest.approx(top5, abs=1e-9)
    assert metrics["meta"]["benchmark"] == "knn_imagenet" and metrics["meta"]["model"] == "my-model"
    assert metrics["meta"]["config"]["temperature"] == 0.07 and "git_rev" in metrics["meta"]
    # the run record: one process, nothing trained (no batch, no protocol), no randomness
    run = metrics["meta"]["run"]
    assert (run["world_size"], run["seed"], run["torch"]) == (1, None, torch.__version__)
    assert run["per_process_batch"] is run["total_batch"] is run["protocol"] is None


def test_missing_layer_names_the_file(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "f.npz",
        feature5=np.zeros((3, 2), np.float32),
        labels=np.zeros(3, np.int64),
        classes=np.array(["a"]),
    )
    config = tmp_path / "knn.yaml"
    config.write_text("layer: avgpool\nks: [1]\n")
    from sslzoo.benchmarks.knn import knn_benchmark

    with pytest.raises(SslzooError, match=r"f.npz: no layer 'avgpool'"):
        knn_benchmark(
            tmp_path / "f.npz",
            tmp_path / "f.npz",
            config,
            tmp_path / "m.json",
            benchmark_name="knn_imagenet",
            model_name="m",
        )
