"""ORL stage 3's dataset: the RoI crops of an image and of its neighbour, and the correspondence checks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.orl_dataset import ORLDataset
from sslzoo.data.transforms import roi_crop
from sslzoo.errors import SslzooError
from tests.data.orl_files import PLAIN_VIEWS, write_data


def normalised(img: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def test_dataset_crops_the_boxes_of_the_image_and_of_its_neighbour(tmp_path: Path) -> None:
    manifest, corr, data = write_data(tmp_path)
    dataset = ORLDataset(manifest, corr, {"views": PLAIN_VIEWS})
    assert len(dataset) == 4
    for index in range(4):
        images = [Image.open(tmp_path / "images" / f"img{i}.png").convert("RGB") for i in range(4)]
        random.seed(index)
        neighbour, ibox1, ibox2, kbox1, kbox2 = dataset.rois(index, images[index])
        assert neighbour == (index + 1) % 4  # knn_images 1: the first stored neighbour
        assert ibox1 in data["pseudo_annotations"]["bbox"][index]
        assert (kbox1, kbox2) == ([2, 3, 10, 9], [4, 5, 11, 8])
        random.seed(index)  # the same draws again inside __getitem__
        views, label = dataset[index]
        assert label == -1
        assert views["global"][0].shape == views["global"][1].shape == (3, 16, 16)
        expected = {
            "intra": (roi_crop(images[index], ibox1, 8), roi_crop(images[index], ibox2, 8)),
            "inter": (roi_crop(images[index], kbox1, 8), roi_crop(images[neighbour], kbox2, 8)),
        }
        for name, (crop1, crop2) in expected.items():
            assert torch.allclose(views[name][0], normalised(crop1)), name
            assert torch.allclose(views[name][1], normalised(crop2)), name
        assert not torch.allclose(views["inter"][1], normalised(roi_crop(images[index], kbox2, 8)))


def test_dataset_samples_every_neighbour_box_and_pair(tmp_path: Path) -> None:
    manifest, corr, _ = write_data(tmp_path)
    dataset = ORLDataset(manifest, corr, {"views": {**PLAIN_VIEWS, "knn_images": 2}})
    img = Image.open(tmp_path / "images" / "img0.png").convert("RGB")
    random.seed(0)
    draws = [dataset.rois(0, img) for _ in range(60)]
    assert {d[0] for d in draws} == {1, 2}
    assert {tuple(d[1]) for d in draws} == {(1, 2, 12, 10), (0, 0, 20, 16)}
    for neighbour, *_, kbox2 in draws:  # the pair stored for the drawn neighbour
        assert kbox2 == [4, 5, 11, 8 + (neighbour - 1)]


PAIR = [2, 3, 10, 9, 4, 5, 11, 8]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "bbox": [[[1, 2, 12, 10]]] * 3,
                "knn_image_id": [[1, 2]] * 3,
                "knn_bbox_pair": [[[PAIR], [PAIR]]] * 3,
            },
            "3 images",
        ),
        ({"images": {"file_name": ["img1.png", "img0.png", "img2.png", "img3.png"]}}, "'img1.png'"),
        ({"knn_image_id": [[1, 2], [2, 3], [3, 4], [0, 1]]}, r"knn_image_id\[2\]"),
        ({"bbox": [[[1, 2, 12, 10]], [], [[1, 2, 12, 10]], [[1, 2, 12, 10]]]}, r"bbox\[1\]"),
        ({"knn_bbox_pair": [[[PAIR], []]] * 4}, r"knn_bbox_pair\[0\]\[1\]"),
        ({"knn_bbox_pair": [[[PAIR[:4]], [PAIR]]] * 4}, r"knn_bbox_pair\[0\]\[0\]"),
        # the shared reader looks at the first pair of each list; the arrays see every one
        ({"knn_bbox_pair": [[[PAIR, PAIR[:4]], [PAIR]]] * 4}, "rows of 8 numbers"),
        ({"bbox": [[[1, 2, 12, 10], [1, 2, 3]]] * 4}, "rows of 4 numbers"),
    ],
)
def test_dataset_refuses_a_correspondence_that_does_not_fit(
    tmp_path: Path, changes: dict, message: str
) -> None:
    manifest, corr, _ = write_data(tmp_path, **changes)
    with pytest.raises(SslzooError, match=message) as error:
        ORLDataset(manifest, corr, {"views": PLAIN_VIEWS})
    assert "corr.json" in str(error.value)


def test_dataset_refuses_more_neighbours_than_stored(tmp_path: Path) -> None:
    manifest, corr, _ = write_data(tmp_path)
    with pytest.raises(SslzooError, match="views.knn_images = 3"):
        ORLDataset(manifest, corr, {"views": {**PLAIN_VIEWS, "knn_images": 3}})
