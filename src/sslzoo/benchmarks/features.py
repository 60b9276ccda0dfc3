"""The feature cache: pooled multi-stage features of a frozen ResNet backbone, one npz per split.

Protocol of mmselfsup 0.x ``tools/benchmarks/classification`` (``extract.py`` with
``configs/benchmarks/classification/svm_voc07.py`` and ``knn_imagenet``), PROTOCOLS.md
"VOC07 SVM" and "kNN classification":

- Resize the shorter side (torchvision/PIL's pixels, or those of OpenCV as mmselfsup 1.x's
  kNN protocol: the dataset's ``resize_backend``, :mod:`sslzoo.data.resize`), then CenterCrop
  (kNN) or Resize to a square (SVM); ImageNet mean/std.
- ``feature1`` is the stem before max-pool, ``feature2..5`` are ``layer1..4``; each is average
  pooled with a fixed ``AvgPool2d(kernel, stride, padding)`` and flattened; ``avgpool`` is the
  global average pool of ``feature5``.

Under torchrun each rank extracts the strided shard ``rank::world_size`` of the dataset and
rank 0 puts the shards back in dataset order, so the file equals the one of a single process.
The npz holds the requested layers (float32 ``[N, D]``), ``labels`` (int64 ``[N]``, or int8
``[N, C]`` with 1/-1/0 for multi-label VOC) and ``classes`` (str ``[C]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from tqdm import tqdm

from sslzoo.benchmarks.feature_files import label_array, save_npz
from sslzoo.benchmarks.protocol_files import read_protocol
from sslzoo.checkpoints import load_checkpoint
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.datasets import ManifestDataset
from sslzoo.data.resize import ShortEdgeResize
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import STAGE_NAMES, ResNetBackbone, depth_from_state_dict
from sslzoo.runtime.dist import DistContext, init_distributed

GLOBAL_POOL = "avgpool"
LAYER_NAMES: tuple[str, ...] = (*STAGE_NAMES, GLOBAL_POOL)


@dataclass(frozen=True)
class FeatureProtocol:
    """How features of one dataset are computed (one entry of ``config/benchmarks/features*.yaml``).

    Attributes:
        resize: shorter side after the first resize.
        resize_backend: library of that resize, ``"pillow"`` or ``"cv2"`` (:data:`sslzoo.data.resize.RESIZERS`).
        crop: side of the square the backbone sees.
        center_crop: CenterCrop(crop) (kNN protocol) instead of Resize((crop, crop)) (SVM protocol).
        layers: names among ``feature1``..``feature5``, ``avgpool``, in output order.
        pooling: ``featureN`` -> AvgPool2d (kernel, stride, padding).
        batch_size: images per forward pass and process.
        workers: data-loading worker processes per process.
    """

    resize: int
    resize_backend: str
    crop: int
    center_crop: bool
    layers: tuple[str, ...]
    pooling: dict[str, tuple[int, int, int]]
    batch_size: int
    workers: int

    @property
    def stages(self) -> list[int]:
        """Backbone stages (1..5) the layers need; ``avgpool`` needs stage 5."""
        return sorted({5 if layer == GLOBAL_POOL else int(layer[-1]) for layer in self.layers})


def load_feature_protocol(config_path: str | os.PathLike[str], dataset: str) -> FeatureProtocol:
    """Read the features config, validate it (``sslzoo/schemas/features.schema.yaml``) and return
    the protocol for ``dataset``; every ``featureN`` layer of the dataset needs a pooling entry.

    A dataset entry's own ``resize``, ``crop`` and ``pooling`` replace the top-level ones for it
    (the mini zoo reads the mini VOC at twice the size of the mini ImageNet)."""
    source = str(config_path)
    _, cfg = read_protocol(config_path, "features")
    datasets = cfg["datasets"]
    if dataset not in datasets:
        raise SslzooError(
            f"{source}: datasets.{dataset}: no entry for dataset '{dataset}' under 'datasets' (have {sorted(datasets)})"
        )
    entry = datasets[dataset]
    # A dataset read at its own size has its own pooling table; the others share the top level's.
    table, table_key = (
        (entry["pooling"], f"datasets.{dataset}.pooling")
        if "pooling" in entry
        else (cfg["pooling"], "pooling")
    )
    pooling: dict[str, tuple[int, int, int]] = {}
    for layer in entry["layers"]:
        if layer == GLOBAL_POOL:
            continue
        if layer not in table:
            raise SslzooError(
                f"{source}: {table_key}.{layer}: missing; datasets.{dataset}.layers needs its [kernel, stride, padding]"
            )
        kernel, stride, padding = table[layer]
        pooling[layer] = (kernel, stride, padding)
    return FeatureProtocol(
        resize=entry.get("resize", cfg["resize"]),
        resize_backend=entry["resize_backend"],
        crop=entry.get("crop", cfg["crop"]),
        center_crop=entry["center_crop"],
        layers=tuple(entry["layers"]),
        pooling=pooling,
        batch_size=cfg["batch_size"],
        workers=cfg["workers"],
    )


def build_transform(protocol: FeatureProtocol) -> Callable[[Any], torch.Tensor]:
    """PIL image -> normalised ``[3, crop, crop]`` tensor: shorter-side Resize (by the protocol's
    ``resize_backend``), CenterCrop or square Resize (torchvision's), ImageNet mean/std."""
    second = (
        transforms.CenterCrop(protocol.crop)
        if protocol.center_crop
        else transforms.Resize((protocol.crop, protocol.crop))
    )
    return transforms.Compose(
        [
            ShortEdgeResize(protocol.resize, protocol.resize_backend),
            second,
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_backbone_model(path: str | os.PathLike[str]) -> ResNetBackbone:
    """A :class:`ResNetBackbone` of the inferred depth with the weights of a backbone file, in eval mode."""

    state_dict = load_checkpoint(path)
    if not isinstance(state_dict, dict):
        raise SslzooError(
            f"{path}: not a state dict; write backbones with `python -m sslzoo extract-backbone`"
        )
    state_dict = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
    try:
        model = ResNetBackbone(depth=depth_from_state_dict(state_dict))
        model.load_state_dict(state_dict, strict=True)
    except (ValueError, RuntimeError) as err:
        raise SslzooError(
            f"{path}: not a torchvision ResNet backbone ({err}); write it with `python -m sslzoo extract-backbone`"
        ) from err
    return model.eval()


def pool_stages(
    maps: Sequence[torch.Tensor], stages: Sequence[int], protocol: FeatureProtocol
) -> dict[str, torch.Tensor]:
    """Pool the stage outputs into the protocol's layers.

    Args:
        maps: stage outputs ``[B, C_s, H_s, W_s]`` as returned by ``ResNetBackbone(x, stages)``.
        stages: which stage each map is (1..5).

    Returns:
        layer name -> ``[B, D]``: ``featureN`` = ``AvgPool2d(k, s, p)`` flattened (C*H'*W'),
        ``avgpool`` = global average of stage 5 (C).
    """
    by_stage = dict(zip(stages, maps, strict=True))
    out: dict[str, torch.Tensor] = {}
    for layer in protocol.layers:
        if layer == GLOBAL_POOL:
            out[layer] = torch.flatten(F.adaptive_avg_pool2d(by_stage[5], 1), 1)
        else:
            kernel, stride, padding = protocol.pooling[layer]
            out[layer] = torch.flatten(F.avg_pool2d(by_stage[int(layer[-1])], kernel, stride, padding), 1)
    return out


class _ImagesOnly(Dataset):
    """The images of a (image, label) dataset; labels come from ``dataset.labels`` instead."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def interleave_shards(shards: Sequence[dict[str, np.ndarray]], total: int) -> dict[str, np.ndarray]:
    """Undo the strided split: shard ``r`` holds rows ``r, r + W, r + 2W, ...`` of ``total`` rows."""
    world = len(shards)
    out: dict[str, np.ndarray] = {}
    for name in shards[0]:
        first = shards[0][name]
        merged = np.empty((total, *first.shape[1:]), dtype=first.dtype)
        for rank, shard in enumerate(shards):
            merged[rank::world] = shard[name]
        out[name] = merged
    return out


@torch.no_grad()
def compute_features(
    model: ResNetBackbone,
    dataset: Dataset,
    protocol: FeatureProtocol,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray] | None:
    """Pooled features of every image of ``dataset`` (``dataset[i] = (image tensor, label)``).

    Each process computes rows ``rank::world_size``; rank 0 gathers them in dataset order.
    Without ``ctx``: one process, on the GPU when there is one.

    Returns:
        On rank 0, layer name -> float32 ``[N, D]``; ``None`` on the other ranks.
    """

    if ctx is None:
        ctx = DistContext(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(ctx.device).eval()
    total = len(dataset)  # type: ignore[arg-type]
    indices = list(range(ctx.rank, total, ctx.world_size))
    loader = DataLoader(
        Subset(_ImagesOnly(dataset), indices),
        batch_size=protocol.batch_size,
        shuffle=False,
        num_workers=protocol.workers,
        pin_memory=ctx.device.type == "cuda",
    )
    stages = protocol.stages
    shard: dict[str, np.ndarray] = {}
    row = 0
    for images in tqdm(loader, desc="features", unit="batch", disable=not (progress and ctx.is_main)):
        pooled = pool_stages(model(images.to(ctx.device, non_blocking=True), stages), stages, protocol)
        for name, values in pooled.items():
            if name not in shard:
                shard[name] = np.empty((len(indices), values.shape[1]), dtype=np.float32)
            shard[name][row : row + len(values)] = values.float().cpu().numpy()
        row += len(images)
    if not indices:  # a rank with no rows still reports the widths
        probe = torch.zeros(1, 3, protocol.crop, protocol.crop, device=ctx.device)
        shard = {
            name: np.empty((0, v.shape[1]), np.float32)
            for name, v in pool_stages(model(probe, stages), stages, protocol).items()
        }
    if not ctx.distributed:
        return shard

    gathered: list[dict[str, np.ndarray]] | None = (
        [{} for _ in range(ctx.world_size)] if ctx.is_main else None
    )
    dist.gather_object(shard, gathered, dst=0)
    return interleave_shards(gathered, total) if gathered is not None else None


def extract_features(
    backbone_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    dataset: str,
    out_path: str | os.PathLike[str],
    ctx: DistContext | None = None,
) -> dict[str, np.ndarray] | None:
    """Write ``results/features/{model}/{dataset}_{split}.npz`` for one manifest.

    ``dataset`` picks the entry of the features config (crop and layers). Under torchrun only
    rank 0 writes. Returns the arrays written (rank 0) or ``None`` (other ranks).
    """

    ctx = ctx or init_distributed()
    protocol = load_feature_protocol(config_path, dataset)
    model = load_backbone_model(backbone_path)
    images = ManifestDataset(manifest_path, build_transform(protocol))
    features = compute_features(model, images, protocol, ctx)
    if features is None:
        return None
    arrays = {
        **features,
        "labels": label_array(images.labels),
        "classes": np.asarray(list(images.classes), dtype=str),
    }
    save_npz(out_path, arrays)
    return arrays
