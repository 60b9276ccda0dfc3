"""MoCo v1/v2: the momentum update, the loss against the queue and the queue update by hand, the
v1/v2 necks, split BN, a killed-and-resumed run, the configs against the reference's files and README."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from sslzoo.config import load_model_config
from sslzoo.engine.trainer import LATEST, train
from sslzoo.errors import SslzooError
from sslzoo.methods.moco import MoCo
from sslzoo.models.shuffle_bn import SplitBatchNorm2d
from sslzoo.tables import load_model_entry
from tests.engine.test_trainer import Killed, assert_same_weights, make_cfg, read_log
from tests.methods.config_values import value_at
from tests.methods.test_simclr import TwoNoisyViews

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
SMALL_NECK = {"hidden": 16, "out": 8}
V1, V2 = "mocov1_resnet50_8xb32-steplr-200e_in1k", "mocov2_resnet50_8xb32-coslr-200e_in1k"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_moco(**kwargs: object) -> MoCo:
    torch.manual_seed(0)
    args = {"depth": 18, "neck": SMALL_NECK, "queue_len": 12, "temperature": 0.2, "momentum": 0.9, **kwargs}
    return MoCo(**args)  # type: ignore[arg-type]


def shifted(model: MoCo) -> MoCo:
    """Make the query encoder differ from the key encoder (as after some training)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.query_parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model


def test_momentum_update_moves_every_key_parameter_towards_its_query() -> None:
    model = shifted(tiny_moco(momentum=0.75))
    queries = [p.detach().clone() for p in model.query_parameters()]
    keys = [p.detach().clone() for p in model.key_parameters()]
    assert len(queries) == len(keys) > 0
    model.momentum_update()
    for new, key, query in zip(model.key_parameters(), keys, queries, strict=True):
        torch.testing.assert_close(new, 0.75 * key + 0.25 * query, rtol=0, atol=1e-7)
    for now, query in zip(model.query_parameters(), queries, strict=True):
        assert torch.equal(now, query)
    # a hand value: 0.75 * 2 + 0.25 * (-2) = 1
    with torch.no_grad():
        model.key_neck[0].bias.fill_(2.0)
        model.neck[0].bias.fill_(-2.0)
    model.momentum_update()
    assert model.key_neck[0].bias.tolist() == [1.0] * 16


def test_forward_updates_the_key_encoder_first_then_scores_against_the_queue_then_enqueues() -> None:
    model = shifted(tiny_moco())
    reference = copy.deepcopy(model)
    queue_before = model.key_queue.queue.clone()
    seen: list[torch.Tensor] = []
    model.key_backbone.register_forward_pre_hook(
        lambda m, _args: seen.append(m.conv1.weight.detach().clone())
    )
    generator = torch.Generator().manual_seed(1)
    view1, view2 = (
        torch.randn(4, 3, 16, 16, generator=generator),
        torch.randn(4, 3, 16, 16, generator=generator),
    )
    loss = model((view1, view2))["loss"]

    reference.momentum_update()  # the key encoder the keys came from
    torch.testing.assert_close(seen[0], reference.key_backbone.conv1.weight)
    assert not torch.equal(seen[0], model.backbone.conv1.weight)
    with torch.no_grad():  # train-mode BN: one process's shuffle leaves the statistics alone
        q = F.normalize(reference.neck(reference.backbone(view1)[0].mean(dim=(2, 3))), dim=1)
        k = F.normalize(reference.key_neck(reference.key_backbone(view2)[0].mean(dim=(2, 3))), dim=1)
    by_hand = 0.0
    for i in range(4):  # -log softmax of [q.k, q.queue] / T at the positive
        logits = [float(q[i] @ k[i]) / 0.2] + [float(q[i] @ queue_before[:, j]) / 0.2 for j in range(12)]
        by_hand -= logits[0] - math.log(sum(math.exp(v) for v in logits))
    assert loss.item() == pytest.approx(by_hand / 4, rel=1e-5)
    # the keys enter the queue after the loss: columns 0..3, pointer 4 (the model's keys come
    # from a shuffled batch, so its BN sums run in another order: float32 rounding, ~1e-5)
    torch.testing.assert_close(model.key_queue.queue[:, :4], k.t(), rtol=1e-4, atol=2e-5)
    assert torch.equal(model.key_queue.queue[:, 4:], queue_before[:, 4:])
    assert model.key_queue.ptr.tolist() == [4]


