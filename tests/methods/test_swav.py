"""SwAV: Sinkhorn-Knopp and the swapped-prediction loss against plain loops, the queue (from its
start epoch, newest first, across processes, in the resume state), the frozen prototypes, the
configs against the reference's files and README."""

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
from sslzoo.engine.trainer import LATEST, train
from sslzoo.errors import SslzooError
from sslzoo.methods import swav
from sslzoo.methods.swav import SwAV, sinkhorn
from sslzoo.tables import load_model_entry
from tests.methods.config_values import value_at

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
SWAV_200E = "swav_resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def plain_sinkhorn(scores: list[list[float]], iterations: int, epsilon: float) -> list[list[float]]:
    """Sinkhorn-Knopp written out in Python floats: exp(s / eps), total 1, then rows of the
    prototypes to 1/K and columns of the samples to 1/N, ``iterations`` times; N x the result."""
    n, k = len(scores), len(scores[0])
    q = [[math.exp(scores[i][j] / epsilon) for j in range(k)] for i in range(n)]  # [N][K]
    total = sum(sum(row) for row in q)
    q = [[value / total for value in row] for row in q]
    for _ in range(iterations):
        for j in range(k):
            prototype = sum(q[i][j] for i in range(n))
            for i in range(n):
                q[i][j] /= prototype * k
        for i in range(n):
            sample = sum(q[i])
            q[i] = [value / (sample * n) for value in q[i]]
    return [[value * n for value in row] for row in q]


@pytest.mark.parametrize(
    ("n", "k", "iterations", "epsilon"),
    [(5, 7, 3, 0.05), (12, 4, 1, 0.05), (3, 10, 5, 0.05), (32, 30, 3, 0.02)],
)
def test_sinkhorn_matches_a_plain_loop(n: int, k: int, iterations: int, epsilon: float) -> None:
    scores = F.normalize(torch.randn(n, 6, generator=torch.Generator().manual_seed(n)), dim=1)
    prototypes = F.normalize(torch.randn(k, 6, generator=torch.Generator().manual_seed(k)), dim=1)
    cosines = scores @ prototypes.t()
    ours = sinkhorn(cosines, iterations, epsilon)
    expected = torch.tensor(
        plain_sinkhorn(cosines.double().tolist(), iterations, epsilon), dtype=torch.float64
    )
    torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.sum(dim=1), torch.ones(n))  # each sample's code sums to 1


def test_sinkhorn_stays_finite_at_the_extreme_cosines_of_a_small_epsilon() -> None:
    """exp(1 / 0.02) = e^50 fits float32: cosines of exactly +-1 (the mini config's epsilon)
    give finite codes, equal to the plain loop's."""
    cosines = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, -1.0]])
    ours = sinkhorn(cosines, 3, 0.02)
    assert torch.isfinite(ours).all()
    expected = torch.tensor(plain_sinkhorn(cosines.double().tolist(), 3, 0.02), dtype=torch.float64)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-6)


def tiny_cfg(**method_args: object) -> dict:
    """The mini config at 16 + 8 px, 2 + 2 views, 4 images per batch, 2 epochs, small heads."""
    cfg = load_model_config(CONFIG_DIR / "swav_resnet18_mini.yaml")
    cfg["views"]["crops"] = [
        {"count": 2, "image_size": 16, "scale": [0.5, 1.0]},
        {"count": 2, "image_size": 8, "scale": [0.2, 0.5]},
    ]
    cfg["method_args"] = {
        **cfg["method_args"],
        "projector": {"hidden": 16, "out": 8},
        "prototypes": 6,
        "epsilon": 0.05,  # the values loss_by_hand computes with, whatever the mini config sets
        "temperature": 0.1,
        "queue_length": 8,
        "queue_start_epoch": 1,
        "freeze_prototypes_iters": 0,
        **method_args,
    }
    cfg["train"].update(epochs=2, batch_size=4, workers=0)
    return cfg


def tiny_swav(**method_args: object) -> SwAV:
    torch.manual_seed(0)
    return SwAV.from_config(tiny_cfg(**method_args))


def batch(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, size, size, generator=generator) for size in (16, 16, 8, 8)]


def capture(model: SwAV) -> dict[str, torch.Tensor]:
    """The projector output and the prototype scores of the next forward."""
    seen: dict[str, torch.Tensor] = {}
    model.projector.register_forward_hook(
        lambda _m, _a, out: seen.__setitem__("z", F.normalize(out.detach(), dim=1))
    )
    model.prototypes.register_forward_hook(lambda _m, _a, out: seen.__setitem__("scores", out.detach()))
    return seen


