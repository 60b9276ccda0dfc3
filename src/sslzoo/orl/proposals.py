"""ORL stage 2a: selective-search box proposals for every image of a manifest, in shards.

Follows Jiahao000/ORL ``openselfsup/datasets/selective_search.py`` with the config
``configs/selfsup/orl/coco/stage2/selective_search_train2017.py``: the full-resolution RGB image
is converted to BGR, OpenCV's ``ximgproc.segmentation`` selective search runs in its *fast* mode,
and every box it returns is kept, unfiltered, as ``[x, y, w, h]`` (filtering happens in the
correspondence stage). The reference runs one image at a time on one GPU; here the rows of the
manifest are split into interleaved shards (``"i-of-n"``, Snakemake's scatteritem naming) that run
as independent jobs and are merged afterwards.

Files (the merged one in the layout of ORL's ``train2017_selective_search_proposal.json``)::

    shard   {"shard": "3-of-64", "indices": [2, 66, ...], "bbox": [[[x, y, w, h], ...], ...]}
    merged  {"bbox": [[[x, y, w, h], ...] per manifest row],
             "images": {"file_name": [...], "id": [...]}}

The merged file's ``images`` key is ours (ORL's file has only ``bbox``); :func:`read_proposals`
uses it, when present, to check that the proposals belong to the manifest. COCO train2017 has
some 10^8 boxes (a few GB of JSON, tens of GB as Python lists), so the merged file is written one
image per line from JSON text and read back piece by piece, optionally into int32 arrays.

Determinism: OpenCV ranks the regions of an image with the C library's ``rand()``
(``opencv_contrib modules/ximgproc/src/selectivesearchsegmentation.cpp``,
``hierarchicalGrouping``), so the box ORDER of an image depends on every image processed before
it in the same process. The order matters (the correspondence filter keeps the first boxes), so
the libc generator is reseeded with ``srand(1)`` (its start-up state) before every image: an image
gets the same boxes in the same order whatever shard or process it runs in.

Backends: ``"opencv"`` (the reference's) and ``"selectivesearch"`` (the pure-Python PyPI package
of AlpacaDB, ``scale=500, sigma=0.9, min_size=10``; other and fewer boxes, its rects as it
gives them: ``w = max_x - min_x`` over the region's pixels, one less than OpenCV's width).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from tqdm import tqdm

from sslzoo.data.images import load_rgb
from sslzoo.data.manifest import read_manifest
from sslzoo.errors import SslzooError
from sslzoo.io import read_json
from sslzoo.orl.knn_files import manifest_ids

BACKENDS = ("opencv", "selectivesearch")

Box = list[int]  # [x, y, w, h] in pixels of the full-resolution image

_SHARD = re.compile(r"(\d+)-of-(\d+)")


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i-of-n"`` -> ``(i, n)`` with ``1 <= i <= n``; anything else raises SslzooError."""
    match = _SHARD.fullmatch(shard.strip()) if isinstance(shard, str) else None
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise SslzooError(
            f"--shard {shard!r}: expected 'i-of-n' with 1 <= i <= n (Snakemake scatteritem naming, e.g. 3-of-64)"
        )
    return int(match.group(1)), int(match.group(2))


def shard_rows(n_rows: int, shard: str) -> list[int]:
    """Rows of shard ``"i-of-n"`` among ``n_rows``: ``range(i - 1, n_rows, n)``.

    Interleaved rather than contiguous so that every shard sees a similar mix of image sizes (and
    so similar run time). A shard may be empty when ``n > n_rows``.
    """
    i, n = parse_shard(shard)
    return list(range(i - 1, n_rows, n))


def job_threads() -> int:
    """Threads this job may use: ``OMP_NUM_THREADS`` (as the workflow sets it per job), else 1."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


@lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library whose ``rand()`` OpenCV's selective search calls (None where not found)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _opencv_boxes(bgr: np.ndarray) -> np.ndarray:
    """OpenCV fast selective search of a BGR uint8 image [H, W, 3] -> int32 [B, 4] (x, y, w, h)."""
    import cv2

    libc = _libc()
    if libc is not None:
        libc.srand(1)  # the regions' rank uses rand(): same start state for every image
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(bgr)
    search.switchToSelectiveSearchFast()
    return search.process()


def _selectivesearch_boxes(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The PyPI ``selectivesearch`` package on an RGB uint8 image [H, W, 3] -> (x, y, w, h) rects."""
    try:
        import selectivesearch
    except ImportError as err:
        raise SslzooError(
            "backend 'selectivesearch' needs the PyPI package selectivesearch: `pip install selectivesearch` "
            "(or use --backend opencv)"
        ) from err
    with warnings.catch_warnings():
        # it runs skimage's local_binary_pattern on a float image, which warns; the result is as intended
        warnings.simplefilter("ignore", UserWarning)
        _, regions = selectivesearch.selective_search(rgb, scale=500, sigma=0.9, min_size=10)
    return [region["rect"] for region in regions]