def test_only_the_query_encoder_gets_gradients() -> None:
    model = tiny_moco()
    model((torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)))["loss"].backward()
    assert all(p.grad is not None for p in model.query_parameters())
    assert all(not p.requires_grad and p.grad is None for p in model.key_parameters())


def test_eval_mode_neither_updates_the_key_encoder_nor_the_queue() -> None:
    model = shifted(tiny_moco()).eval()
    keys = [p.detach().clone() for p in model.key_parameters()]
    queue = model.key_queue.queue.clone()
    model((torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)))
    assert all(torch.equal(a, b) for a, b in zip(model.key_parameters(), keys, strict=True))
    assert torch.equal(model.key_queue.queue, queue) and model.key_queue.ptr.tolist() == [0]


def test_v1_neck_is_one_fc_and_v2_neck_an_mlp() -> None:
    v1 = MoCo.from_config(load_model_config(CONFIG_DIR / f"{V1}.yaml") | {"backbone": {"depth": 18}})
    v2 = MoCo.from_config(load_model_config(CONFIG_DIR / f"{V2}.yaml") | {"backbone": {"depth": 18}})
    assert isinstance(v1.neck, nn.Linear) and (v1.neck.in_features, v1.neck.out_features) == (512, 128)
    assert v1.neck.bias is not None
    assert [type(layer) for layer in v2.neck] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (v2.neck[0].out_features, v2.neck[2].out_features) == (2048, 128)
    assert v2.key_queue.queue.shape == v1.key_queue.queue.shape == (128, 65536)
    assert (v1.temperature, v2.temperature, v1.momentum, v2.momentum) == (0.07, 0.2, 0.999, 0.999)


def test_bn_splits_split_both_backbones_and_keep_the_state_dict_keys() -> None:
    plain, split = tiny_moco(), tiny_moco(bn_splits=2)
    assert list(plain.state_dict()) == list(split.state_dict())
    for backbone in (split.backbone, split.key_backbone):
        bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(isinstance(m, SplitBatchNorm2d) and m.splits == 2 for m in bns)
    assert not any(isinstance(m, SplitBatchNorm2d) for m in plain.modules())


def test_bad_configs_are_refused() -> None:
    base = {"backbone": {"depth": 18}, "gpus": 2, "train": {"batch_size": 8}}
    with pytest.raises(SslzooError, match="queue_len = 12 holds less than one global batch"):
        MoCo.from_config({**base, "method_args": {"queue_len": 12}})
    with pytest.raises(SslzooError, match="bn_splits = 3"):
        MoCo.from_config({**base, "method_args": {"bn_splits": 3}})
    with pytest.raises(SslzooError, match="sync_bn false"):
        MoCo.from_config(
            {**base, "backbone": {"depth": 18, "sync_bn": True}, "method_args": {"bn_splits": 2}}
        )
    with pytest.raises(SslzooError, match="method_args.neck"):
        MoCo.from_config({**base, "method_args": {"neck": {"layers": 2}}})


