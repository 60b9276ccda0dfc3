"""The VOC07 SVM and low-shot protocols: folds, cost choice, sampling, aggregation and metrics files."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import LinearSVC

from sslzoo import tables
from sslzoo.benchmarks.feature_files import FEATURE_LAYERS
from sslzoo.benchmarks.registry import SECTIONS
from sslzoo.benchmarks.svm_lowshot import (
    best_layer,
    lowshot_benchmark,
    lowshot_fast,
    mean_over_k,
    summarize_lowshot,
)
from sslzoo.benchmarks.svm_protocol import (
    LowshotConfig,
    LowshotRun,
    SvmSettings,
    VocSplit,
    load_lowshot_config,
    load_svm_config,
    load_voc_split,
    sample_lowshot,
    stratified_fold_ids,
)
from sslzoo.benchmarks.svm_sklearn import LIBLINEAR_SEED, full_svm_sklearn, liblinear_states, lowshot_sklearn
from sslzoo.benchmarks.svm_voc07 import full_svm_fast
from sslzoo.benchmarks.voc_ap import voc_ap
from sslzoo.errors import SslzooError
from sslzoo.steps import lowshot_benchmark as lowshot_step
from sslzoo.steps import svm_benchmark as svm_step

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
COSTS = (1.0, 10.0, 0.0625, 0.0078125, 0.0001220703125)


def _voc_like(n: int, classes: int, dim: int, seed: int, present: float = 0.15) -> VocSplit:
    """Non-negative features in which each present class adds its direction; targets 1/-1/0."""
    rng = np.random.default_rng(seed)
    targets = np.where(rng.random((n, classes)) < present, 1, -1).astype(np.int8)
    targets[rng.random((n, classes)) < 0.03] = 0
    directions = np.random.default_rng(99).normal(size=(classes, dim))
    features = (
        rng.normal(size=(n, dim))
        + 1.2 * np.clip(targets, 0, 1) @ directions
        + 0.5 * (targets == 0) @ directions
    )
    return VocSplit(
        np.maximum(features, 0).astype(np.float32), targets, [f"class{c}" for c in range(classes)]
    )


def test_stratified_folds_match_scikit_learn():
    rng = np.random.default_rng(0)
    for folds in (2, 3, 5):
        for fraction in (0.05, 0.3, 0.5):
            labels = np.where(rng.random(97) < fraction, 1, -1)
            labels[:folds] = 1  # enough members of each class
            expected = np.empty(len(labels), dtype=int)
            for fold, (_, test) in enumerate(StratifiedKFold(folds).split(np.zeros(len(labels)), labels)):
                expected[test] = fold
            assert np.array_equal(stratified_fold_ids(labels, folds), expected)
    with pytest.raises(SslzooError, match="cross-validation"):
        stratified_fold_ids(np.array([1, -1]), 3)


def test_cost_choice_and_test_ap_match_a_plain_scikit_learn_loop():
    train, test = _voc_like(96, 3, 30, seed=1, present=0.3), _voc_like(80, 3, 30, seed=2, present=0.3)
    settings = SvmSettings(costs=COSTS, fast_tol=1e-9)
    ours = full_svm_fast(train, test, settings, device="cpu")
    x = train.features / (np.linalg.norm(train.features, axis=1, keepdims=True) + 1e-5)
    x_test = test.features / (np.linalg.norm(test.features, axis=1, keepdims=True) + 1e-5)
    for c in range(3):
        y = np.where(train.targets[:, c] == 1, 1, -1)  # difficult images train as negatives

        def model(cost):
            return LinearSVC(C=cost, class_weight={1: 2, -1: 1}, tol=1e-10, max_iter=100_000)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cv = [
                cross_val_score(model(cost), x, y, cv=3, scoring="average_precision").mean() for cost in COSTS
            ]
            best = int(np.argmax(cv))
            scores = model(COSTS[best]).fit(x, y).decision_function(x_test)
        np.testing.assert_allclose(ours.cv_ap[c], 100 * np.array(cv), atol=1e-6)
        if sorted(cv)[-1] - sorted(cv)[-2] > 1e-9:  # a clear winner: the same cost
            assert ours.cost[c] == COSTS[best]
            assert ours.ap[c] == pytest.approx(100 * voc_ap(scores, test.targets[:, c]), abs=1e-6)
    assert ours.mean_ap == pytest.approx(np.mean(ours.ap))


def test_lowshot_samples_hold_k_present_and_19k_absent_images():
    targets = _voc_like(500, 20, 4, seed=3, present=0.1).targets
    k = 3
    rows = sample_lowshot(targets, k, seed=7, sample=0)
    assert rows.shape == (20, 20 * k)
    for c in range(20):
        picked = targets[rows[c], c]
        assert (picked == 1).sum() == k and (picked == -1).sum() == 19 * k and (picked == 0).sum() == 0
        assert len(np.unique(rows[c])) == 20 * k and np.all(np.diff(rows[c]) > 0)
    assert np.array_equal(rows, sample_lowshot(targets, k, seed=7, sample=0))
    assert not np.array_equal(rows, sample_lowshot(targets, k, seed=8, sample=0))
    assert not np.array_equal(rows, sample_lowshot(targets, k, seed=7, sample=1))
    with pytest.raises(SslzooError, match="k=40"):
        sample_lowshot(targets, 40, seed=7, sample=0)


def test_lowshot_aggregation_follows_the_reference():
    # test mAP [sample, cost]: the sample-mean is best for cost 1 (56 vs 55 and 30)
    run = LowshotRun(k=2, test_map=np.array([[50.0, 60.0, 30.0], [60.0, 52.0, 30.0]]), cv_map=[41.0, 43.0],
                     cv_costs=[[1.0], [2.0]])  # fmt: skip
    summary = summarize_lowshot(run, (0.5, 1.0, 2.0))
    assert summary["reference"]["cost"] == 1.0
    assert summary["reference"]["mean"] == pytest.approx(56.0)
    assert (summary["reference"]["min"], summary["reference"]["max"]) == (52.0, 60.0)
    assert summary["reference"]["std"] == pytest.approx(4.0)  # population std, as np.std
    assert summary["cross_validated"]["mean"] == pytest.approx(42.0)


def test_lowshot_fast_and_liblinear_agree():
    train, test = _voc_like(220, 20, 12, seed=4), _voc_like(120, 20, 12, seed=5)
    config = LowshotConfig(svm=SvmSettings(costs=COSTS[:3], tol=1e-9, max_iter=100_000, fast_tol=1e-9),
                           ks=(1, 2), samples=2, cross_validate=True)  # fmt: skip
    ours = lowshot_fast(train, test, config, seed=0, device="cpu")
    reference = lowshot_sklearn(train, test, config, seed=0, jobs=1)
    for mine, theirs in zip(ours, reference, strict=True):
        np.testing.assert_allclose(mine.test_map, theirs.test_map, atol=1e-5)
    assert ours[0].cv_map is None  # no cross-validation with one positive per class
    assert ours[1].cv_map is not None and len(ours[1].cv_map) == 2


def test_liblinear_runs_are_seeded_like_the_reference_scripts():
    # At tol 1e-4 LIBLINEAR's random coordinate order shows in the result; the sklearn solver
    # draws it as the reference scripts do from numpy's global generator seeded with
    # LIBLINEAR_SEED: the same numbers on every run, in any number of processes, with or
    # without the CV fits of the low-shot choice (tests/parity compares with the scripts).
    train, test = _voc_like(120, 3, 40, seed=8, present=0.3), _voc_like(60, 3, 40, seed=9, present=0.3)
    settings = SvmSettings(costs=(100.0, 1.0, 0.0625), max_iter=20)  # stops short: the order matters
    first = full_svm_sklearn(train, test, settings, jobs=1)
    assert full_svm_sklearn(train, test, settings, jobs=2).ap == first.ap
    assert full_svm_sklearn(train, test, settings, jobs=1, seed=LIBLINEAR_SEED + 1).cv_ap != first.cv_ap
    # the k-th fit's generator stands where the global one does after k fits
    generator = np.random.RandomState(LIBLINEAR_SEED)  # what numpy.random.seed(LIBLINEAR_SEED) sets up
    draws = [generator.randint(np.iinfo("i").max) for _ in range(4)]
    states = liblinear_states(LIBLINEAR_SEED, 4)
    assert [state.randint(np.iinfo("i").max) for state in states] == draws
    config = LowshotConfig(svm=settings, ks=(2,), samples=2, cross_validate=True)
    with_cv = lowshot_sklearn(train, test, config, seed=0)[0]
    without = lowshot_sklearn(
        train, test, LowshotConfig(svm=settings, ks=(2,), samples=2, cross_validate=False), 0
    )[0]
    np.testing.assert_array_equal(with_cv.test_map, without.test_map)


def _write_features(path: Path, split: VocSplit) -> None:
    np.savez(path, feature4=split.features[:, ::-1].copy(), feature5=split.features, labels=split.targets,
             classes=np.array(split.classes))  # fmt: skip


def test_steps_write_metrics_with_the_table_columns(tmp_path):
    train, test = _voc_like(200, 20, 10, seed=6), _voc_like(100, 20, 10, seed=7)
    _write_features(tmp_path / "trainval.npz", train)
    _write_features(tmp_path / "test.npz", test)
    (tmp_path / "svm.yaml").write_text(f"layers: [feature4, feature5]\ncosts: {list(COSTS[:3])}\n")
    (tmp_path / "lowshot.yaml").write_text(
        f"layers: [feature4, feature5]\nks: [1, 2]\nsamples: 2\ncosts: {list(COSTS[:3])}\n"
    )
    svm_out = tmp_path / "svm_voc07" / "model_a" / "metrics.json"
    low_out = tmp_path / "lowshot_voc07" / "model_a" / "metrics.json"
    for module, config, out, extra in (
        (svm_step, "svm.yaml", svm_out, ["--benchmark", "svm_voc07"]),
        (lowshot_step, "lowshot.yaml", low_out, ["--benchmark", "lowshot_voc07", "--seed", "3"]),
    ):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        args = parser.parse_args(
            [
                "--trainval",
                str(tmp_path / "trainval.npz"),
                "--test",
                str(tmp_path / "test.npz"),
                "--config",
                str(tmp_path / config),
                "--model",
                "model_a",
                "--out",
                str(out),
                *extra,
            ]  # fmt: skip
        )
        module.main(args)
    svm = json.loads(svm_out.read_text())
    assert set(svm) == {"Best Layer", "SVM", "meta"}
    assert svm["Best Layer"] in ("feature4", "feature5")
    assert svm["SVM"] == pytest.approx(svm["meta"]["layers"][svm["Best Layer"]]["mAP"])
    assert svm["SVM"] == max(layer["mAP"] for layer in svm["meta"]["layers"].values())
    assert svm["meta"]["benchmark"] == "svm_voc07" and svm["meta"]["model"] == "model_a"
    low = json.loads(low_out.read_text())
    assert set(low) == {"Best Layer", "k=1", "k=2", "meta"}
    assert low["Best Layer"] in ("feature4", "feature5") and low["meta"]["seed"] == 3
    means = {layer: result["mean_over_k"] for layer, result in low["meta"]["layers"].items()}
    assert means[low["Best Layer"]] == max(means.values())
    assert low["k=2"] == low["meta"]["k"]["k=2"]["reference"]["mean"]
    # run records: one process, nothing trained (no batch, no protocol); the low-shot seed
    for metrics, seed in ((svm, None), (low, 3)):
        run = metrics["meta"]["run"]
        assert (run["world_size"], run["seed"], run["torch"]) == (1, seed, torch.__version__)
        assert run["per_process_batch"] is run["total_batch"] is run["protocol"] is None
    for benchmark, metrics in (("svm_voc07", svm), ("lowshot_voc07", low)):
        values = {key: value for key, value in metrics.items() if key != "meta"}
        assert tables._check_columns(benchmark, values, benchmark) == values
        assert set(values) <= set(SECTIONS[benchmark].columns)


def test_configs_and_inputs_are_checked(tmp_path):
    for name in ("svm_voc07.yaml", "svm_voc07_mini.yaml"):
        config, _ = load_svm_config(CONFIG_DIR / name)
        assert config.svm == SvmSettings()
    for name in ("lowshot_voc07.yaml", "lowshot_voc07_mini.yaml"):
        config, _ = load_lowshot_config(CONFIG_DIR / name)
        assert config.svm == SvmSettings() and config.layers == FEATURE_LAYERS
    assert len(SvmSettings().costs) == 19
    bad = tmp_path / "bad.yaml"
    for text, message in (
        ("cost: [1.0]\n", r"bad.yaml: \(top level\): Additional properties .*'cost' was unexpected"),
        ("costs: [1.0, -2.0]\n", "bad.yaml: costs.1: -2.0 is less than or equal to the minimum of 0"),
        ("costs: [1.0, 1.0]\n", "bad.yaml: costs: .* non-unique elements"),
        ("class_weight: {1: 2}\n", "bad.yaml: class_weight: {1: 2} does not have enough properties"),
        ("class_weight: {1: 2, 2: 1}\n", r"bad.yaml: class_weight: must be \{1: <positive weight>"),
        ("layers: [feature9]\n", "bad.yaml: layers.0: 'feature9' is not one of"),
    ):
        bad.write_text(text)
        with pytest.raises(SslzooError, match=message):
            load_svm_config(bad)
    single = tmp_path / "single.npz"
    np.savez(
        single,
        feature5=np.ones((3, 2), np.float32),
        labels=np.array([0, 1, 2]),
        classes=np.array(["a", "b", "c"]),
    )
    with pytest.raises(SslzooError, match="multi-label"):
        load_voc_split(single, "feature5")
    with pytest.raises(SslzooError, match="no layer 'feature4'"):
        load_voc_split(single, "feature4")


def test_best_layer_has_the_best_mean_over_k():
    def summaries(*means):
        return {f"k={k}": {"reference": {"mean": mean}} for k, mean in zip((1, 2, 4), means, strict=True)}

    # feature3 is best at k=1 only, feature4 on average; a tie goes to the first layer, NaN loses
    per_layer = {"feature3": summaries(30.0, 31.0, 32.0), "feature4": summaries(29.0, 33.0, 35.0)}
    assert mean_over_k(per_layer["feature4"]) == pytest.approx(97.0 / 3)
    assert best_layer(per_layer) == "feature4"
    assert (
        best_layer({"feature5": summaries(1.0, 2.0, 3.0), "feature2": summaries(3.0, 2.0, 1.0)}) == "feature5"
    )
    assert (
        best_layer({"feature1": summaries(math.nan, 50.0, 60.0), "feature2": summaries(1.0, 1.0, 1.0)})
        == "feature2"
    )


def _layered_features(path: Path, split: VocSplit, seed: int) -> None:
    """feature3 = the split's features, feature4 = half of their signal, feature5 = noise alone."""
    noise = np.abs(np.random.default_rng(seed).normal(size=split.features.shape)).astype(np.float32)
    np.savez(path, feature3=split.features, feature4=0.3 * split.features + noise, feature5=noise,
             labels=split.targets, classes=np.array(split.classes))  # fmt: skip


