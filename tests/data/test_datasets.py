"""ManifestDataset: lazy RGB images with labels; unreadable images name their file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import functional as TF

from sslzoo.data.datasets import ManifestDataset
from sslzoo.data.manifest import build_manifest, write_manifest
from sslzoo.data.mini import MiniSizes
from sslzoo.errors import SslzooError


@pytest.fixture
def val_manifest(mini_root: Path, tmp_path: Path) -> Path:
    path = tmp_path / "imagenet_val.json"
    images = mini_root / "imagenet" / "val"
    write_manifest(
        build_manifest("imagenet", images, "val", mini_root / "imagenet" / "meta" / "val.txt"), path
    )
    return path


def test_items_are_transformed_images_with_their_labels(val_manifest: Path, mini_root: Path) -> None:
    dataset = ManifestDataset(val_manifest, transform=TF.to_tensor)
    per_class = MiniSizes().imagenet_val_per_class
    assert len(dataset) == 10 * per_class and len(dataset.classes) == 10
    assert dataset.labels.dtype == np.int64 and np.bincount(dataset.labels).tolist() == [per_class] * 10
    lines = sorted((mini_root / "imagenet" / "meta" / "val.txt").read_text().splitlines())
    for index in (0, 57, len(dataset) - 1):
        rel, label = lines[index].split()
        image, got = dataset[index]
        assert got == int(label) == dataset.labels[index]
        assert dataset.classes[got] == rel.split("/")[0]
        expected = TF.to_tensor(Image.open(mini_root / "imagenet" / "val" / rel).convert("RGB"))
        assert image.shape == (3, 96, 96) and torch.equal(image, expected)


def test_images_are_converted_to_rgb(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "a").mkdir(parents=True)
    Image.new("L", (5, 4), 80).save(root / "a" / "grey.png")
    Image.new("RGBA", (5, 4), (10, 20, 30, 40)).save(root / "a" / "alpha.png")
    Image.new("P", (5, 4), 3).save(root / "a" / "palette.png")
    write_manifest(build_manifest("imagenet", root, "train"), tmp_path / "m.json")
    dataset = ManifestDataset(tmp_path / "m.json")
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.mode == "RGB" and image.size == (5, 4) and label == 0
    assert dataset[1][0].getpixel((0, 0)) == (80, 80, 80)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted"])
def test_unreadable_image_raises_sslzoo_error_naming_the_file(
    mini_root: Path, tmp_path: Path, damage: str
) -> None:
    root = tmp_path / "img"
    (root / "a").mkdir(parents=True)
    source = next((mini_root / "imagenet" / "train").rglob("*.JPEG")).read_bytes()
    (root / "a" / "good.JPEG").write_bytes(source)
    bad = root / "a" / "zbad.JPEG"
    bad.write_bytes(source)
    write_manifest(build_manifest("imagenet", root, "train"), tmp_path / "m.json")
    if damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "truncated":
        bad.write_bytes(source[: len(source) // 2])
    else:
        bad.unlink()
    dataset = ManifestDataset(tmp_path / "m.json", transform=TF.to_tensor)
    assert dataset[0][0].shape == (3, 96, 96)
    with pytest.raises(SslzooError, match=str(bad).replace(".", r"\.")):
        dataset[1]


def test_worker_errors_stay_sslzoo_errors(mini_root: Path, tmp_path: Path) -> None:
    """A DataLoader worker re-raises the error with its type, so the CLI still reports it cleanly."""
    root = tmp_path / "img"
    (root / "a").mkdir(parents=True)
    (root / "a" / "bad.JPEG").write_bytes(b"not an image")
    write_manifest(build_manifest("imagenet", root, "train"), tmp_path / "m.json")
    loader = DataLoader(ManifestDataset(tmp_path / "m.json", transform=TF.to_tensor), num_workers=1)
    with pytest.raises(SslzooError, match="bad.JPEG: cannot read image"):
        next(iter(loader))


def test_a_bad_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"dataset": "imagenet"}')
    with pytest.raises(SslzooError, match=r"m\.json: not a manifest"):
        ManifestDataset(tmp_path / "m.json")


def test_multi_label_manifests_give_target_arrays(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp_path / name)
    targets = [[1, -1, 0], [-1, -1, 1]]
    write_manifest(
        {
            "dataset": "voc07",
            "split": "trainval",
            "root": str(tmp_path),
            "classes": ["x", "y", "z"],
            "samples": [["a.png", targets[0]], ["b.png", targets[1]]],
        },
        tmp_path / "m.json",
    )
    dataset = ManifestDataset(tmp_path / "m.json", transform=TF.to_tensor)
    np.testing.assert_array_equal(dataset.labels, np.array(targets))
    images, labels = next(iter(DataLoader(dataset, batch_size=2)))
    assert images.shape == (2, 3, 6, 8)
    assert labels.dtype == torch.int64
    torch.testing.assert_close(labels, torch.tensor(targets))
