"""Report figures: loss curves from train logs, metrics against k from metrics files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from sslzoo.errors import SslzooError
from sslzoo.plots import k_curves, plot_loss, plot_vs_k, read_train_log, running_mean
from sslzoo.steps import plot_k as plot_k_step


def _train_log(path: Path, losses: list[float]) -> Path:
    lines = [
        json.dumps({"epoch": 1, "iter": i + 1, "loss": loss, "lr": 0.1}) for i, loss in enumerate(losses)
    ]
    path.write_text("\n".join(reversed(lines)) + "\n")  # out of order on purpose
    return path


def _metrics(root: Path, benchmark: str, model: str, values: dict) -> Path:
    path = root / benchmark / model / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**values, "meta": {"model": model}}))
    return path


def test_running_mean_matches_a_loop() -> None:
    values = np.random.default_rng(0).normal(size=23)
    import pandas as pd

    got = running_mean(pd.Series(values), 4).to_numpy()
    expected = [values[max(0, i - 3) : i + 1].mean() for i in range(len(values))]
    np.testing.assert_allclose(got, expected)


def test_plot_loss_sorts_iterations_and_is_reproducible(tmp_path: Path) -> None:
    log = _train_log(tmp_path / "train_log.jsonl", [4.0, 3.0, 2.5, 2.0])
    frame = plot_loss(log, tmp_path / "a.svg", "model")
    assert frame["iter"].tolist() == [1, 2, 3, 4] and frame["loss"].tolist() == [4.0, 3.0, 2.5, 2.0]
    plot_loss(log, tmp_path / "b.svg", "model")
    svg = (tmp_path / "a.svg").read_text()
    assert svg.startswith("<?xml") and "training loss" in svg and "learning rate" in svg
    assert svg == (tmp_path / "b.svg").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected JSON lines with 'iter' and 'loss'"),
        ('{"iter": 1}\n', "found columns"),
        ("{oops\n", ":1: not a JSON line"),
    ],
)
def test_bad_train_logs_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "train_log.jsonl"
    path.write_text(text)
    with pytest.raises(SslzooError, match=message):
        read_train_log(path)


def test_k_curves_read_every_k_column_of_every_model(tmp_path: Path) -> None:
    paths = [
        _metrics(tmp_path, "knn_imagenet", "byol", {"k=10": 40.0, "k=20": 41.5, "k=200": 39.0}),
        _metrics(tmp_path, "knn_imagenet", "random", {"k=10": 5.0, "k=100": 4.0}),
    ]
    curves = k_curves("knn_imagenet", paths).sort_values(["model", "k"])
    assert curves.values.tolist() == [
        ["byol", 10, 40.0],
        ["byol", 20, 41.5],
        ["byol", 200, 39.0],
        ["random", 10, 5.0],
        ["random", 100, 4.0],
    ]
    parser = argparse.ArgumentParser()
    plot_k_step.add_arguments(parser)
    out = tmp_path / "knn.svg"
    plot_k_step.main(
        parser.parse_args(
            [
                "--benchmark",
                "knn_imagenet",
                "--metrics",
                *map(str, paths),
                "--ylabel",
                "top-1",
                "--out",
                str(out),
            ]
        )
    )
    svg = out.read_text()
    assert "byol" in svg and "random" in svg and "ImageNet Nearest-Neighbor" in svg


def test_plot_vs_k_refuses_other_benchmarks(tmp_path: Path) -> None:
    lowshot = _metrics(tmp_path, "lowshot_voc07", "m", {"Best Layer": "feature5", "k=1": 10.0})
    with pytest.raises(SslzooError, match="a metrics file of lowshot_voc07, not knn_imagenet"):
        k_curves("knn_imagenet", [lowshot])
    with pytest.raises(SslzooError, match=r"'svm_voc07' has no k=N columns.*'lowshot_voc07'"):
        plot_vs_k("svm_voc07", [], tmp_path / "x.svg", "mAP")