def loss_by_hand(scores: torch.Tensor, queue_scores: list[torch.Tensor] | None, temperature: float) -> float:
    """The swapped-prediction loss of 4 views (0 and 1 assigned) written out row by row."""
    views, size = 4, scores.shape[0] // 4
    total = 0.0
    for i, crop in enumerate((0, 1)):
        out = scores[crop * size : (crop + 1) * size].double()
        rows = out.tolist() if queue_scores is None else queue_scores[i].double().tolist() + out.tolist()
        q = plain_sinkhorn(rows, 3, 0.05)[-size:]
        sub = 0.0
        for v in range(views):
            if v == crop:
                continue
            for b in range(size):
                logits = [value / temperature for value in scores[v * size + b].double().tolist()]
                top = max(logits)
                log_z = top + math.log(sum(math.exp(x - top) for x in logits))
                sub -= sum(q[b][j] * (logits[j] - log_z) for j in range(len(logits))) / size
        total += sub / (views - 1)
    return total / 2


def test_forward_is_the_swapped_prediction_of_normalised_prototypes() -> None:
    model = tiny_swav()
    seen = capture(model)
    out = model(batch(0))
    weight = model.prototypes.weight.detach()
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(6))  # normalised in place
    torch.testing.assert_close(seen["scores"], seen["z"] @ weight.t())
    assert out["loss"].item() == pytest.approx(loss_by_hand(seen["scores"], None, 0.1), rel=1e-5)
    assert out["queue_used"].item() == 0.0


def test_the_queue_fills_from_its_start_epoch_newest_first_and_is_used_once_full() -> None:
    model = tiny_swav()  # queue of 8 rows, batch 4, from epoch 1 of 2
    seen = capture(model)
    model(batch(0))
    assert int(model.epoch) == 0 and int(model.queue_rows) == 0 and not model.queue.any()
    model.after_step(1 / 2)  # one epoch of two done
    assert int(model.epoch) == 1
    zs = []
    for seed in (1, 2):
        out = model(batch(seed))
        assert out["queue_used"].item() == 0.0
        zs.append(seen["z"])
    assert int(model.queue_rows) == 8
    for i, crop in enumerate((0, 1)):  # the assigned views' z, the latest batch first
        expected = torch.cat([zs[1][crop * 4 : (crop + 1) * 4], zs[0][crop * 4 : (crop + 1) * 4]])
        torch.testing.assert_close(model.queue[i], expected)
    queue = model.queue.clone()
    out = model(batch(3))
    assert out["queue_used"].item() == 1.0
    weight = model.prototypes.weight.detach()
    queue_scores = [queue[i] @ weight.t() for i in range(2)]
    assert out["loss"].item() == pytest.approx(loss_by_hand(seen["scores"], queue_scores, 0.1), rel=1e-5)
    assert out["loss"].item() != pytest.approx(loss_by_hand(seen["scores"], None, 0.1), rel=1e-5)


def test_no_queue_before_its_epoch_nor_with_length_zero() -> None:
    model = tiny_swav(queue_start_epoch=2)
    model.after_step(1 / 2)
    for seed in range(3):
        assert model(batch(seed))["queue_used"].item() == 0.0
    assert int(model.queue_rows) == 0 and not model.queue.any()
    unqueued = tiny_swav(queue_length=0)
    unqueued.after_step(1 / 2)
    assert unqueued(batch(0))["queue_used"].item() == 0.0 and unqueued.queue.numel() == 0


class RandomImages(Dataset):
    """``(multi-crop views of a random 24 px image, 0)``."""

    def __init__(self, size: int, transform: object) -> None:
        self.images = np.random.default_rng(0).integers(0, 256, (size, 24, 24, 3), dtype=np.uint8)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[object, int]:
        return self.transform(Image.fromarray(self.images[index])), 0  # type: ignore[operator]


class Killed(Exception):
    """Stands in for a job killed mid-epoch."""


class RecordedSwAV(SwAV):
    """Keeps the prototypes after every step; raises :class:`Killed` at a chosen forward."""

    kill_at: int | None = None

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.forwards = getattr(self, "forwards", 0) + 1
        if self.forwards == self.kill_at:
            raise Killed
        return super().forward(views)

    def after_step(self, progress: float) -> None:
        super().after_step(progress)
        self.__dict__.setdefault("kept", []).append(self.prototypes.weight.detach().clone())