class KilledMoCo(MoCo):
    """A tiny MoCo that raises :class:`Killed` at a given forward."""

    def __init__(self, init_seed: int, kill_at_forward: int | None = None) -> None:
        torch.manual_seed(init_seed)
        super().__init__(depth=18, neck=SMALL_NECK, queue_len=12, temperature=0.2, momentum=0.9)
        self.kill_at_forward, self.forwards = kill_at_forward, 0

    def forward(self, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        self.forwards += 1
        if self.forwards == self.kill_at_forward:
            raise Killed
        return super().forward(batch)


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    """The queue, its pointer and the key encoder are resumed with the weights; the key shuffle
    draws from the generators the trainer reseeds every epoch."""
    cfg = make_cfg(batch_size=4, epochs=2)
    cfg["train"]["optimizer"]["lr"] = 0.01
    data = TwoNoisyViews(size=8)  # 2 iterations per epoch: 4 x 4 keys wrap around the queue of 12
    reference = KilledMoCo(init_seed=0)
    start_queue = reference.key_queue.queue.clone()
    train(reference, data, cfg, tmp_path / "a", tmp_path / "a.pth", seed=5)
    assert reference.key_queue.ptr.tolist() == [(4 * 4) % 12]
    assert not torch.equal(reference.key_queue.queue, start_queue)

    killed = KilledMoCo(init_seed=0, kill_at_forward=2 + 2)  # mid epoch 2
    with pytest.raises(Killed):
        train(killed, data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=5)
    saved = torch.load(tmp_path / "b" / LATEST, weights_only=True)
    assert saved["epoch"] == 1 and saved["state_dict"]["key_queue.ptr"].tolist() == [2 * 4]

    resumed = KilledMoCo(init_seed=9)  # other weights and queue: the resume state must win
    assert train(resumed, data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=5)["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "a.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pth", weights_only=True)["state_dict"]
    assert {"key_queue.queue", "key_queue.ptr"} <= set(a)
    assert_same_weights(a, b, exact=True)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in read_log(tmp_path / "a")]
    assert [{k: v for k, v in r.items() if k != "time"} for r in read_log(tmp_path / "b")] == strip


@pytest.mark.parametrize("name", [V1, V2, "mocov2_resnet18_mini", "mocov1_resnet18_mini"])
def test_configs_load_and_build(name: str) -> None:
    path = CONFIG_DIR / f"{name}.yaml"
    cfg = load_model_config(path)
    entry = load_model_entry(path)  # reported numbers use the table columns
    assert entry.method == cfg["method"] == name.split("_")[0]
    rng = np.random.default_rng(0)
    view1, view2 = MoCo.views(cfg)(Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)))
    size = cfg["views"]["image_size"]
    assert view1.shape == view2.shape == (3, size, size)
    if cfg["backbone"]["depth"] == 18:
        model = MoCo.from_config(cfg)
        out = model((view1.unsqueeze(0).repeat(2, 1, 1, 1), view2.unsqueeze(0).repeat(2, 1, 1, 1)))
        assert torch.isfinite(out["loss"])