def selective_search(image: np.ndarray, backend: str = "opencv") -> list[Box]:
    """Selective-search boxes of one RGB uint8 image [H, W, 3] as ``[[x, y, w, h], ...]`` (ints).

    ``backend`` is ``"opencv"`` (ORL's: fast mode on the BGR image, every box, in OpenCV's order)
    or ``"selectivesearch"`` (the PyPI package). Boxes lie inside the image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
    if backend == "opencv":
        rects = _opencv_boxes(np.ascontiguousarray(image[:, :, ::-1]))
    elif backend == "selectivesearch":
        rects = _selectivesearch_boxes(np.ascontiguousarray(image))
    else:
        raise SslzooError(f"unknown selective-search backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return [[int(v) for v in rect] for rect in rects]


def _set_cv2_threads() -> None:
    """Give OpenCV the job's threads only, so shard jobs sharing a machine do not oversubscribe it."""
    import cv2

    cv2.setNumThreads(job_threads())


def propose_shard(
    manifest_path: str | os.PathLike[str], shard: str, backend: str = "opencv", progress: bool = True
) -> dict[str, Any]:
    """Proposals of the rows of shard ``"i-of-n"`` of a manifest.

    Returns ``{"shard", "indices": [rows], "bbox": [per row, [[x, y, w, h], ...]]}``. An image
    that cannot be read stops the shard with an SslzooError naming the file.
    """
    if backend not in BACKENDS:
        raise SslzooError(f"unknown selective-search backend {backend!r}; use one of {', '.join(BACKENDS)}")
    manifest = read_manifest(manifest_path)
    root = Path(manifest["root"])
    rows = shard_rows(len(manifest["samples"]), shard)
    if backend == "opencv":
        _set_cv2_threads()
    boxes = []
    for row in tqdm(rows, desc=f"proposals {shard}", unit="img", disable=None if progress else True):
        image = np.asarray(load_rgb(root / manifest["samples"][row][0]))
        boxes.append(selective_search(image, backend))
    return {"shard": shard, "indices": rows, "bbox": boxes}


def _merged_rows(
    manifest_path: str | os.PathLike[str], shard_files: Sequence[str | os.PathLike[str]]
) -> tuple[dict[str, Any], list[str]]:
    """The manifest and, per row, its boxes as compact JSON text, gathered from the shard files.

    Rows are kept as text (about 15 bytes a box, against about 200 as Python lists): the merged
    COCO train2017 file holds some 10^8 boxes.
    """
    manifest = read_manifest(manifest_path)
    n_rows = len(manifest["samples"])
    if not shard_files:
        raise SslzooError("no shard files given; pass every proposals/{i}-of-{n}.json")
    rows: list[str | None] = [None] * n_rows
    by_shard: dict[str, Path] = {}
    for file in map(Path, shard_files):
        doc = read_json(file)
        if not isinstance(doc, dict) or not all(k in doc for k in ("shard", "indices", "bbox")):
            raise SslzooError(
                f"{file}: not a proposals shard (needs shard, indices, bbox); rerun orl-proposals"
            )
        try:
            i, n = parse_shard(doc["shard"])
        except SslzooError as err:
            raise SslzooError(f"{file}: {err}") from err
        name = f"{i}-of-{n}"
        if name in by_shard:
            raise SslzooError(
                f"{file}: shard {name} is given twice (also {by_shard[name]}); pass each shard once"
            )
        other = next(iter(by_shard), None)
        if other is not None and parse_shard(other)[1] != n:
            raise SslzooError(
                f"{file}: shard {name} is of another run than {by_shard[other]} (shard {other}); "
                "merge the shards of one run"
            )
        by_shard[name] = file
        if (
            doc["indices"] != shard_rows(n_rows, name)
            or not isinstance(doc["bbox"], list)
            or len(doc["bbox"]) != len(doc["indices"])
        ):
            raise SslzooError(
                f"{file}: shard {name} does not hold the rows of that shard of {manifest_path} ({n_rows} images); "
                "it was made for another manifest: rerun orl-proposals"
            )
        for row, boxes in zip(doc["indices"], doc["bbox"], strict=True):
            rows[row] = json.dumps(boxes, separators=(",", ":"))
        del doc
    n = parse_shard(next(iter(by_shard)))[1]
    missing = [f"{i}-of-{n}" for i in range(1, n + 1) if f"{i}-of-{n}" not in by_shard]
    if missing:
        raise SslzooError(
            f"shard {missing[0]} is missing ({len(missing)} of {n} shards not given: {', '.join(missing[:10])}); "
            "run orl-proposals for it and pass every shard"
        )
    return manifest, cast(list[str], rows)  # every row is set: the shards cover them all


