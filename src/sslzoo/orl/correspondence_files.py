"""ORL stage 2b, the correspondence files: one shard per job, the merge, and the reader.

The algorithm (box filter, box features, pair selection) is :mod:`sslzoo.orl.correspondence`;
this module runs it over one shard of the query images (``orl-correspondence``), merges the
shards (``orl-merge-correspondence``, as Jiahao000/ORL
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sslzoo.errors import SslzooError
from sslzoo.io import read_json
from sslzoo.orl.correspondence import compute_correspondence, correspondence_protocol
from sslzoo.orl.knn import as_manifest, check_images, knn_protocol, pseudo_annotations, read_knn

if TYPE_CHECKING:
    from sslzoo.runtime.dist import DistContext


def _knn_rows_for(doc: Mapping[str, Any], k: int, path: str | os.PathLike[str]) -> list[list[int]]:
    rows = doc["pseudo_annotations"]["knn_image_id"]
    short = next((i for i, row in enumerate(rows) if len(row) < k), None)
    if short is not None:
        raise SslzooError(
            f"{path}: image {short} has {len(rows[short])} neighbours but stage2.knn.k is {k}; "
            "rerun orl-knn with this config"
        )
    return rows


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
    import torch

    from sslzoo.config import load_model_config
    from sslzoo.data.manifest import read_manifest
    from sslzoo.io import write_json
    from sslzoo.orl.knn import load_stage1
    from sslzoo.orl.proposals import read_proposals_for_manifest, shard_rows
    from sslzoo.runtime.dist import init_distributed

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
    from sslzoo.config import load_model_config
    from sslzoo.orl.proposals import parse_shard, shard_rows

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
