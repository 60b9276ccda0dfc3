"""ORL stage 2b, correspondence: matching box pairs between each image and its KNN images.

Follows Jiahao000/ORL ``openselfsup/datasets/correspondence.py`` (``box_filter``,
``CorrespondenceDataset``), ``openselfsup/models/correspondence.py`` (``forward_test``),
``openselfsup/datasets/data_sources/coco_correspondence_json.py``,
``tools/generate_correspondence.py`` and ``tools/merge_partial_correspondence_files.py``, with
``configs/selfsup/orl/coco/stage2/r50_bs512_ep800_generate_partial_correspondence/part*.py``:

1. Box filter, in selective-search order (:func:`filter_boxes`): drop a box with ``w`` or ``h`` <
   ``min_size`` (96); drop one with ``w / h`` or ``h / w`` > ``max_aspect_ratio`` (3); drop one
   whose IoU with any box kept so far is > ``max_iou`` (0.5); keep the first ``max_boxes`` (100);
   if none survives keep ``boxes[0]``. As in the reference a rule whose threshold is 0 is off.
2. Each kept box of an image is cropped from the RGB image and resized to ``crop`` x ``crop``
   (``torchvision.transforms.functional.resized_crop``, bilinear, as the reference), ToTensor,
   ImageNet mean/std; feature = stage-1 ONLINE backbone res5 map, global average pooled
   (2048-d for ResNet-50), L2-normalised; eval mode.
3. For image ``i`` with ``B`` kept boxes and each of its ``k`` KNN images ``j`` (``B'`` boxes):
   cosine matrix ``[B, B']``, the top ``max(int(pair_ratio * B), 1)`` entries of the flattened
   matrix, best first (``B`` is the QUERY image's box count: ``smap.size(0)`` in the reference);
   each stored as ``[x, y, w, h, x', y', w', h']``.

Speed: the reference runs one image per step (``imgs_per_gpu=1, workers_per_gpu=0``): one forward
pass over that image's boxes and one over each of its 10 neighbours' boxes, so every image's
boxes are recomputed each time it is someone's neighbour (about 11 times). Here crops are cut in
DataLoader workers, many boxes of many images go through one forward pass (``batch_size``), and
each image's box features are computed once per chunk of queries and kept while later queries of
the shard need them. The chunks are sized so the cached features stay within a memory budget
(counted at ``max_boxes`` boxes per image); with a budget that holds the shard and its neighbours,
every image is computed once per shard. Under torchrun the processes of a job share that work
(each encodes a strided part, rank 0 gathers), so it does not grow with the process count. It
does grow with the shard count: an image is encoded in every shard that has it as a query or as
a neighbour, about ``n (1 - (1 - 1/n)^(k+1))`` times over ``n`` shards for a random KNN graph (6
for 8 shards, 10 for 64, 11 per image in the reference): use few, large shards where the memory
allows.

The shard, merge and read of the files: :mod:`sslzoo.orl.correspondence_files`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sslzoo.errors import SslzooError
from sslzoo.orl.knn import (
    stage2_section,
)

if TYPE_CHECKING:  # torch stays out of `python -m sslzoo <step> --help`
    import torch
    from PIL import Image
    from torch import nn

    from sslzoo.runtime.dist import DistContext

CORRESPONDENCE_KEYS: dict[str, Any] = {
    "min_size": 96,
    "max_aspect_ratio": 3.0,
    "max_iou": 0.5,
    "max_boxes": 100,
    "crop": 224,
    "pair_ratio": 0.1,
    "batch_size": 256,
}

Box = list[Any]  # [x, y, w, h] as stored in the proposals file (ints for selective search)
Pair = list[Any]  # [x, y, w, h, x', y', w', h']


@dataclass(frozen=True)
class CorrespondenceProtocol:
    """``stage2.correspondence`` of an ORL config (see the module doc for each value)."""

    min_size: float = 96
    max_aspect_ratio: float = 3.0
    max_iou: float = 0.5
    max_boxes: int = 100
    crop: int = 224
    pair_ratio: float = 0.1
    batch_size: int = 256

    def info(self, k: int) -> dict[str, Any]:
        """The ``info`` block of ORL's correspondence file for ``k`` KNN images."""
        return {
            "bbox_min_size": self.min_size,
            "bbox_max_aspect_ratio": self.max_aspect_ratio,
            "bbox_max_iou": self.max_iou,
            "intra_bbox_num": self.max_boxes,
            "knn_image_num": k,
            "knn_bbox_pair_ratio": self.pair_ratio,
        }


