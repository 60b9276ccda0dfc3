"""The full VOC07 linear SVM benchmark on cached features.

mmselfsup 0.x ``tools/benchmarks/classification/svm_voc07`` (``train_svm_kfold.py``,
``test_svm.py``; PROTOCOLS.md "VOC07 SVM and low-shot SVM"): for each class and each of the 19
costs, ``cross_val_score(cv=3, scoring="average_precision")`` on trainval - scikit-learn's
``StratifiedKFold(3)`` without shuffling, reproduced by
:func:`sslzoo.benchmarks.svm_protocol.stratified_fold_ids`; the cost with the best mean fold AP
(the first in config order on a tie) is refit on all of trainval and scored on test with the VOC
AP, difficult images left out (:mod:`sslzoo.benchmarks.voc_ap`). Done for every layer of the file;
the best layer and its mAP are the table's numbers.

Two solvers give the same numbers: ``fast`` (:func:`full_svm_fast`, :mod:`sslzoo.benchmarks.svm_solver`:
every class/fold/cost on one kernel matrix, CUDA when present) and ``sklearn``
(:func:`sslzoo.benchmarks.svm_sklearn.full_svm_sklearn`: LIBLINEAR, one fit per class, cost and
fold as the reference does). Settings, feature files and folds: :mod:`sslzoo.benchmarks.svm_protocol`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslzoo.benchmarks.feature_files import feature_layers
from sslzoo.benchmarks.svm_protocol import (
    SOLVERS,
    LayerResult,
    SvmSettings,
    VocSplit,
    _check_class_counts,
    _check_pair,
    _choose_costs,
    _device,
    _meta,
    _nanmean,
    json_ready,
    load_svm_config,
    load_voc_split,
    normalize_rows,
    stratified_fold_ids,
    train_targets,
)
from sslzoo.benchmarks.svm_sklearn import full_svm_sklearn
from sslzoo.benchmarks.svm_solver import (
    SolverOptions,
    fit_cost_path,
    linear_kernel,
    primal_weights,
    solve_kernel_svm,
)
from sslzoo.benchmarks.voc_ap import average_precision_batch, voc_ap_batch
from sslzoo.errors import SslzooError
from sslzoo.io import write_json


def full_svm_fast(
    train: VocSplit, test: VocSplit, settings: SvmSettings, device: str | torch.device | None = None
) -> LayerResult:
    """The full SVM protocol on one layer with the batched solver (all classes x folds x costs at once)."""
    start = time.perf_counter()
    device = _device(device)
    y_np = train_targets(train.targets).T  # [C, n]
    classes, n = y_np.shape
    _check_class_counts(y_np, settings.folds, train.classes)
    x = normalize_rows(torch.from_numpy(train.features).to(device))
    kernel = linear_kernel(x, x, settings.intercept_scaling)
    folds = np.stack([stratified_fold_ids(row, settings.folds) for row in y_np])  # [C, n]
    y = torch.from_numpy(y_np).to(device=device, dtype=torch.float64)
    fold_of = torch.from_numpy(folds).to(device)
    held_out = torch.stack([fold_of == j for j in range(settings.folds)], dim=1)  # [C, F, n]
    weight = settings.weights(y)[:, None, :] * ~held_out  # [C, F, n]
    options = SolverOptions(tol=settings.fast_tol)
    costs = settings.costs
    # Fold j's problems (one per class) only see the rows some class trains on in fold j; the rows
    # every class holds out (most of them: the folds of each class are contiguous in row order)
    # are dropped from the kernel and scored once per cost at the end.
    values = torch.empty(len(costs), classes, settings.folds, n, dtype=torch.float64, device=device)
    fold_betas = torch.zeros_like(values)
    infos = []
    for j in range(settings.folds):
        dropped = held_out[:, j].all(dim=0)
        rows, out = (~dropped).nonzero().squeeze(1), dropped.nonzero().squeeze(1)
        fold_kernel = kernel[rows[:, None], rows[None, :]][None]
        betas, fold_values, fold_infos = fit_cost_path(
            fold_kernel, y[None][:, :, rows], weight[None, :, j][:, :, rows], costs, options
        )
        values[:, :, j, rows] = fold_values[:, 0]
        fold_betas[:, :, j, rows] = betas[:, 0]
        values[:, :, j, out] = betas[:, 0] @ kernel[rows[:, None], out[None, :]]
        infos += fold_infos
    targets = y[:, None, :].expand_as(weight)
    # cross-validation AP of every (cost, class, fold) on its held-out rows
    scores = values.reshape(len(costs) * classes * settings.folds, n)
    positive = (targets > 0).reshape(1, -1, n).expand(len(costs), -1, -1).reshape_as(scores)
    valid = held_out.reshape(1, -1, n).expand(len(costs), -1, -1).reshape_as(scores)
    cv = average_precision_batch(scores, positive, valid).reshape(len(costs), classes, settings.folds)
    cv_mean = cv.mean(-1).T.cpu().numpy()  # [C, Q]
    chosen = _choose_costs(cv_mean)
    chosen_cost = torch.tensor([costs[i] for i in chosen], dtype=torch.float64, device=device)
    # refit on all rows, started from the folds' models at the chosen cost (each row trains in
    # folds - 1 of them, so the average of their coefficients is rescaled accordingly)
    start_beta = fold_betas[torch.from_numpy(chosen).to(device), torch.arange(classes, device=device)]
    start_beta = start_beta.sum(1) / max(settings.folds - 1, 1)
    beta, _, info = solve_kernel_svm(
        kernel[None], y[None], (settings.weights(y) * chosen_cost[:, None])[None], start_beta[None], options
    )
    coef, intercept = primal_weights(x, beta[0], settings.intercept_scaling)  # LinearSVC's coef_, intercept_
    x_test = normalize_rows(torch.from_numpy(test.features).to(device))
    ap = _test_ap(coef @ x_test.T + intercept[:, None], test.targets, device)  # scores [C, n_test]
    return LayerResult(
        mean_ap=_nanmean(ap),
        ap=ap,
        cost=[float(costs[i]) for i in chosen],
        cv_ap=(100 * cv_mean).tolist(),
        seconds=time.perf_counter() - start,
        solver_info={
            "newton_steps": int(sum(int(i.newton_steps.sum()) for i in infos) + int(info.newton_steps.sum())),
            "max_relative_gradient": float(max(float(i.residual.max()) for i in [*infos, info])),
        },
    )


def _test_ap(scores: torch.Tensor, targets: np.ndarray, device: torch.device) -> list[float]:
    """VOC AP (%) per class of test scores ``[C, n_test]``; difficult (0) left out."""
    t = torch.from_numpy(targets.T.astype(np.int64)).to(device)
    return (100 * voc_ap_batch(scores, t == 1, t != 0)).cpu().tolist()


def svm_benchmark(
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    solver: str = "fast",
    device: str | None = None,
    jobs: int | None = None,
    *,
    benchmark_name: str,
    model_name: str,
) -> dict[str, Any]:
    """Run the full VOC07 SVM on every configured layer and write ``metrics.json``.

    The file holds ``"Best Layer"`` (the layer with the best test mAP) and ``"SVM"`` (its mAP, %)
    and, under ``meta``, ``benchmark_name`` (a benchmark of :mod:`sslzoo.benchmarks.registry`) and
    ``model_name``, and every layer's mAP, per-class AP, chosen cost and CV APs.
    """
    if solver not in SOLVERS:
        raise SslzooError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    config, raw = load_svm_config(config_path)
    layers = config.layers or tuple(feature_layers(train_path))
    if not layers:
        raise SslzooError(f"{train_path}: holds no feature1..feature5 layer")
    per_layer: dict[str, LayerResult] = {}
    classes: list[str] = []
    for layer in layers:
        train = load_voc_split(train_path, layer)
        test = load_voc_split(test_path, layer)
        _check_pair(train_path, test_path, train, test)
        classes = train.classes
        if solver == "fast":
            per_layer[layer] = full_svm_fast(train, test, config.svm, device)
        else:
            per_layer[layer] = full_svm_sklearn(train, test, config.svm, jobs or os.cpu_count() or 1)
    best = max(
        layers,
        key=lambda layer: -math.inf if math.isnan(per_layer[layer].mean_ap) else per_layer[layer].mean_ap,
    )
    out_path = Path(out_path)
    metrics: dict[str, Any] = {"Best Layer": best, "SVM": per_layer[best].mean_ap}
    metrics["meta"] = {
        **_meta(
            benchmark_name,
            model_name,
            config_path,
            raw,
            train_path,
            test_path,
            device=_device(device) if solver == "fast" else torch.device("cpu"),
        ),
        "solver": solver,
        "classes": classes,
        "costs": list(config.svm.costs),
        "num_trainval": int(len(train.features)),
        "num_test": int(len(test.features)),
        "layers": {
            layer: {
                "mAP": result.mean_ap,
                "ap": dict(zip(classes, result.ap, strict=True)),
                "cost": dict(zip(classes, result.cost, strict=True)),
                "cv_ap": dict(zip(classes, result.cv_ap, strict=True)),
                "seconds": result.seconds,
                **({"solver": result.solver_info} if result.solver_info else {}),
            }
            for layer, result in per_layer.items()
        },
    }
    metrics = json_ready(metrics)
    write_json(out_path, metrics)
    return metrics
