"""The feature cache: protocol dimensions, equality with a direct forward, torchrun sharding."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from sslzoo.benchmarks.features import (
    FeatureProtocol,
    build_transform,
    compute_features,
    interleave_shards,
    load_backbone_model,
    load_feature_protocol,
    pool_stages,
)
from sslzoo.checkpoints import random_backbone
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.dist import DistContext

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
ALL_LAYERS = ["feature1", "feature2", "feature3", "feature4", "feature5", "avgpool"]


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread is as fast and leaves the other cores alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class StandInImages(torch.utils.data.Dataset):
    """A few random RGB images of different sizes with labels, like ManifestDataset."""

    def __init__(self, transform, count: int = 7, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = [
            Image.fromarray(
                rng.integers(
                    0, 256, (int(rng.integers(40, 60)), int(rng.integers(40, 60)), 3), dtype=np.uint8
                )
            )
            for _ in range(count)
        ]
        self.labels = [i % 3 for i in range(count)]
        self.classes = ["a", "b", "c"]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]


def _tiny_protocol(center_crop: bool, resize_backend: str = "pillow") -> FeatureProtocol:
    pooling = {
        "feature1": (4, 4, 1),
        "feature2": (3, 2, 0),
        "feature3": (2, 1, 0),
        "feature4": (1, 1, 0),
        "feature5": (1, 1, 0),
    }
    return FeatureProtocol(
        resize=36,
        resize_backend=resize_backend,
        crop=32,
        center_crop=center_crop,
        layers=tuple(ALL_LAYERS),
        pooling=pooling,
        batch_size=3,
        workers=0,
    )


def _meta_dims(depth: int, size: int, protocol: FeatureProtocol) -> dict[str, int]:
    """Feature widths from a shape-only (meta device) forward pass."""
    with torch.device("meta"):
        model = ResNetBackbone(depth=depth).eval()
        maps = model(torch.empty(1, 3, size, size), protocol.stages)
    return {name: value.shape[1] for name, value in pool_stages(maps, protocol.stages, protocol).items()}


def test_reference_pooling_gives_the_protocol_dims() -> None:
    protocol = load_feature_protocol(CONFIG_DIR / "features.yaml", "voc07")
    assert (protocol.resize, protocol.crop, protocol.center_crop) == (256, 224, False)
    dims = _meta_dims(50, protocol.crop, protocol)
    # PROTOCOLS.md, VOC07 SVM pooling table (ResNet-50, 224 px)
    assert dims == {"feature1": 9216, "feature2": 9216, "feature3": 8192, "feature4": 9216, "feature5": 8192}
    imagenet = load_feature_protocol(CONFIG_DIR / "features.yaml", "imagenet")
    assert imagenet.center_crop and imagenet.layers == ("avgpool",)
    # kNN: mmselfsup 1.x knn_imagenet.py mmcls.ResizeEdge (cv2); SVM: 0.x svm_voc07.py Resize (torchvision)
    assert (imagenet.resize_backend, protocol.resize_backend) == ("cv2", "pillow")
    assert _meta_dims(50, imagenet.crop, imagenet) == {"avgpool": 2048}


def test_mini_pooling_gives_half_k_to_2_5k_dims() -> None:
    protocol = load_feature_protocol(CONFIG_DIR / "features_mini.yaml", "voc07")
    dims = _meta_dims(18, protocol.crop, protocol)
    assert set(dims) == {"feature1", "feature2", "feature3", "feature4", "feature5"}
    assert all(500 <= dim <= 2500 for dim in dims.values()), dims


def test_a_dataset_entry_overrides_size_and_pooling(tmp_path: Path) -> None:
    mini_voc = load_feature_protocol(CONFIG_DIR / "features_mini.yaml", "voc07")
    mini_imagenet = load_feature_protocol(CONFIG_DIR / "features_mini.yaml", "imagenet")
    assert (mini_voc.resize, mini_voc.crop, mini_imagenet.resize, mini_imagenet.crop) == (73, 64, 37, 32)
    # the mini ImageNet shrinks 2.6x, where only PIL's resize is antialiased (features_mini.yaml)
    assert mini_imagenet.resize_backend == "pillow"
    config = tmp_path / "features.yaml"
    config.write_text(
        "resize: 8\ncrop: 8\npooling: {feature1: [2, 2, 0], feature2: [1, 1, 0]}\ndatasets:\n"
        "  a: {center_crop: true, layers: [feature1, feature2]}\n"
        "  b: {center_crop: false, layers: [feature1], resize: 20, crop: 16, pooling: {feature1: [4, 3, 1]}}\n"
        "  c: {center_crop: false, layers: [feature2], pooling: {feature1: [4, 3, 1]}}\n"
    )
    a, b = load_feature_protocol(config, "a"), load_feature_protocol(config, "b")
    assert (a.resize, a.crop, a.pooling) == (8, 8, {"feature1": (2, 2, 0), "feature2": (1, 1, 0)})
    assert (b.resize, b.crop, b.pooling) == (20, 16, {"feature1": (4, 3, 1)})
    with pytest.raises(
        SslzooError, match="features.yaml: datasets.c.pooling.feature2: missing; datasets.c.layers needs"
    ):
        load_feature_protocol(config, "c")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "features.yaml"
    bad.write_text(
        "resize: 8\ncrop: 8\npooling: {feature1: [2, 2]}\ndatasets:\n  voc07: {center_crop: false, layers: [feature1]}\n"
    )
    with pytest.raises(SslzooError, match=r"features.yaml: pooling.feature1: \[2, 2\] is too short"):
        load_feature_protocol(bad, "voc07")
    bad.write_text("resize: 8\ncrop: 8\ndatasets:\n  voc07: {center_crop: false, layers: [feature1]}\n")
    with pytest.raises(
        SslzooError, match="features.yaml: pooling.feature1: missing; datasets.voc07.layers needs"
    ):
        load_feature_protocol(bad, "voc07")
    with pytest.raises(
        SslzooError, match="features.yaml: datasets.places205: no entry for dataset 'places205'"
    ):
        load_feature_protocol(bad, "places205")


@pytest.mark.parametrize(
    ("center_crop", "resize_backend"), [(True, "pillow"), (False, "pillow"), (True, "cv2")]
)
def test_features_equal_direct_forward_and_pooling(
    tmp_path: Path, center_crop: bool, resize_backend: str
) -> None:
    random_backbone(18, 3, tmp_path / "backbone.pth")
    model = load_backbone_model(tmp_path / "backbone.pth")
    protocol = _tiny_protocol(center_crop, resize_backend)
    images = StandInImages(build_transform(protocol))
    features = compute_features(model, images, protocol, progress=False)
    assert features is not None
    assert all(array.dtype == np.float32 and array.shape[0] == len(images) for array in features.values())

    reference = model.eval()
    for index, pil in enumerate(images.images):
        width, height = pil.size
        # shorter side to `resize`, longer side scaled alike and truncated (torchvision's rule)
        if width <= height:
            size = (protocol.resize, int(protocol.resize * height / width))
        else:
            size = (int(protocol.resize * width / height), protocol.resize)
        if resize_backend == "cv2":
            cv2 = pytest.importorskip(
                "cv2", reason="OpenCV (opencv-contrib-python-headless) is not installed"
            )
            resized = Image.fromarray(cv2.resize(np.asarray(pil), size, interpolation=cv2.INTER_LINEAR))
        else:
            resized = pil.resize(size, Image.BILINEAR)
        if center_crop:
            left = round((resized.width - protocol.crop) / 2)
            top = round((resized.height - protocol.crop) / 2)
            resized = resized.crop((left, top, left + protocol.crop, top + protocol.crop))
        else:
            resized = resized.resize((protocol.crop, protocol.crop), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[
            :, None, None
        ]
        with torch.no_grad():
            stem = reference.relu(reference.bn1(reference.conv1(x[None])))
            maps = [stem]
            y = reference.maxpool(stem)
            for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
                y = layer(y)
                maps.append(y)
        for stage, feature_map in enumerate(maps, start=1):
            kernel, stride, padding = protocol.pooling[f"feature{stage}"]
            expected = torch.nn.AvgPool2d(kernel, stride, padding)(feature_map).reshape(-1).numpy()
            np.testing.assert_allclose(features[f"feature{stage}"][index], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            features["avgpool"][index], maps[4].mean(dim=(2, 3)).reshape(-1).numpy(), rtol=1e-4, atol=1e-5
        )


def test_interleave_shards_restores_dataset_order() -> None:
    rows = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    shards = [{"x": rows[rank::3]} for rank in range(3)]
    np.testing.assert_array_equal(interleave_shards(shards, 7)["x"], rows)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sharded_worker(rank: int, world_size: int, port: int, backbone_path: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank, device=torch.device("cpu"))
    protocol = _tiny_protocol(center_crop=True)
    features = compute_features(
        load_backbone_model(backbone_path), StandInImages(build_transform(protocol)), protocol, ctx
    )
    if rank == 0:
        assert features is not None
        np.savez(Path(out_dir) / "sharded.npz", **features)
    else:
        assert features is None
    dist.destroy_process_group()


def test_two_processes_give_the_single_process_features(tmp_path: Path) -> None:
    random_backbone(18, 4, tmp_path / "backbone.pth")
    protocol = _tiny_protocol(center_crop=True)
    single = compute_features(
        load_backbone_model(tmp_path / "backbone.pth"),
        StandInImages(build_transform(protocol)),
        protocol,
        progress=False,
    )
    # fork: the workers share the imported modules instead of importing torch again (seconds each)
    mp.start_processes(
        _sharded_worker,
        args=(2, _free_port(), str(tmp_path / "backbone.pth"), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    with np.load(tmp_path / "sharded.npz") as sharded:
        assert set(sharded.files) == set(single)
        for name, values in single.items():
            np.testing.assert_allclose(sharded[name], values, rtol=1e-5, atol=1e-6)


def test_extract_features_step_writes_the_contract_npz(tmp_path: Path) -> None:
    import argparse
    import json

    from sslzoo.steps import extract_features as step

    rng = np.random.default_rng(0)
    samples = []
    for index in range(5):
        name = f"n0{index % 2}/img{index}.JPEG"
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(
            tmp_path / "images" / name, format="JPEG"
        )
        samples.append([name, index % 2])
    manifest = {
        "dataset": "imagenet",
        "split": "val",
        "root": str(tmp_path / "images"),
        "classes": ["n00", "n01"],
        "samples": samples,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    random_backbone(18, 0, tmp_path / "backbone.pth")
    parser = argparse.ArgumentParser()
    step.add_arguments(parser)
    out = tmp_path / "features" / "imagenet_val.npz"
    step.main(
        parser.parse_args(
            [
                "--backbone",
                str(tmp_path / "backbone.pth"),
                "--manifest",
                str(tmp_path / "manifest.json"),
                "--config",
                str(CONFIG_DIR / "features_mini.yaml"),
                "--dataset",
                "imagenet",
                "--out",
                str(out),
            ]
        )
    )
    with np.load(out) as written:
        assert set(written.files) == {"avgpool", "labels", "classes"}
        assert written["avgpool"].dtype == np.float32 and written["avgpool"].shape == (5, 512)
        assert written["labels"].dtype == np.int64 and written["labels"].tolist() == [0, 1, 0, 1, 0]
        assert written["classes"].tolist() == ["n00", "n01"]
