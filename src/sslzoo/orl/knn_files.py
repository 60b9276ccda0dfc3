"""ORL stage 2, the KNN file and the stage-2 settings: what ``orl-knn`` writes, read without torch.

The retrieval (features, search) is :mod:`sslzoo.orl.knn`, after Jiahao000/ORL
``tools/coco_knn_image_retrieval.ipynb`` (PROTOCOLS.md "ORL"). Here: the ``stage2`` sections of
an ORL config (:func:`stage2_section`, :func:`knn_protocol`), the self exclusion of the search's
candidates (:func:`drop_self`) and the knn file, made (:func:`knn_document`) and read back checked
against a manifest (:func:`read_knn`), which the CPU-only steps and the stage-3 dataset use
without importing torch.

Self exclusion: the reference drops the first of the ``k + 1`` columns (``I[:, 1:]``), taking an
image to be its own nearest neighbour. That fails only when another image has the very same
feature (a duplicate file) and wins the tie: the reference then lists the image as its own
neighbour and drops the duplicate. Here the image's own row is removed wherever it stands among
the ``k + 1``, and the last one is dropped when it is not among them: the same result whenever
the image ranks first, and never an image as its own neighbour.

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
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from sslzoo.data.manifest import read_manifest
from sslzoo.errors import SslzooError
from sslzoo.io import read_json

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
