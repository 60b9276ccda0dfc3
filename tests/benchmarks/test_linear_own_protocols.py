"""The papers' own linear protocols (BYOL's LARS AvgPool, Triplet's two cosine protocols): their
files against the reference configs, the cosine + warm-up lr of the training loop against mmcv's
formula, one LARS step of the heads against the LARS update written out."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from sslzoo.benchmarks.classifier_loop import fit_classifier
from sslzoo.benchmarks.heads import build_linear_classifier
from sslzoo.benchmarks.linear import build_head_optimizer
from sslzoo.benchmarks.linear_protocol import LinearConfig, load_linear_config
from sslzoo.benchmarks.registry import BENCHMARKS
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.optim import LARS
from sslzoo.runtime.run_dir import TRAIN_LOG

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
OWN = ("linear_avgpool_lars_imagenet", "linear_triplet_less_imagenet", "linear_triplet_more_imagenet")

# mmselfsup 0.x (branch 0.x) configs/benchmarks/classification/imagenet/
# resnet50_linear-8xb512-coslr-90e_in1k.py and its _base_ files:
#   models/resnet50.py        head=dict(type='ClsHead', with_avg_pool=True, in_channels=2048, ...)
#   datasets/imagenet.py      train: RandomResizedCrop(224), RandomHorizontalFlip; test: Resize(256), CenterCrop(224)
#   schedules/lars_coslr-90e.py  optimizer = dict(type='LARS', lr=1.6, momentum=0.9, weight_decay=0.)
#                             lr_config = dict(policy='CosineAnnealing', min_lr=0.)  (no warm-up)
#                             runner = dict(type='EpochBasedRunner', max_epochs=90)
#   data = dict(samples_per_gpu=512, workers_per_gpu=8)  # total 512*8=4096, 8GPU linear cls
BYOL_LARS = {
    "optimizer": (
        "lars",
        1.6,
        0.9,
        0.0,
        False,
        0.001,
    ),  # name, lr, momentum, wd, nesterov, eta (LARS default)
    "schedule": ("cosine", 0.0, True, 0.0),  # policy, min_lr, by_epoch (mmcv default), warm-up epochs
    "epochs": 90,
    "gpus_batch_workers": (8, 4096, 8),
}
# wanggrun/triplet configs/benchmarks/linear_classification/imagenet/r50_last_cos_for_{Less,More}SslEpoch.py:
#   optimizer = dict(type='SGD', lr=0.15 (Less) / 0.04 (More), momentum=0.9, weight_decay=0.)
#   lr_config = dict(policy='CosineAnnealing', min_lr=0., warmup='linear', warmup_iters=10,
#                    warmup_ratio=0.0001, warmup_by_epoch=True)
#   total_epochs = 100; data = dict(imgs_per_gpu=32, workers_per_gpu=5)  # total 32*8=256
#   head=dict(type='ClsHead', with_avg_pool=True, in_channels=2048, num_classes=1000)
#   train_pipeline: RandomResizedCrop(224), RandomHorizontalFlip; test: Resize(256), CenterCrop(224)
TRIPLET = {
    "linear_triplet_less_imagenet": 0.15,
    "linear_triplet_more_imagenet": 0.04,
}


def _optimizer(config: LinearConfig) -> tuple:
    return (config.optimizer, config.lr, config.momentum, config.weight_decay, config.nesterov, config.eta)


def _common_head_and_transforms(config: LinearConfig, size: int, resize: int) -> None:
    """ClsHead(with_avg_pool=True): one head on the global pool, no BN; RRC + flip, no colour."""
    assert config.layers == ("avgpool",)
    transform = config.train_transform
    assert (transform.crop, transform.size, transform.flip) == ("random_resized", size, True)
    assert (transform.color_jitter, transform.lighting_std) == (None, 0.0)
    assert (config.eval_transform.resize, config.eval_transform.crop) == (resize, size)


def test_byol_lars_protocol_is_the_reference_config() -> None:
    config, _ = load_linear_config(CONFIG_DIR / "linear_avgpool_lars_imagenet.yaml")
    assert _optimizer(config) == BYOL_LARS["optimizer"]
    train = config.train
    assert (train.schedule, train.min_lr, train.by_epoch, train.warmup_epochs) == BYOL_LARS["schedule"]
    assert train.epochs == BYOL_LARS["epochs"] and train.steps == ()
    assert (config.gpus, train.batch_size, train.workers) == BYOL_LARS["gpus_batch_workers"]
    _common_head_and_transforms(config, 224, 256)


@pytest.mark.parametrize("name", sorted(TRIPLET))
def test_triplet_protocols_are_the_reference_configs(name: str) -> None:
    config, _ = load_linear_config(CONFIG_DIR / f"{name}.yaml")
    assert _optimizer(config)[:5] == ("sgd", TRIPLET[name], 0.9, 0.0, False)
    train = config.train
    assert (train.schedule, train.min_lr, train.by_epoch) == ("cosine", 0.0, True)
    assert (train.warmup_epochs, train.warmup_ratio) == (10.0, 0.0001)
    assert (train.epochs, config.gpus, train.batch_size, train.workers) == (100, 8, 256, 5)
    _common_head_and_transforms(config, 224, 256)


@pytest.mark.parametrize("name", OWN)
def test_mini_files_keep_the_shape_of_their_protocol(name: str) -> None:
    """Same optimizer, schedule and head at the mini scale (32 px, batch 32, one process); the
    warm-up keeps its share of the run; only the LARS lr differs (the file says why)."""
    full, _ = load_linear_config(CONFIG_DIR / f"{name}.yaml")
    mini, _ = load_linear_config(CONFIG_DIR / f"{name}_mini.yaml")
    assert (mini.gpus, mini.train.batch_size, mini.train.workers) == (1, 32, 0)
    assert mini.optimizer == full.optimizer and mini.weight_decay == full.weight_decay
    assert mini.lr == (10 * full.lr if full.optimizer == "lars" else full.lr)
    keys = ("schedule", "min_lr", "by_epoch", "warmup_ratio")
    assert [getattr(mini.train, k) for k in keys] == [getattr(full.train, k) for k in keys]
    assert mini.train.warmup_epochs / mini.train.epochs == full.train.warmup_epochs / full.train.epochs
    _common_head_and_transforms(mini, 32, 37)


def test_own_protocols_run_only_for_the_models_that_list_them() -> None:
    for name in OWN:
        entry = BENCHMARKS[name]
        assert (entry.kind, entry.every_model, entry.table) == ("linear", False, None), name
        assert entry.section is not None and entry.section.columns == ("AvgPool",), name


def test_a_cosine_schedule_rejects_steps_and_eta_needs_lars(tmp_path: Path) -> None:
    base = (CONFIG_DIR / "linear_triplet_less_imagenet_mini.yaml").read_text()
    cases = {
        "steps": (base.replace("min_lr: 0.0,", "steps: [2], min_lr: 0.0,"), r"steps.yaml: schedule.steps: the cosine schedule has no steps; remove them or set schedule.name: step"),
        "nosteps": (base.replace("name: cosine,", "name: step,"), r"nosteps.yaml: schedule: 'steps' is a required property"),
        "eta": (base.replace("nesterov: false}", "nesterov: false, eta: 0.001}"), r"eta.yaml: optimizer.eta: .* set optimizer.name: lars"),
        "adam": (base.replace("name: sgd", "name: adam"), r"adam.yaml: optimizer.name: 'adam' is not one of \['sgd', 'lars'\]"),
        "warmup": (base.replace("warmup_epochs: 0.5", "warmup_epochs: 6"), r"warmup.yaml: schedule.warmup_epochs: 6 is longer than the 5 epochs"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        with pytest.raises(SslzooError, match=message):
            load_linear_config(path)


class Images(Dataset):
    """Fixed random 32 px 'images' with labels ``i % 3``."""

    def __init__(self, size: int) -> None:
        self.images = torch.randn(size, 3, 32, 32, generator=torch.Generator().manual_seed(7))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], index % 3


def _avgpool_classifier(seed: int = 0):
    torch.manual_seed(seed)
    return build_linear_classifier(ResNetBackbone(18), ["avgpool"], {}, num_classes=3, crop=32)


def _mmcv_cosine_warmup_lr(
    base: float, it: int, epoch_len: int, epochs: int, warmup_epochs: int, ratio: float
) -> float:
    """mmcv 1.x LrUpdaterHook with CosineAnnealingLrUpdaterHook(min_lr=0), by_epoch=True,
    warmup='linear', warmup_by_epoch=True: the regular lr is set at each epoch start from the
    epoch index; before iteration ``warmup_iters = warmup_epochs * epoch_len`` the linear warm-up
    ``regular * (1 - (1 - it / warmup_iters) * (1 - ratio))``."""
    epoch = it // epoch_len
    regular = 0.0 + 0.5 * (base - 0.0) * (math.cos(math.pi * epoch / epochs) + 1)  # annealing_cos
    warmup_iters = warmup_epochs * epoch_len
    if it < warmup_iters:
        k = (1 - it / warmup_iters) * (1 - ratio)
        return regular * (1 - k)
    return regular


def test_the_loop_runs_the_cosine_warmup_lr_of_mmcv(tmp_path: Path) -> None:
    """Triplet's schedule shape (cosine to 0, linear warm-up from ratio x lr, by epoch) at a
    small scale: 4 epochs of 3 iterations, 2 warm-up epochs; the logged lr of every iteration."""
    text = (CONFIG_DIR / "linear_triplet_less_imagenet_mini.yaml").read_text()
    text = text.replace("epochs: 5", "epochs: 4").replace("warmup_epochs: 0.5", "warmup_epochs: 2")
    text = text.replace("warmup_ratio: 0.0001", "warmup_ratio: 0.01").replace(
        "batch_size: 32", "batch_size: 2"
    )
    (tmp_path / "p.yaml").write_text(text)
    config, _ = load_linear_config(tmp_path / "p.yaml")
    model = _avgpool_classifier()
    fit_classifier(
        model, build_head_optimizer(model.heads, config), Images(6), config.train, tmp_path / "w", {}
    )
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "w" / TRAIN_LOG).read_text().splitlines()]
    expected = [_mmcv_cosine_warmup_lr(0.15, it, 3, 4, 2, 0.01) for it in range(12)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    # spot values: the first iteration starts at ratio x lr, the warm-up ends on the cosine of epoch 2
    assert lrs[0] == pytest.approx(0.15 * 0.01) and lrs[6] == pytest.approx(0.15 * 0.5)
    assert lrs[3] == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)) / 2 * (1 - 0.5 * 0.99))


def test_one_lars_step_of_the_head_is_the_lars_update(tmp_path: Path) -> None:
    """The first optimizer step of BYOL's LARS protocol (cosine, no warm-up: lr 1.6 at iteration
    0) on one batch of all images, against mmselfsup's LARS written out: every parameter adapted
    (no paramwise_options), trust = eta ||w|| / (||g|| + wd ||w||) or 1 when a norm is 0 (the
    zero-initialised bias), w -= lr * trust * (g + wd w) (the momentum buffer starts as that step)."""
    config, _ = load_linear_config(CONFIG_DIR / "linear_avgpool_lars_imagenet_mini.yaml")
    # the mini file at the reference's lr, with a weight decay so that its term is checked too
    config = replace(config, lr=1.6, weight_decay=1e-3, norm_weight_decay=1e-3)
    images = Images(8)
    model = _avgpool_classifier()
    optimizer = build_head_optimizer(model.heads, config)
    assert isinstance(optimizer, LARS) and not any(g["lars_exclude"] for g in optimizer.param_groups)
    reference = copy.deepcopy(model)
    fit_classifier(
        model, optimizer, images, replace(config.train, epochs=1, batch_size=len(images)), tmp_path, {}
    )

    batch = torch.stack([images[i][0] for i in range(len(images))])
    labels = torch.tensor([images[i][1] for i in range(len(images))])
    reference.train()
    loss = F.cross_entropy(reference(batch)["avgpool"], labels)
    loss.backward()
    lr, eta, wd = config.lr, config.eta, config.weight_decay
    for name, param in reference.heads.named_parameters():
        w, g = param.detach(), param.grad
        w_norm, g_norm = w.norm().item(), g.norm().item()
        trust = eta * w_norm / (g_norm + wd * w_norm + 1e-8) if w_norm and g_norm else 1.0
        expected = w - lr * trust * (g + wd * w)
        torch.testing.assert_close(
            dict(model.heads.named_parameters())[name].detach(), expected, rtol=1e-5, atol=1e-7
        )
    bias = model.heads["avgpool"].fc.bias.detach()
    assert torch.count_nonzero(bias) > 0  # the zero bias moved by lr x its gradient (trust 1)
