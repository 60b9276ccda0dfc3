"""Test helper: weighted kNN classification split over torchrun processes, equal to the single-process result.

Not used by the benchmark steps (``python -m sslzoo knn`` runs in one process); the tests
(``test_knn_dist.py``, ``tests/parity/test_process_count.py``) use it to show that
:func:`sslzoo.benchmarks.knn.knn_classify` on whole blocks of test rows gives the same hits
whichever process computes them.

mmselfsup's ``tools/benchmarks/classification/knn_imagenet`` gathered the features of several
GPUs in a way that changed the accuracy with the number of processes (fixed by its PR #634;
PROTOCOLS.md "kNN classification"). Here every process holds all training and test features
and classifies a share of the test rows with :func:`sslzoo.benchmarks.knn.knn_classify`; the
hit counts are summed with ``all_reduce``.

The share is made of whole ``chunk_size`` blocks of test rows, dealt round-robin (block ``b`` to
rank ``b mod W``), so every block is exactly a block of the single-process run: the same rows
are multiplied against the same training matrix, and the result is identical, not only close.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from sslzoo.benchmarks.knn import KnnResult, knn_classify
from sslzoo.errors import SslzooError
from sslzoo.runtime.dist import DistContext


def rank_rows(num_rows: int, chunk_size: int, rank: int, world_size: int) -> torch.Tensor:
    """Test rows of ``rank``: the ``chunk_size`` blocks ``rank, rank + W, ...`` in order, ``[n]`` int64."""
    starts = range(rank * chunk_size, num_rows, world_size * chunk_size)
    blocks = [torch.arange(s, min(s + chunk_size, num_rows)) for s in starts]
    return torch.cat(blocks) if blocks else torch.zeros(0, dtype=torch.int64)


def knn_classify_distributed(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int | None = None,
    *,
    chunk_size: int,
    ctx: DistContext | None = None,
) -> list[KnnResult]:
    """:func:`~sslzoo.benchmarks.knn.knn_classify` with the test rows split over the processes.

    Every process passes the full ``[N, D]`` / ``[M, D]`` matrices and gets the full result. The
    hit counts (not percentages) are summed over processes on ``ctx.device`` (CUDA tensors for
    nccl). Without a process group this is ``knn_classify``.
    """
    ctx = ctx or DistContext()
    if chunk_size < 1:
        raise SslzooError(f"kNN: chunk_size must be >= 1, got {chunk_size}")
    if len(test_features) == 0:
        raise SslzooError("kNN: there are no test rows to classify")
    if num_classes is None:  # from all rows: one shard may lack the highest label
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    if not ctx.distributed:
        return knn_classify(
            train_features,
            train_labels,
            test_features,
            test_labels,
            ks,
            temperature,
            num_classes,
            chunk_size=chunk_size,
        )
    total = len(test_features)
    rows = rank_rows(total, chunk_size, ctx.rank, ctx.world_size)
    hits = torch.zeros(2, len(ks), dtype=torch.float64)
    if len(rows):
        shard = knn_classify(
            train_features,
            train_labels,
            test_features[rows],
            test_labels[rows],
            ks,
            temperature,
            num_classes,
            chunk_size=chunk_size,
        )
        # knn_classify reports 100 * hits / rows; the counts are recovered exactly by rounding
        hits[0] = torch.tensor([round(r.top1 * len(rows) / 100.0) for r in shard], dtype=torch.float64)
        hits[1] = torch.tensor([round(r.top5 * len(rows) / 100.0) for r in shard], dtype=torch.float64)
    else:  # more processes than blocks: nothing to classify, but the arguments are checked alike
        knn_classify(
            train_features,
            train_labels,
            test_features[:1],
            test_labels[:1],
            ks,
            temperature,
            num_classes,
            chunk_size=chunk_size,
        )
    hits = hits.to(ctx.device)
    dist.all_reduce(hits, op=dist.ReduceOp.SUM)
    counts = hits.cpu().round().long()
    return [
        KnnResult(k=k, top1=100.0 * int(counts[0, i]) / total, top5=100.0 * int(counts[1, i]) / total)
        for i, k in enumerate(ks)
    ]
