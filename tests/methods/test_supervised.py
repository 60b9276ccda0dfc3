"""The supervised baseline: cross-entropy of the fc head on the pooled backbone features, the
labels reaching it through the trainer, the configs against mmcls's resnet50_8xb32_in1k."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from sslzoo.config import load_model_config
from sslzoo.engine.trainer import train
from sslzoo.errors import SslzooError
from sslzoo.methods import METHODS
from sslzoo.methods.supervised import Supervised
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.tables import load_model_entry
from tests.methods.config_values import value_at

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
FULL_100E = "supervised_resnet50_8xb32-steplr-100e_in1k"
FULL_270E = "supervised_resnet50_8xb32-steplr-270e_in1k"
MINI = "supervised_resnet18_mini"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loss_is_the_cross_entropy_of_the_head_on_the_pooled_features() -> None:
    torch.manual_seed(0)
    model = Supervised(depth=18, num_classes=5)
    images, labels = torch.randn(6, 3, 16, 16), torch.tensor([0, 4, 2, 2, 1, 3])
    out = model(images, labels=labels)
    with torch.no_grad():  # train-mode BN: the same inputs give the same outputs
        pooled = F.adaptive_avg_pool2d(model.backbone(images)[0], 1).flatten(1)
        logits = pooled @ model.fc.weight.T + model.fc.bias
    assert pooled.shape == (6, 512)
    assert out["loss"].item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    right = (logits.argmax(dim=1) == labels).sum().item()
    assert out["accuracy"].item() == pytest.approx(100.0 * right / 6)


def test_head_starts_normal_std_001_with_zero_bias() -> None:
    torch.manual_seed(4)
    model = Supervised(depth=18, num_classes=7)
    torch.manual_seed(4)  # the same draws in the same order: backbone, then the head
    ResNetBackbone(18)
    weight = nn.Linear(512, 7).weight.detach()
    torch.nn.init.normal_(weight, std=0.01)
    assert torch.equal(model.fc.weight.detach(), weight)
    assert torch.equal(model.fc.bias.detach(), torch.zeros(7))


@pytest.mark.parametrize("labels", [[0, 5], [-1, 2]])
def test_labels_outside_the_classes_are_refused(labels: list[int]) -> None:
    torch.manual_seed(0)
    model = Supervised(depth=18, num_classes=5)
    with pytest.raises(SslzooError, match="method_args.num_classes"):
        model(torch.randn(2, 3, 16, 16), labels=torch.tensor(labels))


class ImagesOfTheirLabel(Dataset):
    """``(image filled with the label, label)``, labels ``i % 3``."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((3, 16, 16), float(index % 3)), index % 3


class RecordsLabels(Supervised):
    """Checks that each image came with its own label."""

    mismatches: list[tuple[float, int]] = []

    def forward(self, images: torch.Tensor, *, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        for image, label in zip(images, labels.tolist(), strict=True):
            if image[0, 0, 0].item() != label:
                RecordsLabels.mismatches.append((image[0, 0, 0].item(), label))
        return super().forward(images, labels=labels)


def test_trains_on_the_labels_through_the_trainer(tmp_path: Path) -> None:
    cfg = {
        "method": "supervised",
        "gpus": 1,
        "backbone": {"depth": 18},
        "method_args": {"num_classes": 3},
        "train": {
            "epochs": 1,
            "batch_size": 3,
            "accumulate": 1,
            "workers": 0,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"name": "step", "steps": [1], "gamma": 0.1},
        },
    }
    torch.manual_seed(0)
    model = RecordsLabels.from_config(cfg)
    assert model.batch_fields == ("labels",)
    before = model.fc.weight.detach().clone()
    result = train(model, ImagesOfTheirLabel(), cfg, tmp_path / "work", tmp_path / "final.pth")
    assert result["iterations"] == 2 and RecordsLabels.mismatches == []
    assert not torch.equal(model.fc.weight.detach(), before)
    saved = torch.load(tmp_path / "final.pth", weights_only=True)["state_dict"]
    assert {key.split(".")[0] for key in saved} == {"backbone", "fc"}


