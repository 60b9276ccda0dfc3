"""ORL stage 2, image-level KNN: each image's ``k`` most similar images under the stage-1 BYOL model.

Follows Jiahao000/ORL ``tools/coco_knn_image_retrieval.ipynb`` with
``configs/selfsup/orl/coco/stage1/r50_bs512_ep800_extract_feature.py`` and
``openselfsup/hooks/extractor.py`` (PROTOCOLS.md "ORL"):

- every image: ``Resize(resize)`` (shorter side) -> ``CenterCrop(crop)`` -> ToTensor -> ImageNet
  mean/std; feature = online backbone -> global average pool -> projector (the reference's
  "neck"), ``[N, 256]``, L2-normalised; model in eval mode;
- cosine similarity of every image with every image; the top ``k + 1`` minus the image itself
  give ``k`` neighbours per image, most similar first, as ROW indices of the manifest.

Self exclusion: the reference drops the first of the ``k + 1`` columns (``I[:, 1:]``), taking an
image to be its own nearest neighbour. That fails only when another image has the very same
feature (a duplicate file) and wins the tie: the reference then lists the image as its own
neighbour and drops the duplicate. Here the image's own row is removed wherever it stands among
the ``k + 1``, and the last one is dropped when it is not among them: the same result whenever
the image ranks first, and never an image as its own neighbour.

Search (:func:`knn_search`): faiss ``IndexFlatIP`` (exact; on the GPU through
``StandardGpuResources`` when the faiss build has it and CUDA is available), else
:func:`knn_torch` (chunked matmul + topk, exact) on CUDA when there is a GPU but faiss is a CPU
build, else faiss on the CPU. :func:`knn_torch` is also the reference in tests and
``bench/orl_stage2.py``.

Output, ORL's ``train2017_10nn_instance.json`` layout::

    {"info": {"knn_image_num": k},
     "images": {"file_name": [manifest relpaths], "id": [manifest "ids" or row indices]},
     "pseudo_annotations": {"image_id": [same ids], "knn_image_id": [[k row indices] per image]}}

:func:`read_knn` also accepts the reference's published file (COCO ids in ``id``/``image_id``):
only positions and the row indices in ``knn_image_id`` are used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from sslzoo.errors import SslzooError
from sslzoo.io import read_json

if TYPE_CHECKING:  # torch stays out of `python -m sslzoo <step> --help`
    import torch

    from sslzoo.models.momentum_pair import MomentumPair
    from sslzoo.runtime.dist import DistContext

KNN_KEYS: dict[str, Any] = {"k": 10, "resize": 256, "crop": 224, "batch_size": 256}


@dataclass(frozen=True)
class KnnProtocol:
    """``stage2.knn`` of an ORL config: neighbours per image, the image transform, images per pass."""

    k: int = 10
    resize: int = 256
    crop: int = 224
    batch_size: int = 256


def stage2_section(
    cfg: Mapping[str, Any], name: str, defaults: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """``cfg["stage2"][name]`` over ``defaults``; an unknown key raises SslzooError naming ``source``."""
    stage2 = cfg.get("stage2") or {}
    if not isinstance(stage2, Mapping):
        raise SslzooError(f"{source}: stage2 must be a mapping with knn and correspondence sections")
    given = stage2.get(name) or {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SslzooError(f"{source}: stage2.{name}: unknown key(s) {unknown}; allowed: {sorted(defaults)}")
    return {**defaults, **given}


def knn_protocol(cfg: Mapping[str, Any], source: str = "model config") -> KnnProtocol:
    """The :class:`KnnProtocol` of a (validated) ORL model config."""
    values = stage2_section(cfg, "knn", KNN_KEYS, source)
    protocol = KnnProtocol(**{key: int(values[key]) for key in KNN_KEYS})
    if min(protocol.k, protocol.resize, protocol.crop, protocol.batch_size) < 1:
        raise SslzooError(f"{source}: stage2.knn: every value must be >= 1, got {values}")
    return protocol


def load_stage1(path: str | os.PathLike[str]) -> MomentumPair:
    """The networks of the stage-1 BYOL model of ``results/pretrain/<stage1>/final.pth`` (every key of
    its state dict: online, predictor and target), in eval mode, on the CPU."""
    # imported here, as torch everywhere in this module: importing this module stays free of torch
    from sslzoo.checkpoints import load_checkpoint
    from sslzoo.models.momentum_pair import MomentumPair

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
    from torchvision import transforms

    from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD

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
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from sslzoo.runtime.dist import DistContext

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
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(shard, gathered, dst=0)
    if gathered is None:
        return None
    out = np.empty((total, width), np.float32)
    for rank, part in enumerate(gathered):
        out[rank :: ctx.world_size] = part
    return out


def drop_self(candidates: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``[N, k + 1]`` best-first candidates -> ``[N, k]`` without the query itself.

    Row ``n`` is the query ``rows[n]`` (default ``n``). Its first occurrence among the candidates
    is removed; when it does not occur (a duplicate image won the ties), the last candidate is.
    """
    candidates = np.asarray(candidates)
    n, width = candidates.shape
    rows = np.arange(n) if rows is None else np.asarray(rows)
    is_self = candidates == rows[:, None]
    has_self = is_self.any(axis=1)
    drop = np.where(has_self, is_self.argmax(axis=1), width - 1)
    keep = np.ones_like(candidates, dtype=bool)
    keep[np.arange(n), drop] = False
    return candidates[keep].reshape(n, width - 1)


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
    import torch

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
    import torch

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
    import torch

    if backend == "auto":
        backend = "faiss" if faiss_has_gpu() or not torch.cuda.is_available() else "torch"
    if backend == "faiss":
        return knn_faiss(features, k, device=device)
    if backend == "torch":
        return knn_torch(
            features, k, device=torch.device("cuda", device) if torch.cuda.is_available() else "cpu"
        )
    raise SslzooError(f"unknown KNN backend {backend!r}; use auto, faiss or torch")


