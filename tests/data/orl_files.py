"""ORL stage-3 test data: small images, their manifest and a hand-written correspondence file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# every random step off: the crops can be compared pixel for pixel
PLAIN_VIEWS = {
    "image_size": 16,
    "scale": [1.0, 1.0],
    "flip_p": 0.0,
    "color_jitter_p": 0.0,
    "grayscale_p": 0.0,
    "blur_p": 0.0,
    "solarize_p": 0.0,
    "roi_size": 8,
    "knn_images": 1,
}


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Image.Image]:
    """Distinct random images (w, h) as PNG (lossless), named img{i}.png."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i, (w, h) in enumerate(sizes):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        img.save(folder / f"img{i}.png")
        images.append(img)
    return images


def write_data(tmp_path: Path, n: int = 4, **changes: Any) -> tuple[Path, Path, dict[str, Any]]:
    """A manifest of n small images and a hand-written correspondence file (ORL's layout): image
    i has boxes [[1, 2, 12, 10], [0, 0, 20, 16]], neighbours (i+1, i+2) mod n, one pair per neighbour."""
    write_images(tmp_path / "images", [(24 + 2 * i, 20 + i) for i in range(n)])
    names = [f"img{i}.png" for i in range(n)]
    manifest = {
        "dataset": "coco",
        "split": "train",
        "root": str(tmp_path / "images"),
        "classes": [],
        "samples": [[name, -1] for name in names],
    }
    knn = [[(i + 1) % n, (i + 2) % n] for i in range(n)]
    data = {
        "info": {
            "bbox_min_size": 8,
            "bbox_max_aspect_ratio": 3,
            "bbox_max_iou": 0.5,
            "intra_bbox_num": 100,
            "knn_image_num": 2,
            "knn_bbox_pair_ratio": 0.1,
        },
        "images": {"file_name": names, "id": [1000 + i for i in range(n)]},
        "pseudo_annotations": {
            "image_id": [1000 + i for i in range(n)],
            "bbox": [[[1, 2, 12, 10], [0, 0, 20, 16]] for _ in range(n)],
            "knn_image_id": knn,
            "knn_bbox_pair": [[[[2, 3, 10, 9, 4, 5, 11, 8 + k]] for k in range(2)] for _ in range(n)],
        },
    }
    for key, value in changes.items():
        if key == "images":
            data["images"] = value
        else:
            data["pseudo_annotations"][key] = value
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "corr.json").write_text(json.dumps(data))
    return tmp_path / "manifest.json", tmp_path / "corr.json", data
