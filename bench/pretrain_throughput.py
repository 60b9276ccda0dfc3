"""Pretraining throughput: every method on sslzoo's engine vs. the ``lightly`` package's implementations.

What is timed is the training iteration the workflow runs: ``sslzoo.engine.trainer.train``
(forward, backward, optimizer step, EMA update, loss logging) on the method built from its
model config, reading the per-iteration ``time`` it writes to ``train_log.jsonl`` after
``--warmup`` iterations. The batches are precomputed views (the method's own augmentation of
random images, cycled) so the data pipeline is not part of the CPU comparison.

The peers, measured in the same run on the same input (``bench/lightly_peers.py``): the
``lightly`` package's BYOL, SimCLR, MoCo v2, SimSiam and SwAV as its documentation and examples
write them, on the same torchvision ResNet trunk, with the same head sizes, temperature, queue
length, number of prototypes and crops as the sslzoo method's bench config, the same batch,
optimizer (SGD) and memory format. The two implementations alternate over ``--repeats`` runs;
the ratio printed per method is sslzoo images/s over lightly images/s (goal >= 1.0).

``--suite gpu224`` (run it where CUDA is available) measures ResNet-50 at 224 px in bf16: each
method with the real data pipeline (JPEG decode + the method's augmentations in
``--workers`` DataLoader workers) and with synthetic input, against a bare torchvision
ResNet-50 classification training step (forward, cross-entropy, backward, SGD) in the same run.
Goals there: every method >= 85% of the bare step's inputs/s (inputs = images through the
trained backbone), the data pipeline costing <= 10%.

    .venv/bin/pip install lightly               # the peer (not a dependency of sslzoo)
    .venv/bin/python bench/pretrain_throughput.py                   # CPU: R18 and R50 at 64 px
    .venv/bin/python bench/pretrain_throughput.py --depths 18 --methods byol simclr mocov2 simsiam swav
    .venv/bin/python bench/pretrain_throughput.py --suite gpu224    # on a GPU machine
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightly_peers import PEERS  # bench/, next to this script
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from sslzoo.config import load_model_config
from sslzoo.engine.trainer import train
from sslzoo.methods import METHODS
from sslzoo.runtime.dist import DistContext

REPO = Path(__file__).resolve().parents[1]
# One config per method: the mini variants (64 px views and schedules sized for a CPU); the
# bench overrides depth, batch, MLP sizes and the optimizer so every run does the same work.
MINI_CONFIGS = {
    "relative_loc": "relative-loc_resnet18_mini",
    "rotation_pred": "rotation-pred_resnet18_mini",
    "byol": "byol_resnet18_mini",
    "simclr": "simclr_resnet18_mini",
    "mocov2": "mocov2_resnet18_mini",
    "simsiam": "simsiam_resnet18_mini",
    "swav": "swav_resnet18_mini",
    "triplet": "triplet_resnet18_mini",
}
FULL_CONFIGS = {
    "relative_loc": "relative-loc_resnet50_8xb64-steplr-70e_in1k",
    "rotation_pred": "rotation-pred_resnet50_8xb16-steplr-70e_in1k",
    "byol": "byol_resnet50_8xb32-accum16-coslr-200e_in1k",
    "simclr": "simclr_resnet50_8xb32-coslr-200e_in1k",
    "mocov2": "mocov2_resnet50_8xb32-coslr-200e_in1k",
    "simsiam": "simsiam_resnet50_8xb32-coslr-200e_in1k",
    "swav": "swav_resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96",
    "triplet": "triplet_resnet50_8xb128-amp-accum4-coslr-200e_in1k",
}
SGD = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1.0e-4, "nesterov": False}
# the heads of the full-scale configs (the mini configs shrink them), in every bench config
BENCH_HEADS: dict[str, dict[str, Any]] = {
    "byol": {"projector": {"hidden": 4096, "out": 256}, "predictor": {"hidden": 4096, "out": 256}},
    "triplet": {"projector": {"hidden": 4096, "out": 256}, "predictor": {"hidden": 4096, "out": 256}},
    "simclr": {"neck": {"hidden": 2048, "out": 128}, "temperature": 0.1},
    "mocov2": {"neck": {"hidden": 2048, "out": 128}, "temperature": 0.2, "queue_len": 65536,
               "momentum": 0.999, "bn_splits": 1},
    "simsiam": {"projector": {"hidden": 2048, "out": 2048}, "predictor": {"hidden": 512}},
    # no queue (the reference starts it at epoch 15) and no frozen prototypes: the steady step
    "swav": {"projector": {"hidden": 2048, "out": 128}, "prototypes": 3000, "temperature": 0.1,
             "queue_length": 0, "freeze_prototypes_iters": 0},
}  # fmt: skip
# networks inputs through the trained (online) backbone per source image (SwAV: from its crops)
INPUTS_PER_IMAGE = {"relative_loc": 9, "rotation_pred": 4, "byol": 2, "triplet": 2, "simclr": 2, "mocov2": 1,
                    "simsiam": 2}  # fmt: skip


def inputs_per_image(method: str, cfg: dict[str, Any]) -> float:
    """Inputs through the trained backbone per image, a multi-crop view counted by its pixels
    relative to the first crop's."""
    crops = cfg.get("views", {}).get("crops")
    if not crops:
        return float(INPUTS_PER_IMAGE[method])
    return sum(c["count"] * (c["image_size"] / crops[0]["image_size"]) ** 2 for c in crops)