def correspondence_protocol(cfg: Mapping[str, Any], source: str = "model config") -> CorrespondenceProtocol:
    """The :class:`CorrespondenceProtocol` of a (validated) ORL model config."""
    values = stage2_section(cfg, "correspondence", CORRESPONDENCE_KEYS, source)
    protocol = CorrespondenceProtocol(**values)
    if (
        protocol.crop < 1
        or protocol.batch_size < 1
        or protocol.max_boxes < 0
        or not 0 < protocol.pair_ratio <= 1
    ):
        raise SslzooError(
            f"{source}: stage2.correspondence: crop and batch_size must be >= 1, max_boxes >= 0 and "
            f"0 < pair_ratio <= 1, got {values}"
        )
    return protocol


# --------------------------------------------------------------------------- box filter


def filter_boxes(
    boxes: Sequence[Sequence[float]] | np.ndarray,
    min_size: float = 96,
    max_aspect_ratio: float = 3.0,
    max_iou: float = 0.5,
    max_boxes: int = 100,
) -> list[Box]:
    """The boxes ORL keeps of one image's selective-search boxes ``[[x, y, w, h], ...]``, in order.

    Reference ``box_filter`` (openselfsup/datasets/correspondence.py): size, then aspect ratio, then
    greedy IoU against the boxes kept so far (IoU = intersection / union of the ``w * h`` areas),
    then the first ``max_boxes``; ``[boxes[0]]`` when nothing survives. A threshold of 0 turns its
    rule off (the reference tests ``if min_size:`` etc.). A box with ``w`` or ``h`` <= 0 has no
    aspect ratio and is dropped by the aspect rule (the reference would divide by zero).

    Returns:
        The kept boxes as lists of the input's values (ints stay ints).
    """
    array = np.asarray(boxes)
    if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0:
        raise ValueError(f"expected a non-empty list of [x, y, w, h] boxes, got shape {array.shape}")
    values = array.astype(np.float64)
    w, h = values[:, 2], values[:, 3]
    ok = np.ones(len(values), dtype=bool)
    if min_size:
        ok &= (w >= min_size) & (h >= min_size)
    if max_aspect_ratio:
        with np.errstate(divide="ignore", invalid="ignore"):
            ok &= (w > 0) & (h > 0) & (w / h <= max_aspect_ratio) & (h / w <= max_aspect_ratio)
    limit = int(max_boxes) if max_boxes else len(values)
    x1, y1 = values[:, 0], values[:, 1]
    x2, y2 = x1 + w, y1 + h
    area = w * h
    kept: list[int] = []
    kept_array = np.empty(limit, dtype=np.int64)
    for index in np.flatnonzero(ok):
        if len(kept) == limit:
            break
        if max_iou and kept:
            others = kept_array[: len(kept)]
            iw = np.maximum(np.minimum(x2[others], x2[index]) - np.maximum(x1[others], x1[index]), 0.0)
            ih = np.maximum(np.minimum(y2[others], y2[index]) - np.maximum(y1[others], y1[index]), 0.0)
            inter = iw * ih
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = inter / (area[others] + area[index] - inter)
            if np.max(iou) > max_iou:
                continue
        kept_array[len(kept)] = index
        kept.append(int(index))
    if not kept:
        kept = [0]
    return array[kept].tolist()


