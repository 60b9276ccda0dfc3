"""ORL stage 3: BYOL on whole images plus BYOL on corresponding regions within and across images.

Xie, Zhan, Liu, Ong, Loy, "Unsupervised Object-Level Representation Learning from Scene
Images", NeurIPS 2021; reference Jiahao000/ORL (openselfsup/models/orl.py,
openselfsup/datasets/orl.py, openselfsup/datasets/data_sources/coco_orl_json.py,
configs/selfsup/orl/coco/stage3/r50_bs512_ep800.py).

Model: :class:`~sslzoo.methods.byol.BYOL`'s online backbone + projector and its EMA target
(one of each, shared by the three branches), with three predictors of the same shape:
``predictor`` (global), ``intra_predictor`` (intra-RoI) and ``inter_predictor`` (inter-RoI).
Each branch is BYOL's symmetric loss on its pair of inputs,

    ``L_b = loss_scale * (h(q_b(o(x1)), t(x2)) + h(q_b(o(x2)), t(x1)))``, ``h = -mean cos``,

(``loss_scale`` = 2, our :class:`BYOL` form), and ``loss = w_g L_global + w_intra L_intra +
w_inter L_inter`` with weights 1. The reference's head writes each direction as ``2 - 2 cos``:
its ``loss_global``, ``loss_local_intra``, ``loss_local_inter`` are ours + 4 each (same gradients).

Inputs per image ``i`` (:class:`ORLDataset`), from the stage-2 correspondence file:

- global: two views of the whole image, BYOL's asymmetric pipelines (RandomResizedCrop ...);
- intra-RoI: a random kept box ``b`` of image ``i`` and :func:`aug_bbox` of it, both cropped
  from image ``i``;
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

import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.transforms import functional as TF

from sslzoo.config import section_with_defaults
from sslzoo.data.datasets import load_rgb
from sslzoo.data.manifest import read_manifest
from sslzoo.errors import SslzooError
from sslzoo.methods.byol import BYOL, INTERPOLATIONS, MLP, MLP_KEYS, VIEW_KEYS, TwoViews, view_pipeline

Box = Sequence[float]

# views keys ORL adds to BYOL's VIEW_KEYS (reference ORLDataset arguments and COCOORLJson.topk_knn_image)
ROI_VIEW_KEYS: dict[str, Any] = {
    "roi_size": 96,  # patch_size
    "roi_interpolation": "bilinear",  # interpolation=2 (PIL bilinear) of TF.resized_crop
    "knn_images": 10,  # topk_knn_image: the inter-RoI neighbour is one of the first knn_images
    "aug_bbox": {},
}
AUG_BBOX_KEYS: dict[str, Any] = {
    "shift": [-0.5, 0.5],  # centre shift, in units of the box's w and h
    "scale": [0.5, 2.0],  # area scale
    "ratio": [0.5, 2.0],  # aspect ratio w/h, log-uniform
    "min_iou": 0.5,  # iou_thr: IoU with the original box must exceed this (null: no check)
    "attempts": 200,  # attempt_num; after that the original box is returned
}
# Jiahao000/ORL: NonLinearNeckSimCLR(with_bias=False) keeps its default fc0_bias=True (a bias on
# the hidden fc, none on the output fc); projector and predictors init_weights(init_linear='kaiming')
ORL_MLP: dict[str, Any] = {"bias": True, "last_bias": False, "init": "kaiming"}
LOSS_WEIGHT_KEYS: dict[str, float] = {
    "global_loss_weight": 1.0,
    "local_intra_loss_weight": 1.0,
    "local_inter_loss_weight": 1.0,
}
BRANCHES: tuple[str, ...] = ("global", "intra", "inter")


# --------------------------------------------------------------------------- boxes


def box_iou(a: Box, b: Box) -> float:
    """IoU of two ``[x, y, w, h]`` boxes (continuous coordinates, as the reference's ``get_iou``)."""
    iw = max(min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def aug_bbox(
    box: Box,
    image_size: tuple[int, int],
    shift: Sequence[float] = (-0.5, 0.5),
    scale: Sequence[float] = (0.5, 2.0),
    ratio: Sequence[float] = (0.5, 2.0),
    min_iou: float | None = 0.5,
    attempts: int = 200,
    rng: random.Random | ModuleType = random,
) -> list[float]:
    """A random box near ``box``: the second intra-RoI crop (Jiahao000/ORL datasets/orl.py ``aug_bbox``).

    Each attempt draws an area ``U(scale) * w h``, an aspect ratio ``exp(U(log ratio))``, sizes
    ``round(sqrt(area ratio))``, ``round(sqrt(area / ratio))`` and a centre shifted by
    ``U(shift) * w``, ``U(shift) * h``; it is kept if it lies inside the image and its IoU with
    ``box`` exceeds ``min_iou``. After ``attempts`` misses the original box is returned.

    Args:
        box: ``[x, y, w, h]`` in pixels.
        image_size: ``(width, height)`` (PIL's ``img.size``).
        rng: ``random`` or a ``random.Random``; four ``uniform`` draws per attempt.

    Returns:
        ``[x, y, w, h]`` with integer values, or ``list(box)``.
    """
    img_w, img_h = image_size
    x, y, w, h = (float(v) for v in box[:4])
    cx, cy = x + 0.5 * w, y + 0.5 * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(int(attempts)):
        area = rng.uniform(scale[0], scale[1]) * w * h
        aspect = math.exp(rng.uniform(*log_ratio))
        aug_w = int(round(math.sqrt(area * aspect)))
        aug_h = int(round(math.sqrt(area / aspect)))
        aug_cx = cx + rng.uniform(shift[0], shift[1]) * w
        aug_cy = cy + rng.uniform(shift[0], shift[1]) * h
        aug_x, aug_y = int(round(aug_cx - 0.5 * aug_w)), int(round(aug_cy - 0.5 * aug_h))
        if aug_x >= 0 and aug_y >= 0 and aug_x + aug_w <= img_w and aug_y + aug_h <= img_h:
            candidate = [aug_x, aug_y, aug_w, aug_h]
            if min_iou is None or box_iou(candidate, (x, y, w, h)) > min_iou:
                return [float(v) for v in candidate]
    return [float(v) for v in box[:4]]


def roi_crop(img: Image.Image, box: Box, size: int, interpolation: str = "bilinear") -> Image.Image:
    """``box`` ``[x, y, w, h]`` of ``img`` resized to ``size x size`` (``TF.resized_crop``, as the
    reference; PIL rounds the crop corners)."""
    x, y, w, h = box[:4]
    return TF.resized_crop(img, y, x, h, w, [size, size], interpolation=INTERPOLATIONS[interpolation])


# --------------------------------------------------------------------------- views


def split_views(views: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``views`` -> (BYOL's keys for the global and patch pipelines, ORL's RoI keys with defaults).

    A key that neither knows raises :class:`SslzooError` naming both key sets.
    """
    views = dict(views or {})
    unknown = sorted(set(views) - set(VIEW_KEYS) - set(ROI_VIEW_KEYS))
    if unknown:
        raise SslzooError(
            f"model config views: unknown key(s) {unknown}; allowed: {sorted(set(VIEW_KEYS) | set(ROI_VIEW_KEYS))}"
        )
    byol = {k: v for k, v in views.items() if k in VIEW_KEYS}
    roi = section_with_defaults(
        {k: v for k, v in views.items() if k in ROI_VIEW_KEYS}, ROI_VIEW_KEYS, "views"
    )
    roi["aug_bbox"] = section_with_defaults(roi["aug_bbox"], AUG_BBOX_KEYS, "views.aug_bbox")
    if roi["roi_interpolation"] not in INTERPOLATIONS:
        raise SslzooError(
            f"model config views.roi_interpolation: {roi['roi_interpolation']!r} is not one of {sorted(INTERPOLATIONS)}"
        )
    if int(roi["roi_size"]) < 1 or int(roi["knn_images"]) < 1:
        raise SslzooError("model config views.roi_size and views.knn_images must be at least 1")
    return byol, roi


def patch_pipeline(views: Mapping[str, Any], index: int) -> transforms.Compose:
    """View ``index``'s pipeline of BYOL without its RandomResizedCrop: flip -> jitter ->
    grayscale -> blur -> solarize -> ToTensor -> Normalize (reference ``train_patch_pipeline``)."""
    steps = view_pipeline(views, index).transforms
    if not isinstance(steps[0], transforms.RandomResizedCrop):
        raise RuntimeError("sslzoo.methods.byol.view_pipeline no longer starts with RandomResizedCrop")
    return transforms.Compose(steps[1:])


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
        # imported here: sslzoo.orl imports sslzoo.methods.byol, whose package imports this module
        from sslzoo.orl.correspondence_files import read_correspondence

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


# --------------------------------------------------------------------------- model


def check_orl_config(cfg: Mapping[str, Any]) -> None:
    """A stage-3 config names its stage-1 model and carries the stage-2 protocol."""
    missing = [key for key in ("stage1", "stage2") if key not in cfg]
    if missing:
        raise SslzooError(
            f"model config (method orl): missing {', '.join(missing)}; give stage1: <the config/models/ name of the "
            "stage-1 BYOL model> and stage2: {knn: {...}, correspondence: {...}} (see config/models/orl_*.yaml)"
        )


class ORL(BYOL):
    """BYOL's networks with three predictor heads: global, intra-RoI and inter-RoI.

    Args:
        global_loss_weight, local_intra_loss_weight, local_inter_loss_weight: the branch weights.
        **byol: :class:`BYOL` arguments; projector and predictors default to the reference's
            bias on the hidden fc only and kaiming init (``ORL_MLP``).
    """

    def __init__(
        self,
        global_loss_weight: float = 1.0,
        local_intra_loss_weight: float = 1.0,
        local_inter_loss_weight: float = 1.0,
        **byol: Any,
    ) -> None:
        byol["projector"] = {**ORL_MLP, **(byol.get("projector") or {})}
        byol["predictor"] = {**ORL_MLP, **(byol.get("predictor") or {})}
        super().__init__(**byol)
        projector = section_with_defaults(byol["projector"], MLP_KEYS, "method_args.projector")
        predictor = section_with_defaults(byol["predictor"], MLP_KEYS, "method_args.predictor")
        self.intra_predictor = MLP(int(projector["out"]), **predictor)
        self.inter_predictor = MLP(int(projector["out"]), **predictor)
        self.loss_weights = {
            "global": float(global_loss_weight),
            "intra": float(local_intra_loss_weight),
            "inter": float(local_inter_loss_weight),
        }

    @classmethod
    def method_keys(cls) -> dict[str, Any]:
        return {**super().method_keys(), **LOSS_WEIGHT_KEYS}

    @classmethod
    def from_config(cls, cfg: dict) -> ORL:
        """Build from a stage-3 model config; ``method_args``: BYOL's plus the three loss weights.

        Raises:
            SslzooError: ``stage1`` or ``stage2`` missing, or a ``views`` key neither BYOL nor ORL knows.
        """
        check_orl_config(cfg)
        split_views(cfg.get("views"))
        return cls(**cls.method_kwargs(cfg))

    @staticmethod
    def views(cfg: dict) -> TwoViews:
        """The two global views (BYOL's pipelines on the ``views`` keys BYOL knows)."""
        byol_views, _ = split_views(cfg.get("views"))
        return TwoViews(view_pipeline(byol_views, 0), view_pipeline(byol_views, 1))

    @classmethod
    def build_dataset(
        cls,
        cfg: dict,
        manifest_path: str | os.PathLike[str],
        correspondence: str | os.PathLike[str] | None = None,
    ) -> ORLDataset:
        """The engine's dataset hook: :class:`ORLDataset` of the manifest and the stage-2 file."""
        if correspondence is None:
            raise SslzooError(
                "method orl (ORL stage 3) trains on the stage-2 correspondence file: pass "
                "--correspondence results/orl/<model>/correspondence.json to the pretrain step"
            )
        return ORLDataset(manifest_path, correspondence, cfg)

    def heads(self) -> dict[str, nn.Module]:
        """Branch name -> its predictor."""
        return {"global": self.predictor, "intra": self.intra_predictor, "inter": self.inter_predictor}

    def branch_loss(
        self, head: Callable[[torch.Tensor], torch.Tensor], x1: torch.Tensor, x2: torch.Tensor
    ) -> torch.Tensor:
        """``loss_scale * (h(head(o(x1)), t(x2)) + h(head(o(x2)), t(x1)))`` for ``[B, 3, H, W]`` inputs;
        with ``head = self.predictor`` this is :meth:`BYOL.forward`'s loss."""
        pred1 = head(self.online_projection(self.online_input(x1)))
        pred2 = head(self.online_projection(self.online_input(x2)))
        with torch.no_grad():
            target1 = self.target_projection(self.target_input(x1))
            target2 = self.target_projection(self.target_input(x2))
        return self.loss_scale * (self.pair_loss(pred1, target2) + self.pair_loss(pred2, target1))

    def forward(self, batch: Mapping[str, Sequence[torch.Tensor]]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Weighted sum of the three branch losses.

        Args:
            batch: the collated :class:`ORLDataset` views, ``{"global": (g1, g2), "intra": (i1, i2),
                "inter": (k1, k2)}``, each ``[B, 3, H, W]``.

        Returns:
            ``loss``; ``loss_global``, ``loss_local_intra``, ``loss_local_inter`` (weighted,
            detached; the reference's names); ``momentum``.
        """
        heads = self.heads()
        branches = {
            name: self.loss_weights[name] * self.branch_loss(heads[name], *batch[name]) for name in BRANCHES
        }
        loss = branches["global"] + branches["intra"] + branches["inter"]
        return {
            "loss": loss,
            "loss_global": branches["global"].detach(),
            "loss_local_intra": branches["intra"].detach(),
            "loss_local_inter": branches["inter"].detach(),
            "momentum": torch.tensor(self.momentum, device=loss.device),
        }