def square_image(size: int = 96) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", [FULL_100E, FULL_270E, MINI])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert METHODS[cfg["method"]] is Supervised
    assert load_model_entry(CONFIG_DIR / f"{name}.yaml").reported == {}  # see the config headers
    size = cfg["views"]["image_size"]
    assert Supervised.views(cfg)(square_image()).shape == (3, size, size)
    if name == MINI:
        assert Supervised.from_config(cfg).fc.out_features == 10  # the mini ImageNet's classes


# mmcls 0.x (tag v0.25.0) configs/resnet/resnet50_8xb32_in1k.py and its _base_ files, each value
# with its line (LN): M = _base_/models/resnet50.py, D = _base_/datasets/imagenet_bs32.py,
# S = _base_/schedules/imagenet_bs256.py, R = mmcls/models/backbones/resnet.py; the 8 of 8xb32
# from the config name.
REFERENCE_100E = {
    "gpus": 8,
    "backbone.depth": 50,  # M L6 depth=50
    "backbone.sync_bn": False,  # M: no norm_cfg, the ResNet's default BN
    "backbone.zero_init_residual": True,  # R L480 zero_init_residual=True
    "backbone.conv_init": "fan_out",  # R L481-482 init_cfg Kaiming (mmcv's default mode fan_out)
    "method_args.num_classes": 1000,  # M L13 num_classes=1000
    "views.image_size": 224,  # D L7 RandomResizedCrop(size=224)
    "views.scale": [0.08, 1.0],  # D L7 the transform's default scale=(0.08, 1.0)
    "views.flip_p": 0.5,  # D L8 RandomFlip(flip_prob=0.5, direction='horizontal')
    "views.grayscale_p": 0.0,  # D: no colour augmentation
    "views.color_jitter_p": 0.0,
    "train.batch_size": 32,  # D L23 samples_per_gpu=32
    "train.workers": 2,  # D L24 workers_per_gpu=2
    "train.optimizer.name": "sgd",  # S L2 type='SGD'
    "train.optimizer.lr": 0.1,  # S L2 lr=0.1
    "train.optimizer.momentum": 0.9,  # S L2 momentum=0.9
    "train.optimizer.weight_decay": 1e-4,  # S L2 weight_decay=0.0001
    "train.schedule.name": "step",  # S L5 policy='step'
    "train.schedule.steps": [30, 60, 90],  # S L5 step=[30, 60, 90]
    "train.schedule.gamma": 0.1,  # mmcv StepLrUpdaterHook's default gamma
    "train.schedule.warmup_epochs": 0,  # S L5: no warmup
    "train.epochs": 100,  # S L6 max_epochs=100
}



@pytest.mark.parametrize(("key", "expected"), REFERENCE_100E.items(), ids=list(REFERENCE_100E))
def test_the_100_epoch_config_is_the_mmcls_recipe(key: str, expected: object) -> None:
    assert value_at(load_model_config(CONFIG_DIR / f"{FULL_100E}.yaml"), key) == expected


def test_the_270_epoch_config_stretches_the_recipe_with_steps_at_the_same_fractions() -> None:
    long = load_model_config(CONFIG_DIR / f"{FULL_270E}.yaml")
    short = load_model_config(CONFIG_DIR / f"{FULL_100E}.yaml")
    assert long["train"]["epochs"] == 270
    fractions = [step / short["train"]["epochs"] for step in short["train"]["schedule"]["steps"]]
    assert long["train"]["schedule"]["steps"] == [round(f * 270) for f in fractions]
    # everything else is the 100-epoch recipe
    for cfg in (long, short):
        del cfg["train"]["epochs"], cfg["train"]["schedule"]["steps"]
    assert long == short


def test_bad_config_keys_are_refused() -> None:
    with pytest.raises(SslzooError, match="method_args"):
        Supervised.from_config({"backbone": {"depth": 18}, "method_args": {"classes": 3}})
    with pytest.raises(SslzooError, match="num_classes"):
        Supervised.from_config({"backbone": {"depth": 18}, "method_args": {"num_classes": 1}})