# mmselfsup 0.x (tag v0.11.0) configs/selfsup/_base_/models/mocov{1,2}.py (M),
# datasets/imagenet_mocov{1,2}.py (D), schedules/sgd_{steplr,coslr}-200e_in1k.py (S)
COMMON = {
    "gpus": 8,  # the 8 of 8xb32
    "backbone.depth": 50,  # M depth=50
    "backbone.sync_bn": False,  # M norm_cfg=dict(type='BN')
    "backbone.zero_init_residual": False,  # M not set: mmcls ResNet's default
    "method_args.queue_len": 65536,  # M queue_len=65536
    "method_args.neck.out": 128,  # M feat_dim=128, out_channels=128
    "method_args.momentum": 0.999,  # M momentum=0.999
    "method_args.bn_splits": 1,  # BN per GPU, as the reference's 8 processes
    "views.image_size": 224,  # D RandomResizedCrop size=224
    "views.scale": [0.2, 1.0],  # D scale=(0.2, 1.)
    "views.interpolation": "bilinear",  # D no interpolation: torchvision's default
    "views.flip_p": 0.5,  # D RandomHorizontalFlip()
    "views.grayscale_p": 0.2,  # D RandomGrayscale p=0.2
    "train.batch_size": 32,  # D samples_per_gpu=32
    "train.workers": 4,  # D workers_per_gpu=4
    "train.accumulate": 1,
    "train.epochs": 200,  # S max_epochs=200
    "train.optimizer.name": "sgd",  # S type='SGD'
    "train.optimizer.lr": 0.03,  # S lr=0.03
    "train.optimizer.momentum": 0.9,  # S momentum=0.9
    "train.optimizer.weight_decay": 1e-4,  # S weight_decay=1e-4
    "train.optimizer.nesterov": False,
    "train.schedule.warmup_epochs": 0,  # S no warm-up
    "train.schedule.by_epoch": True,  # not set: mmcv's LrUpdaterHook default
}
REFERENCE = {
    V1: {
        **COMMON,
        "method_args.neck.hidden": None,  # M neck LinearNeck
        "method_args.temperature": 0.07,  # M ContrastiveHead temperature=0.07
        "views.steps": ["crop", "grayscale", "jitter", "flip"],  # D train_pipeline order, no blur
        "views.color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.4},  # D
        "views.color_jitter_p": 1.0,  # D a plain ColorJitter
        "train.schedule.name": "step",  # S policy='step'
        "train.schedule.steps": [120, 160],  # S step=[120, 160]
        "train.schedule.gamma": 0.1,  # S not set: mmcv's StepLrUpdaterHook default
    },
    V2: {
        **COMMON,
        "method_args.neck.hidden": 2048,  # M MoCoV2Neck hid_channels=2048
        "method_args.temperature": 0.2,  # M ContrastiveHead temperature=0.2
        "views.steps": ["crop", "jitter", "grayscale", "blur", "flip"],  # D train_pipeline order
        "views.color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},  # D
        "views.color_jitter_p": 0.8,  # D RandomAppliedTrans p=0.8
        "views.blur_sigma": [0.1, 2.0],  # D GaussianBlur sigma_min=0.1, sigma_max=2.0
        "views.blur_p": 0.5,  # D GaussianBlur p=0.5
        "train.schedule.name": "cosine",  # S policy='CosineAnnealing'
        "train.schedule.min_lr": 0.0,  # S min_lr=0.
    },
}
# mmselfsup 0.x configs/selfsup/mocov2/README.md, the resnet50_8xb32-coslr-200e rows
README_V2 = {
    "svm_voc07.Best Layer": "feature5",
    "svm_voc07.SVM": 84.04,
    "lowshot_voc07.Best Layer": "feature5",
    **{f"lowshot_voc07.k={k}": v for k, v in zip((1, 2, 4, 8, 16, 32, 64, 96), (43.14, 53.29, 65.34, 71.03, 75.42, 78.48, 80.88, 82.23), strict=True)},
    **{f"linear_imagenet.Feature{i}": v for i, v in enumerate((15.96, 34.22, 45.78, 61.11, 66.24), start=1)},
    "linear_imagenet.AvgPool": 67.58,  # resnet50_linear-8xb32-steplr-100e_in1k: the common AvgPool protocol
    **{f"linear_places205.Feature{i}": v for i, v in enumerate((20.92, 35.72, 42.62, 49.79, 52.25), start=1)},
    **{f"knn_imagenet.k={k}": v for k, v in zip((10, 20, 100, 200), (55.6, 55.7, 53.7, 52.5), strict=True)},
    "det_voc0712.AP50": 81.06,
    **{f"det_coco.{k}": v for k, v in zip(("mAP(Box)", "AP50(Box)", "AP75(Box)", "mAP(Mask)", "AP50(Mask)", "AP75(Mask)"), (40.2, 59.7, 44.2, 36.1, 56.7, 38.8), strict=True)},
    "seg_voc12aug.mIOU": 67.55,
}  # fmt: skip



@pytest.mark.parametrize(
    ("name", "key", "expected"),
    [(name, key, value) for name, values in REFERENCE.items() for key, value in values.items()],
    ids=[f"{name.split('_')[0]}-{key}" for name, values in REFERENCE.items() for key in values],
)
def test_the_full_configs_are_the_reference_files(name: str, key: str, expected: object) -> None:
    assert value_at(load_model_config(CONFIG_DIR / f"{name}.yaml"), key) == expected


@pytest.mark.parametrize(("key", "expected"), README_V2.items(), ids=list(README_V2))
def test_the_v2_reported_numbers_are_the_readme_rows(key: str, expected: object) -> None:
    benchmark, column = key.split(".", 1)
    assert load_model_entry(CONFIG_DIR / f"{V2}.yaml").reported[benchmark][column] == expected


def test_nothing_else_is_reported() -> None:
    """MoCo v1's README reports no numbers; v2 the rows above, on the common protocols only."""
    v2 = load_model_entry(CONFIG_DIR / f"{V2}.yaml").reported
    assert sorted(f"{b}.{c}" for b, columns in v2.items() for c in columns) == sorted(README_V2)
    assert load_model_entry(CONFIG_DIR / f"{V1}.yaml").reported == {}
    for name in REFERENCE:
        assert load_model_config(CONFIG_DIR / f"{name}.yaml")["extra_benchmarks"] == []
