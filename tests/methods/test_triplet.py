"""Triplet: truncated triplet loss against a naive loop, symmetry, random input resizing; the
configs against the reference's pretraining config and README."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslzoo.config import load_model_config
from sslzoo.errors import SslzooError
from sslzoo.losses import truncated_triplet_loss
from sslzoo.methods.byol import BYOL
from sslzoo.methods.triplet import Triplet, random_size
from sslzoo.tables import load_model_entries
from tests.methods.config_values import value_at

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
SMALL_MLP = {"hidden": 32, "out": 8}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def naive_triplet_loss(
    prediction: torch.Tensor, target: torch.Tensor, margin: float, gamma: float, negatives: int, skip: int
) -> float:
    """The loss written out row by row in plain Python floats."""
    n = prediction.shape[0]
    p = [row / row.norm() for row in prediction.double()]
    t = [row / row.norm() for row in target.double()]
    total = 0.0
    for i in range(n):
        d_ap = -2.0 * float(p[i] @ t[i])
        others = sorted(-2.0 * float(p[i] @ t[j]) for j in range(n) if j != i)
        kept = others[:negatives][skip:]
        d_an = sum(kept) / len(kept)
        total += max(0.0, -(d_an - gamma * d_ap) + margin)
    return total / n


@pytest.mark.parametrize(
    ("n", "margin", "negatives", "skip"),
    [(16, 100.0, 10, 1), (11, 100.0, 10, 1), (13, 0.0, 10, 1), (12, 0.5, 4, 2), (9, 1.0, 3, 0)],
)
def test_truncated_triplet_loss_matches_a_naive_loop(
    n: int, margin: float, negatives: int, skip: int
) -> None:
    generator = torch.Generator().manual_seed(n)
    prediction = torch.randn(n, 6, generator=generator)
    target = prediction + 0.8 * torch.randn(n, 6, generator=generator)
    loss = truncated_triplet_loss(
        prediction, target, margin=margin, gamma=2.0, negatives=negatives, skip_hardest=skip
    )
    expected = naive_triplet_loss(prediction, target, margin, 2.0, negatives, skip)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_reference_margin_never_clips() -> None:
    # |d| <= 2: loss = 100 + 2 d_ap - d_an exactly, i.e. 100 - 4 cos_pos + 2 mean cos_neg
    generator = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(12, 5, generator=generator), torch.randn(12, 5, generator=generator)
    loss = truncated_triplet_loss(prediction, target)
    assert 100.0 - 6.0 <= loss.item() <= 100.0 + 6.0


def test_loss_needs_enough_negatives() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        truncated_triplet_loss(torch.randn(10, 4), torch.randn(10, 4))
    with pytest.raises(SslzooError, match="train.batch_size"):
        Triplet.from_config({"backbone": {"depth": 18}, "train": {"batch_size": 8}})


def tiny_triplet(resize: dict | None = None) -> Triplet:
    torch.manual_seed(0)
    return Triplet(depth=18, projector=SMALL_MLP, predictor=SMALL_MLP, resize=resize)


def test_loss_is_symmetric_over_the_views() -> None:
    model = tiny_triplet(resize={"online": None, "target": None})
    view1, view2 = torch.randn(12, 3, 16, 16), torch.randn(12, 3, 16, 16)
    forward = model((view1, view2))["loss"]
    swapped = model((view2, view1))["loss"]
    assert forward.item() == pytest.approx(swapped.item(), rel=1e-6)
    with torch.no_grad():
        o1 = model.predictor(model.online_projection(view1))
        o2 = model.predictor(model.online_projection(view2))
        t1, t2 = model.target_projection(view1), model.target_projection(view2)
    by_hand = naive_triplet_loss(o1, t2, 100.0, 2.0, 10, 1) + naive_triplet_loss(o2, t1, 100.0, 2.0, 10, 1)
    assert forward.item() == pytest.approx(by_hand, rel=1e-5)


def test_random_size_covers_the_inclusive_range() -> None:
    generator = torch.Generator().manual_seed(0)
    sizes = {random_size([96, 100], generator) for _ in range(300)}
    assert sizes == {96, 97, 98, 99, 100}


def test_forward_resizes_inputs_inside_the_configured_ranges() -> None:
    model = tiny_triplet(resize={"online": [8, 12], "target": [13, 16]})
    seen: dict[str, list[tuple[int, int]]] = {"online": [], "target": []}
    model.backbone.register_forward_pre_hook(
        lambda _m, args: seen["online"].append(tuple(args[0].shape[-2:]))
    )
    model.target_backbone.register_forward_pre_hook(
        lambda _m, args: seen["target"].append(tuple(args[0].shape[-2:]))
    )
    batch = (torch.randn(11, 3, 16, 16), torch.randn(11, 3, 16, 16))
    with torch.no_grad():
        for _ in range(6):
            model(batch)
    assert len(seen["online"]) == len(seen["target"]) == 12  # two views per network per iteration
    for height, width in seen["online"]:
        assert height == width and 8 <= height <= 12
    for height, width in seen["target"]:
        assert height == width and 13 <= height <= 16
    assert len(set(seen["online"])) > 1  # drawn afresh, not fixed


def test_resize_is_bilinear_without_antialias() -> None:
    model = tiny_triplet(resize={"online": [8, 8], "target": [16, 16]})
    images = torch.randn(2, 3, 16, 16)
    expected = torch.nn.functional.interpolate(images, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(model.online_input(images), expected)
    assert torch.equal(model.target_input(images), images)  # 16 -> 16 bilinear is the identity


def test_triplet_reuses_byol_with_biased_mlps() -> None:
    model = Triplet.from_config({"backbone": {"depth": 18}, "train": {"batch_size": 32}})
    assert isinstance(model, BYOL) and type(model).views is BYOL.views
    assert model.projector[3].bias is not None and model.predictor[3].bias is not None
    assert model.loss_scale == 1.0
    model.after_step(0.5)
    assert model.momentum == pytest.approx(0.995)


TRIPLET_1000E = "triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k"
# images per optimizer step of each full-size config: the reference file's 196 x 8 x 4, and the
# 4096 of its name for our readings of the 200- and 800-epoch rows
TOTAL_BATCH = {
    "triplet_resnet50_8xb128-amp-accum4-coslr-200e_in1k": 4096,
    "triplet_resnet50_8xb128-amp-accum4-coslr-800e_in1k": 4096,
    TRIPLET_1000E: 6272,
}
# the configs with reported numbers (on the model's row or a snapshot's)
REPORTED = {"triplet_resnet50_8xb128-amp-accum4-coslr-200e_in1k", TRIPLET_1000E}


@pytest.mark.parametrize("name", [*TOTAL_BATCH, "triplet_resnet18_mini"])
def test_configs_load_and_build(name: str) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg["method"] == "triplet"
    entries = load_model_entries(CONFIG_DIR / f"{name}.yaml")  # reported numbers use the table columns
    assert all(entry.method == "triplet" for entry in entries)
    assert any(entry.reported for entry in entries) == (name in REPORTED)
    train = cfg["train"]
    if cfg["backbone"]["depth"] == 50:
        assert cfg["gpus"] * train["batch_size"] * train["accumulate"] == TOTAL_BATCH[name]
        assert train["optimizer"]["name"] == "lars" and train["amp"] is True
    rng = np.random.default_rng(0)
    view1, view2 = Triplet.views(cfg)(Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)))
    assert view1.shape == view2.shape
    if cfg["backbone"]["depth"] == 18:
        model = Triplet.from_config(cfg)
        lo, hi = model.resize_args["online"]
        assert lo <= hi <= cfg["views"]["image_size"]


# wanggrun/triplet (commit c1bbaa9) configs/selfsup/triplet/r50_bs4096_accumulate4_ep1000_fp16_triplet_gpu3090.py,
# each value with its line (LN); gpus from its README (`bash tools/dist_train.sh <that config> 8`).
REFERENCE_1000E = {
    "gpus": 8,
    "backbone.depth": 50,  # L11 depth=50
    "backbone.sync_bn": True,  # L14 norm_cfg=dict(type='SyncBN')
    "method_args.base_momentum": 0.99,  # L7 base_momentum=0.99
    "method_args.projector.hidden": 4096,  # L18 hid_channels=4096
    "method_args.projector.out": 256,  # L19 out_channels=256
    "method_args.projector.bias": True,  # L22 with_bias=True
    "method_args.predictor.hidden": 4096,  # L28 hid_channels=4096
    "method_args.predictor.out": 256,  # L29 out_channels=256
    "method_args.predictor.bias": True,  # L30 with_bias=True
    "views.image_size": 224,  # L42 RandomResizedCrop(size=224, ...)
    "views.interpolation": "bicubic",  # L42 interpolation=3 (PIL's BICUBIC)
    "views.scale": [0.08, 1.0],  # L42 no scale given: torchvision's default
    "views.flip_p": 0.5,  # L43 RandomHorizontalFlip() (p=0.5)
    "views.color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1},  # L48-52
    "views.color_jitter_p": 0.8,  # L54 p=0.8
    "views.grayscale_p": 0.2,  # L55 RandomGrayscale(p=0.2)
    "views.blur_sigma": [0.1, 2.0],  # L61-62 sigma_min=0.1, sigma_max=2.0
    "views.blur_p": [1.0, 0.1],  # L64 p=1., L78 train_pipeline2[4]['p'] = 0.1
    "views.solarize_threshold": 128,  # L66 Solarization() (threshold 128, its default)
    "views.solarize_p": [0.0, 0.2],  # L66 p=0., L79 train_pipeline2[5]['p'] = 0.2
    "train.batch_size": 196,  # L82 imgs_per_gpu=196
    "train.workers": 14,  # L83 workers_per_gpu=14
    "train.accumulate": 4,  # L94 update_interval = 4
    "train.optimizer.name": "lars",  # L99 type='LARS'
    "train.optimizer.lr": 4.8,  # L99 lr=4.8
    "train.optimizer.weight_decay": 1e-6,  # L99 weight_decay=0.000001
    "train.optimizer.momentum": 0.9,  # L99 momentum=0.9
    "train.optimizer.exclude_bn_bias": True,  # L100-102 paramwise_options: bn/gn and bias excluded
    "train.amp": True,  # L104 use_fp16 = True
    "train.schedule.name": "cosine",  # L110 policy='CosineAnnealing'
    "train.schedule.min_lr": 0.0,  # L111 min_lr=0.
    "train.schedule.warmup_epochs": 10,  # L113 warmup_iters=10 with L115 warmup_by_epoch=True
    "train.schedule.warmup_ratio": 1e-4,  # L114 warmup_ratio=0.0001
    "train.schedule.by_epoch": True,  # not set: mmcv's LrUpdaterHook default
    "train.epochs": 1000,  # L118 total_epochs = 1000
}



@pytest.mark.parametrize(("key", "expected"), REFERENCE_1000E.items(), ids=list(REFERENCE_1000E))
def test_the_1000_epoch_config_is_the_reference_file(key: str, expected: object) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{TRIPLET_1000E}.yaml")
    assert value_at(cfg, key) == expected


def test_the_800_epoch_config_is_the_reference_file_with_less_memory_and_a_shorter_schedule() -> None:
    ours = load_model_config(CONFIG_DIR / "triplet_resnet50_8xb128-amp-accum4-coslr-800e_in1k.yaml")
    reference = load_model_config(CONFIG_DIR / f"{TRIPLET_1000E}.yaml")
    changed = {key: (ours["train"][key], reference["train"][key]) for key in ours["train"]}
    assert {key: pair for key, pair in changed.items() if pair[0] != pair[1]} == {
        "epochs": (800, 1000),
        "batch_size": (128, 196),
        "workers": (8, 14),
    }
    # the rest equal, but which benchmarks it runs: the 1000-epoch run's Triplet protocols run for
    # its snapshots, the variant's for itself
    shown = ("train", "snapshots", "extra_benchmarks")
    assert {key: value for key, value in ours.items() if key not in shown} == {
        key: value for key, value in reference.items() if key not in shown
    }
    assert ours["snapshots"] == [] and reference["extra_benchmarks"] == []
    assert set(ours["extra_benchmarks"]) == {
        name for snapshot in reference["snapshots"] for name in snapshot["extra_benchmarks"]
    }


# wanggrun/triplet README: the linear example runs extract_backbone_weights.py on ssl_ep940.pth
# and r50_last_cos_for_MoreSslEpoch.py (top-1 75.9, "longer epochs"); the detection examples
# convert release_ep800.pth and run pascal_voc_R_50_C4_24k_moco.yaml (AP50 82.6, AP 56.9, AP75
# 63.8) and coco_R_50_C4_2x_moco.yaml (AP(box) 41.7, AP(mask) 36.2).
README_CHECKPOINTS = {
    940: {"linear_triplet_more_imagenet": {"AvgPool": 75.9}},
    800: {
        "det_voc0712_moco": {"AP50": 82.6, "AP": 56.9, "AP75": 63.8},
        "det_coco_c4_moco": {"mAP(Box)": 41.7, "mAP(Mask)": 36.2},
    },
}


def test_the_readme_numbers_sit_under_the_checkpoints_that_produced_them() -> None:
    path = CONFIG_DIR / f"{TRIPLET_1000E}.yaml"
    rows = {entry.name: entry.reported for entry in load_model_entries(path)}
    assert rows == {
        TRIPLET_1000E: {},  # nothing is reported of the epoch-1000 checkpoint
        f"{TRIPLET_1000E}_ep940": README_CHECKPOINTS[940],
        f"{TRIPLET_1000E}_ep800": README_CHECKPOINTS[800],
    }
    # each snapshot runs exactly the protocols of its numbers
    for snapshot in load_model_config(path)["snapshots"]:
        assert sorted(snapshot["extra_benchmarks"]) == sorted(README_CHECKPOINTS[snapshot["epoch"]])
    other = CONFIG_DIR / "triplet_resnet50_8xb128-amp-accum4-coslr-800e_in1k.yaml"
    assert [entry.reported for entry in load_model_entries(other)] == [{}]