def _images_key(manifest: dict[str, Any]) -> dict[str, list[Any]]:
    return {"file_name": [s[0] for s in manifest["samples"]], "id": manifest_ids(manifest)}


def merge_proposals(
    manifest_path: str | os.PathLike[str], shard_files: Sequence[str | os.PathLike[str]]
) -> dict[str, Any]:
    """Merge shard files into ``{"bbox": [per manifest row], "images": {"file_name", "id"}}``.

    Every shard ``1..n`` of one ``n`` must be given exactly once, and each must hold exactly the
    rows its name gives for this manifest; otherwise an SslzooError names the missing, duplicate
    or foreign shard. For a full dataset use :func:`write_merged_proposals`, which never holds
    the boxes as Python lists.
    """
    manifest, rows = _merged_rows(manifest_path, shard_files)
    return {"bbox": [json.loads(row) for row in rows], "images": _images_key(manifest)}


def write_merged_proposals(
    manifest_path: str | os.PathLike[str],
    shard_files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
) -> int:
    """:func:`merge_proposals` written to ``out`` atomically, one image's boxes per line.

    The file is the JSON object ``merge_proposals`` returns (``bbox`` first), laid out so that
    :func:`read_proposals` can stream it. Returns the number of boxes.
    """
    manifest, rows = _merged_rows(manifest_path, shard_files)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write('{"bbox": [\n')
            for row, text in enumerate(rows):
                handle.write(text + (",\n" if row + 1 < len(rows) else "\n"))
            handle.write('], "images": ' + json.dumps(_images_key(manifest)) + "}\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sum(row.count("],[") + 1 for row in rows if row != "[]")


class _JsonStream:
    """One JSON value of a text file read piece by piece: ``raw_decode`` on a growing buffer.

    A value that ends at the buffer's end may be cut (a number, or a list whose bracket is still
    to come): it is parsed again with more text, so values come out whole.
    """

    _SPACE = " \t\n\r"

    def __init__(self, handle: IO[str], path: Path, chunk_chars: int = 1 << 24):
        self.handle, self.path, self.chunk_chars = handle, path, chunk_chars
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def error(self, what: str) -> SslzooError:
        return SslzooError(
            f"{self.path}: not valid JSON ({what}); delete it and rerun the job that writes it"
        )

    def _fill(self) -> bool:
        data = "" if self.eof else self.handle.read(self.chunk_chars)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-space character ("" at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in self._SPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        """Consume the next non-space character, which must be one of ``chars``."""
        char = self.peek()
        if not char or char not in chars:
            raise self.error(f"expected {' or '.join(repr(c) for c in chars)}, found {char or 'the end'!r}")
        self.pos += 1
        return char

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    self.pos = end
                    return obj
            except json.JSONDecodeError as err:
                if self.eof:
                    raise self.error(str(err)) from err
            self._fill()


def _stream_proposals(path: Path, on_image: Callable[[Any], None]) -> dict[str, Any] | None:
    """Call ``on_image`` on each element of the top-level ``bbox`` list of ``path``, in order.

    Returns the file's other keys, or None when it has no ``bbox`` list.
    """
    if not path.is_file():
        raise SslzooError(f"{path}: file not found")
    found = False
    others: dict[str, Any] = {}
    with path.open(encoding="utf-8") as handle:
        stream = _JsonStream(handle, path)
        stream.expect("{")
        if stream.peek() == "}":
            stream.expect("}")
        else:
            while True:
                key = stream.value()
                if not isinstance(key, str):
                    raise stream.error(f"object key {key!r} is not a string")
                stream.expect(":")
                if key == "bbox" and stream.peek() == "[":
                    found = True
                    stream.expect("[")
                    if stream.peek() == "]":
                        stream.expect("]")
                    else:
                        while True:
                            on_image(stream.value())
                            if stream.expect(",]") == "]":
                                break
                else:
                    others[key] = stream.value()
                if stream.expect(",}") == "}":
                    break
        if stream.peek():
            raise stream.error("extra data after the object")
    return others if found else None


def read_proposals(
    path: str | os.PathLike[str],
    n_images: int,
    file_names: Sequence[str] | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
    as_arrays: bool = False,
) -> list[Any]:
    """Per-image boxes of a merged proposals file, in row order.

    Each image's boxes are ``[[x, y, w, h], ...]``, or with ``as_arrays`` an int32 array
    ``[B, 4]`` (B may be 0): some 16 bytes a box instead of about 200, which is what a job
    holding all of COCO train2017's proposals needs. The file is read piece by piece.

    Accepts ours and ORL's published ``train2017_selective_search_proposal.json`` (``{"bbox":
    [...]}``, extra keys ignored; an image whose single box the reference squeezed to a flat
    ``[x, y, w, h]`` is read as one box). The file must hold ``n_images`` images and, when both
    it has ``images.file_name`` and ``file_names`` is given, the same names in the same order;
    otherwise SslzooError names the file and ``manifest_path``.
    """
    path = Path(path)
    against = f"the manifest {manifest_path}" if manifest_path is not None else "the manifest"
    images: list[Any] = []

    def on_image(boxes: Any) -> None:
        row = len(images)
        if not isinstance(boxes, list):
            raise SslzooError(f"{path}: bbox[{row}] {boxes!r} is not a list of [x, y, w, h] boxes")
        if len(boxes) == 4 and not isinstance(boxes[0], list):  # the reference squeezed a 1 x 4 array
            boxes = [boxes]
        if as_arrays:
            try:
                array = np.asarray(boxes, dtype=np.int32).reshape(-1, 4)
            except (ValueError, TypeError) as err:
                raise SslzooError(f"{path}: bbox[{row}] is not a list of [x, y, w, h] boxes ({err})") from err
            if array.shape[0] != len(boxes):
                raise SslzooError(f"{path}: bbox[{row}] is not a list of [x, y, w, h] boxes")
            images.append(array)
        else:
            if boxes and not (isinstance(boxes[0], list) and len(boxes[0]) == 4):
                raise SslzooError(f"{path}: bbox[{row}][0] {boxes[0]!r} is not [x, y, w, h]")
            images.append(boxes)
        if len(images) > n_images:
            raise SslzooError(
                f"{path}: proposals for more than the {n_images} images of {against}; the proposals were made "
                "for another image list: rerun orl-proposals and orl-merge-proposals for this manifest"
            )

    others = _stream_proposals(path, on_image)
    if others is None:
        raise SslzooError(f"{path}: not a proposals file (no 'bbox' list); rerun orl-merge-proposals")
    if len(images) != n_images:
        raise SslzooError(
            f"{path}: proposals for {len(images)} images but {against} has {n_images}; the proposals were made "
            "for another image list: rerun orl-proposals and orl-merge-proposals for this manifest"
        )
    names = others["images"].get("file_name") if isinstance(others.get("images"), dict) else None
    if file_names is not None and isinstance(names, list):
        if len(names) != len(file_names):
            raise SslzooError(
                f"{path}: images.file_name lists {len(names)} images but {against} has {len(file_names)}; "
                "rerun orl-merge-proposals"
            )
        for row, (got, want) in enumerate(zip(names, file_names, strict=True)):
            if got != want:
                raise SslzooError(
                    f"{path}: image {row} is {got!r} but row {row} of {against} is {want!r}; the proposals follow "
                    "another image order: rerun orl-proposals and orl-merge-proposals for this manifest"
                )
    return images


def read_proposals_for_manifest(
    path: str | os.PathLike[str], manifest_path: str | os.PathLike[str], as_arrays: bool = False
) -> list[Any]:
    """:func:`read_proposals` checked against a manifest file (image count and, if stored, names)."""
    manifest = read_manifest(manifest_path)
    names = [s[0] for s in manifest["samples"]]
    return read_proposals(path, len(names), names, manifest_path, as_arrays)


def proposals_per_second(paths: Sequence[str | os.PathLike[str]], backend: str = "opencv") -> float:
    """Images per second of one proposals job (image decoding included) over ``paths``.

    Uses the job's threads (:func:`job_threads`) as :func:`propose_shard` does.
    """
    if not paths:
        raise ValueError("proposals_per_second needs at least one image")
    if backend == "opencv":
        _set_cv2_threads()
    start = time.perf_counter()
    for path in paths:
        selective_search(np.asarray(load_rgb(path)), backend)
    return len(paths) / (time.perf_counter() - start)
