"""Write a randomly initialised ResNet backbone (the `random` baseline row of every table).

torchvision's default initialisation under torch.manual_seed(--seed), saved as a torchvision
ResNet state dict that loads with strict=True (fc zeroed), like every extracted backbone."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--depth", type=int, required=True, choices=(18, 34, 50, 101, 152), help="ResNet depth"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialisation (default 0)")
    parser.add_argument("--out", required=True, help="backbone file to write")


def main(args: argparse.Namespace) -> None:
    from sslzoo.checkpoints import random_backbone

    random_backbone(args.depth, args.seed, args.out)
