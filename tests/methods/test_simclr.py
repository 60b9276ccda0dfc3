"""SimCLR: the loss of the two views, the neck and its LARS exclusions, training through the
trainer, the configs against the reference's pretraining config and README."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from sslzoo.config import load_model_config
from sslzoo.engine.trainer import train
from sslzoo.errors import SslzooError
from sslzoo.methods.simclr import SimCLR
from sslzoo.models.contrastive import nt_xent
from sslzoo.runtime.optim import lars_excluded_parameters
from sslzoo.tables import load_model_entry
from tests.engine.test_trainer import make_cfg, read_log
from tests.methods.config_values import value_at

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
SMALL_NECK = {"hidden": 16, "out": 8}
FULL = "simclr_resnet50_8xb32-coslr-200e_in1k"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_simclr(**kwargs: object) -> SimCLR:
    torch.manual_seed(0)
    return SimCLR(depth=18, neck=SMALL_NECK, **kwargs)  # type: ignore[arg-type]


def test_loss_is_nt_xent_of_both_views_through_one_backbone_batch() -> None:
    model = tiny_simclr(temperature=0.1)
    view1, view2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    out = model((view1, view2))
    with torch.no_grad():  # train-mode BN: statistics of the 8 images together
        pooled = model.backbone(torch.cat([view1, view2]))[0].mean(dim=(2, 3))
        z = model.neck(pooled)
    assert out["loss"].item() == pytest.approx(nt_xent(z[:4], z[4:], 0.1).item(), rel=1e-5)
    # the views separately would normalise each with its own statistics: another loss
    with torch.no_grad():
        apart = nt_xent(model.project(view1), model.project(view2), 0.1)
    assert out["loss"].item() != pytest.approx(apart.item(), rel=1e-3)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_neck_is_fc_bn_relu_fc_bn_without_biases() -> None:
    neck = SimCLR.from_config({"backbone": {"depth": 18}}).neck
    assert [type(layer) for layer in neck] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert (neck[0].in_features, neck[0].out_features, neck[3].out_features) == (512, 2048, 128)
    assert neck[0].bias is None and neck[3].bias is None  # with_bias=False, with_last_bias=False


def test_lars_excludes_the_neck_bns_and_the_backbone_bns_but_not_the_shortcut_weights() -> None:
    model = tiny_simclr()
    excluded = lars_excluded_parameters(model)
    names = {name for name, p in model.named_parameters() if id(p) in excluded}
    assert {"neck.1.weight", "neck.1.bias", "neck.4.weight", "neck.4.bias"} <= names  # bn0, bn1
    assert "neck.0.weight" not in names and "neck.3.weight" not in names  # fc0, fc1
    assert "backbone.bn1.weight" in names and "backbone.layer1.0.bn2.bias" in names
    assert "backbone.layer2.0.downsample.1.weight" not in names  # the reference's pattern misses it
    assert "backbone.layer2.0.downsample.1.bias" in names


class TwoNoisyViews(Dataset):
    """``((image_i + noise, image_i + noise), i)``: 16 px images, the noise standing in for augmentation."""

    def __init__(self, size: int = 8) -> None:
        self.images = torch.randn(size, 3, 16, 16, generator=torch.Generator().manual_seed(5))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        image = self.images[index]
        return (image + 0.1 * torch.randn_like(image), image + 0.1 * torch.randn_like(image)), index


def test_trains_through_the_trainer(tmp_path: Path) -> None:
    model = tiny_simclr()
    before = model.backbone.conv1.weight.detach().clone()
    cfg = make_cfg(batch_size=4, epochs=1)
    cfg["train"]["optimizer"]["lr"] = 0.01
    train(model, TwoNoisyViews(), cfg, tmp_path / "work", seed=0)
    log = read_log(tmp_path / "work")
    assert [r["iter"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
    assert not torch.equal(model.backbone.conv1.weight, before)


def test_bad_method_args_are_refused() -> None:
    with pytest.raises(SslzooError, match="method_args.neck"):
        SimCLR.from_config({"backbone": {"depth": 18}, "method_args": {"neck": {"width": 3}}})
    with pytest.raises(SslzooError, match="method_args.temperature"):
        SimCLR.from_config({"backbone": {"depth": 18}, "method_args": {"temperature": 0.0}})


@pytest.mark.parametrize("name", [FULL, "simclr_resnet18_mini"])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    entry = load_model_entry(CONFIG_DIR / f"{name}.yaml")  # reported numbers use the table columns
    assert entry.method == cfg["method"] == "simclr"
    rng = np.random.default_rng(0)
    view1, view2 = SimCLR.views(cfg)(Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)))
    size = cfg["views"]["image_size"]
    assert view1.shape == view2.shape == (3, size, size)
    if cfg["backbone"]["depth"] == 18:
        model = SimCLR.from_config(cfg)
        out = model((view1.unsqueeze(0).repeat(2, 1, 1, 1), view2.unsqueeze(0).repeat(2, 1, 1, 1)))
        assert torch.isfinite(out["loss"])


# mmselfsup 0.x (tag v0.11.0) configs/selfsup/simclr/simclr_resnet50_8xb32-coslr-200e_in1k.py and
# its _base_ files: models/simclr.py (M), datasets/imagenet_simclr.py (D),
# schedules/lars_coslr-200e_in1k.py (S); the config itself (C) replaces S's optimizer.
REFERENCE = {
    "gpus": 8,  # the 8 of 8xb32
    "backbone.depth": 50,  # M depth=50
    "backbone.sync_bn": True,  # M norm_cfg=dict(type='SyncBN')
    "backbone.zero_init_residual": True,  # M zero_init_residual=True
    "method_args.neck.hidden": 2048,  # M hid_channels=2048
    "method_args.neck.out": 128,  # M out_channels=128
    "method_args.temperature": 0.1,  # M ContrastiveHead temperature=0.1
    "views.image_size": 224,  # D RandomResizedCrop size=224
    "views.scale": [0.08, 1.0],  # D no scale: torchvision's default
    "views.interpolation": "bilinear",  # D no interpolation: torchvision's default
    "views.steps": ["crop", "flip", "jitter", "grayscale", "blur"],  # D train_pipeline order
    "views.flip_p": 0.5,  # D RandomHorizontalFlip()
    "views.color_jitter": {
        "brightness": 0.8,
        "contrast": 0.8,
        "saturation": 0.8,
        "hue": 0.2,
    },  # D ColorJitter
    "views.color_jitter_p": 0.8,  # D RandomAppliedTrans p=0.8
    "views.grayscale_p": 0.2,  # D RandomGrayscale p=0.2
    "views.blur_sigma": [0.1, 2.0],  # D GaussianBlur sigma_min=0.1, sigma_max=2.0
    "views.blur_p": 0.5,  # D GaussianBlur p=0.5
    "train.batch_size": 32,  # D samples_per_gpu=32
    "train.workers": 4,  # D workers_per_gpu=4
    "train.accumulate": 1,  # no update_interval
    "train.epochs": 200,  # S max_epochs=200
    "train.optimizer.name": "lars",  # C type='LARS'
    "train.optimizer.lr": 0.3,  # C lr=0.3
    "train.optimizer.momentum": 0.9,  # C momentum=0.9
    "train.optimizer.weight_decay": 1e-6,  # C weight_decay=1e-6
    "train.optimizer.eta": 0.001,  # mmselfsup LARS eta default
    "train.optimizer.exclude_bn_bias": True,  # C paramwise_options: bn/gn and bias excluded
    "train.schedule.name": "cosine",  # C policy='CosineAnnealing'
    "train.schedule.min_lr": 0.0,  # C min_lr=0.
    "train.schedule.warmup_epochs": 10,  # C warmup_iters=10, warmup_by_epoch=True
    "train.schedule.warmup_ratio": 1e-4,  # C warmup_ratio=1e-4
    "train.schedule.by_epoch": True,  # not set: mmcv's LrUpdaterHook default
    "train.amp": False,  # no fp16 in the config
}
# mmselfsup 0.x configs/selfsup/simclr/README.md, the resnet50_8xb32-coslr-200e rows
README = {
    "svm_voc07.Best Layer": "feature5",
    "svm_voc07.SVM": 79.98,
    "lowshot_voc07.Best Layer": "feature5",
    **{f"lowshot_voc07.k={k}": v for k, v in zip((1, 2, 4, 8, 16, 32, 64, 96), (35.02, 42.79, 54.87, 61.91, 67.38, 71.88, 75.56, 77.4), strict=True)},
    **{f"linear_imagenet.Feature{i}": v for i, v in enumerate((16.29, 31.11, 39.99, 55.06, 62.91), start=1)},
    "linear_avgpool_lars_imagenet.AvgPool": 62.56,  # resnet50_linear-8xb512-coslr-90e_in1k
    **{f"linear_places205.Feature{i}": v for i, v in enumerate((20.60, 33.62, 38.86, 45.25, 50.91), start=1)},
    **{f"knn_imagenet.k={k}": v for k, v in zip((10, 20, 100, 200), (47.8, 48.4, 46.7, 45.2), strict=True)},
    "det_voc0712.AP50": 79.38,
    **{f"det_coco.{k}": v for k, v in zip(("mAP(Box)", "AP50(Box)", "AP75(Box)", "mAP(Mask)", "AP50(Mask)", "AP75(Mask)"), (38.7, 58.1, 42.4, 34.9, 55.3, 37.5), strict=True)},
    "seg_voc12aug.mIOU": 64.03,
}  # fmt: skip



@pytest.mark.parametrize(("key", "expected"), REFERENCE.items(), ids=list(REFERENCE))
def test_the_full_config_is_the_reference_file(key: str, expected: object) -> None:
    assert value_at(load_model_config(CONFIG_DIR / f"{FULL}.yaml"), key) == expected


@pytest.mark.parametrize(("key", "expected"), README.items(), ids=list(README))
def test_the_reported_numbers_are_the_readme_rows(key: str, expected: object) -> None:
    reported = load_model_entry(CONFIG_DIR / f"{FULL}.yaml").reported
    benchmark, column = key.split(".", 1)
    assert reported[benchmark][column] == expected


def test_nothing_else_is_reported_and_the_lars_protocol_is_listed() -> None:
    cfg = load_model_config(CONFIG_DIR / f"{FULL}.yaml")
    reported = load_model_entry(CONFIG_DIR / f"{FULL}.yaml").reported
    assert sorted(f"{b}.{c}" for b, columns in reported.items() for c in columns) == sorted(README)
    assert cfg["extra_benchmarks"] == ["linear_avgpool_lars_imagenet"]
