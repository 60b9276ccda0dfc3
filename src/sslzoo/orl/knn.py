"""ORL stage 2, image-level KNN: each image's ``k`` most similar images under the stage-1 BYOL model.

Follows Jiahao000/ORL ``tools/coco_knn_image_retrieval.ipynb`` with
``configs/selfsup/orl/coco/stage1/r50_bs512_ep800_extract_feature.py`` and
``openselfsup/hooks/extractor.py`` (PROTOCOLS.md "ORL"):

- every image: ``Resize(resize)`` (shorter side) -> ``CenterCrop(crop)`` -> ToTensor -> ImageNet
  mean/std; feature = online backbone -> global average pool -> projector (the reference's
  "neck"), ``[N, 256]``, L2-normalised; model in eval mode;
- cosine similarity of every image with every image; the top ``k + 1`` minus the image itself
  give ``k`` neighbours per image, most similar first, as ROW indices of the manifest.

Self exclusion: the image's own row is removed wherever it stands among the ``k + 1`` (the
reference drops the first column): :func:`sslzoo.orl.knn_files.drop_self`, whose module doc
compares the two.

Search (:func:`knn_search`): faiss ``IndexFlatIP`` (exact; on the GPU through
``StandardGpuResources`` when the faiss build has it and CUDA is available), else
:func:`knn_torch` (chunked matmul + topk, exact) on CUDA when there is a GPU but faiss is a CPU
build, else faiss on the CPU. :func:`knn_torch` is also the reference in tests and
``bench/orl_stage2.py``.

Output: the knn file of :mod:`sslzoo.orl.knn_files` (ORL's ``train2017_10nn_instance.json``
layout, made by :func:`sslzoo.orl.knn_files.knn_document`), written by :func:`build_knn`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from tqdm import tqdm

from sslzoo.checkpoints import load_checkpoint
from sslzoo.config import load_model_config
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.datasets import ManifestDataset
from sslzoo.data.manifest import read_manifest
from sslzoo.errors import SslzooError
from sslzoo.io import write_json
from sslzoo.models.momentum_pair import MomentumPair
from sslzoo.orl.knn_files import drop_self, knn_document, knn_protocol
from sslzoo.runtime.dist import DistContext, init_distributed


def load_stage1(path: str | os.PathLike[str]) -> MomentumPair:
    """The networks of the stage-1 BYOL model of ``results/pretrain/<stage1>/final.pth`` (every key of
    its state dict: online, predictor and target), in eval mode, on the CPU."""
    checkpoint = load_checkpoint(path)
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise SslzooError(
            f"{path}: not a pretraining checkpoint ({{'state_dict', 'meta'}}); pass the stage-1 model's final.pth"
        )
    if meta.get("method") != "byol":
        raise SslzooError(
            f"{path}: ORL stage 2 needs the stage-1 BYOL model, this checkpoint is method {meta.get('method')!r}; "
            "check `stage1:` in the ORL config"
        )
    model = MomentumPair.from_config(meta["config"])
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as err:
        raise SslzooError(f"{path}: the state dict does not fit its own config ({err})") from err
    return model.eval()


def knn_transform(resize: int, crop: int) -> Any:
    """PIL image -> ``[3, crop, crop]``: Resize(resize) -> CenterCrop(crop) -> ToTensor -> ImageNet mean/std."""
    return transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def projection_features(
    model: MomentumPair,
    dataset: Any,
    batch_size: int = 256,
    workers: int = 4,
    ctx: DistContext | None = None,
    progress: bool = True,
) -> np.ndarray | None:
    """L2-normalised online projections of every image of ``dataset`` (``dataset[i] = (image, label)``).

    Each process computes rows ``rank::world_size``; rank 0 gathers them in dataset order.

    Returns:
        float32 ``[N, D]`` on rank 0 (``D`` = projector output, 256), ``None`` on other ranks.
    """
    ctx = ctx or DistContext(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(ctx.device).eval()
    total = len(dataset)
    rows = list(range(ctx.rank, total, ctx.world_size))
    loader = DataLoader(
        Subset(dataset, rows),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
    )
    parts: list[np.ndarray] = []
    bar = tqdm(
        total=len(rows), desc="knn features", unit="img", disable=None if progress and ctx.is_main else True
    )
    with torch.inference_mode():
        for images, _ in loader:
            feats = F.normalize(
                model.online_projection(images.to(ctx.device, non_blocking=True)).float(), dim=1
            )
            parts.append(feats.cpu().numpy())
            bar.update(len(images))
    bar.close()
    width = int(model.projector[-1].out_features)
    shard = np.concatenate(parts) if parts else np.zeros((0, width), np.float32)
    if not ctx.distributed:
        return shard
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(shard, gathered, dst=0)
    if gathered is None:
        return None
    out = np.empty((total, width), np.float32)
    for rank, part in enumerate(gathered):
        out[rank :: ctx.world_size] = part
    return out


def _check_k(n: int, k: int) -> None:
    if not 1 <= k < n:
        raise SslzooError(
            f"KNN retrieval of k={k} neighbours needs more than k images, got {n}; lower stage2.knn.k"
        )


def knn_torch(
    features: torch.Tensor | np.ndarray,
    k: int,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Exact cosine KNN by matmul + topk: ``[N, D]`` L2-normalised features -> int64 ``[N, k]`` rows.

    Queries go ``chunk_size`` at a time against all rows on ``device`` (default: the features' device).
    """
    feats = torch.as_tensor(features, dtype=torch.float32)
    if device is not None:
        feats = feats.to(device)
    n = feats.shape[0]
    _check_k(n, k)
    out = []
    with torch.inference_mode():
        for start in range(0, n, chunk_size):
            sims = feats[start : start + chunk_size] @ feats.T
            out.append(torch.topk(sims, k + 1, dim=1).indices.cpu().numpy())
    return drop_self(np.concatenate(out)).astype(np.int64)


