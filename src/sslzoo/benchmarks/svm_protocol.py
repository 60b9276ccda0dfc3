"""The VOC07 SVM protocols' shared parts: settings and configs, feature files, folds, samples, results.

The protocols of mmselfsup 0.x ``tools/benchmarks/classification/svm_voc07`` (from
facebookresearch/fair_self_supervision_benchmark; PROTOCOLS.md "VOC07 SVM and low-shot SVM"),
on the feature files of :mod:`sslzoo.benchmarks.features` (``labels`` int8 ``[N, 20]``:
1 present, -1 absent, 0 difficult only):

- Rows are L2-normalised one by one, ``x / (||x|| + 1e-5)`` in float64 (``svm_helper.normalize_features``).
- One linear SVM per class: ``LinearSVC(C, loss="squared_hinge", penalty="l2", dual=True,
  class_weight={1: 2, -1: 1}, intercept_scaling=1, tol=1e-4, max_iter=2000)``; targets +1 for
  present, -1 otherwise - the reference trains with difficult images as negatives
  (``train_svm_kfold.py``: its "ignore" label is turned into -1 with the absent ones).
- Cross-validation (``train_svm_kfold.py``'s ``cross_val_score(cv=3)``) folds as scikit-learn's
  ``StratifiedKFold(3)`` without shuffling deals them, reproduced by :func:`stratified_fold_ids`.
- Low-shot samples (``create_voc_low_shot_challenge_samples.py``): per class k positive and
  ``(classes - 1) * k`` absent images drawn from trainval (difficult images are never drawn). The
  reference draws with an unseeded ``random.sample``; here the draw of sample ``s`` for k is
  seeded with ``(seed, s, k)`` (:func:`sample_lowshot`).

The protocols: :mod:`sslzoo.benchmarks.svm_voc07` (full SVM) and :mod:`sslzoo.benchmarks.svm_lowshot`
(low-shot), each with its ``fast`` solver (:mod:`sslzoo.benchmarks.svm_solver`); the ``sklearn``
solver of both (LIBLINEAR as the reference runs it): :mod:`sslzoo.benchmarks.svm_sklearn`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslzoo.errors import SslzooError
from sslzoo.io import git_revision, read_yaml
from sslzoo.run_record import run_record

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
# Results and metrics files
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


@dataclass
class LowshotRun:
    """Test mAP (%) of every sample and cost for one k, and the CV choice per sample (None for k=1)."""

    k: int
    test_map: np.ndarray  # [samples, costs]
    cv_map: list[float] | None  # per sample: test mAP with each class's cross-validated cost
    cv_costs: list[list[float]] | None  # [sample][class]
    seconds: float = 0.0


def _choose_costs(cv_mean: np.ndarray) -> np.ndarray:
    """Index of the best cost per row of ``cv_mean [C, Q]`` (the first in config order on a tie, as ``np.argmax``)."""
    return np.argmax(cv_mean, axis=1)


def _check_class_counts(y: np.ndarray, folds: int, names: Sequence[str]) -> None:
    for name, row in zip(names, y, strict=True):
        positives = int((row > 0).sum())
        negatives = int((row < 0).sum())
        if positives < folds or negatives < folds:
            raise SslzooError(
                f"class {name} has {positives} present and {negatives} other trainval images; "
                f"{folds}-fold cross-validation needs at least {folds} of each (config key folds)"
            )


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _lowshot_folds(k: int, folds: int) -> int:
    """Folds of the CV choice on a sample with k positives per class (0: not possible, k=1)."""
    return min(folds, k) if k >= 2 else 0


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
    benchmark_name: str,
    model_name: str,
    config_path: Any,
    raw: dict[str, Any],
    train_path: Any,
    test_path: Any,
    seed: int | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """The ``meta`` entries every SVM metrics file has: the benchmark and model names, the
    config and inputs, and the run record ``run`` (:mod:`sslzoo.run_record`): one process; batch
    fields null (the feature files do not record the batch they were extracted with, and the SVMs
    see every row at once); ``seed`` the low-shot sampling seed (None for the full SVM, which
    draws nothing)."""
    return {
        "benchmark": benchmark_name,
        "model": model_name,
        "config": raw,
        "config_path": str(config_path),
        "git_rev": git_revision(),
        "trainval": str(train_path),
        "test": str(test_path),
        "run": run_record(world_size=1, per_process_batch=None, accumulate=None, seed=seed, device=device),
    }
