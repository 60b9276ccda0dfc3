"""Average precision as the VOC07 SVM benchmarks compute it.

Two definitions are in play (mmselfsup 0.x ``tools/benchmarks/classification/svm_voc07``):

- **Test AP** (:func:`voc_ap`): ``svm_helper.get_precision_recall`` + ``calculate_ap``, the
  all-point VOC AP (the VOC 2010+ devkit's, *not* the 11-point VOC07 devkit's): rank the images
  by score, precision ``P_i`` and recall ``R_i`` after each image, make precision monotone from
  the right (``P~_i = max_{j >= i} P_j``) and sum ``(R_i - R_{i-1}) P~_i``. Every image is its
  own point (tied scores are not merged); ties are ranked as ``np.argsort(scores)[::-1]`` of a
  stable sort, i.e. the later row first, which is the reference's order whenever scores differ.
  Images whose target is 0 ("difficult only") are left out; positives are targets 1.
- **Cross-validation AP** (:func:`average_precision`): ``sklearn.metrics.average_precision_score``
  as ``cross_val_score(..., scoring="average_precision")`` uses it on the held-out folds: no
  interpolation, ``sum (R_k - R_{k-1}) P_k`` over the distinct score thresholds (tied scores form
  one point); a fold without positives scores 0 (scikit-learn's convention).

Both come as a plain function of one score vector (the definition, checked by hand in the tests)
and as a batched torch version (many classes, costs and folds at once) used by the protocols.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sslzoo.errors import SslzooError


def voc_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """All-point VOC AP of one class in [0, 1]; NaN when no image is a positive.

    Args:
        scores: ``[N]`` decision values.
        targets: ``[N]`` 1 (positive), -1 (negative), 0 (difficult: left out).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 1:
        raise SslzooError(
            f"voc_ap: scores {scores.shape} and targets {targets.shape} must be equal 1-d shapes"
        )
    keep = targets != 0
    scores, positive = scores[keep], targets[keep] > 0
    count = int(positive.sum())
    if count == 0:
        return math.nan
    ranked = positive[np.argsort(scores, kind="stable")[::-1]]
    hits = np.cumsum(ranked)
    precision = hits / np.arange(1, len(ranked) + 1)
    recall = hits / count
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


def mean_ap(scores: np.ndarray, targets: np.ndarray) -> tuple[float, list[float]]:
    """Mean over classes of :func:`voc_ap`, in [0, 1], and the per-class APs.

    Args:
        scores: ``[N, C]``; targets: ``[N, C]`` with 1/-1/0.

    Classes without a positive image (AP NaN) are left out of the mean.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise SslzooError(f"mean_ap: scores {scores.shape} and targets {targets.shape} must be equal [N, C]")
    per_class = [voc_ap(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    valid = [ap for ap in per_class if not math.isnan(ap)]
    return (float(np.mean(valid)) if valid else math.nan), per_class


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score`` (step-wise, ties merged); 0 without positives.

    Args:
        scores: ``[N]``; positive: ``[N]`` bool (or 1/-1 targets, positive where > 0).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive) > 0
    count = int(positive.sum())
    if count == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    hits = np.cumsum(positive)
    seen = np.arange(1, len(scores) + 1)
    last = np.r_[scores[1:] != scores[:-1], True]  # the last row of each group of tied scores
    hits, seen = hits[last], seen[last]
    recall = hits / count
    return float(np.sum(np.diff(np.r_[0.0, recall]) * hits / seen))


def _ranked(scores: torch.Tensor, valid: torch.Tensor, later_first: bool) -> torch.Tensor:
    """Order of each row by descending score, left-out rows last."""
    low = torch.finfo(scores.dtype).min
    masked = scores.where(valid, torch.full_like(scores, low))
    if later_first:  # reversed stable ascending sort: among ties the later index first
        return torch.sort(masked, dim=-1, stable=True).indices.flip(-1)
    return torch.sort(masked, dim=-1, descending=True, stable=True).indices


def voc_ap_batch(scores: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """:func:`voc_ap` of many score vectors at once.

    Args:
        scores: ``[B, N]``; positive: ``[B, N]`` bool; valid: ``[B, N]`` bool (False = left out,
            e.g. difficult images).

    Returns:
        ``[B]`` AP in [0, 1] (float64), NaN where a row has no valid positive.
    """
    scores = scores.to(torch.float64)
    positive, valid = torch.broadcast_tensors(positive.bool(), valid.bool())
    positive, valid = positive.expand_as(scores), valid.expand_as(scores)
    if bool((valid & scores.isinf()).any()) or bool((valid & scores.isnan()).any()):
        raise SslzooError("voc_ap_batch: scores must be finite")
    order = _ranked(scores, valid, later_first=True)
    hit = (positive & valid).gather(-1, order).to(torch.float64)
    counted = valid.gather(-1, order).to(torch.float64)
    hits = hit.cumsum(-1)
    seen = counted.cumsum(-1).clamp_min(1)
    count = hits[..., -1:]
    precision = hits / seen
    recall = hits / count.clamp_min(1)
    envelope = precision.flip(-1).cummax(-1).values.flip(-1)
    steps = torch.diff(recall, dim=-1, prepend=torch.zeros_like(recall[..., :1]))
    ap = (steps * envelope).sum(-1)
    return ap.where(count.squeeze(-1) > 0, torch.full_like(ap, math.nan))


def average_precision_batch(
    scores: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """:func:`average_precision` (scikit-learn's) of many score vectors at once.

    Args:
        scores: ``[B, N]``; positive, valid: ``[B, N]`` bool (valid = the held-out rows scored).

    Returns:
        ``[B]`` float64; 0 where a row has no valid positive.
    """
    scores = scores.to(torch.float64)
    positive, valid = torch.broadcast_tensors(positive.bool(), valid.bool())
    positive, valid = positive.expand_as(scores), valid.expand_as(scores)
    order = _ranked(scores, valid, later_first=False)
    sorted_scores = scores.gather(-1, order)
    sorted_valid = valid.gather(-1, order)
    hits = (positive & valid).gather(-1, order).to(torch.float64).cumsum(-1)
    seen = sorted_valid.to(torch.float64).cumsum(-1)
    count = hits[..., -1:]
    following_valid = torch.cat([sorted_valid[..., 1:], torch.zeros_like(sorted_valid[..., :1])], -1)
    following_differs = torch.cat(
        [sorted_scores[..., 1:] != sorted_scores[..., :-1], torch.ones_like(sorted_valid[..., :1])], -1
    )
    last = sorted_valid & (following_differs | ~following_valid)
    recall = hits / count.clamp_min(1)
    # recall reached at the previous threshold: the running maximum of recall over earlier group ends
    at_ends = torch.where(last, recall, torch.zeros_like(recall))
    before = torch.cat([torch.zeros_like(recall[..., :1]), at_ends[..., :-1].cummax(-1).values], -1)
    precision = hits / seen.clamp_min(1)
    ap = torch.where(last, (recall - before) * precision, torch.zeros_like(recall)).sum(-1)
    return ap.where(count.squeeze(-1) > 0, torch.zeros_like(ap))