def protocol_filter(
    boxes: Sequence[Sequence[float]] | np.ndarray, protocol: CorrespondenceProtocol
) -> list[Box]:
    """:func:`filter_boxes` with the thresholds of ``protocol``."""
    return filter_boxes(
        boxes, protocol.min_size, protocol.max_aspect_ratio, protocol.max_iou, protocol.max_boxes
    )


# --------------------------------------------------------------------------- crops and features


def crop_boxes(image: Image.Image, boxes: Sequence[Sequence[float]], size: int) -> torch.Tensor:
    """uint8 ``[B, 3, size, size]`` crops of an RGB PIL image, one per ``[x, y, w, h]`` box.

    ``TF.resized_crop(image, y, x, h, w, (size, size))`` as the reference (PIL bilinear; a box
    reaching outside the image is padded with zeros by PIL's crop).
    """
    import torch
    from torchvision.transforms import functional as TF

    crops = [
        torch.from_numpy(
            np.asarray(TF.resized_crop(image, int(y), int(x), int(h), int(w), [size, size])).copy()
        )
        for x, y, w, h in boxes
    ]
    return torch.stack(crops).permute(0, 3, 1, 2).contiguous()


# Crops per backbone call on the CPU. ResNet-50 at 224 px, 2 threads, best of 3: channels-last
# 33-39 ms per crop in calls of 4-16 crops, 46 at 32, 54 at 64 (NCHW: 38-43 at 4-8, 117 at 64):
# past a few crops the activations leave the caches, so CPU batches go through in chunks.
CPU_CHUNK = 8


