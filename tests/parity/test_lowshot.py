"""Low-shot SVM: ``sslzoo.benchmarks.svm_lowshot`` against mmselfsup 0.11.0 ``train_svm_low_shot.py``,
``test_svm_low_shot.py`` and ``aggregate_low_shot_svm_stats.py`` on the same samples.

Our samples (:func:`sslzoo.benchmarks.svm_protocol.sample_lowshot`, seeded) are written in the layout of
``create_voc_low_shot_challenge_samples.py`` (``train_targets_sample{s}_k{k}.npy``: 1 drawn present,
0 drawn absent, -1 not drawn) and the scripts run as ``eval_svm_lowshot.sh`` runs them, one
training process per (sample, k). Compared: the test mAP of every (k, cost) aggregated over the
samples (the scripts' ``test_ap_{mean,min,max,std}.npy``) and the mean/min/max/std the
aggregation prints at its cost choice. ``--solver sklearn`` must match to rounding, the fast
solver within 0.1.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sslzoo.benchmarks.svm_lowshot import lowshot_benchmark
from sslzoo.benchmarks.svm_protocol import load_voc_split, sample_lowshot
from tests.parity.reference import Recorder, lowshot_targets, reference_targets, run_script, svm_script

COSTS_LIST = "1.0,10.0,100.0"  # eval_svm_lowshot.sh
KS = (1, 2, 4)  # the mini VOC07 trainval (151 images) holds 19 * 4 absent images of every class, not 19 * 8
SAMPLES = 5
SEED = 0
LAYER = "feature5"
STATS = ("mean", "min", "max", "std")
REFERENCE_COSTS = [
    1.0,
    10.0,
    100.0,
    *(0.5**n for n in range(4, 20)),
]  # svm_helper.parse_cost_list(COSTS_LIST)


def run_reference(directory: Path, features: dict[str, Path], layer: str) -> dict[str, Any]:
    """The reference's three steps on our samples; its matrices ``[k, cost]`` (in %) and printed stats."""
    train = load_voc_split(features["voc07_trainval"], layer)
    test = load_voc_split(features["voc07_test"], layer)
    directory.mkdir(parents=True)
    np.save(directory / f"voc07_trainval_{layer}.npy", train.features)
    np.save(directory / f"voc07_test_{layer}.npy", test.features)
    np.save(directory / "test_labels.npy", reference_targets(test.targets))
    labels, output = directory / "low_shot" / "labels", directory / "svm_lowshot"
    labels.mkdir(parents=True)
    for k in KS:
        for sample in range(SAMPLES):
            rows = sample_lowshot(train.targets, k, SEED, sample)
            np.save(
                labels / f"train_targets_sample{sample + 1}_k{k}.npy", lowshot_targets(train.targets, rows)
            )
    for sample in range(SAMPLES):
        for k in KS:
            run_script(
                svm_script("train_svm_low_shot.py"),
                "--data_file", directory / f"voc07_trainval_{layer}.npy",
                "--targets_data_file", labels / f"train_targets_sample{sample + 1}_k{k}.npy",
                "--costs_list", COSTS_LIST,
                "--output_path", output,
            )  # fmt: skip
    k_values, sample_inds = ",".join(map(str, KS)), ",".join(map(str, range(SAMPLES)))
    run_script(
        svm_script("test_svm_low_shot.py"),
        "--data_file", directory / f"voc07_test_{layer}.npy",
        "--targets_data_file", directory / "test_labels.npy",
        "--costs_list", COSTS_LIST,
        "--output_path", output,
        "--k_values", k_values,
        "--sample_inds", sample_inds,
        "--dataset", "voc",
    )  # fmt: skip
    log = run_script(
        svm_script("aggregate_low_shot_svm_stats.py"),
        "--output_path", output, "--k_values", k_values, "--sample_inds", sample_inds,
    )  # fmt: skip
    printed = [
        tuple(map(float, line))
        for line in re.findall(r"mean/min/max/std: (\S+) / (\S+) / (\S+) / (\S+)", log)
    ]
    assert len(printed) == len(KS), log[-2000:]
    return {
        **{stat: 100 * np.load(output / f"test_ap_{stat}.npy") for stat in STATS},
        "printed": printed,
    }


def test_lowshot_mini_voc07(mini: Any, tmp_path: Path, record: Recorder) -> None:
    """k = 1, 2, 4, five samples, feature5 of the mini VOC07 (all 20 classes)."""
    reference: dict[str, Any] = {}
    errors: list[BaseException] = []

    def reference_thread() -> None:
        try:
            reference.update(run_reference(tmp_path / "reference", mini.features, LAYER))
        except BaseException as err:  # pytest.fail's exception too: re-raised below
            errors.append(err)

    thread = threading.Thread(target=reference_thread)
    thread.start()  # the reference's 15 + 2 processes run while ours computes
    config = tmp_path / "lowshot.yaml"
    config.write_text(f"layers: [{LAYER}]\nks: {list(KS)}\nsamples: {SAMPLES}\ncross_validate: false\n")
    runs = {
        solver: lowshot_benchmark(
            mini.features["voc07_trainval"], mini.features["voc07_test"], config,
            tmp_path / "lowshot_voc07" / solver / "metrics.json", seed=SEED, solver=solver, device="cpu", jobs=1,
            benchmark_name="lowshot_voc07", model_name=solver,
        )["meta"]["k"]
        for solver in ("sklearn", "fast")
    }  # fmt: skip
    thread.join()
    if errors:
        raise errors[0]

    for i, k in enumerate(KS):
        for solver, run in runs.items():
            summary = run[f"k={k}"]
            per_cost = np.array(summary["test_map_per_cost"])  # [sample, cost]
            ours = {
                "mean": per_cost.mean(0),
                "min": per_cost.min(0),
                "max": per_cost.max(0),
                "std": per_cost.std(0),
            }
            best = int(np.argmax(reference["mean"][i]))  # aggregate_low_shot_svm_stats.py's choice
            record.add(
                "lowshot", k=k, solver=solver, cost=summary["reference"]["cost"],
                ours=[summary["reference"][stat] for stat in STATS], reference=reference["printed"][i],
                reference_unrounded=[float(reference[stat][i][best]) for stat in STATS],
                max_abs_diff_per_cost=max(float(np.abs(ours[stat] - reference[stat][i]).max()) for stat in STATS),
            )  # fmt: skip
            tolerance = 1e-9 if solver == "sklearn" else 0.1
            for stat in STATS:
                np.testing.assert_allclose(
                    ours[stat], reference[stat][i], rtol=0, atol=tolerance, err_msg=stat
                )
            if solver == "sklearn":
                assert summary["reference"]["cost"] == REFERENCE_COSTS[best]
            for stat, printed in zip(STATS, reference["printed"][i], strict=True):  # printed rounded to 0.01
                assert summary["reference"][stat] == pytest.approx(printed, abs=tolerance + 0.005), (k, stat)
