"""SimSiam: the stop-gradient, the reference's projector and predictor, the predictor's fixed lr
over a training run, the configs against the reference's files and README."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from sslzoo.config import load_model_config
from sslzoo.engine.trainer import train
from sslzoo.errors import SslzooError
from sslzoo.methods.simsiam import SimSiam
from sslzoo.runtime.optim import build_optimizer
from sslzoo.runtime.schedules import LrSchedule
from sslzoo.tables import load_model_entry
from tests.methods.config_values import value_at

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
SMALL = {"projector": {"hidden": 16, "out": 8}, "predictor": {"hidden": 4}}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_simsiam(**kwargs: object) -> SimSiam:
    torch.manual_seed(0)
    return SimSiam(depth=18, **{**SMALL, **kwargs})  # type: ignore[arg-type]


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine written out."""
    return (a * b).sum(1) / (a.pow(2).sum(1).sqrt() * b.pow(2).sum(1).sqrt())


def gradients(model: SimSiam, loss: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_no_gradient_flows_through_the_target_branch() -> None:
    """The loss's gradients are those of the same loss with the targets as constants, not those
    with the targets in the graph (which a missing stop-gradient would give)."""
    model = tiny_simsiam()
    generator = torch.Generator().manual_seed(1)
    view1, view2 = (
        torch.randn(4, 3, 16, 16, generator=generator),
        torch.randn(4, 3, 16, 16, generator=generator),
    )
    out = model((view1, view2))["loss"]
    ours = gradients(model, out)

    def by_hand(stop: bool) -> torch.Tensor:  # train-mode BN: the same inputs give the same outputs
        z1, z2 = model.encode(view1), model.encode(view2)
        p1, p2 = model.predictor(z1), model.predictor(z2)
        t1, t2 = (z1.detach().clone(), z2.detach().clone()) if stop else (z1, z2)
        return 0.5 * (-cos(p1, t2).mean() - cos(p2, t1).mean())

    stopped = by_hand(stop=True)
    assert out.item() == pytest.approx(stopped.item(), abs=1e-6)

    def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
        return max(((x - y).norm() / y.norm()).item() for x, y in zip(a, b, strict=True) if y.norm() > 0)

    assert distance(ours, gradients(model, stopped)) < 1e-4
    assert distance(ours, gradients(model, by_hand(stop=False))) > 0.1


def test_projector_and_predictor_are_the_references() -> None:
    model = SimSiam.from_config({"backbone": {"depth": 18}})
    fcs = [m for m in model.projector if isinstance(m, torch.nn.Linear)]
    bns = [m for m in model.projector if isinstance(m, torch.nn.BatchNorm1d)]
    assert [(fc.in_features, fc.out_features) for fc in fcs] == [(512, 2048), (2048, 2048), (2048, 2048)]
    assert all(fc.bias is None for fc in fcs)
    assert [bn.affine for bn in bns] == [True, True, False]  # with_last_bn_affine=False
    predictor = model.predictor
    assert (predictor[0].in_features, predictor[0].out_features, predictor[3].out_features) == (
        2048,
        512,
        2048,
    )
    assert predictor[0].bias is None and predictor[3].bias is not None  # with_bias=False, with_last_bias=True
    assert len(predictor) == 4  # no last BN


def test_param_groups_mark_the_predictor_fix_lr() -> None:
    model = tiny_simsiam()
    cfg = {"method": "simsiam", "train": {"optimizer": {"name": "sgd", "lr": 0.05}}}
    groups = build_optimizer(model, cfg).param_groups
    assert [len(g["params"]) for g in groups] == [
        len(list(model.parameters())) - len(list(model.predictor.parameters())),
        len(list(model.predictor.parameters())),
    ]
    assert [g.get("fix_lr", False) for g in groups] == [False, True]
    assert all(id(p) in {id(q) for q in model.predictor.parameters()} for p in groups[1]["params"])
    unfixed = build_optimizer(tiny_simsiam(fix_pred_lr=False), cfg).param_groups
    assert [g.get("fix_lr", False) for g in unfixed] == [False, False]


class RandomImages(Dataset):
    """``(SimSiam views of a random 24 px image, 0)``."""

    def __init__(self, size: int, transform: object) -> None:
        self.images = np.random.default_rng(0).integers(0, 256, (size, 24, 24, 3), dtype=np.uint8)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[object, int]:
        return self.transform(Image.fromarray(self.images[index])), 0  # type: ignore[operator]


def test_the_predictor_lr_stays_fixed_while_the_rest_follows_the_cosine(tmp_path: Path, monkeypatch) -> None:
    cfg = load_model_config(CONFIG_DIR / "simsiam_resnet18_mini.yaml")
    cfg["views"]["image_size"] = 16
    cfg["method_args"] = {**cfg["method_args"], **SMALL}
    cfg["train"].update(epochs=2, batch_size=4)
    seen: list[list[float]] = []
    step = torch.optim.SGD.step

    def recording_step(self: torch.optim.SGD, *args: object, **kwargs: object) -> object:
        seen.append([group["lr"] for group in self.param_groups])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    model = SimSiam.from_config(cfg)
    predictor_before = [p.detach().clone() for p in model.predictor.parameters()]
    train(model, RandomImages(8, SimSiam.views(cfg)), cfg, tmp_path / "work", seed=0)
    schedule_cfg, base = cfg["train"]["schedule"], cfg["train"]["optimizer"]["lr"]
    schedule = LrSchedule(
        "cosine", epochs=2, iters_per_epoch=2, min_lr=schedule_cfg["min_lr"], by_epoch=False
    )
    assert [lrs[0] for lrs in seen] == pytest.approx([schedule.lr(base, i) for i in range(4)])
    assert [lrs[1] for lrs in seen] == [base] * 4
    assert len({lrs[0] for lrs in seen}) == 4  # the others' lr does move
    assert any(
        not torch.equal(a, b) for a, b in zip(predictor_before, model.predictor.parameters(), strict=True)
    )


def test_bad_config_keys_are_refused() -> None:
    with pytest.raises(SslzooError, match="method_args.predictor"):
        SimSiam.from_config({"backbone": {"depth": 18}, "method_args": {"predictor": {"out": 3}}})
    with pytest.raises(SslzooError, match="views.blur_p"):
        SimSiam.views({"views": {"blur_p": [1.0, 0.1]}})


SIMSIAM_200E = "simsiam_resnet50_8xb32-coslr-200e_in1k"
SIMSIAM_100E = "simsiam_resnet50_8xb32-coslr-100e_in1k"

# mmselfsup 0.x (v0.11.0) configs/selfsup/simsiam/simsiam_resnet50_8xb32-coslr-200e_in1k.py and
# its _base_ files, the file of each value
REFERENCE_200E = {
    "gpus": 8,  # the 8 of 8xb32
    "backbone.depth": 50,  # models/simsiam.py depth=50
    "backbone.sync_bn": True,  # models/simsiam.py norm_cfg=dict(type='SyncBN')
    "backbone.zero_init_residual": True,  # models/simsiam.py zero_init_residual=True
    "method_args.projector.hidden": 2048,  # models/simsiam.py neck hid_channels=2048
    "method_args.projector.out": 2048,  # models/simsiam.py neck out_channels=2048
    "method_args.predictor.hidden": 512,  # models/simsiam.py predictor hid_channels=512
    "method_args.fix_pred_lr": True,  # SimSiamHook fix_pred_lr=True, paramwise_options predictor fix_lr
    "views.image_size": 224,  # datasets/imagenet_mocov2.py RandomResizedCrop size=224
    "views.scale": [0.2, 1.0],  # scale=(0.2, 1.)
    "views.interpolation": "bilinear",  # none given: torchvision's default
    "views.color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
    "views.color_jitter_p": 0.8,  # RandomAppliedTrans p=0.8
    "views.grayscale_p": 0.2,  # RandomGrayscale p=0.2
    "views.blur_sigma": [0.1, 2.0],  # GaussianBlur sigma_min=0.1, sigma_max=2.0
    "views.blur_p": 0.5,  # GaussianBlur p=0.5
    "views.flip_p": 0.5,  # RandomHorizontalFlip() (p=0.5)
    "views.solarize_p": 0.0,  # no Solarization
    "train.batch_size": 32,  # datasets/imagenet_mocov2.py samples_per_gpu=32
    "train.workers": 4,  # workers_per_gpu=4
    "train.accumulate": 1,  # optimizer_config=dict(): no accumulation
    "train.optimizer.name": "sgd",  # schedules/sgd_coslr-200e_in1k.py type='SGD'
    "train.optimizer.lr": 0.05,  # lr = 0.05
    "train.optimizer.momentum": 0.9,  # momentum=0.9
    "train.optimizer.weight_decay": 1e-4,  # weight_decay=1e-4
    "train.schedule.name": "cosine",  # policy='CosineAnnealing'
    "train.schedule.min_lr": 0.0,  # min_lr=0.
    "train.schedule.by_epoch": True,  # not set: mmcv's LrUpdaterHook default
    "train.schedule.warmup_epochs": 0,  # no warm-up
    "train.epochs": 200,  # runner max_epochs=200
}



@pytest.mark.parametrize(("key", "expected"), REFERENCE_200E.items(), ids=list(REFERENCE_200E))
def test_the_200_epoch_config_is_the_reference_file(key: str, expected: object) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{SIMSIAM_200E}.yaml")
    assert value_at(cfg, key) == expected


def test_the_100_epoch_config_differs_only_in_epochs_and_reported_numbers() -> None:
    """simsiam_resnet50_8xb32-coslr-100e_in1k.py: the 200-epoch file with runner max_epochs=100."""
    short = load_model_config(CONFIG_DIR / f"{SIMSIAM_100E}.yaml")
    long = load_model_config(CONFIG_DIR / f"{SIMSIAM_200E}.yaml")
    assert short["train"].pop("epochs") == 100 and long["train"].pop("epochs") == 200
    assert {k: v for k, v in short.items() if k != "reported"} == {
        k: v for k, v in long.items() if k != "reported"
    }


# mmselfsup 0.x configs/selfsup/simsiam/README.md, the rows of each config
README = {
    SIMSIAM_100E: {
        "svm_voc07": {"Best Layer": "feature5", "SVM": 84.64},
        "lowshot_voc07": {"Best Layer": "feature5", "k=1": 39.65, "k=2": 49.86, "k=4": 62.48, "k=8": 69.50,
                          "k=16": 74.48, "k=32": 78.31, "k=64": 81.06, "k=96": 82.56},
        "linear_imagenet": {"Feature1": 16.27, "Feature2": 33.77, "Feature3": 45.80, "Feature4": 60.83, "Feature5": 68.21},
        "linear_avgpool_lars_imagenet": {"AvgPool": 68.28},
        "linear_places205": {"Feature1": 21.32, "Feature2": 35.66, "Feature3": 43.05, "Feature4": 50.79, "Feature5": 53.27},
        "knn_imagenet": {"k=10": 57.4, "k=20": 57.6, "k=100": 55.8, "k=200": 54.2},
        "det_voc0712": {"AP50": 79.80},
        "det_coco": {"mAP(Box)": 38.6, "AP50(Box)": 57.6, "AP75(Box)": 42.3, "mAP(Mask)": 34.6, "AP50(Mask)": 54.8,
                     "AP75(Mask)": 36.9},
        "seg_voc12aug": {"mIOU": 48.35},
    },
    SIMSIAM_200E: {
        "svm_voc07": {"Best Layer": "feature5", "SVM": 85.20},
        "lowshot_voc07": {"Best Layer": "feature5", "k=1": 39.85, "k=2": 50.44, "k=4": 63.73, "k=8": 70.93,
                          "k=16": 75.74, "k=32": 79.42, "k=64": 82.02, "k=96": 83.44},
        "linear_imagenet": {"Feature1": 15.57, "Feature2": 37.21, "Feature3": 47.28, "Feature4": 62.21, "Feature5": 69.85},
        "linear_avgpool_lars_imagenet": {"AvgPool": 69.84},
        "linear_places205": {"Feature1": 21.17, "Feature2": 35.85, "Feature3": 43.49, "Feature4": 50.99, "Feature5": 54.10},
        "knn_imagenet": {"k=10": 60.2, "k=20": 60.4, "k=100": 58.8, "k=200": 57.4},
        "det_voc0712": {"AP50": 79.85},
        "det_coco": {"mAP(Box)": 38.8, "AP50(Box)": 58.0, "AP75(Box)": 42.3, "mAP(Mask)": 34.9, "AP50(Mask)": 55.3,
                     "AP75(Mask)": 37.6},
        "seg_voc12aug": {"mIOU": 46.27},
    },
}  # fmt: skip
README_VALUES = [
    (name, benchmark, column, value)
    for name, rows in README.items()
    for benchmark, columns in rows.items()
    for column, value in columns.items()
]


@pytest.mark.parametrize(("name", "benchmark", "column", "value"), README_VALUES)
def test_reported_numbers_are_the_readme_rows(name: str, benchmark: str, column: str, value: object) -> None:
    assert load_model_entry(CONFIG_DIR / f"{name}.yaml").reported[benchmark][column] == value


@pytest.mark.parametrize("name", [SIMSIAM_200E, SIMSIAM_100E])
def test_no_other_reported_numbers(name: str) -> None:
    reported = load_model_entry(CONFIG_DIR / f"{name}.yaml").reported
    assert {b: set(c) for b, c in reported.items()} == {b: set(c) for b, c in README[name].items()}
    assert load_model_config(CONFIG_DIR / f"{name}.yaml")["extra_benchmarks"] == [
        "linear_avgpool_lars_imagenet"
    ]


def test_mini_config_builds_and_gives_two_views() -> None:
    cfg = load_model_config(CONFIG_DIR / "simsiam_resnet18_mini.yaml")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    view1, view2 = SimSiam.views(cfg)(image)
    size = cfg["views"]["image_size"]
    assert view1.shape == view2.shape == (3, size, size)
    model = SimSiam.from_config(cfg)
    assert model.backbone.depth == 18 and torch.isfinite(
        model((view1.expand(2, -1, -1, -1), view2.expand(2, -1, -1, -1)))["loss"]
    )
