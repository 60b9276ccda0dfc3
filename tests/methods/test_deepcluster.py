"""DeepCluster: the epoch's clustering, head and order, the loss, the optimizer groups, training
and exact resume through the trainer, and the configs against the reference's files and README."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.config import load_model_config
from sslzoo.errors import SslzooError
from sslzoo.methods.deepcluster import DeepCluster
from sslzoo.models.clustering import cluster_features, uniform_cluster_order
from sslzoo.models.pseudo_label_classifier import sub_seeds
from sslzoo.runtime.optim import build_optimizer
from sslzoo.tables import load_model_entries
from tests.methods.clustering_helpers import CONFIG_DIR, Killed, log_without_time, run, tiny_config
from tests.methods.config_values import value_at

SOBEL = "deepcluster-sobel_resnet50_8xb64-steplr-200e_in1k"
PLAIN = "deepcluster_resnet50_8xb64-steplr-200e_in1k"
MINI = "deepcluster_resnet18_mini"
TINY_ARGS = {"num_clusters": 4, "pca_dim": 8, "with_sobel": False}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides: object) -> DeepCluster:
    torch.manual_seed(0)
    return DeepCluster.from_config({"backbone": {"depth": 18}, "method_args": {**TINY_ARGS, **overrides}})


def test_before_epoch_clusters_the_extracted_features_redraws_the_head_and_orders_the_epoch() -> None:
    method = tiny()
    features = torch.from_numpy(np.random.default_rng(0).normal(size=(40, 512)).astype(np.float32))
    asked: list[Callable] = []

    def extract(fn: Callable) -> torch.Tensor:
        asked.append(fn)
        return features

    order = method.before_epoch(0, extract, seed=7)
    assert asked == [method.embed]
    kmeans_seed, head_seed, order_seed = sub_seeds(7, 3)
    labels = cluster_features(features.numpy(), 4, 8, kmeans_seed)
    assert method.labels.tolist() == labels.tolist()
    assert order.tolist() == uniform_cluster_order(labels, 4, order_seed).tolist()
    # the head drawn again from the seed: normal std 0.01, bias 0, the same draw for the same seed
    head = method.head.weight.detach().clone()
    assert head.std().item() == pytest.approx(0.01, rel=0.1) and not method.head.bias.any()
    other = tiny()
    other.before_epoch(0, extract, seed=7)
    assert torch.equal(other.head.weight, head)
    other.before_epoch(1, extract, seed=8)
    assert not torch.equal(other.head.weight, head)
    assert tiny(uniform_sampling=False).before_epoch(0, extract, seed=7) is None


def test_loss_is_cross_entropy_against_the_labels_of_the_indices() -> None:
    method = tiny()
    method.resize_buffer("labels", (10,), torch.int64).copy_(torch.tensor([3, 1, 0, 2, 2, 1, 0, 3, 1, 0]))
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    indices = torch.tensor([7, 0, 5, 2])
    out = method(images, indices=indices)
    logits = method.head(method.embed(images)).double()  # train-mode BN: the same batch statistics
    targets = [3, 3, 1, 0]
    expected = (
        sum(
            math.log(sum(math.exp(v) for v in logits[i].tolist())) - logits[i, t].item()
            for i, t in enumerate(targets)
        )
        / 4
    )
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    hits = sum(int(logits[i].argmax()) == t for i, t in enumerate(targets))
    assert out["accuracy"].item() == pytest.approx(100.0 * hits / 4)


def test_forward_before_any_clustering_is_refused() -> None:
    with pytest.raises(SslzooError, match="before_epoch"):
        tiny()(torch.randn(2, 3, 16, 16), indices=torch.tensor([0, 1]))


def test_sobel_variant_feeds_the_gradients_to_a_two_channel_stem() -> None:
    method = tiny(with_sobel=True)
    images = torch.randn(2, 3, 16, 16)
    assert method.backbone.conv1.weight.shape[1] == 2
    expected = method.backbone(method.sobel(images))[0].mean(dim=(2, 3))
    torch.testing.assert_close(method.embed(images), expected)


def test_the_head_has_no_momentum() -> None:
    method = tiny()
    cfg = tiny_config("deepcluster", TINY_ARGS)
    optimizer = build_optimizer(method, cfg)
    head = {id(p) for p in method.head.parameters()}
    momenta = {id(p): group["momentum"] for group in optimizer.param_groups for p in group["params"]}
    assert {momenta[key] for key in head} == {0.0}
    assert {m for key, m in momenta.items() if key not in head} == {0.9}
    assert len(momenta) == len(list(method.parameters()))


class KilledDeepCluster(DeepCluster):
    """Raises :class:`Killed` at its ``kill_at``-th forward; records the epochs it clustered."""

    def __init__(self, kill_at: int | None = None, init_seed: int = 0) -> None:
        torch.manual_seed(init_seed)
        super().__init__(depth=18, num_clusters=4, pca_dim=8, with_sobel=True, cluster_interval=2)
        self.kill_at, self.forwards, self.clustered = kill_at, 0, []

    def before_epoch(self, epoch: int, extract: Callable, seed: int) -> torch.Tensor | None:
        def recorded(fn: Callable) -> torch.Tensor:
            self.clustered.append(epoch)
            return extract(fn)

        return super().before_epoch(epoch, recorded, seed)

    def forward(self, images: torch.Tensor, *, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        self.forwards += 1
        if self.forwards == self.kill_at:
            raise Killed
        return super().forward(images, indices=indices)


def test_killed_and_resumed_training_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    # 3 epochs of 3 iterations, clustering at the starts of epochs 1 and 3
    cfg = tiny_config("deepcluster", {**TINY_ARGS, "with_sobel": True, "cluster_interval": 2}, epochs=3)
    reference = KilledDeepCluster()
    run(reference, cfg, tmp_path / "a", tmp_path / "a.pth")
    assert reference.clustered == [0, 2]
    with pytest.raises(Killed):
        run(KilledDeepCluster(kill_at=3 + 2), cfg, tmp_path / "b", tmp_path / "b.pth")  # mid epoch 2
    # resumed at epoch 2: the labels of epoch 1's clustering come from the resume state
    second = KilledDeepCluster(kill_at=3 + 2, init_seed=9)  # other weights: the resume state must win
    with pytest.raises(Killed):
        run(second, cfg, tmp_path / "b", tmp_path / "b.pth")  # mid epoch 3
    assert second.clustered == [2]
    # resumed at epoch 3: it clusters again, from the restored weights
    third = KilledDeepCluster(init_seed=9)
    assert run(third, cfg, tmp_path / "b", tmp_path / "b.pth")["resumed_from_epoch"] == 2
    assert third.clustered == [2]
    a = torch.load(tmp_path / "a.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and a["labels"].shape == (24,)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert log_without_time(tmp_path / "b") == log_without_time(tmp_path / "a")


# mmselfsup 0.x configs/selfsup/deepcluster/deepcluster-sobel_resnet50_8xb64-steplr-200e_in1k.py
# and its bases (_base_/models/deepcluster.py, _base_/datasets/imagenet_deepcluster.py,
# _base_/schedules/sgd_steplr-200e_in1k.py), with the value's place
REFERENCE = {
    "gpus": 8,  # 8xb64
    "backbone.depth": 50,  # models/deepcluster.py depth=50
    "backbone.sync_bn": False,  # norm_cfg=dict(type='BN')
    "views.image_size": 224,  # RandomResizedCrop(size=224)
    "views.scale": [0.08, 1.0],  # torchvision's default
    "views.flip_p": 0.5,  # RandomHorizontalFlip()
    "views.rotation": 2.0,  # RandomRotation(degrees=2)
    "views.color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 1.0, "hue": 0.5},
    "views.grayscale_p": 0.2,  # RandomGrayscale(p=0.2)
    "views.extract_resize": 256,  # extract_pipeline Resize(size=256)
    "views.extract_crop": 224,  # extract_pipeline CenterCrop(size=224)
    "views.extract_grey": False,
    "train.epochs": 200,  # max_epochs=200
    "train.batch_size": 64,  # samples_per_gpu=64
    "train.workers": 4,  # workers_per_gpu=4
    "train.optimizer.name": "sgd",
    "train.optimizer.lr": 0.1,  # lr=0.1
    "train.optimizer.momentum": 0.9,
    "train.optimizer.weight_decay": 1e-5,
    "train.schedule.name": "step",
    "train.schedule.steps": [400],  # lr_config step=[400]
    "train.schedule.warmup_epochs": 0,
    "method_args.num_clusters": 10000,  # num_classes = 10000
    "method_args.pca_dim": 256,  # Kmeans pca_dim=256
    "method_args.with_sobel": True,  # with_sobel=True, backbone in_channels=2
    "method_args.uniform_sampling": True,  # unif_sampling=True
    "method_args.cluster_interval": 1,  # DeepClusterHook interval=1
    "method_args.head_momentum": 0.0,  # paramwise_options '\\Ahead.': momentum=0.
}



@pytest.mark.parametrize(("key", "expected"), REFERENCE.items(), ids=list(REFERENCE))
def test_the_sobel_config_is_the_reference_file(key: str, expected: object) -> None:
    assert value_at(load_model_config(CONFIG_DIR / f"{SOBEL}.yaml"), key) == expected


def test_the_plain_config_differs_from_the_sobel_one_in_the_sobel_layer_and_the_numbers() -> None:
    plain = load_model_config(CONFIG_DIR / f"{PLAIN}.yaml")
    sobel = load_model_config(CONFIG_DIR / f"{SOBEL}.yaml")
    assert plain["method_args"] == {**sobel["method_args"], "with_sobel": False}
    same = {key: value for key, value in sobel.items() if key not in ("method_args", "reported")}
    assert {key: value for key, value in plain.items() if key not in ("method_args", "reported")} == same
    assert plain["reported"] == {}


# mmselfsup 0.x configs/selfsup/deepcluster/README.md, the sobel_resnet50_8xb64-steplr-200e row
README = {
    "svm_voc07": {"Best Layer": "feature5", "SVM": 74.26},
    "lowshot_voc07": {
        "Best Layer": "feature5",
        "k=1": 29.37,
        "k=2": 37.99,
        "k=4": 45.85,
        "k=8": 55.57,
        "k=16": 62.48,
        "k=32": 66.15,
        "k=64": 70.00,
        "k=96": 71.37,
    },
    "linear_imagenet": {
        "Feature1": 12.78,
        "Feature2": 30.81,
        "Feature3": 43.88,
        "Feature4": 57.71,
        "Feature5": 51.68,
        "AvgPool": 46.92,
    },
    "linear_places205": {
        "Feature1": 18.80,
        "Feature2": 33.93,
        "Feature3": 41.44,
        "Feature4": 47.22,
        "Feature5": 42.61,
    },
}


@pytest.mark.parametrize(
    ("benchmark", "column"), [(b, c) for b, row in README.items() for c in row], ids=lambda x: str(x)
)
def test_the_reported_numbers_are_the_readme_row(benchmark: str, column: str) -> None:
    (entry,) = load_model_entries(CONFIG_DIR / f"{SOBEL}.yaml")
    assert entry.reported[benchmark][column] == README[benchmark][column]


def test_no_number_beyond_the_readme_row() -> None:
    (entry,) = load_model_entries(CONFIG_DIR / f"{SOBEL}.yaml")
    assert {b: set(row) for b, row in entry.reported.items()} == {b: set(row) for b, row in README.items()}


@pytest.mark.parametrize("name", [SOBEL, PLAIN, MINI])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["method"] == "deepcluster"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    size = cfg["views"]["image_size"]
    assert DeepCluster.views(cfg)(image).shape == (3, size, size)
    crop = cfg["views"]["extract_crop"]
    assert DeepCluster.extract_views(cfg)(image).shape == (3, crop, crop)
    if cfg["backbone"]["depth"] == 18:
        model = DeepCluster.from_config(cfg)
        assert model.head.out_features == cfg["method_args"]["num_clusters"]
