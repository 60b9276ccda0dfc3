"""ORL stage 2b without torch: the settings, the box filter, the correspondence files' merge and reader.

The algorithm (box features, pair selection) and its run over one shard of the query images
(``orl-correspondence``, :func:`sslzoo.orl.correspondence.correspondence_shard`) are
:mod:`sslzoo.orl.correspondence`; this module, free of torch, holds the ``stage2.correspondence``
settings (:func:`correspondence_protocol`), the box filter (:func:`filter_boxes`, step 1 of
:mod:`sslzoo.orl.correspondence`, ORL ``openselfsup/datasets/correspondence.py`` ``box_filter``),
merges the shards (``orl-merge-correspondence``, as Jiahao000/ORL
``tools/merge_partial_correspondence_files.py``) and reads a merged file, ours or ORL's published
one, checked against a manifest (ORL ``openselfsup/datasets/data_sources/coco_correspondence_json.py``).

Files: a shard ``{"shard": "i-of-n", "indices", "bbox", "knn_bbox_pair", "info"}`` per job (rows of
:func:`sslzoo.orl.proposals.shard_rows`), merged into ORL's layout::

    {"info": {"bbox_min_size", "bbox_max_aspect_ratio", "bbox_max_iou", "intra_bbox_num",
              "knn_image_num", "knn_bbox_pair_ratio"},
     "images": {"file_name": [...], "id": [...]},            (copied from the knn file)
     "pseudo_annotations": {"image_id": [...], "bbox": [[kept [x, y, w, h]] per image],
                            "knn_image_id": [[k rows] per image],
                            "knn_bbox_pair": [N][k][pairs][8]}}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sslzoo.config import load_model_config
from sslzoo.errors import SslzooError
from sslzoo.io import read_json
from sslzoo.orl.knn_files import as_manifest, check_images, knn_protocol, pseudo_annotations, stage2_section
from sslzoo.orl.proposals import parse_shard, shard_rows

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
    """``stage2.correspondence`` of an ORL config (see :mod:`sslzoo.orl.correspondence` for each value)."""

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


# --------------------------------------------------------------------------- files


def _knn_rows_for(doc: Mapping[str, Any], k: int, path: str | os.PathLike[str]) -> list[list[int]]:
    rows = doc["pseudo_annotations"]["knn_image_id"]
    short = next((i for i, row in enumerate(rows) if len(row) < k), None)
    if short is not None:
        raise SslzooError(
            f"{path}: image {short} has {len(rows[short])} neighbours but stage2.knn.k is {k}; "
            "rerun orl-knn with this config"
        )
    return rows


def merge_correspondence(
    config: str | os.PathLike[str],
    knn_path: str | os.PathLike[str],
    shard_files: Sequence[str | os.PathLike[str]],
) -> dict[str, Any]:
    """``orl-merge-correspondence``: the shards of one run -> ORL's correspondence document.

    Every shard ``1..n`` of one ``n`` must be given once and hold exactly its rows of the knn
    file's images, made with this config's stage-2 settings; otherwise SslzooError names the
    missing, duplicate, foreign or stale shard. ``images`` and ``image_id`` are copied from the
    knn file, ``knn_image_id`` too (its first ``k`` per image, the ones the pairs belong to).
    """
    cfg = load_model_config(config)
    k = knn_protocol(cfg, str(config)).k
    info = correspondence_protocol(cfg, str(config)).info(k)
    knn = read_json(knn_path)
    pseudo = knn.get("pseudo_annotations") if isinstance(knn, dict) else None
    if not isinstance(pseudo, dict) or not isinstance(pseudo.get("knn_image_id"), list):
        raise SslzooError(f"{knn_path}: not a KNN file (no pseudo_annotations.knn_image_id); rerun orl-knn")
    knn_rows = _knn_rows_for(knn, k, knn_path)
    n_images = len(knn_rows)
    if not shard_files:
        raise SslzooError("no shard files given; pass every correspondence/{i}-of-{n}.json")
    bbox: list[Any] = [None] * n_images
    pairs: list[Any] = [None] * n_images
    by_shard: dict[str, Path] = {}
    counts: set[int] = set()
    for file in map(Path, shard_files):
        doc = read_json(file)
        if not isinstance(doc, dict) or not all(
            key in doc for key in ("shard", "indices", "bbox", "knn_bbox_pair")
        ):
            raise SslzooError(
                f"{file}: not a correspondence shard (needs shard, indices, bbox, knn_bbox_pair); "
                "rerun orl-correspondence"
            )
        try:
            _, n = parse_shard(doc["shard"])
        except SslzooError as err:
            raise SslzooError(f"{file}: {err}") from err
        if doc["shard"] in by_shard:
            raise SslzooError(
                f"{file}: shard {doc['shard']} is given twice (also {by_shard[doc['shard']]}); pass each shard once"
            )
        by_shard[doc["shard"]] = file
        counts.add(n)
        if (
            doc["indices"] != shard_rows(n_images, doc["shard"])
            or len(doc["bbox"]) != len(doc["indices"])
            or len(doc["knn_bbox_pair"]) != len(doc["indices"])
        ):
            raise SslzooError(
                f"{file}: shard {doc['shard']} does not hold the rows of that shard of the {n_images} images of "
                f"{knn_path}; it was made for another image list: rerun orl-correspondence"
            )
        if "info" in doc and doc["info"] != info:
            raise SslzooError(
                f"{file}: made with stage-2 settings {doc['info']} but {config} gives {info}; rerun "
                "orl-correspondence for this shard"
            )
        for row, boxes, row_pairs in zip(doc["indices"], doc["bbox"], doc["knn_bbox_pair"], strict=True):
            bbox[row] = boxes
            pairs[row] = row_pairs
    if len(counts) > 1:
        raise SslzooError(
            f"shards of different counts {sorted(counts)} given ({', '.join(map(str, by_shard.values()))}); "
            "merge the shards of one run"
        )
    n = counts.pop()
    missing = [f"{i}-of-{n}" for i in range(1, n + 1) if f"{i}-of-{n}" not in by_shard]
    if missing:
        raise SslzooError(
            f"shard {missing[0]} is missing ({len(missing)} of {n} shards not given: {', '.join(missing[:10])}); "
            "run orl-correspondence for it and pass every shard"
        )
    images = knn.get("images") if isinstance(knn.get("images"), dict) else {}
    image_ids = pseudo.get("image_id") if isinstance(pseudo.get("image_id"), list) else list(range(n_images))
    return {
        "info": info,
        "images": {"file_name": images.get("file_name", []), "id": images.get("id", image_ids)},
        "pseudo_annotations": {
            "image_id": image_ids,
            "bbox": bbox,
            "knn_image_id": [row[:k] for row in knn_rows],
            "knn_bbox_pair": pairs,
        },
    }


def read_correspondence(
    path: str | os.PathLike[str], manifest: str | os.PathLike[str] | Mapping[str, Any]
) -> dict[str, Any]:
    """Read and check a correspondence file (ours or ORL's published one) against a manifest.

    Checks: ``bbox``, ``knn_image_id`` and ``knn_bbox_pair`` hold one entry per manifest image,
    the manifest's file names in order when ``images.file_name`` is stored, ``info.knn_image_num``
    neighbours per image, every image at least one box and, per neighbour, a non-empty list of
    8-number pairs (the first pair of each is checked).

    Returns:
        The parsed JSON document, as in the file.
    """
    doc = read_json(path)
    pseudo = pseudo_annotations(
        doc,
        path,
        ("bbox", "knn_image_id", "knn_bbox_pair"),
        "a correspondence file of orl-merge-correspondence",
    )
    data, name = as_manifest(manifest)
    fix = "rerun orl-correspondence and orl-merge-correspondence"
    n = len(pseudo["bbox"])
    if len(pseudo["knn_image_id"]) != n or len(pseudo["knn_bbox_pair"]) != n:
        raise SslzooError(
            f"{path}: pseudo_annotations holds {n} bbox, {len(pseudo['knn_image_id'])} knn_image_id and "
            f"{len(pseudo['knn_bbox_pair'])} knn_bbox_pair entries; they must be one per image: {fix}"
        )
    check_images(doc, n, path, data["samples"], name, fix)
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    k = info.get("knn_image_num")
    if not isinstance(k, int) or k < 1:
        raise SslzooError(f"{path}: info.knn_image_num is {k!r}; expected the number of KNN images (10)")
    for i, (boxes, knn, image_pairs) in enumerate(
        zip(pseudo["bbox"], pseudo["knn_image_id"], pseudo["knn_bbox_pair"], strict=True)
    ):
        if not (isinstance(boxes, list) and boxes and isinstance(boxes[0], list) and len(boxes[0]) == 4):
            raise SslzooError(
                f"{path}: bbox[{i}] = {str(boxes)[:80]} is not a non-empty list of [x, y, w, h]"
            )
        if not (
            isinstance(knn, list)
            and len(knn) >= k
            and all(isinstance(j, int) and 0 <= j < n for j in knn[:k])
        ):
            raise SslzooError(
                f"{path}: knn_image_id[{i}] = {str(knn)[:80]} is not {k} row indices 0..{n - 1}: {fix}"
            )
        if not (isinstance(image_pairs, list) and len(image_pairs) >= k):
            raise SslzooError(
                f"{path}: knn_bbox_pair[{i}] = {str(image_pairs)[:80]} is not a list of {k} neighbours' pairs "
                f"(info.knn_image_num): {fix}"
            )
        for s, slot in enumerate(image_pairs[:k]):
            if not (isinstance(slot, list) and slot and isinstance(slot[0], list) and len(slot[0]) == 8):
                raise SslzooError(
                    f"{path}: knn_bbox_pair[{i}][{s}] = {str(slot)[:80]} is not a non-empty list of "
                    f"[x, y, w, h, x', y', w', h'] pairs: {fix}"
                )
    return doc
