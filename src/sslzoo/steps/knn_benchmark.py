"""Weighted kNN classification on cached features (ImageNet Nearest-Neighbor Classification).

Reads the train and test feature files (npz from extract-features), classifies every test row
by the exp(sim / 0.07)-weighted vote of its k most cosine-similar training rows (Wu et al. 2018,
mmselfsup knn_imagenet) for each k in the config, and writes metrics.json: top-1 % per k as
"k=10".., top-5 and the inputs under "meta". Benchmark and model are the directories of --out."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--train", required=True, help="training features (results/features/{model}/imagenet_train.npz)"
    )
    parser.add_argument(
        "--test", required=True, help="test features (results/features/{model}/imagenet_val.npz)"
    )
    parser.add_argument("--config", required=True, help="kNN config (config/benchmarks/knn*.yaml)")
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/knn_imagenet/{model}/metrics.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.knn import knn_benchmark

    knn_benchmark(args.train, args.test, args.config, args.out)
