"""Extract the backbone of a checkpoint that pretraining kept at an epoch (config ``snapshots:``).

Reads results/pretrain/{model}/work/epoch_{epoch}.pth, checks it against the run's final
checkpoint (the listed epoch, the same training config) and writes results/backbones/
{model}_ep{epoch}.pth as a torchvision ResNet state dict that loads with strict=True, the model
of its own that the benchmarks read (sslzoo.engine.snapshots)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--final",
        required=True,
        help="the run's final checkpoint, results/pretrain/<model>/final.pth (the run must be finished)",
    )
    parser.add_argument(
        "--work-dir", required=True, help="the run's work folder, results/pretrain/<model>/work"
    )
    parser.add_argument(
        "--epoch", required=True, type=int, help="the snapshot epoch (listed under snapshots:)"
    )
    parser.add_argument(
        "--out", required=True, help="backbone file to write, results/backbones/<model>_ep<epoch>.pth"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.engine.snapshots import extract_snapshot

    extract_snapshot(args.final, args.work_dir, args.epoch, args.out)