@pytest.mark.parametrize("solver", ["fast", "sklearn"])
def test_lowshot_reports_the_best_of_its_layers_each_as_run_alone(tmp_path, solver):
    train, test = _voc_like(160, 4, 12, seed=10, present=0.3), _voc_like(100, 4, 12, seed=11, present=0.3)
    _layered_features(tmp_path / "trainval.npz", train, seed=12)
    _layered_features(tmp_path / "test.npz", test, seed=13)
    common = f"ks: [1, 2, 4]\nsamples: 2\ncosts: {list(COSTS[:3])}\n"

    def run(layers: str, name: str) -> dict:
        (tmp_path / f"{name}.yaml").write_text(f"layers: {layers}\n{common}")
        return lowshot_benchmark(tmp_path / "trainval.npz", tmp_path / "test.npz", tmp_path / f"{name}.yaml",
                                 tmp_path / name / "metrics.json", seed=5, solver=solver, device="cpu", jobs=1,
                                 benchmark_name="lowshot_voc07", model_name="m")  # fmt: skip

    metrics = run("[feature5, feature3, feature4]", "all")
    layers = metrics["meta"]["layers"]
    assert list(layers) == ["feature5", "feature3", "feature4"]
    means = {layer: layers[layer]["mean_over_k"] for layer in layers}
    assert means["feature3"] > means["feature4"] + 5 and means["feature4"] > means["feature5"] + 5, means
    assert metrics["Best Layer"] == metrics["meta"]["layer"] == "feature3"
    assert {key: value for key, value in metrics.items() if key.startswith("k=")} == {
        key: summary["reference"]["mean"] for key, summary in layers["feature3"]["k"].items()
    }
    assert metrics["meta"]["k"] == layers["feature3"]["k"]
    assert json.loads((tmp_path / "all" / "metrics.json").read_text()) == metrics
    for layer in layers:  # each layer's numbers are those of a run on that layer alone
        alone = run(f"[{layer}]", layer)
        assert alone["Best Layer"] == layer
        assert _timeless(alone["meta"]["k"]) == _timeless(layers[layer]["k"])


def _timeless(summaries: dict) -> dict:
    """Low-shot summaries per k without their run times."""
    return {
        key: {name: value for name, value in summary.items() if name != "seconds"}
        for key, summary in summaries.items()
    }
