"""Per-iteration lr of the step and cosine schedules with linear warm-up, against the mmcv
LrUpdaterHook formulas written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sslzoo.runtime.schedules import LrSchedule, apply_lr, build_schedule, per_group


def warm(regular: float, i: int, warmup_iters: int, ratio: float) -> float:
    """mmcv linear warm-up: regular * (1 - (1 - i / W) * (1 - ratio))."""
    return regular * (1 - (1 - i / warmup_iters) * (1 - ratio))


def test_step_schedule_as_rotation_pred_protocol() -> None:
    # 70 epochs of 10 iterations, steps at epochs 30 and 50, 5 warm-up epochs from 0.1 x lr.
    schedule = build_schedule(
        {"name": "step", "steps": [30, 50], "gamma": 0.1, "warmup_epochs": 5, "warmup_ratio": 0.1}, 70, 10
    )
    assert schedule.warmup_iters == 50
    expected = {
        0: 0.2 * 0.1,
        1: 0.2 * (1 - (1 - 1 / 50) * 0.9),
        25: 0.2 * 0.55,
        49: 0.2 * (1 - (1 / 50) * 0.9),
        50: 0.2,
        299: 0.2,  # last iteration of epoch 29
        300: 0.02,  # first of epoch 30
        499: 0.02,
        500: 0.002,
        699: 0.002,
    }
    for iteration, lr in expected.items():
        assert schedule.lr(0.2, iteration) == pytest.approx(lr, rel=1e-12), iteration


def test_cosine_by_epoch_holds_the_regular_lr_within_an_epoch() -> None:
    # BYOL-like: 200 epochs of 5 iterations, 10 warm-up epochs from 1e-4 x lr, min_lr 0.
    schedule = LrSchedule("cosine", epochs=200, iters_per_epoch=5, warmup_epochs=10, warmup_ratio=1e-4)

    def regular(epoch: int) -> float:
        return 4.8 * (1 + math.cos(math.pi * epoch / 200)) / 2

    assert schedule.lr(4.8, 0) == pytest.approx(4.8 * 1e-4)
    assert schedule.lr(4.8, 27) == pytest.approx(warm(regular(5), 27, 50, 1e-4))
    assert schedule.lr(4.8, 50) == pytest.approx(regular(10))
    assert schedule.lr(4.8, 54) == pytest.approx(regular(10))
    assert schedule.lr(4.8, 55) == pytest.approx(regular(11))
    assert schedule.lr(4.8, 999) == pytest.approx(regular(199))
    assert schedule.lr(4.8, 999) > 0


def test_cosine_per_iteration_with_min_lr_and_fractional_steps() -> None:
    cosine = LrSchedule("cosine", epochs=4, iters_per_epoch=5, min_lr=0.01, by_epoch=False)
    assert cosine.lr(1.0, 7) == pytest.approx(0.01 + 0.99 * (1 + math.cos(math.pi * 1.4 / 4)) / 2)
    step = LrSchedule(
        "step",
        epochs=2,
        iters_per_epoch=10,
        steps=(0.86, 1.43),
        by_epoch=False,
        warmup_epochs=0.14,
        warmup_ratio=0.1,
    )
    assert step.warmup_iters == 1
    assert step.lr(0.05, 0) == pytest.approx(0.005)
    assert step.lr(0.05, 8) == pytest.approx(0.05)
    assert step.lr(0.05, 9) == pytest.approx(0.005)  # 0.9 epochs >= 0.86
    assert step.lr(0.05, 15) == pytest.approx(0.0005)  # 1.5 epochs >= 1.43


def test_apply_lr_scales_each_group_from_its_initial_lr() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    schedule = LrSchedule("step", epochs=3, iters_per_epoch=2, steps=(1,), gamma=0.5)
    assert apply_lr(optimizer, schedule, 2) == pytest.approx(0.05)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.5])
    assert apply_lr(optimizer, schedule, 0) == pytest.approx(0.1)


def test_a_fix_lr_group_keeps_its_initial_lr() -> None:
    """SimSiam's predictor group (``fix_lr``) stays at its base lr; the others follow the cosine."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "fix_lr": True}], lr=0.05)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    schedule = LrSchedule("cosine", epochs=4, iters_per_epoch=1)
    schedules = per_group(optimizer, schedule.lr)
    for iteration in range(4):
        cosine = 0.05 * (1 + math.cos(math.pi * iteration / 4)) / 2
        assert schedules[0](iteration) == pytest.approx(cosine)
        assert schedules[1](iteration) == 0.05
        assert apply_lr(optimizer, schedule, iteration) == pytest.approx(cosine)
        assert optimizer.param_groups[1]["lr"] == 0.05
