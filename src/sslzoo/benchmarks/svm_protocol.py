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
from typing import Any

import numpy as np
import torch

from sslzoo.benchmarks.feature_files import read_layer
from sslzoo.benchmarks.protocol_files import read_protocol, schema_default
from sslzoo.errors import SslzooError
from sslzoo.io import git_revision
from sslzoo.runtime.record import run_record

SOLVERS = ("fast", "sklearn")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SvmSettings:
    """The linear SVM shared by both protocols (``config/benchmarks/svm_voc07*.yaml``, ``lowshot_voc07*.yaml``).

    The defaults are the schema's (``sslzoo/schemas/protocol_common.schema.yaml``): the reference's.

    Attributes:
        costs: the costs C tried, in the reference's order (its tie-break is the first best).
        positive_weight, negative_weight: ``class_weight`` {1: positive, -1: negative}.
        intercept_scaling: LIBLINEAR's bias feature.
        folds: cross-validation folds.
        tol, max_iter: LIBLINEAR's stopping rule (``--solver sklearn``).
        fast_tol: the fast solver's relative gradient norm at the solution.
    """

    costs: tuple[float, ...] = schema_default("svm", "costs")
    positive_weight: float = schema_default("svm", "class_weight")[1]
    negative_weight: float = schema_default("svm", "class_weight")[-1]
    intercept_scaling: float = schema_default("svm", "intercept_scaling")
    folds: int = schema_default("svm", "folds")
    tol: float = schema_default("svm", "tol")
    max_iter: int = schema_default("svm", "max_iter")
    fast_tol: float = schema_default("svm", "fast_tol")

    def weights(self, targets: np.ndarray | torch.Tensor) -> Any:
        """Per-row class weight of +1/-1 targets."""
        if isinstance(targets, torch.Tensor):
            return torch.where(targets > 0, self.positive_weight, self.negative_weight).to(torch.float64)
        return np.where(targets > 0, self.positive_weight, self.negative_weight)


@dataclass(frozen=True)
class SvmConfig:
    """Full VOC07 SVM: the settings and the layers to evaluate (None = every ``featureN`` of the file)."""

    svm: SvmSettings
    layers: tuple[str, ...] | None


@dataclass(frozen=True)
class LowshotConfig:
    """Low-shot SVM: settings, the layers (each run on its own; the best is the table's), the k
    values, the number of samples, whether to add the CV choice, and the absent images drawn per
    present one (None: classes - 1, 19 for VOC). The defaults are the schema's
    (``sslzoo/schemas/lowshot.schema.yaml``)."""

    svm: SvmSettings = field(default_factory=SvmSettings)
    layers: tuple[str, ...] = schema_default("lowshot", "layers")
    ks: tuple[int, ...] = schema_default("lowshot", "ks")
    samples: int = schema_default("lowshot", "samples")
    cross_validate: bool = schema_default("lowshot", "cross_validate")
    negatives_per_positive: int | None = None


def _svm_settings(cfg: dict[str, Any], source: str) -> SvmSettings:
    """The SVM of a validated, default-filled svm or lowshot protocol."""
    weights = cfg["class_weight"]
    if set(weights) != {1, -1}:
        raise SslzooError(
            f"{source}: class_weight: must be {{1: <positive weight>, -1: <negative weight>}}, got {weights!r}"
        )
    return SvmSettings(
        costs=tuple(float(c) for c in cfg["costs"]),
        positive_weight=float(weights[1]),
        negative_weight=float(weights[-1]),
        intercept_scaling=float(cfg["intercept_scaling"]),
        folds=cfg["folds"],
        tol=float(cfg["tol"]),
        max_iter=cfg["max_iter"],
        fast_tol=float(cfg["fast_tol"]),
    )


def load_svm_config(path: str | os.PathLike[str]) -> tuple[SvmConfig, dict[str, Any]]:
    """The validated full-SVM config (``sslzoo/schemas/svm.schema.yaml``) and the file's mapping
    as written (recorded in metrics.json)."""
    raw, cfg = read_protocol(path, "svm")
    layers = cfg.get("layers")  # absent: every featureN of the feature file
    return SvmConfig(svm=_svm_settings(cfg, str(path)), layers=tuple(layers) if layers else None), raw


def load_lowshot_config(path: str | os.PathLike[str]) -> tuple[LowshotConfig, dict[str, Any]]:
    """The validated low-shot config (``sslzoo/schemas/lowshot.schema.yaml``) and the file's
    mapping as written (recorded in metrics.json)."""
    raw, cfg = read_protocol(path, "lowshot")
    config = LowshotConfig(
        svm=_svm_settings(cfg, str(path)),
        layers=tuple(cfg["layers"]),
        ks=tuple(cfg["ks"]),
        samples=cfg["samples"],
        cross_validate=cfg["cross_validate"],
        negatives_per_positive=cfg.get("negatives_per_positive"),  # absent: classes - 1
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


def load_voc_split(path: str | os.PathLike[str], layer: str) -> VocSplit:
    """Read one layer and the 1/-1/0 targets of a VOC feature file, checking both."""
    features, targets, classes = read_layer(path, layer, "fix the layer(s) in the SVM config")
    if targets.ndim != 2 or targets.shape != (len(features), len(classes)):
        raise SslzooError(
            f"{path}: the SVM benchmarks need multi-label targets [N, {len(classes)}], got labels {targets.shape}; "
            "extract features from a VOC manifest"
        )
    if not np.isin(targets, (1, -1, 0)).all():
        raise SslzooError(f"{path}: labels must be 1 (present), -1 (absent) or 0 (difficult)")
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
