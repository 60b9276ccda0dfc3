"""The VOC07 low-shot SVM benchmark on cached features.

mmselfsup 0.x ``tools/benchmarks/classification/svm_voc07`` (``create_voc_low_shot_challenge_samples.py``,
``train_svm_low_shot.py``, ``test_svm_low_shot.py``, ``aggregate_low_shot_svm_stats.py``;
PROTOCOLS.md "VOC07 SVM and low-shot SVM"): for each k and each of 5 independent samples, per
class k positive and ``(classes - 1) * k`` absent images drawn from trainval (difficult images are
never drawn; :func:`sslzoo.benchmarks.svm_protocol.sample_lowshot`), one SVM per cost, test mAP per
(sample, k, cost); the reference then takes, per k, the cost with the best mean test mAP over the
samples and reports mean/min/max/std over the samples at that cost. That choice looks at the test
set; it is the table number here, labelled "reference cost choice (best on test)", and ``meta``
adds a cross-validated choice (the full protocol's 3-fold CV, on each sample's training images)
beside it. The reference draws with an unseeded ``random.sample``; here the draw of sample ``s``
for k is seeded with ``(seed, s, k)``. All of this is done for every configured layer, on the same
samples, as ``eval_svm_lowshot.sh`` loops over its layer list; the table's Best Layer is the one
whose table numbers have the best mean over k (:func:`best_layer`), and its k=1 .. k=96 are the
table's.

Two solvers give the same numbers: ``fast`` (:func:`lowshot_fast`, :mod:`sslzoo.benchmarks.svm_solver`)
and ``sklearn`` (:func:`sslzoo.benchmarks.svm_sklearn.lowshot_sklearn`: LIBLINEAR, one fit per
(sample, k, class, cost) as the reference does). Settings, feature files, folds and samples:
:mod:`sslzoo.benchmarks.svm_protocol`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslzoo.benchmarks.svm_protocol import (
    SOLVERS,
    LowshotConfig,
    LowshotRun,
    VocSplit,
    _check_pair,
    _choose_costs,
    _device,
    _lowshot_folds,
    _meta,
    json_ready,
    load_lowshot_config,
    load_voc_split,
    normalize_rows,
    sample_lowshot,
    stratified_fold_ids,
    train_targets,
)
from sslzoo.benchmarks.svm_sklearn import lowshot_sklearn
from sslzoo.benchmarks.svm_solver import (
    Preconditioner,
    SolverOptions,
    linear_kernel,
    solve_kernel_svm,
    top_eigenpairs,
)
from sslzoo.benchmarks.voc_ap import average_precision_batch, voc_ap_batch
from sslzoo.errors import SslzooError
from sslzoo.io import write_json

REFERENCE_CHOICE = "reference cost choice (best on test)"
CROSS_VALIDATED_CHOICE = "cross-validated cost choice (3-fold CV on the training sample)"
BEST_LAYER_RULE = "best mean over k of the reference cost choice's mAP (first in config order on a tie)"


def lowshot_fast(
    train: VocSplit,
    test: VocSplit,
    config: LowshotConfig,
    seed: int,
    device: str | torch.device | None = None,
) -> list[LowshotRun]:
    """The low-shot protocol with the batched solver: per (k, sample) one kernel per class, all
    costs (and CV folds) of a class solved together."""
    device = _device(device)
    settings = config.svm
    costs = torch.tensor(settings.costs, dtype=torch.float64, device=device)
    x = normalize_rows(torch.from_numpy(train.features).to(device))
    kernel = linear_kernel(x, x, settings.intercept_scaling)
    x_test = normalize_rows(torch.from_numpy(test.features).to(device))
    test_kernel = linear_kernel(x_test, x, settings.intercept_scaling)
    options = SolverOptions(tol=settings.fast_tol)
    full_pre = top_eigenpairs(kernel[None], options.rank)
    test_targets = torch.from_numpy(test.targets.T.astype(np.int64)).to(device)
    y_all = train_targets(train.targets).T  # [C, n]
    classes = train.targets.shape[1]
    runs = []
    for k in config.ks:
        start = time.perf_counter()
        folds = _lowshot_folds(k, settings.folds) if config.cross_validate else 0
        test_map = np.zeros((config.samples, len(settings.costs)))
        cv_map: list[float] = []
        cv_costs: list[list[float]] = []
        for sample in range(config.samples):
            rows = sample_lowshot(train.targets, k, seed, sample, config.negatives_per_positive)
            rows = torch.from_numpy(rows).to(device)  # [C, m]
            m = rows.shape[1]
            group_kernel = kernel[rows[:, :, None], rows[:, None, :]]  # [C, m, m]
            y = torch.from_numpy(np.take_along_axis(y_all, rows.cpu().numpy(), axis=1)).to(
                device, torch.float64
            )
            weight = settings.weights(y)  # [C, m]
            # problems per class: every cost on all rows, then every (cost, fold) without that fold
            masks = [torch.ones_like(y, dtype=torch.bool)]
            fold_of = None
            if folds:
                fold_of = torch.from_numpy(
                    np.stack([stratified_fold_ids(row, folds) for row in y.cpu().numpy()])
                ).to(device)
                masks += [fold_of != j for j in range(folds)]
            mask = torch.stack(masks, dim=1)  # [C, 1 + F, m]
            row_cost = costs[None, :, None, None] * (weight[:, None, :] * mask)[:, None]  # [C, Q, 1+F, m]
            targets = y[:, None, None, :].expand_as(row_cost)
            pre = Preconditioner(
                vectors=full_pre.vectors[0][rows],
                values=full_pre.values.expand(classes, -1),
                tail=full_pre.tail.expand(classes),
            )
            problems = row_cost.shape[1] * row_cost.shape[2]
            beta, values, _ = solve_kernel_svm(
                group_kernel,
                targets.reshape(classes, problems, m),
                row_cost.reshape(classes, problems, m),
                None,
                options,
                pre,
            )
            beta = beta.reshape(classes, len(settings.costs), 1 + folds, m)
            values = values.reshape_as(beta)
            # test scores of the all-rows problems, [C * Q, n_test], through coefficients over all of trainval
            spread = torch.zeros(
                classes, len(settings.costs), kernel.shape[0], dtype=beta.dtype, device=device
            )
            spread.scatter_(2, rows[:, None, :].expand(-1, len(settings.costs), -1), beta[:, :, 0])
            scores = spread.reshape(classes * len(settings.costs), -1) @ test_kernel.T
            ap = voc_ap_batch(
                scores,
                (test_targets == 1).repeat_interleave(len(settings.costs), 0),
                (test_targets != 0).repeat_interleave(len(settings.costs), 0),
            ).reshape(classes, len(settings.costs))
            test_map[sample] = 100 * ap.nanmean(0).cpu().numpy()
            if folds:
                held = torch.stack([fold_of == j for j in range(folds)], dim=1)  # [C, F, m]
                fold_scores = values[:, :, 1:]  # [C, Q, F, m]
                cv = average_precision_batch(
                    fold_scores.reshape(-1, m),
                    (y > 0)[:, None, None, :].expand_as(fold_scores).reshape(-1, m),
                    held[:, None].expand_as(fold_scores).reshape(-1, m),
                ).reshape(classes, len(settings.costs), folds)
                chosen = _choose_costs(cv.mean(-1).cpu().numpy())
                picked = ap[torch.arange(classes, device=device), torch.from_numpy(chosen).to(device)]
                cv_map.append(float(100 * picked.nanmean()))
                cv_costs.append([float(settings.costs[i]) for i in chosen])
        runs.append(
            LowshotRun(
                k=k,
                test_map=test_map,
                cv_map=cv_map if folds else None,
                cv_costs=cv_costs if folds else None,
                seconds=time.perf_counter() - start,
            )
        )
    return runs


def summarize_lowshot(run: LowshotRun, costs: Sequence[float]) -> dict[str, Any]:
    """The reference's aggregation for one k: the cost with the best mean test mAP over the
    samples, and mean/min/max/std (population) over the samples at that cost; the CV choice beside it."""
    mean = run.test_map.mean(axis=0)
    best = int(np.argmax(mean))
    at_best = run.test_map[:, best]
    out: dict[str, Any] = {
        "reference": {
            "choice": REFERENCE_CHOICE,
            "cost": float(costs[best]),
            "mean": float(at_best.mean()),
            "min": float(at_best.min()),
            "max": float(at_best.max()),
            "std": float(at_best.std()),
            "per_sample": at_best.tolist(),
        },
        "test_map_per_cost": run.test_map.tolist(),
        "seconds": run.seconds,
    }
    if run.cv_map is not None:
        values = np.asarray(run.cv_map)
        out["cross_validated"] = {
            "choice": CROSS_VALIDATED_CHOICE,
            "mean": float(values.mean()),
            "min": float(values.min()),
            "max": float(values.max()),
            "std": float(values.std()),
            "per_sample": values.tolist(),
            "costs": run.cv_costs,
        }
    else:
        out["cross_validated"] = None
    return out


def mean_over_k(summaries: dict[str, dict[str, Any]]) -> float:
    """The mean over k of one layer's table numbers (the reference cost choice's mean mAP, %);
    NaN when one of them is."""
    return float(np.mean([summary["reference"]["mean"] for summary in summaries.values()]))


def best_layer(per_layer: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The table's Best Layer: the layer whose table numbers have the best mean over k, the first
    in config order on a tie; a layer whose mean is NaN loses.

    The reference picks it by hand: ``eval_svm_lowshot.sh`` runs every layer of its FEAT_LIST and
    ``aggregate_low_shot_svm_stats.py`` logs each layer's numbers, and the model-zoo pages show one
    Best Layer per row (PROTOCOLS.md "VOC07 SVM and low-shot SVM").

    Args:
        per_layer: layer -> ``"k=<k>"`` -> :func:`summarize_lowshot` of that layer and k.
    """

    def score(layer: str) -> float:
        value = mean_over_k(per_layer[layer])
        return -math.inf if math.isnan(value) else value

    return max(per_layer, key=score)