def faiss_has_gpu() -> bool:
    """Whether the installed faiss can search on a GPU and a CUDA device is there."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available()


def knn_faiss(features: np.ndarray, k: int, gpu: bool | None = None, device: int = 0) -> np.ndarray:
    """Exact cosine KNN with faiss ``IndexFlatIP``: ``[N, D]`` L2-normalised -> int64 ``[N, k]`` rows.

    ``gpu`` None: on GPU ``device`` when :func:`faiss_has_gpu`, else on the CPU.
    """
    import faiss

    feats = np.ascontiguousarray(features, dtype=np.float32)
    n, dim = feats.shape
    _check_k(n, k)
    index = faiss.IndexFlatIP(dim)
    if gpu is None:
        gpu = faiss_has_gpu()
    if gpu:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, device, index)
    index.add(feats)
    _, candidates = index.search(feats, k + 1)
    return drop_self(candidates).astype(np.int64)


def knn_search(features: np.ndarray, k: int, backend: str = "auto", device: int = 0) -> np.ndarray:
    """``[N, D]`` L2-normalised features -> int64 ``[N, k]`` neighbour rows.

    ``backend``: ``faiss`` (:func:`knn_faiss`, GPU when it can), ``torch`` (:func:`knn_torch`, on
    CUDA ``device`` when there is one) or ``auto``: faiss on the GPU when this faiss build has GPU
    support, else torch on CUDA when there is a GPU (a CPU-only faiss would leave it idle), else
    faiss on the CPU. All three are exact; they can order near-ties (|difference| ~ 1e-7) differently.
    """
    if backend == "auto":
        backend = "faiss" if faiss_has_gpu() or not torch.cuda.is_available() else "torch"
    if backend == "faiss":
        return knn_faiss(features, k, device=device)
    if backend == "torch":
        return knn_torch(
            features, k, device=torch.device("cuda", device) if torch.cuda.is_available() else "cpu"
        )
    raise SslzooError(f"unknown KNN backend {backend!r}; use auto, faiss or torch")


def build_knn(
    checkpoint: str | os.PathLike[str],
    config: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    workers: int = 4,
    ctx: DistContext | None = None,
    backend: str = "auto",
) -> dict[str, Any] | None:
    """``orl-knn``: features of every manifest image, KNN search, ``knn.json`` written by rank 0.

    Returns the document on rank 0, ``None`` elsewhere.
    """
    ctx = ctx or init_distributed()
    protocol = knn_protocol(load_model_config(config), str(config))
    dataset = ManifestDataset(manifest_path, knn_transform(protocol.resize, protocol.crop))
    _check_k(len(dataset), protocol.k)
    model = load_stage1(checkpoint)
    features = projection_features(model, dataset, protocol.batch_size, workers, ctx)
    if features is None:
        return None
    device = ctx.device.index if ctx.device.type == "cuda" and ctx.device.index is not None else 0
    neighbours = knn_search(features, protocol.k, backend, device=device)
    doc = knn_document(neighbours, read_manifest(manifest_path))
    write_json(Path(out), doc, indent=None)
    return doc
