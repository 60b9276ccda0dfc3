"""Multi-crop views: groups of random crops of one image, each group at its own resolution.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments"
(SwAV), NeurIPS 2020, section 3.2, as MMSelfSup 0.x configures it
(configs/selfsup/_base_/datasets/imagenet_swav_mcrop-2-6.py: ``num_crops = [2, 6]``, one
pipeline per group; mmselfsup/datasets/multi_view.py ``MultiViewDataset``, which applies the
first pipeline ``num_views[0]`` times, then the second ``num_views[1]`` times).

- :class:`MultiCrop`: PIL image -> a tuple of ``V = sum(counts)`` views, group by group. The
  default collate stacks each position, so a batch is a tuple of ``V`` tensors
  ``[B, 3, S_v, S_v]`` whose sizes differ between groups;
- :func:`multicrop_views`: the transform of a ``views`` config (:data:`MULTICROP_KEYS`);
- :func:`resolution_groups`: a batch's views cut into runs of one resolution, each run
  concatenated along the batch, what one backbone pass takes (mmselfsup 0.x
  mmselfsup/models/algorithms/swav.py ``forward_train``'s ``unique_consecutive`` of the widths).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from sslzoo.config import section_with_defaults
from sslzoo.data.transforms import BYOL_VIEW_KEYS, view_pipeline
from sslzoo.errors import SslzooError

# views keys of a multi-crop config -> the reference's values (imagenet_swav_mcrop-2-6.py):
# ``crops``, the groups in order, each with CROP_KEYS; the other keys, those of
# view_pipeline (BYOL_VIEW_KEYS) but image_size and scale, one value each, apply to every group.
CROP_KEYS: dict[str, Any] = {"count": 1, "image_size": 224, "scale": [0.08, 1.0]}
MULTICROP_KEYS: dict[str, Any] = {
    "crops": [
        {"count": 2, "image_size": 224, "scale": [0.14, 1.0]},
        {"count": 6, "image_size": 96, "scale": [0.05, 0.14]},
    ],
    "interpolation": "bilinear",  # torchvision's RandomResizedCrop default
    "flip_p": 0.5,
    "color_jitter": {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2},
    "color_jitter_p": 0.8,
    "grayscale_p": 0.2,
    "blur_sigma": [0.1, 2.0],
    "blur_p": 0.5,
    "solarize_threshold": 128,
    "solarize_p": 0.0,
}
if set(MULTICROP_KEYS) - {"crops"} != set(BYOL_VIEW_KEYS) - {"image_size", "scale"}:
    raise RuntimeError("MULTICROP_KEYS no longer match the keys of sslzoo.data.transforms.view_pipeline")


class MultiCrop:
    """Per-image transform: PIL image -> ``count_g`` views of each pipeline ``g`` in order.

    Args:
        groups: ``(pipeline, count)`` pairs; a pipeline maps a PIL image to ``[3, S, S]``.
    """

    def __init__(self, groups: Sequence[tuple[Callable[[Image.Image], torch.Tensor], int]]) -> None:
        if not groups or any(int(count) < 1 for _, count in groups):
            raise ValueError("MultiCrop needs at least one group, each of at least one view")
        self.groups = [(pipeline, int(count)) for pipeline, count in groups]

    @property
    def counts(self) -> list[int]:
        """Views per group, in order (the reference's ``num_crops``)."""
        return [count for _, count in self.groups]

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, ...]:
        return tuple(pipeline(img) for pipeline, count in self.groups for _ in range(count))


def crop_groups(views: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A multi-crop ``views`` config -> (the crop groups with :data:`CROP_KEYS` filled, the
    keys common to every group with their defaults). A two-view list (``blur_p: [1.0, 0.1]``)
    is refused: every group has one pipeline."""
    views = section_with_defaults(views, MULTICROP_KEYS, "views")
    crops = views.pop("crops")
    if not isinstance(crops, list) or not crops:
        raise SslzooError("model config views.crops: give a non-empty list of {count, image_size, scale}")
    groups = [section_with_defaults(group, CROP_KEYS, f"views.crops[{i}]") for i, group in enumerate(crops)]
    for i, group in enumerate(groups):
        if int(group["count"]) < 1 or int(group["image_size"]) < 1:
            raise SslzooError(f"model config views.crops[{i}]: count and image_size must be at least 1")
    for key in ("blur_p", "solarize_p"):
        if isinstance(views[key], (list, tuple)):
            raise SslzooError(
                f"model config views.{key}: multi-crop views take one value for every crop, got {views[key]}"
            )
    return groups, views


def multicrop_views(views: Mapping[str, Any] | None) -> MultiCrop:
    """The :class:`MultiCrop` of a ``views`` config: group ``g`` is
    :func:`~sslzoo.data.transforms.view_pipeline` of the common keys with the group's
    ``image_size`` and ``scale``, applied ``count`` times."""
    groups, common = crop_groups(views)
    return MultiCrop(
        [
            (
                view_pipeline({**common, "image_size": g["image_size"], "scale": g["scale"]}, 0),
                int(g["count"]),
            )
            for g in groups
        ]
    )


def resolution_groups(crops: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of the same size concatenated: ``V`` tensors ``[B, 3, S_v, S_v]`` ->
    one ``[n_r B, 3, S_r, S_r]`` per run ``r`` of ``n_r`` equal sizes, in order (so the rows of
    the concatenated runs are view 0's batch, then view 1's, ...)."""
    if not crops:
        raise ValueError("resolution_groups needs at least one view")
    runs: list[list[torch.Tensor]] = [[crops[0]]]
    for crop in crops[1:]:
        if crop.shape[-2:] == runs[-1][-1].shape[-2:]:
            runs[-1].append(crop)
        else:
            runs.append([crop])
    return [torch.cat(run) if len(run) > 1 else run[0] for run in runs]