def _run_layer(
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    layer: str,
    config: LowshotConfig,
    seed: int,
    solver: str,
    device: str | None,
    jobs: int | None,
) -> tuple[dict[str, dict[str, Any]], VocSplit, VocSplit]:
    """The low-shot protocol on one layer: ``"k=<k>"`` -> :func:`summarize_lowshot`, and the
    layer's train and test splits."""
    train = load_voc_split(train_path, layer)
    test = load_voc_split(test_path, layer)
    _check_pair(train_path, test_path, train, test)
    if solver == "fast":
        runs = lowshot_fast(train, test, config, seed, device)
    else:
        runs = lowshot_sklearn(train, test, config, seed, jobs or os.cpu_count() or 1)
    return {f"k={run.k}": summarize_lowshot(run, config.svm.costs) for run in runs}, train, test


def lowshot_benchmark(
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    seed: int = 0,
    solver: str = "fast",
    device: str | None = None,
    jobs: int | None = None,
    *,
    benchmark_name: str,
    model_name: str,
) -> dict[str, Any]:
    """Run the low-shot SVM on every configured layer and write ``metrics.json``.

    Every layer sees the same samples (they depend on the seed, the sample index and k only).
    The file holds ``"Best Layer"`` (:func:`best_layer`) and ``"k=<k>"``: that layer's mean test
    mAP (%) over the samples with the reference's cost choice; ``meta`` has ``benchmark_name`` (a
    benchmark of :mod:`sslzoo.benchmarks.registry`) and ``model_name``, ``layer`` and ``k`` (the
    best layer and its min/max/std, chosen cost, every (sample, cost) mAP and the cross-validated
    choice beside it) and ``layers``: the same for every layer, with its mean over k.
    """
    if solver not in SOLVERS:
        raise SslzooError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    config, raw = load_lowshot_config(config_path)
    start = time.perf_counter()
    per_layer: dict[str, dict[str, dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    for layer in config.layers:
        layer_start = time.perf_counter()
        per_layer[layer], train, test = _run_layer(
            train_path, test_path, layer, config, seed, solver, device, jobs
        )
        seconds[layer] = time.perf_counter() - layer_start
    best = best_layer(per_layer)
    out_path = Path(out_path)
    metrics: dict[str, Any] = {"Best Layer": best}
    metrics.update({key: summary["reference"]["mean"] for key, summary in per_layer[best].items()})
    metrics["meta"] = {
        **_meta(
            benchmark_name,
            model_name,
            config_path,
            raw,
            train_path,
            test_path,
            seed=seed,
            device=_device(device) if solver == "fast" else torch.device("cpu"),
        ),
        "solver": solver,
        "seed": seed,
        "layer": best,
        "best_layer_rule": BEST_LAYER_RULE,
        "samples": config.samples,
        "table_numbers": REFERENCE_CHOICE,
        "costs": list(config.svm.costs),
        "classes": train.classes,
        "num_trainval": int(len(train.features)),
        "num_test": int(len(test.features)),
        "seconds": time.perf_counter() - start,
        "settings": asdict(config.svm),
        "k": per_layer[best],
        "layers": {
            layer: {"mean_over_k": mean_over_k(summaries), "seconds": seconds[layer], "k": summaries}
            for layer, summaries in per_layer.items()
        },
    }
    metrics = json_ready(metrics)
    write_json(out_path, metrics)
    return metrics
