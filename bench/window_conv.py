"""One training step of the mini zoo's ResNet-18 with :class:`sslzoo.models.backbone.WindowConv2d`
against the same backbone with plain ``nn.Conv2d`` (the peer), measured in the same run.

The batches are the mini pretexts' shapes: Relative-Loc's 288 patches of 11 px
(``config/models/relative-loc_resnet18_mini.yaml``: 32 images x 9 cells), Rotation-Pred's 128
rotated 32 px views, BYOL's two batches of 32 views at 32 px, and a 224 px batch on which no
conv has a 1x1 output (so both sides run the same kernels: its ratio shows the cost of the check).
Each side runs forward, backward (sum of the pooled features) and an SGD step; the median of
``--repeats`` steps after one warm-up step is printed with the ratio plain / window.

    .venv/bin/python bench/window_conv.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from sslzoo.models.backbone import ResNetBackbone, use_plain_convs

# name -> input batch shape [B, 3, H, W]
BATCHES: dict[str, tuple[int, int, int, int]] = {
    "relative-loc 288 x 11 px": (288, 3, 11, 11),
    "rotation-pred 128 x 32 px": (128, 3, 32, 32),
    "byol 64 x 32 px": (64, 3, 32, 32),
    "224 px, 8 images": (8, 3, 224, 224),
}


def step_seconds(model: nn.Module, images: torch.Tensor, repeats: int) -> float:
    """Median seconds of forward + backward + SGD step over ``repeats`` steps (one warm-up)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for index in range(repeats + 1):
        start = time.perf_counter()
        features = model(images)[0]  # [B, 512, h, w]
        optimizer.zero_grad()
        features.mean(dim=(2, 3)).sum().backward()
        optimizer.step()
        if index:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    window = ResNetBackbone(depth=18)
    plain = copy.deepcopy(window)
    use_plain_convs(plain)
    print(
        f"torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}, {args.threads} thread(s)"
    )
    print(f"{'batch':<28} {'plain s':>9} {'window s':>9} {'plain/window':>13}")
    for name, shape in BATCHES.items():
        images = torch.randn(shape)
        t_plain = step_seconds(plain, images, args.repeats)
        t_window = step_seconds(window, images, args.repeats)
        print(f"{name:<28} {t_plain:9.3f} {t_window:9.3f} {t_plain / t_window:13.2f}")


if __name__ == "__main__":
    main()