# --------------------------------------------------------------------------- files


def manifest_ids(manifest: Mapping[str, Any]) -> list[Any]:
    """Image ids of a manifest's rows: its ``ids`` (COCO ids, when stored), else the row indices."""
    ids = manifest.get("ids")
    if isinstance(ids, list) and len(ids) == len(manifest["samples"]):
        return ids
    return list(range(len(manifest["samples"])))


def knn_document(
    neighbours: np.ndarray | Sequence[Sequence[int]], manifest: Mapping[str, Any]
) -> dict[str, Any]:
    """The knn JSON document (ORL's layout, see the module doc) for ``[N, k]`` neighbour rows."""
    rows = np.asarray(neighbours, dtype=np.int64)
    ids = manifest_ids(manifest)
    return {
        "info": {"knn_image_num": int(rows.shape[1])},
        "images": {"file_name": [sample[0] for sample in manifest["samples"]], "id": ids},
        "pseudo_annotations": {"image_id": ids, "knn_image_id": rows.tolist()},
    }


def as_manifest(manifest: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """``(manifest dict, how to name it in a message)`` from a manifest path or an already read dict."""
    if isinstance(manifest, Mapping):
        return manifest, f"the manifest (root {manifest.get('root')})"
    from sslzoo.data.manifest import read_manifest

    return read_manifest(manifest), f"the manifest {manifest}"


def check_images(
    doc: Mapping[str, Any],
    n_rows: int,
    path: str | os.PathLike[str],
    samples: Sequence[Sequence[Any]],
    manifest_name: str,
    what: str,
) -> None:
    """A stage-2 file holds ``n_rows`` images and, when it stores ``images.file_name``, the manifest's
    file names in the manifest's order (compared by base name: the reference stores bare COCO names).

    ``manifest_name`` names the manifest and ``what`` the fix (the step to rerun) in the message.
    """
    if n_rows != len(samples):
        raise SslzooError(
            f"{path}: {n_rows} images but {manifest_name} has {len(samples)}; the file was made for another "
            f"image list: {what} for this manifest"
        )
    images = doc.get("images")
    names = images.get("file_name") if isinstance(images, Mapping) else None
    if not isinstance(names, list):
        return
    if len(names) != n_rows:
        raise SslzooError(f"{path}: images.file_name lists {len(names)} names for {n_rows} images")
    for row, (got, sample) in enumerate(zip(names, samples, strict=True)):
        if PurePosixPath(str(got)).name != PurePosixPath(sample[0]).name:
            raise SslzooError(
                f"{path}: image {row} is {got!r} but row {row} of {manifest_name} is {sample[0]!r}; the file "
                f"follows another image order: {what} for this manifest"
            )


def pseudo_annotations(
    doc: Any, path: str | os.PathLike[str], keys: Sequence[str], what: str
) -> Mapping[str, Any]:
    """``doc["pseudo_annotations"]`` with a list under each of ``keys``, else SslzooError: ``path`` is not ``what``."""
    pseudo = doc.get("pseudo_annotations") if isinstance(doc, Mapping) else None
    missing = [
        key for key in keys if not isinstance(pseudo, Mapping) or not isinstance(pseudo.get(key), list)
    ]
    if missing:
        raise SslzooError(f"{path}: not {what} (pseudo_annotations lacks the list(s) {missing})")
    return pseudo


def read_knn(
    path: str | os.PathLike[str], manifest: str | os.PathLike[str] | Mapping[str, Any]
) -> dict[str, Any]:
    """Read and check a knn file (ours or the reference's ``train2017_10nn_instance.json``).

    Checks: one ``knn_image_id`` row per manifest image, the manifest's file names in order when the
    file stores them, and every row a non-empty list of row indices ``0..N-1``.

    Returns:
        The parsed JSON document (``doc["pseudo_annotations"]["knn_image_id"][i]`` are rows).
    """
    doc = read_json(path)
    pseudo = pseudo_annotations(
        doc, path, ("knn_image_id",), "a KNN file of orl-knn or ORL's train2017_10nn_instance.json"
    )
    rows = pseudo["knn_image_id"]
    data, name = as_manifest(manifest)
    check_images(doc, len(rows), path, data["samples"], name, "rerun orl-knn")
    n = len(rows)
    for i, row in enumerate(rows):
        if not (
            isinstance(row, list)
            and row
            and all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < n for j in row)
        ):
            raise SslzooError(
                f"{path}: knn_image_id[{i}] = {str(row)[:80]} is not a non-empty list of row indices 0..{n - 1}; "
                "rerun orl-knn"
            )
    return doc


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
    from sslzoo.config import load_model_config
    from sslzoo.data.datasets import ManifestDataset
    from sslzoo.io import write_json
    from sslzoo.runtime.dist import init_distributed

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
    from sslzoo.data.manifest import read_manifest

    doc = knn_document(neighbours, read_manifest(manifest_path))
    write_json(Path(out), doc, indent=None)
    return doc
