"""The papers' own linear protocols (BYOL's LARS AvgPool): their files against the reference
configs, one LARS step of the heads against the LARS update written out."""

from __future__ import annotations

import copy
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
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.optim import LARS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
OWN = ("linear_avgpool_lars_imagenet",)

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
