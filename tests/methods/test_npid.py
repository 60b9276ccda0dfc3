"""NPID: the softmax over bank negatives against a plain re-computation, the bank update after
the loss, training and kill/resume through the trainer (the bank is resume state), the configs
against the reference's config files and README."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from sslzoo.config import load_model_config
from sslzoo.engine.trainer import train
from sslzoo.errors import SslzooError
from sslzoo.methods import METHODS
from sslzoo.methods.npid import NPID, instance_nce_loss
from sslzoo.tables import load_model_entry
from tests.methods.config_values import value_at

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
FULL = "npid_resnet50_8xb32-steplr-200e_in1k"
MINI = "npid_resnet18_mini"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_npid(**kwargs: object) -> NPID:
    torch.manual_seed(0)
    args = {"feat_dim": 8, "neg_num": 5, "memory_bank": {"length": 10, "momentum": 0.5}, **kwargs}
    return NPID(depth=18, **args)  # type: ignore[arg-type]


def plain_nce(features: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, t: float) -> float:
    """``mean_b -log(exp(f.p / t) / (exp(f.p / t) + sum_k exp(f.n_k / t)))`` in Python floats."""
    total = 0.0
    for f, p, negs in zip(features.double(), positives.double(), negatives.double(), strict=True):
        pos = math.exp(float(f @ p) / t)
        total += -math.log(pos / (pos + sum(math.exp(float(f @ n) / t) for n in negs)))
    return total / len(features)


def test_loss_is_the_softmax_of_the_positive_among_the_negatives() -> None:
    generator = torch.Generator().manual_seed(1)
    features = F.normalize(torch.randn(3, 6, generator=generator), dim=1)
    positives = F.normalize(torch.randn(3, 6, generator=generator), dim=1)
    negatives = F.normalize(torch.randn(3, 7, 6, generator=generator), dim=2)
    loss = instance_nce_loss(features, positives, negatives, temperature=0.07)
    assert loss.item() == pytest.approx(plain_nce(features, positives, negatives, 0.07), rel=1e-5)


def test_forward_reads_the_bank_before_updating_it() -> None:
    model = tiny_npid()
    images, indices = torch.randn(4, 3, 16, 16), torch.tensor([7, 2, 9, 0])
    bank = model.memory_bank.features.clone()
    torch.manual_seed(11)
    out = model(images, indices=indices)
    torch.manual_seed(11)  # the same draws: uniform over the 10 rows, 4 x 5 of them
    drawn = torch.randint(10, (4 * 5,))
    with torch.no_grad():  # train-mode BN: the same inputs give the same outputs
        raw = model.neck(model.backbone(images)[0].mean(dim=(2, 3)))
    features = raw / raw.norm(dim=1, keepdim=True)
    expected = plain_nce(features, bank[indices], bank[drawn].view(4, 5, 8), 0.07)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    # rows 7, 2, 9, 0 <- normalize(0.5 old + 0.5 f), the other rows as they were
    mixed = 0.5 * bank[indices] + 0.5 * features
    updated = bank.clone()
    updated[indices] = mixed / mixed.norm(dim=1, keepdim=True)
    torch.testing.assert_close(model.memory_bank.features, updated, rtol=1e-5, atol=1e-6)
    out["loss"].backward()
    assert all(p.grad is not None for p in [*model.backbone.parameters(), *model.neck.parameters()])


def test_ensure_neg_draws_no_sample_as_its_own_negative() -> None:
    model = tiny_npid(neg_num=40, memory_bank={"length": 3, "momentum": 0.5}, ensure_neg=True)
    seen: list[torch.Tensor] = []
    sample = model.memory_bank.sample

    def spy(count: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(sample(count, exclude))
        return seen[-1]

    model.memory_bank.sample = spy  # type: ignore[method-assign]
    indices = torch.tensor([0, 1, 2, 1])
    model(torch.randn(4, 3, 16, 16), indices=indices)
    assert not (seen[0].view(4, 40) == indices.view(-1, 1)).any()


def test_index_outside_the_bank_is_refused() -> None:
    with pytest.raises(SslzooError, match="memory bank of 10 rows"):
        tiny_npid()(torch.randn(2, 3, 16, 16), indices=torch.tensor([3, 10]))


class Killed(Exception):
    """Stands in for a job killed mid-epoch."""


class TinyImages(Dataset):
    """``(image_i + augmentation noise, 0)``: 8 fixed 16 px images."""

    def __init__(self) -> None:
        self.images = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(5))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index] + 0.1 * torch.randn(3, 16, 16), 0


class KilledNPID(NPID):
    """Raises :class:`Killed` at its ``kill_at``-th forward."""

    kill_at = 0

    def forward(self, images: torch.Tensor, *, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        KilledNPID.kill_at -= 1
        if KilledNPID.kill_at == 0:
            raise Killed
        return super().forward(images, indices=indices)


def tiny_cfg() -> dict:
    return {
        "method": "npid",
        "gpus": 1,
        "backbone": {"depth": 18},
        "method_args": {"feat_dim": 8, "neg_num": 16, "memory_bank": {"length": 8, "momentum": 0.5}},
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "accumulate": 1,
            "workers": 0,
            "optimizer": {"name": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"name": "step", "steps": [1], "gamma": 0.1},
        },
    }


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    cfg = tiny_cfg()
    torch.manual_seed(0)
    reference = NPID.from_config(cfg)
    start = reference.memory_bank.features.clone()
    result = train(reference, TinyImages(), cfg, tmp_path / "a", seed=3)
    assert result["iterations"] == 4
    changed = (reference.memory_bank.features - start).abs().sum(dim=1) > 0
    assert changed.all()  # the indices reached the bank: every sample's row was written

    torch.manual_seed(0)
    killed = KilledNPID.from_config(cfg)
    KilledNPID.kill_at = 2 + 2  # the second iteration of epoch 2
    with pytest.raises(Killed):
        train(killed, TinyImages(), cfg, tmp_path / "b", seed=3)
    torch.manual_seed(1)  # another init and another bank: the resume state must win
    resumed = NPID.from_config(cfg)
    assert train(resumed, TinyImages(), cfg, tmp_path / "b", seed=3)["resumed_from_epoch"] == 1
    a, b = reference.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and "memory_bank.features" in a
    for key in a:
        assert torch.equal(a[key], b[key]), key


def square_image(size: int = 96) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", [FULL, MINI])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert METHODS[cfg["method"]] is NPID
    entry = load_model_entry(CONFIG_DIR / f"{name}.yaml")  # reported numbers use the table columns
    assert (entry.reported != {}) == (name == FULL)
    size = cfg["views"]["image_size"]
    assert NPID.views(cfg)(square_image()).shape == (3, size, size)
    if name == MINI:
        model = NPID.from_config(cfg)
        assert model.memory_bank.features.shape == (600, 128)  # the mini ImageNet's 600 train images


# mmselfsup 0.x (tag v0.11.0) configs/selfsup/npid/npid_resnet50_8xb32-steplr-200e_in1k.py and its
# _base_ files, each value with its line (LN): M = _base_/models/npid.py, D = _base_/datasets/
# imagenet_npid.py, S = _base_/schedules/sgd_steplr-200e_in1k.py; NPID's own default (A =
# mmselfsup/models/algorithms/npid.py); the 8 of 8xb32 from the config name.
REFERENCE = {
    "gpus": 8,
    "backbone.depth": 50,  # M L7 depth=50
    "backbone.sync_bn": True,  # M L10 norm_cfg=dict(type='SyncBN')
    "backbone.zero_init_residual": False,  # mmselfsup/models/backbones/resnet.py default
    "method_args.neg_num": 65536,  # M L4 neg_num=65536
    "method_args.ensure_neg": False,  # A L37 ensure_neg=False (only the npid-ensure-neg config sets it)
    "method_args.feat_dim": 128,  # M L12-14 LinearNeck(in_channels=2048, out_channels=128)
    "method_args.temperature": 0.07,  # M L16 ContrastiveHead(temperature=0.07)
    "method_args.memory_bank.length": 1281167,  # M L18 SimpleMemory(length=1281167, ...)
    "method_args.memory_bank.momentum": 0.5,  # M L18 momentum=0.5
    "views.image_size": 224,  # D L6 RandomResizedCrop(size=224, ...)
    "views.scale": [0.2, 1.0],  # D L6 scale=(0.2, 1.)
    "views.grayscale_p": 0.2,  # D L7 RandomGrayscale(p=0.2)
    "views.color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.4},  # D L8-13
    "views.color_jitter_p": 1.0,  # D L8 a plain ColorJitter: every image
    "views.flip_p": 0.5,  # D L14 RandomHorizontalFlip()
    "train.batch_size": 32,  # D L26 samples_per_gpu=32
    "train.workers": 4,  # D L27 workers_per_gpu=4
    "train.optimizer.name": "sgd",  # S L2 type='SGD'
    "train.optimizer.lr": 0.03,  # S L2 lr=0.03
    "train.optimizer.weight_decay": 1e-4,  # S L2 weight_decay=1e-4
    "train.optimizer.momentum": 0.9,  # S L2 momentum=0.9
    "train.schedule.name": "step",  # S L6 policy='step'
    "train.schedule.steps": [120, 160],  # S L6 step=[120, 160]
    "train.schedule.warmup_epochs": 0,  # S L6: no warmup
    "train.epochs": 200,  # S L9 max_epochs=200
}



@pytest.mark.parametrize(("key", "expected"), REFERENCE.items(), ids=list(REFERENCE))
def test_the_full_config_is_the_reference_file(key: str, expected: object) -> None:
    assert value_at(load_model_config(CONFIG_DIR / f"{FULL}.yaml"), key) == expected


# mmselfsup 0.x (tag v0.11.0) configs/selfsup/npid/README.md, the resnet50_8xb32-steplr-200e row
README = {
    "svm_voc07": {"Best Layer": "feature5", "SVM": 76.75},
    "lowshot_voc07": {
        "Best Layer": "feature5", "k=1": 26.96, "k=2": 35.37, "k=4": 44.48, "k=8": 53.89,
        "k=16": 60.39, "k=32": 66.41, "k=64": 71.48, "k=96": 73.39,
    },
    "linear_imagenet": {
        "Feature1": 14.68, "Feature2": 31.98, "Feature3": 42.85, "Feature4": 56.95, "Feature5": 58.41,
        "AvgPool": 57.97,
    },
    "linear_places205": {"Feature1": 19.98, "Feature2": 34.86, "Feature3": 41.59, "Feature4": 48.43, "Feature5": 48.71},
    "knn_imagenet": {"k=10": 42.9, "k=20": 44.0, "k=100": 43.2, "k=200": 42.2},
    "det_voc0712": {"AP50": 79.52},
    "det_coco": {
        "mAP(Box)": 38.5, "AP50(Box)": 57.7, "AP75(Box)": 42.0, "mAP(Mask)": 34.6, "AP50(Mask)": 54.8,
        "AP75(Mask)": 37.1,
    },
    "seg_voc12aug": {"mIOU": 65.45},
}


@pytest.mark.parametrize("benchmark", README, ids=list(README))
def test_reported_numbers_are_the_readme_row(benchmark: str) -> None:
    assert load_model_entry(CONFIG_DIR / f"{FULL}.yaml").reported[benchmark] == README[benchmark]


def test_bad_config_keys_are_refused() -> None:
    with pytest.raises(SslzooError, match="method_args.memory_bank"):
        NPID.from_config({"backbone": {"depth": 18}, "method_args": {"memory_bank": {"size": 3}}})
    with pytest.raises(SslzooError, match="method_args"):
        NPID.from_config({"backbone": {"depth": 18}, "method_args": {"negatives": 3}})
    with pytest.raises(SslzooError, match="views"):
        NPID.views({"views": {"blur_p": 1.0}})