def test_prototypes_do_not_move_during_the_frozen_iterations(tmp_path: Path) -> None:
    cfg = tiny_cfg(freeze_prototypes_iters=2)
    torch.manual_seed(0)
    model = RecordedSwAV.from_config(cfg)
    start = F.normalize(model.prototypes.weight.detach(), dim=1)  # the first forward normalises them
    train(model, RandomImages(8, SwAV.views(cfg)), cfg, tmp_path / "work", seed=0)
    kept = model.__dict__["kept"]
    assert len(kept) == 4
    for weight in kept[:2]:  # steps 0 and 1: no gradient, no weight decay, no momentum
        torch.testing.assert_close(weight, start, rtol=0, atol=1e-6)
    assert (kept[2] - start).abs().max() > 1e-3  # step 2 moves them


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one_queue_included(tmp_path: Path) -> None:
    cfg = tiny_cfg(freeze_prototypes_iters=1, queue_length=4, queue_start_epoch=0)
    data = RandomImages(8, SwAV.views(cfg))  # 2 iterations per epoch; the queue fills, then serves
    torch.manual_seed(0)
    whole = RecordedSwAV.from_config(cfg)
    train(whole, data, cfg, tmp_path / "a", tmp_path / "a.pth", seed=1)

    torch.manual_seed(0)
    killed = RecordedSwAV.from_config(cfg)
    killed.kill_at = 2 + 2  # second iteration of the second epoch
    with pytest.raises(Killed):
        train(killed, data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=1)
    latest = torch.load(tmp_path / "b" / LATEST, weights_only=True)
    assert latest["epoch"] == 1 and latest["state_dict"]["queue"].any()
    assert int(latest["state_dict"]["queue_rows"]) == 4 and int(latest["state_dict"]["epoch"]) == 1
    torch.manual_seed(5)  # another init: the resume state must win
    resumed = RecordedSwAV.from_config(cfg)
    assert train(resumed, data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=1)["resumed_from_epoch"] == 1

    a = torch.load(tmp_path / "a.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and {"queue", "queue_rows", "epoch"} <= a.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_each_process_keeps_its_own_queue_block_in_a_buffer_equal_everywhere(monkeypatch) -> None:
    """Two processes, simulated: each pushes its own batches; all_gather hands every process both."""
    pushed = {rank: [torch.full((2, 4, 8), float(10 * rank + step)) for step in range(3)] for rank in (0, 1)}
    queues, blocks = [], []
    for rank in (0, 1):
        monkeypatch.setattr(swav, "_world", lambda rank=rank: (rank, 2))
        model = tiny_swav(queue_length=16)  # 8 rows on each of the 2 processes
        for step in range(3):

            def all_gather(out: list[torch.Tensor], _mine: torch.Tensor, step: int = step) -> None:
                for other in (0, 1):
                    out[other].copy_(pushed[other][step])

            monkeypatch.setattr(swav.dist, "all_gather", all_gather)
            model.push(pushed[rank][step])
        queues.append(model.queue.clone())
        blocks.append(model.queue_block().clone())
    assert torch.equal(queues[0], queues[1])
    for rank in (0, 1):  # 8 rows: the last two pushes of this process, newest first
        assert blocks[rank].shape == (2, 8, 8)
        assert blocks[rank][:, :4].unique().tolist() == [10 * rank + 2.0]
        assert blocks[rank][:, 4:].unique().tolist() == [10 * rank + 1.0]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(SslzooError, match="queue_length"):
        tiny_swav(queue_length=6)  # not a multiple of the batch of 4
    with pytest.raises(SslzooError, match="crops_for_assign"):
        tiny_swav(crops_for_assign=[0, 4])  # 4 views: 0..3
    with pytest.raises(SslzooError, match="method_args"):
        SwAV.from_config({**tiny_cfg(), "method_args": {"prototype": 5}})
    with pytest.raises(SslzooError, match="views"):
        tiny_swav()(batch(0)[:3])


# mmselfsup 0.x (v0.11.0) configs/selfsup/swav/swav_resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96.py
# and its _base_ files, the file of each value
REFERENCE = {
    "gpus": 8,  # the 8 of 8xb32
    "backbone.depth": 50,  # models/swav.py depth=50
    "backbone.sync_bn": True,  # norm_cfg=dict(type='SyncBN')
    "backbone.zero_init_residual": True,  # zero_init_residual=True
    "method_args.projector.hidden": 2048,  # SwAVNeck hid_channels=2048
    "method_args.projector.out": 128,  # SwAVNeck out_channels=128
    "method_args.prototypes": 3000,  # SwAVHead num_prototypes default
    "method_args.temperature": 0.1,  # SwAVHead temperature=0.1
    "method_args.epsilon": 0.05,  # SwAVHead epsilon=0.05
    "method_args.sinkhorn_iterations": 3,  # SwAVHead sinkhorn_iterations default
    "method_args.crops_for_assign": [0, 1],  # SwAVHook / SwAVHead crops_for_assign=[0, 1]
    "method_args.queue_length": 3840,  # SwAVHook queue_length=3840
    "method_args.queue_start_epoch": 15,  # SwAVHook epoch_queue_starts=15
    "method_args.freeze_prototypes_iters": 5005,  # frozen_layers_cfg=dict(prototypes=5005)
    "views.crops": [  # datasets/imagenet_swav_mcrop-2-6.py num_crops=[2, 6]
        {"count": 2, "image_size": 224, "scale": [0.14, 1.0]},  # RandomResizedCrop(224, scale=(0.14, 1.))
        {"count": 6, "image_size": 96, "scale": [0.05, 0.14]},  # RandomResizedCrop(96, scale=(0.05, 0.14))
    ],
    "views.interpolation": "bilinear",  # none given: torchvision's default
    "views.color_jitter": {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2},
    "views.color_jitter_p": 0.8,  # RandomAppliedTrans p=0.8
    "views.grayscale_p": 0.2,  # RandomGrayscale p=0.2
    "views.blur_sigma": [0.1, 2.0],  # GaussianBlur sigma_min=0.1, sigma_max=2.0
    "views.blur_p": 0.5,  # GaussianBlur p=0.5
    "views.flip_p": 0.5,  # RandomHorizontalFlip p=0.5
    "views.solarize_p": 0.0,  # no Solarization
    "train.batch_size": 32,  # samples_per_gpu=32
    "train.workers": 4,  # workers_per_gpu=4
    "train.accumulate": 1,  # no update_interval
    "train.optimizer.name": "lars",  # optimizer type='LARS'
    "train.optimizer.lr": 0.6,  # lr=0.6
    "train.optimizer.momentum": 0.9,  # schedules/lars_coslr-200e_in1k.py momentum=0.9
    "train.optimizer.weight_decay": 1e-6,  # weight_decay=1e-6
    "train.optimizer.exclude_bn_bias": False,  # no paramwise_options
    "train.schedule.name": "cosine",  # lr_config _delete_=True, policy='CosineAnnealing'
    "train.schedule.min_lr": 6e-4,  # min_lr=6e-4
    "train.schedule.warmup_epochs": 0,  # the base warm-up deleted
    "train.schedule.by_epoch": True,  # not set: mmcv's LrUpdaterHook default
    "train.epochs": 200,  # runner max_epochs=200
}



@pytest.mark.parametrize(("key", "expected"), REFERENCE.items(), ids=list(REFERENCE))
def test_the_config_is_the_reference_file(key: str, expected: object) -> None:
    cfg = load_model_config(CONFIG_DIR / f"{SWAV_200E}.yaml")
    assert value_at(cfg, key) == expected


# mmselfsup 0.x configs/selfsup/swav/README.md, the row of resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96
# (its AvgPool 70.47 comes from a linear protocol the zoo does not run)
README = {
    "svm_voc07": {"Best Layer": "feature5", "SVM": 87.00},
    "lowshot_voc07": {"Best Layer": "feature5", "k=1": 44.68, "k=2": 55.41, "k=4": 67.64, "k=8": 73.67,
                      "k=16": 78.14, "k=32": 81.58, "k=64": 83.98, "k=96": 85.15},
    "linear_imagenet": {"Feature1": 16.98, "Feature2": 34.96, "Feature3": 49.26, "Feature4": 65.98, "Feature5": 70.74},
    "linear_places205": {"Feature1": 23.33, "Feature2": 35.45, "Feature3": 43.13, "Feature4": 51.98, "Feature5": 55.09},
    "knn_imagenet": {"k=10": 60.5, "k=20": 60.6, "k=100": 59.0, "k=200": 57.6},
    "det_voc0712": {"AP50": 77.64},
    "det_coco": {"mAP(Box)": 40.2, "AP50(Box)": 60.5, "AP75(Box)": 43.9, "mAP(Mask)": 36.3, "AP50(Mask)": 57.5,
                 "AP75(Mask)": 38.8},
    "seg_voc12aug": {"mIOU": 63.73},
}  # fmt: skip
README_VALUES = [(b, c, v) for b, columns in README.items() for c, v in columns.items()]


@pytest.mark.parametrize(("benchmark", "column", "value"), README_VALUES)
def test_reported_numbers_are_the_readme_row(benchmark: str, column: str, value: object) -> None:
    assert load_model_entry(CONFIG_DIR / f"{SWAV_200E}.yaml").reported[benchmark][column] == value


def test_no_other_reported_numbers() -> None:
    reported = load_model_entry(CONFIG_DIR / f"{SWAV_200E}.yaml").reported
    assert {b: set(c) for b, c in reported.items()} == {b: set(c) for b, c in README.items()}


def test_mini_config_builds_and_gives_its_crops() -> None:
    cfg = load_model_config(CONFIG_DIR / "swav_resnet18_mini.yaml")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    views = SwAV.views(cfg)(image)
    sizes = [g["image_size"] for g in cfg["views"]["crops"] for _ in range(g["count"])]
    assert [v.shape[-1] for v in views] == sizes
    model = SwAV.from_config(cfg)
    assert model.backbone.depth == 18 and model.num_views == len(sizes)
    out = model([v.unsqueeze(0).expand(cfg["train"]["batch_size"], -1, -1, -1) for v in views])
    assert torch.isfinite(out["loss"])
