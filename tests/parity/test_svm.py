"""VOC07 SVM: ``sslzoo.benchmarks.svm_voc07`` against mmselfsup 0.11.0 ``train_svm_kfold.py`` + ``test_svm.py``.

The reference scripts (tools/benchmarks/classification/svm_voc07/tools/ of the mmselfsup 0.11.0
wheel, see tests/parity/reference.py) run as processes of their own on ``.npy`` feature and
target files written as ``eval_svm_full.sh`` reads them (``--costs_list 1.0,10.0,100.0``; the
scripts add 0.5^4 .. 0.5^19). Our side runs :func:`sslzoo.benchmarks.svm_voc07.svm_benchmark` on the
feature files of the workflow.

- ``--solver sklearn`` must reproduce the scripts exactly: the same cost for every class, the
  same cross-validation APs and test APs (to rounding, 1e-9 %).
- The fast solver must give each class's test AP within 0.1 of the reference's, except where
  LIBLINEAR (tol 1e-4, max_iter 2000) stopped short of its optimum: a class whose chosen model
  ran out of iterations, or whose cost the reference chose differently. On the VOC07-size
  synthetic set LIBLINEAR converges and every class and the mAP must agree within 0.1.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sslzoo.benchmarks.feature_files import FEATURE_LAYERS
from sslzoo.benchmarks.svm_protocol import VocSplit, load_voc_split
from sslzoo.benchmarks.svm_sklearn import LIBLINEAR_SEED
from sslzoo.benchmarks.svm_voc07 import svm_benchmark
from tests.parity.reference import (
    REFERENCE_SEED,
    Recorder,
    finish_script,
    reference_targets,
    run_script,
    start_script,
    svm_script,
)

COSTS_LIST = "1.0,10.0,100.0"  # eval_svm_full.sh
MAX_ITER = 2000  # train_svm_kfold.py's LinearSVC
EXACT = 1e-9  # AP in %, float rounding of two summation orders


def reference_costs(costs_list: str) -> list[float]:
    """``svm_helper.parse_cost_list``: the listed costs, then 0.5^4 .. 0.5^19."""
    return [float(cost) for cost in costs_list.split(",")] + [0.5**n for n in range(4, 20)]


def test_the_reference_solver_seed_is_ours() -> None:
    assert LIBLINEAR_SEED == REFERENCE_SEED


def test_test_svm_opens_other_files_than_train_svm_kfold_writes_for_the_two_smallest_costs() -> None:
    """A bug of the reference, worked around in :func:`finish_reference`.

    ``train_svm_kfold.py`` names its models ``svm_helper.get_svm_train_output_files(cls, cost)``:
    ``cls{c}_cost{str(float(f"{cost:.17f}"))}.pickle``; ``test_svm.py`` opens
    ``'cls' + str(cls) + '_cost' + str(cost) + '.pickle'`` with ``cost`` an element of
    ``np.array(chosen_cost)``. The two differ for 0.5^18 and 0.5^19 (17 decimals do not hold
    them), so ``test_svm.py`` stops with FileNotFoundError whenever a class picks one of them.
    """
    helper = load_svm_helper()
    differ = [
        cost
        for cost in helper.parse_cost_list(COSTS_LIST)
        if Path(helper.get_svm_train_output_files(0, cost, "")[0]).name != name_test_svm_opens(0, cost)
    ]
    assert differ == [0.5**18, 0.5**19]


def name_test_svm_opens(cls: int, cost: float) -> str:
    """The file ``test_svm.py`` (``test_svm``) opens for a class and its chosen cost."""
    return "cls" + str(cls) + "_cost" + str(np.array([cost])[0]) + ".pickle"


def load_svm_helper() -> Any:
    """The reference's ``svm_helper`` module, loaded from its file."""
    path = svm_script("svm_helper.py")
    spec = importlib.util.spec_from_file_location("mmselfsup_0_11_svm_helper", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        spec.loader.exec_module(module)
    finally:  # its logging.basicConfig(stream=sys.stdout) is for the script, not for us
        root.handlers[:] = handlers
        root.setLevel(level)
    return module


def write_reference_inputs(directory: Path, train: VocSplit, test: VocSplit, layer: str) -> dict[str, Path]:
    """The ``.npy`` files of ``eval_svm_full.sh`` (features as cached, float32; targets 1/0/-1)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "train_x": directory / f"voc07_trainval_{layer}.npy",
        "train_y": directory / "train_labels.npy",
        "test_x": directory / f"voc07_test_{layer}.npy",
        "test_y": directory / "test_labels.npy",
    }
    np.save(paths["train_x"], train.features)
    np.save(paths["train_y"], reference_targets(train.targets))
    np.save(paths["test_x"], test.features)
    np.save(paths["test_y"], reference_targets(test.targets))
    return paths


def start_reference_training(paths: dict[str, Path], output: Path, costs_list: str) -> Any:
    """``train_svm_kfold.py`` in the background (the slow half: one LIBLINEAR fit per class, cost, fold)."""
    shutil.rmtree(output, ignore_errors=True)
    return start_script(
        svm_script("train_svm_kfold.py"),
        "--data_file", paths["train_x"],
        "--targets_data_file", paths["train_y"],
        "--costs_list", costs_list,
        "--output_path", output,
    )  # fmt: skip


def finish_reference(process: Any, paths: dict[str, Path], output: Path, costs_list: str) -> dict[str, Any]:
    """Wait for the training, run ``test_svm.py``; the reference's numbers (AP in %).

    Before ``test_svm.py`` runs, each model of cost 0.5^18 or 0.5^19 is linked under the name
    ``test_svm.py`` opens (see the test of that bug above); nothing else is touched.
    """
    finish_script(process)
    helper = load_svm_helper()
    for cost in helper.parse_cost_list(costs_list):
        written = output / Path(helper.get_svm_train_output_files(0, cost, "")[0]).name.replace("cls0_", "")
        opened = name_test_svm_opens(0, cost).replace("cls0_", "")
        if written.name != opened:
            for model in output.glob(f"cls*_{written.name}"):
                alias = model.with_name(model.name.replace(written.name, opened))
                if not alias.exists():
                    alias.hardlink_to(model)
    log = run_script(
        svm_script("test_svm.py"),
        "--data_file", paths["test_x"],
        "--targets_data_file", paths["test_y"],
        "--costs_list", costs_list,
        "--output_path", output,
    )  # fmt: skip
    logged = re.search(r"Mean AP: \[([0-9.eE+-]+)\]", log)
    assert logged, f"test_svm.py printed no 'Mean AP':\n{log[-2000:]}"
    chosen = np.load(output / "chosen_cost.npy")
    n_iter = []
    for c, cost in enumerate(chosen):
        with open(output / f"cls{c}_cost{cost}.pickle", "rb") as handle:
            n_iter.append(int(pickle.load(handle).n_iter_))
    return {
        "ap": 100 * np.load(output / "test_ap.npy")[:, 0],
        "cost": chosen.tolist(),
        "cv_ap": 100 * np.load(output / "crossval_ap.npy"),
        "mAP_logged": 100 * float(logged.group(1)),
        "n_iter": n_iter,
    }


def ours(train_path: Path, test_path: Path, config: Path, out: Path, solver: str) -> dict[str, Any]:
    """svm_benchmark's metrics.json, one process for ``sklearn``."""
    return svm_benchmark(
        train_path,
        test_path,
        config,
        out,
        solver=solver,
        device="cpu",
        jobs=1,
        benchmark_name="svm_voc07",
        model_name=solver,
    )


def check_sklearn_is_exact(mine: dict[str, Any], reference: dict[str, Any], classes: list[str]) -> None:
    """The same cost per class, the same CV APs and test APs."""
    assert [mine["cost"][c] for c in classes] == reference["cost"]
    cv = np.array([mine["cv_ap"][c] for c in classes])
    np.testing.assert_allclose(cv, reference["cv_ap"], rtol=0, atol=EXACT)
    ap = np.array([mine["ap"][c] for c in classes])
    np.testing.assert_allclose(ap, reference["ap"], rtol=0, atol=EXACT)
    assert mine["mAP"] == pytest.approx(float(np.mean(reference["ap"])), abs=EXACT)
    assert mine["mAP"] == pytest.approx(reference["mAP_logged"], abs=1e-5)  # the log prints 8 digits


def stopped_short(reference: dict[str, Any], fast: dict[str, Any], classes: list[str]) -> list[bool]:
    """Per class: the reference's chosen model ran out of LIBLINEAR iterations, or the reference
    chose another cost than the fast solver (its CV fits can stop short too)."""
    return [
        reference["n_iter"][i] >= MAX_ITER or reference["cost"][i] != fast["cost"][c]
        for i, c in enumerate(classes)
    ]


def test_mini_voc07_best_layer(mini: Any, tmp_path: Path, record: Recorder) -> None:
    """All 20 classes of the mini VOC07, cached features of a seeded random ResNet-18, the layer
    with the best mAP (the table's number)."""
    train_path, test_path = mini.features["voc07_trainval"], mini.features["voc07_test"]
    all_layers = tmp_path / "svm_all_layers.yaml"
    all_layers.write_text("{}\n")  # the default protocol on every layer of the file
    fast_all = ours(
        train_path, test_path, all_layers, tmp_path / "svm_voc07" / "fast" / "metrics.json", "fast"
    )
    layer = fast_all["Best Layer"]
    assert set(fast_all["meta"]["layers"]) == set(FEATURE_LAYERS)
    train, test = load_voc_split(train_path, layer), load_voc_split(test_path, layer)
    paths = write_reference_inputs(tmp_path / "reference", train, test, layer)
    process = start_reference_training(paths, tmp_path / "reference" / "svm", COSTS_LIST)
    one_layer = tmp_path / "svm_one_layer.yaml"
    one_layer.write_text(f"layers: [{layer}]\n")
    sklearn = ours(
        train_path, test_path, one_layer, tmp_path / "svm_voc07" / "sklearn" / "metrics.json", "sklearn"
    )
    reference = finish_reference(process, paths, tmp_path / "reference" / "svm", COSTS_LIST)

    classes = train.classes
    mine = sklearn["meta"]["layers"][layer]
    fast = fast_all["meta"]["layers"][layer]
    short = stopped_short(reference, fast, classes)
    for i, c in enumerate(classes):
        record.add(
            "svm_mini_classes", layer=layer, cls=c, reference=reference["ap"][i], sklearn=mine["ap"][c],
            fast=fast["ap"][c], reference_cost=reference["cost"][i], sklearn_cost=mine["cost"][c],
            fast_cost=fast["cost"][c], reference_n_iter=reference["n_iter"][i], stopped_short=short[i],
        )  # fmt: skip
    record.add(
        "svm_mini", layer=layer, reference=float(np.mean(reference["ap"])), sklearn=mine["mAP"], fast=fast["mAP"],
        stopped_short=int(sum(short)), fast_layers={k: v["mAP"] for k, v in fast_all["meta"]["layers"].items()},
    )  # fmt: skip

    check_sklearn_is_exact(mine, reference, classes)
    for i, c in enumerate(classes):
        if not short[i]:
            assert fast["ap"][c] == pytest.approx(reference["ap"][i], abs=0.1), c
    assert not all(short)  # the comparison compared something
    if not any(short):
        assert fast["mAP"] == pytest.approx(float(np.mean(reference["ap"])), abs=0.1)


def synthetic_voc(n: int, classes: int, dim: int, seed: int) -> VocSplit:
    """VOC-like rows: non-negative (post-ReLU) features in which each present class adds a faint
    direction of its own (test AP about 30 %), ~8 % present and ~2 % difficult per class."""
    rng = np.random.default_rng(seed)
    targets = np.where(rng.random((n, classes)) < 0.08, 1, -1).astype(np.int8)
    targets[rng.random((n, classes)) < 0.02] = 0
    directions = np.random.default_rng(1000).normal(size=(classes, dim))
    signal = 0.1 * ((targets == 1) @ directions + 0.5 * (targets == 0) @ directions)
    features = np.maximum(rng.normal(size=(n, dim)) + signal, 0.0).astype(np.float32)
    return VocSplit(features, targets, [f"class{c}" for c in range(classes)])


def test_voc07_size_synthetic_set(tmp_path: Path, record: Recorder) -> None:
    """5011 trainval / 4952 test rows (VOC07's sizes), 256 dims, 3 classes; costs 1 and 0.5^4 .. 0.5^19
    (``--costs_list 1.0``: the 17 costs the reference trains fastest at this size)."""
    costs_list = "1.0"
    train, test = synthetic_voc(5011, 3, 256, seed=1), synthetic_voc(4952, 3, 256, seed=2)
    layer = "feature5"
    for name, split in (("trainval", train), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", **{layer: split.features}, labels=split.targets,
                 classes=np.array(split.classes))  # fmt: skip
    config = tmp_path / "svm.yaml"
    config.write_text(f"layers: [{layer}]\ncosts: {reference_costs(costs_list)}\n")
    paths = write_reference_inputs(tmp_path / "reference", train, test, layer)
    process = start_reference_training(paths, tmp_path / "reference" / "svm", costs_list)
    runs = {
        solver: ours(tmp_path / "trainval.npz", tmp_path / "test.npz", config,
                     tmp_path / "svm_synthetic" / solver / "metrics.json", solver)["meta"]["layers"][layer]
        for solver in ("sklearn", "fast")
    }  # fmt: skip
    reference = finish_reference(process, paths, tmp_path / "reference" / "svm", costs_list)

    for i, c in enumerate(train.classes):
        record.add(
            "svm_synthetic_classes", cls=c, reference=reference["ap"][i], sklearn=runs["sklearn"]["ap"][c],
            fast=runs["fast"]["ap"][c], reference_cost=reference["cost"][i], sklearn_cost=runs["sklearn"]["cost"][c],
            fast_cost=runs["fast"]["cost"][c], reference_n_iter=reference["n_iter"][i],
        )  # fmt: skip
    record.add("svm_synthetic", reference=float(np.mean(reference["ap"])), sklearn=runs["sklearn"]["mAP"],
               fast=runs["fast"]["mAP"])  # fmt: skip

    check_sklearn_is_exact(runs["sklearn"], reference, train.classes)
    assert max(reference["n_iter"]) < MAX_ITER  # LIBLINEAR converged: no excuse below
    fast = np.array([runs["fast"]["ap"][c] for c in train.classes])
    np.testing.assert_allclose(fast, reference["ap"], rtol=0, atol=0.1)
    assert runs["fast"]["mAP"] == pytest.approx(float(np.mean(reference["ap"])), abs=0.1)
