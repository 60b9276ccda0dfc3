"""Segmentation readers and the MMSegmentation pipeline: label mapping, files, transforms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.data import mini
from sslzoo.data.segmentation import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_TRAIN_IDS,
    IGNORE_INDEX,
    VOC_SEG_CLASSES,
    PipelineConfig,
    SegmentationDataset,
    cityscapes_samples,
    cityscapes_train_ids,
    photometric_distortion,
    random_crop_box,
    read_label,
    rescale_size,
    train_pipeline,
    voc_segmentation_samples,
)
from sslzoo.errors import SslzooError

VOC12 = ("voc", "VOCdevkit", "VOC2012")


def test_cityscapes_label_ids_to_train_ids():
    label_ids = np.array([[7, 8, 11, 12], [26, 33, 24, 23], [0, 1, 6, 255], [9, 10, 34, 29]], np.uint8)
    expected = np.array([[0, 1, 2, 3], [13, 18, 11, 10], [255, 255, 255, 255], [255, 255, 255, 255]])
    np.testing.assert_array_equal(cityscapes_train_ids(label_ids), expected)
    # 19 evaluated classes, each trainId once; the mini painter's ids map onto named classes
    assert sorted(CITYSCAPES_TRAIN_IDS.values()) == list(range(19)) and len(CITYSCAPES_CLASSES) == 19
    for name, label_id in mini.CITYSCAPES_LABEL_IDS.items():
        train_id = int(cityscapes_train_ids(np.array([label_id], np.uint8))[0])
        assert (CITYSCAPES_CLASSES[train_id] if train_id != 255 else "void") == (
            "void" if name == "ego vehicle" else name
        )


def test_read_label_palette_grey_and_broken(tmp_path):
    values = np.array([[0, 1, 255], [20, 3, 0]], np.uint8)
    png = Image.fromarray(values, mode="P")
    png.putpalette(mini.voc_palette())
    png.save(tmp_path / "p.png")
    Image.fromarray(values, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_label(tmp_path / "p.png"), values)  # indices, not colours
    np.testing.assert_array_equal(read_label(tmp_path / "l.png"), values)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(SslzooError, match="rgb.png.*mode RGB"):
        read_label(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SslzooError, match="bad.png"):
        read_label(tmp_path / "bad.png")


def test_voc_and_cityscapes_samples_on_the_mini_data(mini_root):
    summary = json.loads((mini_root / "summary.json").read_text())
    voc12 = mini_root.joinpath(*VOC12)
    trainaug = voc_segmentation_samples(voc12, "trainaug")
    val = voc_segmentation_samples(voc12, "val")
    assert len(trainaug) == summary["voc"]["VOC2012"]["segmentation"]["trainaug"]
    assert len(val) == summary["voc"]["VOC2012"]["segmentation"]["val"]
    assert all(label.parent.name == "SegmentationClassAug" for _, label in trainaug)
    assert all(label.parent.name == "SegmentationClass" for _, label in val)
    assert len(VOC_SEG_CLASSES) == 21
    labels = np.concatenate([read_label(label).ravel() for _, label in val[:10]])
    assert set(np.unique(labels)) <= set(range(21)) | {IGNORE_INDEX} and IGNORE_INDEX in labels

    city = mini_root / "cityscapes"
    train = cityscapes_samples(city, "train")
    assert len(train) == summary["cityscapes"]["train"]["images"]
    data = SegmentationDataset(
        train, PipelineConfig((257, 129), (0.5, 2.0), (97, 97)), train=False, label_map=cityscapes_train_ids
    )
    image, label = data[0]
    assert label.shape == (128, 256) and image.shape == (3, 129, 257)
    assert set(torch.unique(label).tolist()) <= set(range(19)) | {IGNORE_INDEX}


def test_missing_files_are_named(tmp_path):
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    with pytest.raises(SslzooError, match="SegmentationClass.a.png"):
        voc_segmentation_samples(tmp_path, "val")
    with pytest.raises(SslzooError, match="trainaug.txt"):
        voc_segmentation_samples(tmp_path, "trainaug")
    image = tmp_path / "leftImg8bit" / "val" / "x" / "x_000000_000019_leftImg8bit.png"
    image.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    with pytest.raises(SslzooError, match="x_000000_000019_gtFine_labelIds.png"):
        cityscapes_samples(tmp_path, "val")


def test_rescale_size_is_mmcv_imrescale():
    # a VOC image 500 x 375 (W x H) under img_scale (2048, 512): factor min(2048/500, 512/375)
    assert rescale_size(375, 500, (2048, 512)) == (512, 683)
    # Cityscapes 2048 x 1024 under (2049, 1025): factor 2049/2048 -> 2049 x 1025 (1024.5 rounds up)
    assert rescale_size(1024, 2048, (2049, 1025)) == (1025, 2049)
    assert rescale_size(1024, 2048, (1024, 512)) == (512, 1024)


def test_random_crop_avoids_crops_of_one_class():
    label = np.zeros((40, 40), np.uint8)
    label[:, 30:] = 5  # most crops on the left are all class 0
    label[:2, :] = IGNORE_INDEX
    for seed in range(5):
        y0, y1, x0, x1 = random_crop_box(np.random.default_rng(seed), label, (20, 20), 0.75)
        assert (y1 - y0, x1 - x0) == (20, 20)
        values, counts = np.unique(label[y0:y1, x0:x1], return_counts=True)
        counts = counts[values != IGNORE_INDEX]
        assert len(counts) > 1 and counts.max() / counts.sum() < 0.75
    # a crop larger than the image is the whole image
    assert random_crop_box(np.random.default_rng(0), label, (64, 64), 0.75) == (0, 40, 0, 40)


def test_train_pipeline_crops_pads_and_repeats():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    label = rng.integers(0, 4, (30, 40), dtype=np.uint8)
    cfg = PipelineConfig(img_scale=(40, 30), ratio_range=(0.5, 2.0), crop_size=(24, 24))
    out, target = train_pipeline(image, label, cfg, np.random.default_rng(3))
    assert out.shape == (3, 24, 24) and target.shape == (24, 24) and target.dtype == torch.int64
    assert set(torch.unique(target).tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}
    again, target_again = train_pipeline(image, label, cfg, np.random.default_rng(3))
    torch.testing.assert_close(out, again)
    torch.testing.assert_close(target, target_again)
    # a small scale: the image is padded (0 after normalisation) and the label with 255
    small = PipelineConfig(img_scale=(20, 15), ratio_range=(0.5, 0.5), crop_size=(24, 24), photometric=False)
    out, target = train_pipeline(image, label, small, np.random.default_rng(1))
    # scale (10, 7) -> factor min(10/40, 7/30): 30x40 -> 7x9
    assert (
        out.shape == (3, 24, 24)
        and (target[7:, :] == IGNORE_INDEX).all()
        and (target[:, 9:] == IGNORE_INDEX).all()
    )
    assert (
        (out[:, 7:, :] == 0).all() and (out[:, :, 9:] == 0).all() and (target[:7, :9] != IGNORE_INDEX).all()
    )


def test_photometric_distortion_is_seeded_and_stays_uint8():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    outs = [photometric_distortion(np.random.default_rng(s), image) for s in range(6)]
    assert all(o.dtype == np.uint8 and o.shape == image.shape for o in outs)
    np.testing.assert_array_equal(outs[0], photometric_distortion(np.random.default_rng(0), image))
    assert any(not np.array_equal(o, image) for o in outs)
