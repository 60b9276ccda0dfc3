"""Weighted kNN classification on cached features (ImageNet Nearest-Neighbor Classification).

Reads the train and test feature files (npz from extract-features), classifies every test row
by the exp(sim / 0.07)-weighted vote of its k most cosine-similar training rows (Wu et al. 2018,
mmselfsup knn_imagenet) for each k in the config, and writes metrics.json: top-1 % per k as
"k=10".., top-5, the benchmark and model (--benchmark, --model) and the inputs under "meta"."""

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
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (knn_imagenet)",
    )
    parser.add_argument(
        "--model", required=True, help="the model, recorded in meta (config/models/{model}.yaml)"
    )
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/knn_imagenet/{model}/metrics.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, checked before the heavy imports

    from sslzoo.benchmarks.knn import knn_benchmark

    knn_benchmark(
        args.train, args.test, args.config, args.out, benchmark_name=args.benchmark, model_name=args.model
    )
