"""The contrastive (InfoNCE) losses of SimCLR and MoCo: cross-entropy of a positive similarity
against negative ones, divided by a temperature.

- :func:`info_nce`: mmselfsup 0.x mmselfsup/models/heads/contrastive_head.py ``ContrastiveHead``
  (``CrossEntropyLoss(cat(pos, neg) / T, label 0)``), MoCo's loss against its queue;
- :func:`nt_xent`: SimCLR's NT-Xent over the global batch (Chen et al., "A Simple Framework
  for Contrastive Learning of Visual Representations", ICML 2020, Algorithm 1), the positive of a
  projection being the other view of its image and every other projection of every process a
  negative (mmselfsup 0.x mmselfsup/models/algorithms/simclr.py).

Both compute in float32 whatever the autocast dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslzoo.runtime.gather import gather_with_grad, rank_and_world

#: added to the norm before dividing (mmselfsup 0.x simclr.py ``z / (norm + 1e-10)``)
NORM_EPS = 1e-10


def info_nce(positive: torch.Tensor, negative: torch.Tensor, temperature: float) -> torch.Tensor:
    """``mean_i -log softmax([pos_i, neg_i1, ..., neg_iK] / T)[0]``.

    Args:
        positive: ``[N, 1]`` similarity of each query to its positive.
        negative: ``[N, K]`` similarities to the negatives.
        temperature: ``T``.

    Returns:
        the scalar mean over the ``N`` rows.
    """
    logits = torch.cat([positive, negative], dim=1).float() / temperature
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of this process's ``2n`` projections against the ``2N`` of all processes.

    Each projection is divided by its L2 norm (plus :data:`NORM_EPS`); the projections of every
    process are gathered with :func:`~sslzoo.runtime.gather.gather_with_grad`. Row ``a`` (a view
    of image ``i``) scores ``s_ab / T`` against every ``b != a`` of the ``2N``; its target is the
    other view of image ``i``. The loss is the mean over this process's ``2n`` rows; the mean of
    that over the processes (the log's, DDP's gradient) is the loss of the ``2N`` rows on one
    process, the reference's ``ContrastiveHead(positive, negative)``.

    Args:
        z1: ``[n, D]`` projections of the first views of this process's images.
        z2: ``[n, D]`` of their second views (row ``i`` of both: image ``i``).
        temperature: ``T`` (0.1 in the reference).

    Returns:
        the scalar loss over this process's rows.
    """
    n = z1.shape[0]
    z = torch.cat([z1, z2]).float()
    z = z / (z.norm(dim=1, keepdim=True) + NORM_EPS)
    everything = gather_with_grad(z)  # [world * 2n, D]: per process its first views, then its second
    rank, _ = rank_and_world()
    rows = torch.arange(2 * n, device=z.device)
    own = rank * 2 * n + rows
    partner = rank * 2 * n + (rows + n) % (2 * n)
    logits = (z @ everything.t()) / temperature
    logits = logits.masked_fill(F.one_hot(own, everything.shape[0]).bool(), float("-inf"))
    return F.cross_entropy(logits, partner)
