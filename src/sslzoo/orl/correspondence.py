"""ORL stage 2b, correspondence: matching box pairs between each image and its KNN images.

Follows Jiahao000/ORL ``openselfsup/datasets/correspondence.py`` (``box_filter``,
``CorrespondenceDataset``), ``openselfsup/models/correspondence.py`` (``forward_test``),
``openselfsup/datasets/data_sources/coco_correspondence_json.py``,
``tools/generate_correspondence.py`` and ``tools/merge_partial_correspondence_files.py``, with
``configs/selfsup/orl/coco/stage2/r50_bs512_ep800_generate_partial_correspondence/part*.py``:

1. Box filter, in selective-search order (:func:`sslzoo.orl.correspondence_files.filter_boxes`):
   drop a box with ``w`` or ``h`` < ``min_size`` (96); drop one with ``w / h`` or ``h / w`` >
   ``max_aspect_ratio`` (3); drop one whose IoU with any box kept so far is > ``max_iou`` (0.5);
   keep the first ``max_boxes`` (100); if none survives keep ``boxes[0]``. As in the reference a
   rule whose threshold is 0 is off.
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

The settings, the box filter (step 1), the merge and read of the files:
:mod:`sslzoo.orl.correspondence_files` (free of torch); one shard's run (``orl-correspondence``):
:func:`correspondence_shard`.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import functional as TF
from tqdm import tqdm

from sslzoo.config import load_model_config
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.images import load_rgb
from sslzoo.data.manifest import read_manifest
from sslzoo.errors import SslzooError
from sslzoo.io import write_json
from sslzoo.orl.correspondence_files import (
    Box,
    CorrespondenceProtocol,
    Pair,
    _knn_rows_for,
    correspondence_protocol,
    protocol_filter,
)
from sslzoo.orl.knn import load_stage1
from sslzoo.orl.knn_files import knn_protocol, read_knn
from sslzoo.orl.proposals import read_proposals_for_manifest, shard_rows
from sslzoo.runtime.dist import DistContext, init_distributed

# --------------------------------------------------------------------------- crops and features


def crop_boxes(image: Image.Image, boxes: Sequence[Sequence[float]], size: int) -> torch.Tensor:
    """uint8 ``[B, 3, size, size]`` crops of an RGB PIL image, one per ``[x, y, w, h]`` box.

    ``TF.resized_crop(image, y, x, h, w, (size, size))`` as the reference (PIL bilinear; a box
    reaching outside the image is padded with zeros by PIL's crop).
    """
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
    for _ in range(n_blocks):
        mine = [item for _, item in zip(range(block), stream, strict=False)]
        if not ctx.distributed:
            yield mine
            continue
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


# --------------------------------------------------------------------------- shards


def correspondence_shard(
    checkpoint: str | os.PathLike[str],
    config: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    knn_path: str | os.PathLike[str],
    proposals_path: str | os.PathLike[str],
    shard: str,
    out: str | os.PathLike[str],
    workers: int = 4,
    cache_gb: float = 4.0,
    ctx: DistContext | None = None,
) -> dict[str, Any] | None:
    """``orl-correspondence``: one shard's kept boxes and KNN box pairs, written by rank 0.

    Under torchrun every process encodes a strided part of the images and rank 0 gathers the
    features, picks the pairs and writes (:func:`compute_correspondence`). ``cache_gb`` bounds the
    box features rank 0 keeps (counted at ``max_boxes`` boxes per image). Returns the shard
    document on rank 0, ``None`` elsewhere.
    """
    ctx = ctx or init_distributed()
    cfg = load_model_config(config)
    k = knn_protocol(cfg, str(config)).k
    protocol = correspondence_protocol(cfg, str(config))
    manifest = read_manifest(manifest_path)
    n_images = len(manifest["samples"])
    knn_rows = _knn_rows_for(read_knn(knn_path, manifest), k, knn_path)
    rows = shard_rows(n_images, shard)
    needed = sorted({j for i in rows for j in (i, *knn_rows[i][:k])})
    every_box = read_proposals_for_manifest(proposals_path, manifest_path, as_arrays=True)  # 16 bytes a box
    proposals: dict[int, np.ndarray] = {}
    for row in needed:
        if len(every_box[row]) == 0:
            raise SslzooError(
                f"{proposals_path}: image {row} ({manifest['samples'][row][0]}) has no proposals; rerun "
                "orl-proposals for its shard"
            )
        proposals[row] = np.asarray(every_box[row])
    del every_box  # the full file is large; keep only the rows this process needs
    backbone = load_stage1(checkpoint).backbone.to(ctx.device, memory_format=torch.channels_last).eval()
    per_image = max(protocol.max_boxes, 1) * backbone.out_channels * 4
    root = Path(manifest["root"])
    paths = [root / sample[0] for sample in manifest["samples"]]
    results = compute_correspondence(
        backbone,
        paths,
        proposals,
        knn_rows,
        rows,
        protocol,
        k,
        ctx.device,
        workers,
        max(1, int(cache_gb * 2**30 // per_image)),
        progress=ctx.is_main,
        ctx=ctx,
    )
    if not ctx.is_main:
        return None
    doc = {
        "shard": shard,
        "indices": rows,
        "bbox": [results[row][0] for row in rows],
        "knn_bbox_pair": [results[row][1] for row in rows],
        "info": protocol.info(k),
    }
    write_json(Path(out), doc, indent=None)
    return doc
