"""ODC: the first epoch's memory, the weighted loss and memory update of a forward, the hook
intervals, training and exact resume through the trainer, and the configs against the
reference's file and README."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.config import load_model_config
from sslzoo.methods.odc import ODC
from sslzoo.models.clustering import cluster_features, inverse_size_weights
from sslzoo.models.pseudo_label_classifier import sub_seeds
from sslzoo.tables import load_model_entries
from tests.methods.clustering_helpers import CONFIG_DIR, Killed, log_without_time, run, tiny_config
from tests.methods.config_values import value_at

FULL = "odc_resnet50_8xb64-steplr-440e_in1k"
MINI = "odc_resnet18_mini"
TINY_ARGS = {"num_clusters": 4, "min_cluster": 2, "neck": {"hidden": 16, "out": 8}}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides: object) -> ODC:
    torch.manual_seed(0)
    return ODC.from_config({"backbone": {"depth": 18}, "method_args": {**TINY_ARGS, **overrides}})


def features_of(size: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(size=(size, 8)).astype(np.float32))


def test_the_first_epoch_fills_the_memory_and_later_ones_only_draw_indices() -> None:
    method = tiny()
    features = features_of(40)
    asked: list[Callable] = []

    def extract(fn: Callable) -> torch.Tensor:
        asked.append(fn)
        return features

    order = method.before_epoch(0, extract, seed=5)
    kmeans_seed, _, order_seed = sub_seeds(5, 3)
    labels = cluster_features(features.numpy(), 4, -1, kmeans_seed)
    assert asked == [method.embed]
    assert method.memory.label_bank.tolist() == labels.tolist()
    torch.testing.assert_close(method.memory.feature_bank, features / features.norm(dim=1, keepdim=True))
    torch.testing.assert_close(method.loss_weight, inverse_size_weights(torch.from_numpy(labels), 4, 0.5))
    # N indices drawn with replacement from the epoch's seed
    expected = torch.randint(40, (40,), generator=torch.Generator().manual_seed(order_seed))
    assert order.tolist() == expected.tolist() and len(set(order.tolist())) < 40
    bank = method.memory.feature_bank.clone()
    method.before_epoch(1, extract, seed=6)
    assert asked == [method.embed] and torch.equal(method.memory.feature_bank, bank)
    assert tiny(sample_with_replacement=False).before_epoch(0, extract, seed=5) is None


def test_forward_weights_the_loss_by_cluster_size_then_updates_the_memory() -> None:
    method = tiny()
    method.before_epoch(0, lambda fn: features_of(10), seed=1)
    method.loss_weight.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    indices = torch.tensor([7, 0, 5, 2])
    targets = method.memory.label_bank[indices].tolist()
    old_bank = method.memory.feature_bank.clone()
    method.eval()  # no dropout: the forward below sees the same features
    logits = method.head(method.embed(images)).double()
    features = method.embed(images)
    out = method(images, indices=indices)
    weights = [0.1, 0.2, 0.3, 0.4]
    nll = [
        math.log(sum(math.exp(v) for v in logits[i].tolist())) - logits[i, t].item()
        for i, t in enumerate(targets)
    ]
    expected = sum(weights[t] * n for t, n in zip(targets, nll, strict=True)) / sum(
        weights[t] for t in targets
    )
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    # each sample's memory feature moved halfway towards its normalised feature, renormalised
    moved = 0.5 * old_bank[indices] + 0.5 * features / features.norm(dim=1, keepdim=True)
    moved = moved / moved.norm(dim=1, keepdim=True)
    torch.testing.assert_close(method.memory.feature_bank[indices], moved)
    relabelled = (method.memory.centroids @ moved.T).argmax(dim=0)
    assert method.memory.label_bank[indices].tolist() == relabelled.tolist()
    changed = sum(a != b for a, b in zip(relabelled.tolist(), targets, strict=True)) / 4
    assert out["change_ratio"].item() == pytest.approx(changed)


def test_after_step_updates_centroids_small_clusters_and_weights_at_their_intervals(monkeypatch) -> None:
    method = tiny(centroids_update_interval=3, small_clusters_interval=2)
    method.before_epoch(0, lambda fn: features_of(12), seed=1)
    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(
        method.memory, "update_centroids_memory", lambda: calls.append((int(method.iteration), "c"))
    )
    monkeypatch.setattr(
        method.memory, "deal_with_small_clusters", lambda: calls.append((int(method.iteration), "s"))
    )
    for _ in range(6):
        method.memory.label_bank[0] = (method.memory.label_bank[0] + 1) % 4  # weights follow the labels
        method.after_step(0.0)
        torch.testing.assert_close(method.loss_weight, inverse_size_weights(method.memory.label_bank, 4, 0.5))
    assert calls == [(2, "s"), (3, "c"), (4, "s"), (6, "c"), (6, "s")]
    assert int(method.iteration) == 6


class KilledODC(ODC):
    """Raises :class:`Killed` at its ``kill_at``-th forward."""

    def __init__(self, kill_at: int | None = None, init_seed: int = 0) -> None:
        torch.manual_seed(init_seed)
        super().__init__(depth=18, num_clusters=4, min_cluster=2, neck={"hidden": 16, "out": 8})
        self.kill_at, self.forwards = kill_at, 0

    def forward(self, images: torch.Tensor, *, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        self.forwards += 1
        if self.forwards == self.kill_at:
            raise Killed
        return super().forward(images, indices=indices)


def test_killed_and_resumed_training_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    cfg = tiny_config("odc", TINY_ARGS)
    run(KilledODC(), cfg, tmp_path / "a", tmp_path / "a.pth")
    with pytest.raises(Killed):
        run(KilledODC(kill_at=3 + 2), cfg, tmp_path / "b", tmp_path / "b.pth")  # mid epoch 2
    assert run(KilledODC(init_seed=9), cfg, tmp_path / "b", tmp_path / "b.pth")["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "a.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert a["memory.feature_bank"].shape == (24, 8) and int(a["iteration"]) == 6
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert log_without_time(tmp_path / "b") == log_without_time(tmp_path / "a")


# mmselfsup 0.x configs/selfsup/odc/odc_resnet50_8xb64-steplr-440e_in1k.py and its bases
# (_base_/models/odc.py, _base_/datasets/imagenet_odc.py, _base_/schedules/sgd_steplr-200e_in1k.py)
REFERENCE = {
    "gpus": 8,  # 8xb64
    "backbone.depth": 50,  # models/odc.py depth=50
    "backbone.sync_bn": True,  # norm_cfg=dict(type='SyncBN')
    "views.image_size": 224,  # RandomResizedCrop(size=224)
    "views.scale": [0.08, 1.0],  # torchvision's default
    "views.flip_p": 0.5,  # RandomHorizontalFlip()
    "views.rotation": 2.0,  # RandomRotation(degrees=2)
    "views.color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 1.0, "hue": 0.5},
    "views.grayscale_p": 0.2,  # RandomGrayscale(p=0.2)
    "views.extract_resize": 256,  # extract_pipeline Resize(size=256)
    "views.extract_crop": 224,  # extract_pipeline CenterCrop(size=224)
    "views.extract_grey": False,
    "train.epochs": 440,  # max_epochs=440
    "train.batch_size": 64,  # samples_per_gpu=64
    "train.workers": 4,  # workers_per_gpu=4
    "train.optimizer.name": "sgd",
    "train.optimizer.lr": 0.06,  # lr=0.06
    "train.optimizer.momentum": 0.9,
    "train.optimizer.weight_decay": 1e-5,
    "train.schedule.name": "step",
    "train.schedule.steps": [400],  # lr_config step=[400]
    "train.schedule.gamma": 0.4,  # gamma=0.4
    "train.schedule.warmup_epochs": 0,
    "method_args.num_clusters": 10000,  # num_classes = 10000
    "method_args.pca_dim": -1,  # Kmeans pca_dim=-1
    "method_args.with_sobel": False,  # with_sobel=False
    "method_args.neck": {"hidden": 512, "out": 256, "bn_momentum": 0.001, "dropout": 0.5},  # ODCNeck
    "method_args.memory_momentum": 0.5,  # memory_bank momentum=0.5
    "method_args.min_cluster": 20,  # memory_bank min_cluster=20
    "method_args.centroids_update_interval": 10,  # ODCHook centroids_update_interval=10
    "method_args.small_clusters_interval": 1,  # deal_with_small_clusters_interval=1
    "method_args.reweight_power": 0.5,  # reweight_pow=0.5
    "method_args.sample_with_replacement": True,  # data replace=True
    "method_args.head_momentum": 0.0,  # paramwise_options '\\Ahead.': momentum=0.
}



@pytest.mark.parametrize(("key", "expected"), REFERENCE.items(), ids=list(REFERENCE))
def test_the_config_is_the_reference_file(key: str, expected: object) -> None:
    assert value_at(load_model_config(CONFIG_DIR / f"{FULL}.yaml"), key) == expected


# mmselfsup 0.x configs/selfsup/odc/README.md, the resnet50_8xb64-steplr-440e row
README = {
    "svm_voc07": {"Best Layer": "feature5", "SVM": 78.42},
    "lowshot_voc07": {
        "Best Layer": "feature5",
        "k=1": 32.42,
        "k=2": 40.27,
        "k=4": 49.95,
        "k=8": 59.96,
        "k=16": 65.71,
        "k=32": 69.99,
        "k=64": 73.64,
        "k=96": 75.13,
    },
    "linear_imagenet": {
        "Feature1": 14.76,
        "Feature2": 31.82,
        "Feature3": 42.44,
        "Feature4": 55.76,
        "Feature5": 57.70,
        "AvgPool": 53.42,
    },
    "linear_places205": {
        "Feature1": 19.28,
        "Feature2": 34.09,
        "Feature3": 40.90,
        "Feature4": 47.04,
        "Feature5": 48.35,
    },
    "knn_imagenet": {"k=10": 38.5, "k=20": 39.1, "k=100": 37.8, "k=200": 36.9},
}


@pytest.mark.parametrize(
    ("benchmark", "column"), [(b, c) for b, row in README.items() for c in row], ids=lambda x: str(x)
)
def test_the_reported_numbers_are_the_readme_row(benchmark: str, column: str) -> None:
    (entry,) = load_model_entries(CONFIG_DIR / f"{FULL}.yaml")
    assert entry.reported[benchmark][column] == README[benchmark][column]


def test_no_number_beyond_the_readme_row() -> None:
    (entry,) = load_model_entries(CONFIG_DIR / f"{FULL}.yaml")
    assert {b: set(row) for b, row in entry.reported.items()} == {b: set(row) for b, row in README.items()}


@pytest.mark.parametrize("name", [FULL, MINI])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["method"] == "odc"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    size = cfg["views"]["image_size"]
    assert ODC.views(cfg)(image).shape == (3, size, size)
    crop = cfg["views"]["extract_crop"]
    assert ODC.extract_views(cfg)(image).shape == (3, crop, crop)
    if cfg["backbone"]["depth"] == 18:
        model = ODC.from_config(cfg)
        assert model.head.out_features == model.memory.num_classes == cfg["method_args"]["num_clusters"]
