"""The losses the BYOL family shares: BYOL's negative cosine (BYOL, ORL) and Triplet's truncated
triplet loss. Each takes one (online prediction ``[N, D]``, target projection ``[N, D]``) pair;
the methods sum both directions of the two views (``BYOL.pair_loss`` and its overrides)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``h = -mean_i cos(prediction_i, target_i)`` for ``[N, D]`` inputs, in float32; the target is
    detached (mmselfsup 0.x mmselfsup/models/heads/latent_pred_head.py ``LatentPredictHead``).

    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020: the paper's ``2 - 2 cos`` per sample
    is ``2 + 2 h`` on average (same gradients up to the factor). Returns a scalar in [-1, 1].
    """
    p = F.normalize(prediction.float(), dim=1)
    t = F.normalize(target.detach().float(), dim=1)
    return -(p * t).sum(dim=1).mean()


def truncated_triplet_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    margin: float = 100.0,
    gamma: float = 2.0,
    negatives: int = 10,
    skip_hardest: int = 1,
) -> torch.Tensor:
    """Truncated triplet loss of one (prediction, target) pair of views.

    Wang, Wang, Wang, Torr, Lin, "Solving Inefficiency of Self-supervised Representation
    Learning", ICCV 2021: ``d_ij = -2 cos(p_i, t_j)``, positive distance ``d_ii``, negative
    distance the mean of the ``negatives`` smallest off-diagonal ``d_ij`` of row ``i`` after
    dropping the ``skip_hardest`` smallest; ``mean_i max(0, gamma d_ap - d_an + margin)``.

    Args:
        prediction: online predictions ``[N, D]``.
        target: target projections ``[N, D]`` (detached); row ``i`` is the positive of
            prediction ``i``.
        margin, gamma: ``MarginRankingLoss(margin)(d_an, gamma * d_ap, 1)``.
        negatives: how many of the smallest off-diagonal distances per row are kept.
        skip_hardest: how many of those (the very smallest) are dropped before averaging.

    Returns:
        the scalar mean over the ``N`` rows (float32). wanggrun/triplet
        openselfsup/models/heads/triplet_loss_head.py ``TripletLossHead.forward``.
    """
    n = prediction.shape[0]
    if n - 1 < negatives:
        raise ValueError(
            f"the truncated triplet loss needs at least {negatives + 1} samples per process, got {n}"
        )
    if not 0 <= skip_hardest < negatives:
        raise ValueError(f"skip_hardest must be in 0..{negatives - 1}, got {skip_hardest}")
    p = F.normalize(prediction.float(), dim=1)
    t = F.normalize(target.detach().float(), dim=1)
    dist = -2.0 * p @ t.t()
    d_ap = dist.diagonal()
    eye = torch.eye(n, dtype=torch.bool, device=dist.device)
    off_diagonal = dist.masked_fill(eye, float("inf"))
    nearest, _ = torch.topk(off_diagonal, negatives, dim=1, largest=False)
    d_an = nearest[:, skip_hardest:].mean(dim=1)
    return torch.clamp(gamma * d_ap - d_an + margin, min=0.0).mean()