def box_features(
    backbone: nn.Module, crops: torch.Tensor, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 crops ``[n, 3, S, S]`` -> L2-normalised res5 global-average features ``[n, C]`` (float32, CPU).

    ToTensor (``/255``) and ImageNet mean/std are applied on ``device``, in the same float32 ops
    as torchvision's; the backbone must be a :class:`sslzoo.models.backbone.ResNetBackbone` in eval
    mode (channels-last weights run faster; the input is made channels-last). On the CPU the
    crops go through in chunks of ``CPU_CHUNK``.
    """
    import torch
    import torch.nn.functional as F

    from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD

    device = torch.device(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(-1, 1, 1)
    chunk = CPU_CHUNK if device.type == "cpu" else max(len(crops), 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), chunk):
            images = crops[start : start + chunk].to(device).float().div(255).sub_(mean).div_(std)
            images = images.contiguous(memory_format=torch.channels_last)
            pooled = F.adaptive_avg_pool2d(backbone(images, (5,))[0], 1).flatten(1)
            out.append(F.normalize(pooled.float(), dim=1).cpu())
    return torch.cat(out) if len(out) > 1 else out[0]


def encode_images(
    backbone: nn.Module,
    items: Iterable[tuple[int, list[Box], torch.Tensor]],
    batch_size: int,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[int, list[Box], torch.Tensor]]:
    """Box features of a stream of images, ``batch_size`` crops per forward pass across images.

    Args:
        items: ``(row, kept boxes, uint8 crops [B, 3, S, S])`` per image.

    Yields:
        ``(row, kept boxes, features [B, C])`` per image, in input order, as soon as all its
        crops went through the backbone.
    """
    import torch

    waiting: deque[tuple[int, list[Box], int]] = deque()
    pending: list[torch.Tensor] = []
    pending_n = 0
    done: list[torch.Tensor] = []
    done_n = 0

    def forward(count: int) -> Iterator[tuple[int, list[Box], torch.Tensor]]:
        nonlocal pending, pending_n, done, done_n
        crops = torch.cat(pending) if len(pending) > 1 else pending[0]
        pending = [crops[count:]] if count < len(crops) else []
        pending_n -= count
        done.append(box_features(backbone, crops[:count], device))
        done_n += count
        while waiting and waiting[0][2] <= done_n:
            row, boxes, n = waiting.popleft()
            feats = torch.cat(done) if len(done) > 1 else done[0]
            done = [feats[n:]] if n < len(feats) else []
            done_n -= n
            yield row, boxes, feats[:n]

    for row, boxes, crops in items:
        waiting.append((row, boxes, len(crops)))
        pending.append(crops)
        pending_n += len(crops)
        while pending_n >= batch_size:
            yield from forward(batch_size)
    if pending_n:
        yield from forward(pending_n)


def select_pairs(
    feats: torch.Tensor,
    knn_feats: torch.Tensor,
    boxes: Sequence[Box],
    knn_boxes: Sequence[Box],
    pair_ratio: float,
) -> list[Pair]:
    """The best-matching box pairs of an image and one KNN image.

    ``feats [B, C]`` and ``knn_feats [B', C]`` are L2-normalised; the top ``max(int(pair_ratio * B),
    1)`` entries of the cosine matrix ``[B, B']`` (flattened, best first, as ``torch.topk``) become
    ``[*boxes[q], *knn_boxes[k]]``.
    """
    import torch

    sims = feats @ knn_feats.T
    count = int(pair_ratio * sims.shape[0])  # the reference's topk_num, B = the query's box count
    count = min(count if count > 0 else 1, sims.numel())
    top = torch.topk(sims.flatten(), count).indices
    width = sims.shape[1]
    return [
        [*boxes[q], *knn_boxes[k]]
        for q, k in zip((top // width).tolist(), (top % width).tolist(), strict=True)
    ]


class _CropDataset:
    """``dataset[n] -> (row, kept boxes, uint8 crops)`` for image ``rows[n]`` (runs in DataLoader workers)."""

    def __init__(
        self,
        rows: Sequence[int],
        paths: Sequence[str | os.PathLike[str]],
        proposals: Mapping[int, np.ndarray],
        protocol: CorrespondenceProtocol,
    ) -> None:
        self.rows = list(rows)
        self.paths = paths
        self.proposals = proposals
        self.protocol = protocol

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, n: int) -> tuple[int, list[Box], torch.Tensor]:
        from sslzoo.data.datasets import load_rgb

        row = self.rows[n]
        boxes = protocol_filter(self.proposals[row], self.protocol)
        return row, boxes, crop_boxes(load_rgb(self.paths[row]), boxes, self.protocol.crop)


def plan_chunks(
    rows: Sequence[int], knn_rows: Sequence[Sequence[int]], k: int, max_images: int
) -> list[tuple[list[int], list[int]]]:
    """Split the query ``rows`` into consecutive chunks whose images (queries and their first ``k``
    neighbours) number at most ``max_images`` (at least one query per chunk).

    Returns:
        ``(queries, needed images in first-use order)`` per chunk.
    """
    chunks: list[tuple[list[int], list[int]]] = []
    queries: list[int] = []
    needed: dict[int, None] = {}
    for row in rows:
        images = [row, *knn_rows[row][:k]]
        extra = [j for j in dict.fromkeys(images) if j not in needed]
        if queries and len(needed) + len(extra) > max_images:
            chunks.append((queries, list(needed)))
            queries, needed = [], {}
        queries.append(row)
        needed.update(dict.fromkeys(images))
    if queries:
        chunks.append((queries, list(needed)))
    return chunks


def _gathered_blocks(
    stream: Iterator[tuple[int, list[Box], torch.Tensor]], n_blocks: int, block: int, ctx: DistContext
) -> Iterator[list[tuple[int, list[Box], torch.Tensor]]]:
    """This process's encoded images in ``n_blocks`` blocks of up to ``block``; with several
    processes every block is gathered onto rank 0 (which yields all processes' images; the other
    ranks yield empty lists). Every process must call it with the same ``n_blocks``."""
    import torch

    for _ in range(n_blocks):
        mine = [item for _, item in zip(range(block), stream, strict=False)]
        if not ctx.distributed:
            yield mine
            continue
        import torch.distributed as dist

        packed = [(row, boxes, feats.numpy()) for row, boxes, feats in mine]
        parts: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
        dist.gather_object(packed, parts, dst=0)
        yield [(row, boxes, torch.from_numpy(f)) for part in parts or [] for row, boxes, f in part]


def compute_correspondence(
    backbone: nn.Module,
    paths: Sequence[str | os.PathLike[str]],
    proposals: Mapping[int, np.ndarray] | Sequence[Any],
    knn_rows: Sequence[Sequence[int]],
    rows: Sequence[int],
    protocol: CorrespondenceProtocol,
    k: int,
    device: torch.device | str = "cpu",
    workers: int = 0,
    max_cached_images: int = 10**9,
    progress: bool = True,
    ctx: DistContext | None = None,
    gather_every: int = 64,
) -> dict[int, tuple[list[Box], list[list[Pair]]]]:
    """Kept boxes and KNN box pairs of the query images ``rows``.

    The queries go in chunks (:func:`plan_chunks`); a chunk's images whose box features are not
    cached yet are encoded, and the cache keeps only what the chunk needs. Under torchrun
    (``ctx``) every process encodes a strided part of those images and rank 0 gathers them
    (``gather_every`` images per process at a time), holds the cache and picks the pairs: each
    image is encoded once per chunk plan whatever the number of processes.

    Args:
        backbone: the stage-1 online ResNet backbone, eval mode, on ``device``.
        paths: image file of every manifest row.
        proposals: selective-search boxes of (at least) every query and neighbour row.
        knn_rows: neighbour rows of every manifest row (the first ``k`` are used).
        max_cached_images: most images whose box features are held at once (see :func:`plan_chunks`).

    Returns:
        ``row -> (kept boxes [B][4], pairs [k][n_pairs][8])`` for every row of ``rows`` on rank 0
        (an empty dict on the other ranks).
    """
    import math

    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from sslzoo.runtime.dist import DistContext

    ctx = ctx or DistContext()
    chunks = plan_chunks(rows, knn_rows, k, max_cached_images)
    total, seen = 0, set[int]()
    for _, needed in chunks:
        total += len(set(needed) - seen)
        seen = set(needed)
    cached: set[int] = set()  # rows in rank 0's cache, tracked on every rank (same plan everywhere)
    cache: dict[int, tuple[list[Box], torch.Tensor]] = {}
    results: dict[int, tuple[list[Box], list[list[Pair]]]] = {}
    bar = tqdm(
        total=total, desc="box features", unit="img", disable=None if progress and ctx.is_main else True
    )
    for queries, needed in chunks:
        missing = [row for row in needed if row not in cached]
        cached = set(needed)
        cache = {row: value for row, value in cache.items() if row in cached}
        mine = missing[ctx.rank :: ctx.world_size]
        loader = DataLoader(
            _CropDataset(mine, paths, proposals, protocol),  # type: ignore[arg-type]
            batch_size=None,
            shuffle=False,
            num_workers=workers,
        )
        stream = encode_images(backbone, loader, protocol.batch_size, device)
        n_blocks = math.ceil(math.ceil(len(missing) / ctx.world_size) / gather_every)
        for block in _gathered_blocks(stream, n_blocks, gather_every, ctx):
            for row, boxes, feats in block:
                cache[row] = (boxes, feats)
            bar.update(len(block))
        if not ctx.is_main:
            continue
        for i in queries:
            boxes, feats = cache[i]
            pairs = [
                select_pairs(feats, cache[j][1], boxes, cache[j][0], protocol.pair_ratio)
                for j in knn_rows[i][:k]
            ]
            results[i] = (boxes, pairs)
    bar.close()
    return results


# --------------------------------------------------------------------------- files
