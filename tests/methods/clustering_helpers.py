"""Tiny images, configs and kill/resume runs shared by the DeepCluster and ODC tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from sslzoo.engine.trainer import TRAIN_LOG, train

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"


class Killed(Exception):
    """Stands in for a job killed mid-epoch."""


class TinyImages(Dataset):
    """``(image [3, 8, 8] + noise, 0)``: ``noise`` stands for the augmentation (0 for the
    extraction view)."""

    def __init__(self, size: int, noise: float) -> None:
        self.images = torch.randn(size, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        self.noise = noise

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index] + self.noise * torch.randn(3, 8, 8), 0


def tiny_config(method: str, method_args: dict, epochs: int = 2) -> dict:
    return {
        "method": method,
        "title": method,
        "dataset": "tiny",
        "gpus": 1,
        "backbone": {"depth": 18, "sync_bn": False, "zero_init_residual": False},
        "views": {},
        "method_args": method_args,
        "reported": {},
        "train": {
            "epochs": epochs,
            "batch_size": 8,
            "accumulate": 1,
            "workers": 0,
            "amp": False,
            "channels_last": False,
            "optimizer": {
                "name": "sgd",
                "lr": 0.05,
                "momentum": 0.9,
                "weight_decay": 1e-4,
                "nesterov": False,
            },
            "schedule": {
                "name": "cosine",
                "min_lr": 0.0,
                "by_epoch": False,
                "warmup_epochs": 0,
                "warmup_ratio": 0.1,
            },
        },
    }


def run(method: torch.nn.Module, cfg: dict, work_dir: Path, out: Path | None = None) -> dict:
    """Train on 24 tiny images (3 iterations of 8 per epoch), extraction on the clean images."""
    return train(method, TinyImages(24, 0.1), cfg, work_dir, out, seed=3, extract_dataset=TinyImages(24, 0.0))


def log_without_time(work_dir: Path) -> list[str]:
    import json

    lines = (work_dir / TRAIN_LOG).read_text().splitlines()
    return [json.dumps({k: v for k, v in json.loads(line).items() if k != "time"}) for line in lines]
