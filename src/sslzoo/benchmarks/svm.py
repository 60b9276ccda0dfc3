"""VOC07 linear SVM and low-shot SVM benchmarks on cached features.

The protocols of mmselfsup 0.x ``tools/benchmarks/classification/svm_voc07`` (from
facebookresearch/fair_self_supervision_benchmark; PROTOCOLS.md "VOC07 SVM and low-shot SVM"),
on the feature files of :mod:`sslzoo.benchmarks.features` (``labels`` int8 ``[N, 20]``:
1 present, -1 absent, 0 difficult only):

- Rows are L2-normalised one by one, ``x / (||x|| + 1e-5)`` in float64 (``svm_helper.normalize_features``).
- One linear SVM per class: ``LinearSVC(C, loss="squared_hinge", penalty="l2", dual=True,
  class_weight={1: 2, -1: 1}, intercept_scaling=1, tol=1e-4, max_iter=2000)``; targets +1 for
  present, -1 otherwise - the reference trains with difficult images as negatives
  (``train_svm_kfold.py``: its "ignore" label is turned into -1 with the absent ones).
- **Full SVM** (``train_svm_kfold.py``, ``test_svm.py``): for each class and each of the 19
  costs, ``cross_val_score(cv=3, scoring="average_precision")`` on trainval - scikit-learn's
  ``StratifiedKFold(3)`` without shuffling, reproduced by :func:`stratified_fold_ids`; the cost
  with the best mean fold AP (the first in config order on a tie) is refit on all of trainval
  and scored on test with the VOC AP, difficult images left out (:mod:`sslzoo.benchmarks.voc_ap`).
  Done for every layer of the file; the best layer and its mAP are the table's numbers.
- **Low-shot** (``create_voc_low_shot_challenge_samples.py``, ``train_svm_low_shot.py``,
  ``test_svm_low_shot.py``, ``aggregate_low_shot_svm_stats.py``): for each k and each of 5
  independent samples, per class k positive and ``(classes - 1) * k`` absent images drawn from
  trainval (difficult images are never drawn), one SVM per cost, test mAP per (sample, k, cost);
  the reference then takes, per k, the cost with the best mean test mAP over the samples and
  reports mean/min/max/std over the samples at that cost. That choice looks at the test set; it
  is the table number here, labelled "reference cost choice (best on test)", and ``meta`` adds a
  cross-validated choice (the full protocol's 3-fold CV, on each sample's training images)
  beside it. The reference draws with an unseeded ``random.sample``; here the draw of sample
  ``s`` for k is seeded with ``(seed, s, k)``.

Two solvers give the same numbers: ``fast`` (:mod:`sslzoo.benchmarks.svm_solver`, every
class/fold/cost on one kernel matrix, CUDA when present) and ``sklearn`` (LIBLINEAR, one fit per
class, cost and fold as the reference does, parallel over (class, cost) like its
``train_svm_kfold_parallel.py``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslzoo.benchmarks.svm_solver import (
    Preconditioner,
    SolverOptions,
    fit_cost_path,
    linear_kernel,
    primal_weights,
    solve_kernel_svm,
    top_eigenpairs,
)
from sslzoo.benchmarks.voc_ap import average_precision_batch, voc_ap, voc_ap_batch
from sslzoo.errors import SslzooError
from sslzoo.io import git_revision, read_yaml, write_json
from sslzoo.run_record import run_record

REFERENCE_CHOICE = "reference cost choice (best on test)"
CROSS_VALIDATED_CHOICE = "cross-validated cost choice (3-fold CV on the training sample)"
FEATURE_LAYERS = ("feature1", "feature2", "feature3", "feature4", "feature5")
SOLVERS = ("fast", "sklearn")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SvmSettings:
    """The linear SVM shared by both protocols (``config/benchmarks/svm_voc07*.yaml``, ``lowshot_voc07*.yaml``).

    Attributes:
        costs: the costs C tried, in the reference's order (its tie-break is the first best).
        positive_weight, negative_weight: ``class_weight`` {1: positive, -1: negative}.
        intercept_scaling: LIBLINEAR's bias feature.
        folds: cross-validation folds.
        tol, max_iter: LIBLINEAR's stopping rule (``--solver sklearn``).
        fast_tol: the fast solver's relative gradient norm at the solution.
    """

    costs: tuple[float, ...] = (1.0, 10.0, 100.0, *(0.5**i for i in range(4, 20)))
    positive_weight: float = 2.0
    negative_weight: float = 1.0
    intercept_scaling: float = 1.0
    folds: int = 3
    tol: float = 1e-4
    max_iter: int = 2000
    fast_tol: float = 1e-6

    def weights(self, targets: np.ndarray | torch.Tensor) -> Any:
        """Per-row class weight of +1/-1 targets."""
        if isinstance(targets, torch.Tensor):
            return torch.where(targets > 0, self.positive_weight, self.negative_weight).to(torch.float64)
        return np.where(targets > 0, self.positive_weight, self.negative_weight)


@dataclass(frozen=True)
class SvmConfig:
    """Full VOC07 SVM: the settings and the layers to evaluate (None = every ``featureN`` of the file)."""

    svm: SvmSettings = field(default_factory=SvmSettings)
    layers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LowshotConfig:
    """Low-shot SVM: settings, the layer, the k values, the number of samples, whether to add the
    CV choice, and the absent images drawn per present one (None: classes - 1, 19 for VOC)."""

    svm: SvmSettings = field(default_factory=SvmSettings)
    layer: str = "feature5"
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 96)
    samples: int = 5
    cross_validate: bool = True
    negatives_per_positive: int | None = None


_SVM_KEYS = {"costs", "class_weight", "intercept_scaling", "folds", "tol", "max_iter", "fast_tol"}


def _number(raw: dict[str, Any], key: str, default: float, source: str, positive: bool = True) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (positive and value <= 0):
        raise SslzooError(f"{source}: {key} must be a positive number, got {value!r}")
    return float(value)


def _integer(raw: dict[str, Any], key: str, default: int, source: str, minimum: int = 1) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SslzooError(f"{source}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _svm_settings(raw: dict[str, Any], source: str) -> SvmSettings:
    default = SvmSettings()
    costs = raw.get("costs", list(default.costs))
    if not (
        isinstance(costs, list)
        and costs
        and all(isinstance(c, int | float) and not isinstance(c, bool) and c > 0 for c in costs)
    ):
        raise SslzooError(f"{source}: costs must be a non-empty list of positive numbers, got {costs!r}")
    if len(set(costs)) != len(costs):
        raise SslzooError(f"{source}: costs lists a value twice: {costs}")
    weights = raw.get("class_weight", {1: default.positive_weight, -1: default.negative_weight})
    if not (isinstance(weights, dict) and set(weights) == {1, -1}):
        raise SslzooError(
            f"{source}: class_weight must be {{1: <positive weight>, -1: <negative weight>}}, got {weights!r}"
        )
    for label in (1, -1):
        value = weights[label]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise SslzooError(f"{source}: class_weight[{label}] must be a positive number, got {value!r}")
    return SvmSettings(
        costs=tuple(float(c) for c in costs),
        positive_weight=float(weights[1]),
        negative_weight=float(weights[-1]),
        intercept_scaling=_number(raw, "intercept_scaling", default.intercept_scaling, source),
        folds=_integer(raw, "folds", default.folds, source, minimum=2),
        tol=_number(raw, "tol", default.tol, source),
        max_iter=_integer(raw, "max_iter", default.max_iter, source),
        fast_tol=_number(raw, "fast_tol", default.fast_tol, source),
    )


def _read_mapping(path: str | os.PathLike[str], allowed: set[str]) -> dict[str, Any]:
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise SslzooError(f"{path}: expected a mapping of settings")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SslzooError(f"{path}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    return raw


def load_svm_config(path: str | os.PathLike[str]) -> tuple[SvmConfig, dict[str, Any]]:
    """The validated full-SVM config and the raw mapping (recorded in metrics.json)."""
    raw = _read_mapping(path, _SVM_KEYS | {"layers"})
    layers = raw.get("layers")
    if layers is not None and not (
        isinstance(layers, list) and layers and all(layer in FEATURE_LAYERS for layer in layers)
    ):
        raise SslzooError(
            f"{path}: layers must be a non-empty list among {list(FEATURE_LAYERS)}, got {layers!r}"
        )
    return SvmConfig(svm=_svm_settings(raw, str(path)), layers=tuple(layers) if layers else None), raw


def load_lowshot_config(path: str | os.PathLike[str]) -> tuple[LowshotConfig, dict[str, Any]]:
    """The validated low-shot config and the raw mapping (recorded in metrics.json)."""
    raw = _read_mapping(
        path, _SVM_KEYS | {"layer", "ks", "samples", "cross_validate", "negatives_per_positive"}
    )
    default = LowshotConfig()
    layer = raw.get("layer", default.layer)
    if layer not in FEATURE_LAYERS:
        raise SslzooError(f"{path}: layer must be one of {list(FEATURE_LAYERS)}, got {layer!r}")
    ks = raw.get("ks", list(default.ks))
    if not (
        isinstance(ks, list)
        and ks
        and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks)
    ):
        raise SslzooError(f"{path}: ks must be a non-empty list of positive integers, got {ks!r}")
    cross_validate = raw.get("cross_validate", default.cross_validate)
    if not isinstance(cross_validate, bool):
        raise SslzooError(f"{path}: cross_validate must be true or false, got {cross_validate!r}")
    config = LowshotConfig(
        svm=_svm_settings(raw, str(path)),
        layer=layer,
        ks=tuple(ks),
        samples=_integer(raw, "samples", default.samples, str(path)),
        cross_validate=cross_validate,
        negatives_per_positive=(
            _integer(raw, "negatives_per_positive", 1, str(path)) if "negatives_per_positive" in raw else None
        ),
    )
    return config, raw


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocSplit:
    """One layer of a VOC feature file: features ``[N, D]``, targets ``[N, C]`` (1/-1/0), class names."""

    features: np.ndarray
    targets: np.ndarray
    classes: list[str]


def feature_layers(path: str | os.PathLike[str]) -> list[str]:
    """The ``featureN`` layers stored in a feature file, in order."""
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: feature file not found; run `python -m sslzoo extract-features` for it")
    with np.load(path, allow_pickle=False) as data:
        return [name for name in FEATURE_LAYERS if name in data.files]


def load_voc_split(path: str | os.PathLike[str], layer: str) -> VocSplit:
    """Read one layer and the 1/-1/0 targets of a VOC feature file, checking both."""
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: feature file not found; run `python -m sslzoo extract-features` for it")
    with np.load(path, allow_pickle=False) as data:
        if layer not in data.files:
            raise SslzooError(
                f"{path}: no layer '{layer}' (has {sorted(data.files)}); fix the layer(s) in the SVM config"
            )
        for key in ("labels", "classes"):
            if key not in data.files:
                raise SslzooError(f"{path}: no '{key}' array; extract the features again")
        features, targets = data[layer], data["labels"]
        classes = [str(name) for name in data["classes"]]
    if targets.ndim != 2 or targets.shape != (len(features), len(classes)):
        raise SslzooError(
            f"{path}: the SVM benchmarks need multi-label targets [N, {len(classes)}], got labels {targets.shape}; "
            "extract features from a VOC manifest"
        )
    if not np.isin(targets, (1, -1, 0)).all():
        raise SslzooError(f"{path}: labels must be 1 (present), -1 (absent) or 0 (difficult)")
    if not np.isfinite(features).all():
        raise SslzooError(f"{path}: layer '{layer}' holds NaN or infinite values; the backbone diverged")
    return VocSplit(features=features, targets=targets.astype(np.int8), classes=classes)


def _check_pair(train_path: Any, test_path: Any, train: VocSplit, test: VocSplit) -> None:
    if train.classes != test.classes:
        raise SslzooError(
            f"{train_path} and {test_path}: different class lists; extract both from VOC manifests"
        )
    if train.features.shape[1] != test.features.shape[1]:
        raise SslzooError(
            f"{train_path} and {test_path}: feature widths differ ({train.features.shape[1]} vs {test.features.shape[1]})"
        )


def normalize_rows(features: np.ndarray | torch.Tensor) -> Any:
    """``x / (||x|| + 1e-5)`` per row in float64 (mmselfsup ``svm_helper.normalize_features``)."""
    if isinstance(features, torch.Tensor):
        features = features.to(torch.float64)
        return features / (features.norm(dim=1, keepdim=True) + 1e-5)
    features = np.asarray(features, dtype=np.float64)
    return features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-5)


def train_targets(targets: np.ndarray) -> np.ndarray:
    """+1 for present, -1 for absent and difficult (the reference's training targets), ``[N, C]`` int."""
    return np.where(targets == 1, 1, -1)


def stratified_fold_ids(labels: np.ndarray, folds: int) -> np.ndarray:
    """The test fold of each row under scikit-learn's ``StratifiedKFold(folds)`` (no shuffling).

    What ``cross_val_score(cv=folds)`` uses for a classifier (scikit-learn >= 0.22): label values
    are numbered by first appearance, the sorted label sequence is dealt round-robin to the
    folds to get each fold's count per label, and each label's rows, in row order, fill fold 0
    first, then fold 1, ...

    Args:
        labels: ``[N]`` class labels of the rows.

    Returns:
        ``[N]`` int fold index in ``0..folds-1``.
    """
    labels = np.asarray(labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    encoded = np.argsort(np.argsort(first))[inverse.reshape(-1)]
    counts = np.bincount(encoded)
    if folds > len(labels) or np.all(counts < folds):
        raise SslzooError(
            f"{folds}-fold cross-validation needs at least {folds} rows of some class, got counts {counts.tolist()}"
        )
    ordered = np.sort(encoded)
    allocation = np.stack([np.bincount(ordered[i::folds], minlength=len(counts)) for i in range(folds)])
    out = np.empty(len(labels), dtype=np.int64)
    for value in range(len(counts)):
        out[encoded == value] = np.repeat(np.arange(folds), allocation[:, value])
    return out


def sample_lowshot(
    targets: np.ndarray, k: int, seed: int, sample: int, negatives_per_positive: int | None = None
) -> np.ndarray:
    """Rows of one low-shot sample: for each class k present and ``(C - 1) * k`` absent images.

    As ``create_voc_low_shot_challenge_samples.py`` draws them (each class on its own, without
    replacement, difficult images never drawn), seeded with ``(seed, sample, k)``.

    Args:
        targets: ``[N, C]`` 1/-1/0 of trainval.
        negatives_per_positive: default ``C - 1`` (19 for VOC).

    Returns:
        ``[C, k * (1 + negatives_per_positive)]`` row indices, ascending per class.
    """
    classes = targets.shape[1]
    ratio = classes - 1 if negatives_per_positive is None else negatives_per_positive
    rng = np.random.default_rng([seed, sample, k])
    out = []
    for c in range(classes):
        positives = np.flatnonzero(targets[:, c] == 1)
        negatives = np.flatnonzero(targets[:, c] == -1)
        if len(positives) < k or len(negatives) < ratio * k:
            raise SslzooError(
                f"low-shot k={k}: class {c} has {len(positives)} present and {len(negatives)} absent trainval "
                f"images, fewer than the {k} and {ratio * k} needed; remove k={k} from the low-shot config's ks"
            )
        rows = np.concatenate(
            [rng.choice(positives, k, replace=False), rng.choice(negatives, ratio * k, replace=False)]
        )
        out.append(np.sort(rows))
    return np.stack(out)


def _device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------
# Full SVM
# --------------------------------------------------------------------------------------------


@dataclass
class LayerResult:
    """The full SVM on one layer: test mAP (%), per-class test AP (%), chosen costs, CV APs (%)."""

    mean_ap: float
    ap: list[float]
    cost: list[float]
    cv_ap: list[list[float]]  # [class][cost, config order]
    seconds: float = 0.0
    solver_info: dict[str, Any] = field(default_factory=dict)


def _choose_costs(cv_mean: np.ndarray) -> np.ndarray:
    """Index of the best cost per row of ``cv_mean [C, Q]`` (the first in config order on a tie, as ``np.argmax``)."""
    return np.argmax(cv_mean, axis=1)


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


def _check_class_counts(y: np.ndarray, folds: int, names: Sequence[str]) -> None:
    for name, row in zip(names, y, strict=True):
        positives = int((row > 0).sum())
        negatives = int((row < 0).sum())
        if positives < folds or negatives < folds:
            raise SslzooError(
                f"class {name} has {positives} present and {negatives} other trainval images; "
                f"{folds}-fold cross-validation needs at least {folds} of each (config key folds)"
            )


def _test_ap(scores: torch.Tensor, targets: np.ndarray, device: torch.device) -> list[float]:
    """VOC AP (%) per class of test scores ``[C, n_test]``; difficult (0) left out."""
    t = torch.from_numpy(targets.T.astype(np.int64)).to(device)
    return (100 * voc_ap_batch(scores, t == 1, t != 0)).cpu().tolist()


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


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
    import copy

    from sklearn.svm import LinearSVC

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
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import StratifiedKFold

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
    from joblib import Parallel, delayed

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


def json_ready(value: Any) -> Any:
    """``value`` with every NaN float replaced by None (JSON has no NaN; tables show None as missing)."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def _meta(
    out_path: Path,
    config_path: Any,
    raw: dict[str, Any],
    train_path: Any,
    test_path: Any,
    seed: int | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """The ``meta`` entries every SVM metrics file has, with the run record ``run``
    (:mod:`sslzoo.run_record`): one process; batch fields null (the feature files do not
    record the batch they were extracted with, and the SVMs see every row at once); ``seed``
    the low-shot sampling seed (None for the full SVM, which draws nothing)."""
    return {
        "benchmark": out_path.parent.parent.name,
        "model": out_path.parent.name,
        "config": raw,
        "config_path": str(config_path),
        "git_rev": git_revision(),
        "trainval": str(train_path),
        "test": str(test_path),
        "run": run_record(world_size=1, per_process_batch=None, accumulate=None, seed=seed, device=device),
    }


def svm_benchmark(
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    solver: str = "fast",
    device: str | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run the full VOC07 SVM on every configured layer and write ``metrics.json``.

    The file holds ``"Best Layer"`` (the layer with the best test mAP) and ``"SVM"`` (its mAP, %)
    and, under ``meta``, every layer's mAP, per-class AP, chosen cost and CV APs.
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
            out_path,
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


# --------------------------------------------------------------------------------------------
# Low-shot SVM
# --------------------------------------------------------------------------------------------


@dataclass
class LowshotRun:
    """Test mAP (%) of every sample and cost for one k, and the CV choice per sample (None for k=1)."""

    k: int
    test_map: np.ndarray  # [samples, costs]
    cv_map: list[float] | None  # per sample: test mAP with each class's cross-validated cost
    cv_costs: list[list[float]] | None  # [sample][class]
    seconds: float = 0.0


def _lowshot_folds(k: int, folds: int) -> int:
    """Folds of the CV choice on a sample with k positives per class (0: not possible, k=1)."""
    return min(folds, k) if k >= 2 else 0


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
    from joblib import Parallel, delayed

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


def lowshot_benchmark(
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    seed: int = 0,
    solver: str = "fast",
    device: str | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run the low-shot SVM on the configured layer and write ``metrics.json``.

    The file holds ``"Best Layer"`` (the layer used) and ``"k=<k>"``: the mean test mAP (%) over
    the samples with the reference's cost choice; ``meta`` has min/max/std, the chosen cost, every
    (sample, cost) mAP and the cross-validated choice beside it.
    """
    if solver not in SOLVERS:
        raise SslzooError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
    config, raw = load_lowshot_config(config_path)
    train = load_voc_split(train_path, config.layer)
    test = load_voc_split(test_path, config.layer)
    _check_pair(train_path, test_path, train, test)
    start = time.perf_counter()
    if solver == "fast":
        runs = lowshot_fast(train, test, config, seed, device)
    else:
        runs = lowshot_sklearn(train, test, config, seed, jobs or os.cpu_count() or 1)
    summaries = {f"k={run.k}": summarize_lowshot(run, config.svm.costs) for run in runs}
    out_path = Path(out_path)
    metrics: dict[str, Any] = {"Best Layer": config.layer}
    metrics.update({key: summary["reference"]["mean"] for key, summary in summaries.items()})
    metrics["meta"] = {
        **_meta(
            out_path,
            config_path,
            raw,
            train_path,
            test_path,
            seed=seed,
            device=_device(device) if solver == "fast" else torch.device("cpu"),
        ),
        "solver": solver,
        "seed": seed,
        "layer": config.layer,
        "samples": config.samples,
        "table_numbers": REFERENCE_CHOICE,
        "costs": list(config.svm.costs),
        "classes": train.classes,
        "num_trainval": int(len(train.features)),
        "num_test": int(len(test.features)),
        "seconds": time.perf_counter() - start,
        "settings": asdict(config.svm),
        "k": summaries,
    }
    metrics = json_ready(metrics)
    write_json(out_path, metrics)
    return metrics
