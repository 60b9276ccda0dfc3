"""The ``sklearn`` solver of the VOC07 SVM benchmarks: LIBLINEAR as mmselfsup's reference scripts run it.

mmselfsup 0.x ``tools/benchmarks/classification/svm_voc07/tools`` (PROTOCOLS.md "VOC07 SVM and
low-shot SVM"): one ``LinearSVC(C, loss="squared_hinge", penalty="l2", dual=True,
class_weight={1: 2, -1: 1}, intercept_scaling=1, tol=1e-4, max_iter=2000)`` fit per class, cost
and fold, then a refit per class and cost, for the full SVM (``train_svm_kfold.py``, whose
``cross_val_score(cv=3, scoring="average_precision")`` is written out here, and ``test_svm.py``),
parallel over (class, cost) like its ``train_svm_kfold_parallel.py``; one fit per (sample, k,
class, cost) for the low-shot SVM (``train_svm_low_shot.py``, ``test_svm_low_shot.py``). The fits
draw the LIBLINEAR seeds the reference's fits draw (:func:`liblinear_states`), so the numbers are
the reference's whatever the number of processes.

:func:`full_svm_sklearn` and :func:`lowshot_sklearn` take the arguments of the ``fast`` solver's
:func:`sslzoo.benchmarks.svm_voc07.full_svm_fast` and :func:`sslzoo.benchmarks.svm_lowshot.lowshot_fast`
(``jobs`` where those take a device) and return the same results; the two solvers give the same
numbers. Settings, feature files, folds and samples: :mod:`sslzoo.benchmarks.svm_protocol`.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from sslzoo.benchmarks.svm_protocol import (
    LayerResult,
    LowshotConfig,
    LowshotRun,
    SvmSettings,
    VocSplit,
    _check_class_counts,
    _choose_costs,
    _lowshot_folds,
    _nanmean,
    normalize_rows,
    sample_lowshot,
    train_targets,
)
from sslzoo.benchmarks.voc_ap import voc_ap
from sslzoo.errors import SslzooError


def liblinear_states(seed: Any, count: int) -> list[np.random.RandomState]:
    """``count`` generators for the ``random_state`` of successive ``LinearSVC`` fits.

    LIBLINEAR visits the dual coordinates in a random order seeded by one draw
    ``randint(iinfo("i").max)`` from the fit's ``random_state``; at tol 1e-4 the order changes the
    solution (and so the AP, and at times the chosen cost). The reference scripts pass no
    ``random_state``, so each fit draws from numpy's global generator, which they never seed
    (``--random_seed`` of mmselfsup 0.11.0 tools/benchmarks/classification/svm_voc07/tools/
    ``train_svm_kfold.py`` and ``train_svm_low_shot.py`` is parsed and unused). Generator ``i``
    here stands where ``numpy.random.seed(seed)`` leaves the global generator before the i-th fit,
    so fits made in the reference's order draw the reference's seeds, whatever process runs them.
    """
    rng = np.random.RandomState(seed)
    states = []
    for _ in range(count):
        state = np.random.RandomState()
        state.set_state(rng.get_state())
        states.append(state)
        rng.randint(np.iinfo("i").max)  # the one draw a LinearSVC fit makes
    return states


#: numpy seed of LIBLINEAR's coordinate order for ``--solver sklearn`` (see :func:`liblinear_states`):
#: the reference scripts' ``--random_seed`` default, applied as they meant it to be.
LIBLINEAR_SEED = 100


def _liblinear(settings: SvmSettings, cost: float, random_state: np.random.RandomState | None = None) -> Any:
    """The reference's ``LinearSVC``; ``random_state`` is copied, so the caller's generator is not
    advanced by the fit (one generator may seed several fits, e.g. each low-shot sample's)."""

    return LinearSVC(
        C=cost,
        class_weight={1: settings.positive_weight, -1: settings.negative_weight},
        intercept_scaling=settings.intercept_scaling,
        penalty="l2",
        loss="squared_hinge",
        tol=settings.tol,
        dual=True,
        max_iter=settings.max_iter,
        fit_intercept=True,
        random_state=copy.deepcopy(random_state),
    )


def _sklearn_cv_fit(
    features: np.ndarray,
    labels: np.ndarray,
    settings: SvmSettings,
    cost: float,
    folds: int,
    cross_validate: bool,
    states: Sequence[np.random.RandomState],
) -> tuple[float, np.ndarray, float]:
    """One (class, cost) of the reference: ``cross_val_score`` then a fit on all rows.

    ``cross_val_score(cv=folds, scoring="average_precision")`` written out (``StratifiedKFold``
    without shuffling, the scorer on each held-out fold, the mean) so that each fold's fit gets
    its own generator: ``states`` holds one per fold (when cross-validating) and, last, the
    refit's - the reference's order of fits (``train_svm_kfold.py``).

    Returns the mean CV AP (NaN when not cross-validated), ``coef_`` and ``intercept_``.
    """

    if len(states) != (folds + 1 if cross_validate else 1):
        raise SslzooError(
            f"internal: {len(states)} generators for {folds} folds (cross_validate={cross_validate})"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        score = math.nan
        if cross_validate:
            scorer = get_scorer("average_precision")
            fold_scores = []
            for (rows, held), state in zip(
                StratifiedKFold(folds).split(features, labels), states, strict=False
            ):
                model = _liblinear(settings, cost, state).fit(features[rows], labels[rows])
                fold_scores.append(scorer(model, features[held], labels[held]))
            score = float(np.mean(fold_scores))
        model = _liblinear(settings, cost, states[-1]).fit(features, labels)
    return score, model.coef_[0].copy(), float(model.intercept_[0])


def full_svm_sklearn(
    train: VocSplit, test: VocSplit, settings: SvmSettings, jobs: int = 1, seed: int = LIBLINEAR_SEED
) -> LayerResult:
    """The full SVM protocol on one layer as the reference runs it: one LIBLINEAR fit per
    (class, cost, fold) plus a refit per (class, cost), ``jobs`` processes over (class, cost).

    The fits draw their LIBLINEAR seeds as ``train_svm_kfold.py`` does in one process whose
    numpy generator was seeded with ``seed`` (class by class, cost by cost, the folds then the
    refit): the same numbers as the reference run that way, whatever ``jobs``.
    """

    start = time.perf_counter()
    y = train_targets(train.targets).T
    _check_class_counts(y, settings.folds, train.classes)
    x = normalize_rows(train.features)
    tasks = [(c, q) for c in range(len(y)) for q in range(len(settings.costs))]
    per_task = settings.folds + 1
    states = liblinear_states(seed, len(tasks) * per_task)
    results = Parallel(n_jobs=jobs)(
        delayed(_sklearn_cv_fit)(
            x,
            y[c],
            settings,
            settings.costs[q],
            settings.folds,
            True,
            states[i * per_task : (i + 1) * per_task],
        )
        for i, (c, q) in enumerate(tasks)
    )
    cv_mean = np.array([r[0] for r in results]).reshape(len(y), len(settings.costs))
    chosen = _choose_costs(cv_mean)
    x_test = normalize_rows(test.features)
    scores = np.stack(
        [x_test @ results[c * len(settings.costs) + q][1] + results[c * len(settings.costs) + q][2]
         for c, q in enumerate(chosen)]
    )  # fmt: skip
    ap = [100 * voc_ap(scores[c], test.targets[:, c]) for c in range(len(y))]
    return LayerResult(
        mean_ap=_nanmean(ap),
        ap=ap,
        cost=[float(settings.costs[i]) for i in chosen],
        cv_ap=(100 * cv_mean).tolist(),
        seconds=time.perf_counter() - start,
    )


def _sklearn_lowshot_class(
    features: np.ndarray,
    labels: np.ndarray,
    settings: SvmSettings,
    folds: int,
    fit_states: Sequence[np.random.RandomState],
    cv_states: Sequence[np.random.RandomState],
) -> list[tuple[float, np.ndarray, float]]:
    """Every cost of one (sample, k, class): optional CV score, coef_, intercept_.

    ``fit_states``: one generator per cost for the fit on the sample (the reference's fits);
    ``cv_states``: ``folds`` per cost for the cross-validated choice, which the reference lacks.
    """
    return [
        _sklearn_cv_fit(
            features,
            labels,
            settings,
            cost,
            folds,
            folds > 0,
            [*cv_states[q * folds : (q + 1) * folds], fit_states[q]],
        )
        for q, cost in enumerate(settings.costs)
    ]


def lowshot_sklearn(
    train: VocSplit,
    test: VocSplit,
    config: LowshotConfig,
    seed: int,
    jobs: int = 1,
    liblinear_seed: int = LIBLINEAR_SEED,
) -> list[LowshotRun]:
    """The low-shot protocol as the reference runs it: one LIBLINEAR fit per (sample, k, class,
    cost), ``jobs`` processes over (sample, class).

    ``seed`` draws the samples (:func:`sample_lowshot`). The fits on a sample draw their LIBLINEAR
    seeds as ``train_svm_low_shot.py`` does in a process of its own per (sample, k) whose numpy
    generator was seeded with ``liblinear_seed`` (class by class, cost by cost); the CV fits of the
    cross-validated choice draw from a generator of their own, so they change none of those.
    """

    settings = config.svm
    costs = len(settings.costs)
    x = normalize_rows(train.features)
    x_test = normalize_rows(test.features)
    y_all = train_targets(train.targets)
    classes = train.targets.shape[1]
    fit_states = liblinear_states(liblinear_seed, classes * costs)
    runs = []
    for k in config.ks:
        start = time.perf_counter()
        folds = _lowshot_folds(k, settings.folds) if config.cross_validate else 0
        samples = [
            sample_lowshot(train.targets, k, seed, s, config.negatives_per_positive)
            for s in range(config.samples)
        ]
        cv_states = [
            liblinear_states([liblinear_seed, s, k], classes * costs * folds) for s in range(config.samples)
        ]
        results = Parallel(n_jobs=jobs)(
            delayed(_sklearn_lowshot_class)(
                x[rows[c]],
                y_all[rows[c], c],
                settings,
                folds,
                fit_states[c * costs : (c + 1) * costs],
                cv_states[s][c * costs * folds : (c + 1) * costs * folds],
            )
            for s, rows in enumerate(samples)
            for c in range(classes)
        )
        test_map = np.zeros((config.samples, costs))
        cv_map, cv_costs = [], []
        for s in range(config.samples):
            ap = np.zeros((classes, costs))
            cv = np.zeros((classes, costs))
            for c in range(classes):
                for q, (score, coef, intercept) in enumerate(results[s * classes + c]):
                    ap[c, q] = 100 * voc_ap(x_test @ coef + intercept, test.targets[:, c])
                    cv[c, q] = score
            test_map[s] = np.nanmean(ap, axis=0)
            if folds:
                chosen = _choose_costs(cv)
                cv_map.append(_nanmean([ap[c, i] for c, i in enumerate(chosen)]))
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
