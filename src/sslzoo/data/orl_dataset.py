"""ORL stage 3's training data: the stage-2 correspondence file as flat arrays and :class:`ORLDataset`.

Xie, Zhan, Liu, Ong, Loy, "Unsupervised Object-Level Representation Learning from Scene
Images", NeurIPS 2021; reference Jiahao000/ORL (openselfsup/datasets/orl.py,
openselfsup/datasets/data_sources/coco_orl_json.py).

Inputs per image ``i``, from the stage-2 correspondence file:

- global: two views of the whole image, BYOL's asymmetric pipelines (RandomResizedCrop ...);
- intra-RoI: a random kept box ``b`` of image ``i`` and :func:`~sslzoo.data.transforms.aug_bbox`
  of it, both cropped from image ``i``;
- inter-RoI: a random one ``j`` of the first ``knn_images`` neighbours and a random stored pair
  ``(b, b')`` of that neighbour: ``b`` cropped from image ``i``, ``b'`` from image ``j``.

RoI crops are resized to ``roi_size`` (96) and then go through the patch pipelines: BYOL's
view pipelines without the RandomResizedCrop (flip, colour jitter, grayscale, blur p 1.0 / 0.1,
solarize p 0 / 0.2). Crop 1 of each pair takes pipeline 1, crop 2 pipeline 2.

Every image has at least one kept box and one pair per neighbour in the reference's stage-2
output (its box filter keeps ``boxes[0]`` when none survives; it stores at least one pair per
neighbour); its data source would crash on an empty list. We refuse such a file when it is read.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sslzoo.data.images import load_rgb
from sslzoo.data.manifest import read_manifest
from sslzoo.data.transforms import TwoViews, aug_bbox, patch_pipeline, roi_crop, split_views, view_pipeline
from sslzoo.errors import SslzooError
from sslzoo.orl.correspondence_files import read_correspondence

# --------------------------------------------------------------------------- correspondence file


@dataclass(frozen=True)
class Correspondence:
    """A stage-2 correspondence file as flat arrays (no per-box Python objects, so DataLoader
    workers share it copy-on-write).

    Attributes:
        boxes: ``[M, 4]`` kept boxes ``[x, y, w, h]`` of all images; image ``i``'s are rows
            ``box_offsets[i]:box_offsets[i + 1]``.
        knn: ``[N, K]`` neighbour row indices (manifest rows).
        pairs: ``[P, 8]`` box pairs ``[x, y, w, h, x', y', w', h']``; those of image ``i`` and
            neighbour ``k`` are rows ``pair_offsets[i * K + k]:pair_offsets[i * K + k + 1]``.
    """

    boxes: np.ndarray
    box_offsets: np.ndarray
    knn: np.ndarray
    pairs: np.ndarray
    pair_offsets: np.ndarray

    def image_boxes(self, index: int) -> np.ndarray:
        return self.boxes[self.box_offsets[index] : self.box_offsets[index + 1]]

    def image_pairs(self, index: int, neighbour: int) -> np.ndarray:
        at = index * self.knn.shape[1] + neighbour
        return self.pairs[self.pair_offsets[at] : self.pair_offsets[at + 1]]


def _offsets(counts: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)


def _as_rows(values: list[Any], width: int, where: str) -> np.ndarray:
    """``[len(values), width]`` float64; ValueError naming ``where`` for rows of another length."""
    if not values:
        return np.zeros((0, width), dtype=np.float64)
    try:
        array = np.asarray(values, dtype=np.float64)
    except ValueError:  # rows of different lengths
        array = np.zeros(0)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{where}: expected rows of {width} numbers")
    return array


def correspondence_arrays(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Correspondence:
    """The flat arrays of a correspondence document already checked by
    :func:`sslzoo.orl.correspondence_files.read_correspondence` (ORL's
    ``train2017_10nn_instance_correspondence.json`` layout: ``pseudo_annotations`` ``bbox``
    [N][B_i][4], ``knn_image_id`` [N][>= K] manifest rows, ``knn_bbox_pair`` [N][>= K][T][8],
    with ``K = info.knn_image_num``; the first ``K`` neighbours are used, as the reference).

    Raises:
        SslzooError: a box or a pair that is not 4 resp. 8 numbers, or an image without boxes or
            without a pair for one of its ``K`` neighbours; the message names ``path``.
    """
    pseudo = doc["pseudo_annotations"]
    k = int(doc["info"]["knn_image_num"])
    fix = "rerun orl-correspondence and orl-merge-correspondence"
    try:
        knn = np.asarray([row[:k] for row in pseudo["knn_image_id"]], dtype=np.int64).reshape(-1, k)
        boxes = _as_rows([box for image in pseudo["bbox"] for box in image], 4, "pseudo_annotations.bbox")
        slots = [slot for image in pseudo["knn_bbox_pair"] for slot in image[:k]]
        pairs = _as_rows([pair for slot in slots for pair in slot], 8, "pseudo_annotations.knn_bbox_pair")
    except (ValueError, TypeError) as err:
        raise SslzooError(f"{path}: malformed correspondence ({err}); {fix}") from err
    box_counts = [len(image) for image in pseudo["bbox"]]
    pair_counts = [len(slot) for slot in slots]
    if (
        len(pair_counts) != k * len(box_counts)
        or min(box_counts, default=0) == 0
        or min(pair_counts, default=0) == 0
    ):
        raise SslzooError(
            f"{path}: an image without kept boxes or without box pairs for one of its {k} neighbours; ORL's "
            f"stage 2 keeps at least one box and one pair per neighbour: {fix}"
        )
    return Correspondence(boxes, _offsets(box_counts), knn, pairs, _offsets(pair_counts))


# --------------------------------------------------------------------------- dataset


class ORLDataset(Dataset):
    """Stage-3 training samples: ``dataset[i] -> (views, label)`` (reference ``ORLDataset``).

    ``views = {"global": (g1, g2), "intra": (i1, i2), "inter": (k1, k2)}``: two ``[3, S, S]``
    global views (``views.image_size``) and two pairs of ``[3, R, R]`` RoI crops
    (``views.roi_size``); ``label`` is the manifest's (-1 for COCO). Images are read lazily.

    Args:
        manifest_path: the train manifest the correspondence file was built on.
        correspondence_path: the merged stage-2 file (ORL's correspondence JSON layout).
        cfg: the validated stage-3 model config (``views``).
    """

    def __init__(
        self,
        manifest_path: str | os.PathLike[str],
        correspondence_path: str | os.PathLike[str],
        cfg: Mapping[str, Any],
    ) -> None:
        manifest = read_manifest(manifest_path)
        self.root = Path(manifest["root"])
        self.samples: list[tuple[str, Any]] = [(rel, label) for rel, label in manifest["samples"]]
        doc = read_correspondence(correspondence_path, manifest_path)
        self.correspondence = correspondence_arrays(doc, correspondence_path)
        del doc
        byol_views, roi = split_views(cfg.get("views"))
        self.knn_images = int(roi["knn_images"])
        stored = self.correspondence.knn.shape[1]
        if self.knn_images > stored:
            raise SslzooError(
                f"{correspondence_path}: {stored} neighbours per image, fewer than the model config's "
                f"views.knn_images = {self.knn_images}; lower views.knn_images or rerun orl-knn with a larger stage2.knn.k"
            )
        self.roi_size = int(roi["roi_size"])
        self.roi_interpolation = str(roi["roi_interpolation"])
        self.aug_bbox_args = dict(roi["aug_bbox"])
        self.image_views = TwoViews(view_pipeline(byol_views, 0), view_pipeline(byol_views, 1))
        self.patch_views = TwoViews(patch_pipeline(byol_views, 0), patch_pipeline(byol_views, 1))

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, index: int) -> Path:
        """Full path of sample ``index``."""
        return self.root / self.samples[index][0]

    def rois(
        self, index: int, img: Image.Image
    ) -> tuple[int, list[float], list[float], list[float], list[float]]:
        """Draw the RoIs of one sample (Python's ``random``, as the reference).

        Returns:
            ``(neighbour row j, intra box, its aug_bbox, inter box in image index, inter box in j)``.
        """
        k = random.randint(0, self.knn_images - 1)
        neighbour = int(self.correspondence.knn[index, k])
        boxes = self.correspondence.image_boxes(index)
        ibox1 = boxes[random.randrange(len(boxes))].tolist()
        args = self.aug_bbox_args
        ibox2 = aug_bbox(
            ibox1,
            img.size,
            args["shift"],
            args["scale"],
            args["ratio"],
            args["min_iou"],
            int(args["attempts"]),
        )
        pairs = self.correspondence.image_pairs(index, k)
        pair = pairs[random.randrange(len(pairs))].tolist()
        return neighbour, ibox1, ibox2, pair[:4], pair[4:]

    def __getitem__(self, index: int) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], Any]:
        img = load_rgb(self.path(index))
        neighbour, ibox1, ibox2, kbox1, kbox2 = self.rois(index, img)
        knn_img = load_rgb(self.path(neighbour))
        size, mode = self.roi_size, self.roi_interpolation
        intra = (roi_crop(img, ibox1, size, mode), roi_crop(img, ibox2, size, mode))
        inter = (roi_crop(img, kbox1, size, mode), roi_crop(knn_img, kbox2, size, mode))
        views = {
            "global": self.image_views(img),
            "intra": (self.patch_views.first(intra[0]), self.patch_views.second(intra[1])),
            "inter": (self.patch_views.first(inter[0]), self.patch_views.second(inter[1])),
        }
        return views, self.samples[index][1]