def random_images(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    """``count`` RGB noise-and-gradient images of ``size`` x ``size`` (a fixed seed)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    images = []
    for _ in range(count):
        pixels = rng.normal(0, 40, (size, size, 3)) + ramp[None, :, None] * rng.uniform(0.2, 1.0, 3)
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


class CycledViews(Dataset):
    """``length`` samples cycling over views computed once: ``dataset[i] -> (views, 0)``."""

    def __init__(self, views: list[Any], length: int) -> None:
        self.views = views
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.views[index % len(self.views)], 0


class ImageList(Dataset):
    """Images written to disk, decoded and augmented per item: the real data pipeline."""

    def __init__(self, paths: list[Path], transform: Callable[[Image.Image], Any]) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        with Image.open(self.paths[index]) as img:
            return self.transform(img.convert("RGB")), 0


def bench_config(method: str, depth: int, size: int, batch: int, full: bool, amp: bool) -> dict[str, Any]:
    """The method's model config with the bench's depth, image size, batch and SGD."""
    name = (FULL_CONFIGS if full else MINI_CONFIGS)[method]
    cfg = copy.deepcopy(load_model_config(REPO / "config" / "models" / f"{name}.yaml"))
    cfg["backbone"]["depth"] = depth
    cfg["train"].update(
        epochs=1, batch_size=batch, accumulate=1, workers=0, amp=amp,
        optimizer=dict(SGD), schedule={"name": "cosine", "min_lr": 0.0, "by_epoch": False,
                                       "warmup_epochs": 0, "warmup_ratio": 1.0e-4, "steps": []},
    )  # fmt: skip
    views = cfg.setdefault("views", {})
    if method == "relative_loc":
        views.update(resize=round(size * 73 / 64), crop=size, patch_size=size // 4)
    elif "crops" in views:  # multi-crop: every crop scaled with the first
        first = views["crops"][0]["image_size"]
        for crop in views["crops"]:
            crop["image_size"] = round(crop["image_size"] * size / first)
    else:
        views["image_size"] = size
    for key, value in BENCH_HEADS.get(method, {}).items():
        if isinstance(value, dict):
            cfg["method_args"].setdefault(key, {}).update(value)
        else:
            cfg["method_args"][key] = value
    if method == "triplet" and not full:
        # resize ranges of the reference ([96, 224] / [128, 224]) scaled to the view size
        cfg["method_args"]["resize"].update(
            online=[round(size * 96 / 224), size], target=[round(size * 128 / 224), size]
        )
    return cfg


def engine_rate(
    method: str, cfg: dict[str, Any], dataset: Dataset, warmup: int, device: torch.device, workers: int = 0
) -> float:
    """Images/s of :func:`train` on ``dataset``, from its per-iteration log after ``warmup``."""
    torch.manual_seed(0)
    model = METHODS[method].from_config(cfg)
    cfg = copy.deepcopy(cfg)
    cfg["train"]["workers"] = workers
    with tempfile.TemporaryDirectory() as work, contextlib.redirect_stderr(io.StringIO()):  # no progress bars
        train(model, dataset, cfg, work, out=None, seed=0, ctx=DistContext(device=device))
        with open(Path(work) / "train_log.jsonl") as log:
            times = [json.loads(line)["time"] for line in log][warmup:]
    return cfg["train"]["batch_size"] / statistics.median(times)


def bare_resnet_rate(depth: int, size: int, batch: int, steps: int, warmup: int, device: torch.device,
                     amp: bool) -> float:  # fmt: skip
    """Images/s of a bare torchvision ResNet classification step (the ceiling for one input)."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, f"resnet{depth}")().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    times = []
    for _ in range(steps):
        tick = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss.item()
        times.append(time.perf_counter() - tick)
    return batch / statistics.median(times[warmup:])


def cpu64(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Each method and its lightly peer at ``--size`` px, batch ``--batch``, per ``--depths``."""
    rows = []
    images = random_images(args.pool, args.size + args.size // 2)
    for depth in args.depths:
        for method in args.methods:
            cfg = bench_config(method, depth, args.size, args.batch, full=False, amp=False)
            transform = METHODS[method].views(cfg)
            torch.manual_seed(0)
            views = [transform(img) for img in images]
            dataset = CycledViews(views, args.batch * args.steps)
            with_peer = method in PEERS and not args.no_lightly
            rate = peer = 0.0
            for _ in range(args.repeats):  # alternate the two, keep each one's best run
                rate = max(rate, engine_rate(method, cfg, dataset, args.warmup, device))
                if with_peer:
                    peer = max(peer, PEERS[method](cfg, dataset, args.warmup, device))
            rows.append({"depth": depth, "method": method, "impl": "sslzoo", "images_s": rate})
            print(f"R{depth} {method:13s} sslzoo  {rate:8.1f} images/s", flush=True)
            if with_peer:
                rows.append({"depth": depth, "method": method, "impl": "lightly", "images_s": peer,
                             "ratio": rate / peer})  # fmt: skip
                print(f"R{depth} {method:13s} lightly {peer:8.1f} images/s  ratio sslzoo/lightly "
                      f"{rate / peer:.2f}", flush=True)  # fmt: skip
    return rows


def gpu224(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """ResNet-50 at ``--size`` (224) in bf16: real pipeline, synthetic input, bare step."""
    rows = []
    amp = device.type == "cuda"
    bare = bare_resnet_rate(50, args.size, args.batch, args.steps, args.warmup, device, amp)
    rows.append({"depth": 50, "method": "bare_resnet50", "impl": "torchvision", "inputs_s": bare})
    print(f"bare torchvision ResNet-50 step: {bare:.1f} inputs/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, img in enumerate(random_images(args.pool, round(args.size * 1.5))):
            paths.append(Path(tmp) / f"{i}.jpg")
            img.save(paths[-1], quality=90)
        length = args.batch * args.steps
        for method in args.methods:
            cfg = bench_config(method, 50, args.size, args.batch, full=True, amp=amp)
            transform = METHODS[method].views(cfg)
            torch.manual_seed(0)
            views = [transform(Image.open(p).convert("RGB")) for p in paths]
            synthetic = engine_rate(method, cfg, CycledViews(views, length), args.warmup, device)
            real = engine_rate(
                method, cfg, ImageList([paths[i % len(paths)] for i in range(length)], transform),
                args.warmup, device, workers=args.workers,
            )  # fmt: skip
            per = inputs_per_image(method, cfg)
            rows.append({"depth": 50, "method": method, "impl": "sslzoo", "images_s_synthetic": synthetic,
                         "images_s_real": real, "inputs_s_synthetic": synthetic * per})  # fmt: skip
            print(f"{method:13s} synthetic {synthetic * per:8.1f} inputs/s ({synthetic * per / bare:.0%} of bare), "
                  f"real pipeline costs {1 - real / synthetic:.0%}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["cpu64", "gpu224"], default="cpu64")
    parser.add_argument("--depths", type=int, nargs="+", default=[18, 50])
    parser.add_argument("--methods", nargs="+", default=list(MINI_CONFIGS), choices=list(MINI_CONFIGS))
    parser.add_argument("--size", type=int, default=None, help="view size (default 64, gpu224: 224)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per run, warm-up included")
    parser.add_argument("--warmup", type=int, default=2, help="iterations left out of the median")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per measurement (the best median counts)"
    )
    parser.add_argument("--pool", type=int, default=64, help="distinct images behind the cycled batches")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the real pipeline")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-lightly", action="store_true", help="skip the lightly peers")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    args.size = args.size or (224 if args.suite == "gpu224" else 64)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores; suite {args.suite}, {args.size} px, batch {args.batch}, "
          f"median of {args.steps - args.warmup} iterations", flush=True)  # fmt: skip
    rows = (cpu64 if args.suite == "cpu64" else gpu224)(args, device)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=2))  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
