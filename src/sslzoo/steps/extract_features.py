"""Cache pooled multi-stage features of a frozen backbone for one dataset split (npz).

Reads a backbone file (torchvision ResNet state dict) and a classification manifest, applies
the dataset's protocol from the features config (Resize + CenterCrop for kNN, Resize + square
Resize for the VOC SVM; pooling per stage) and writes float32 features, labels and class names
to --out. Runs as one process or under torchrun (each rank a strided shard, rank 0 writes)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="backbone file (results/backbones/{model}.pth)")
    parser.add_argument(
        "--manifest", required=True, help="classification manifest (resources/manifests/*.json)"
    )
    parser.add_argument("--config", required=True, help="features config (config/benchmarks/features*.yaml)")
    parser.add_argument(
        "--dataset", required=True, help="entry of the config's 'datasets' (imagenet, voc07, ...)"
    )
    parser.add_argument(
        "--out", required=True, help="npz to write (results/features/{model}/{dataset}_{split}.npz)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.features import extract_features
    from sslzoo.runtime.dist import cleanup, init_distributed

    ctx = init_distributed()
    try:
        extract_features(args.backbone, args.manifest, args.config, args.dataset, args.out, ctx=ctx)
    finally:
        cleanup()
