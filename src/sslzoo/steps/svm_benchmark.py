"""Linear SVMs on cached VOC07 features (VOC SVM: best layer and its mAP).

Reads the VOC07 trainval and test feature files (npz from extract-features: feature1..feature5
and 1/-1/0 targets), and for every configured layer trains one squared-hinge linear SVM per
class, the cost chosen by 3-fold cross-validated average precision on trainval, and scores the
test set with the VOC AP, difficult images left out (mmselfsup svm_voc07 protocol). Writes
metrics.json: "Best Layer", "SVM" (its mAP %) and, under "meta", the benchmark and model
(--benchmark, --model) and every layer's numbers. --solver sklearn runs LIBLINEAR as the
reference does."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trainval", required=True, help="trainval features (results/features/{model}/voc07_trainval.npz)"
    )
    parser.add_argument(
        "--test", required=True, help="test features (results/features/{model}/voc07_test.npz)"
    )
    parser.add_argument("--config", required=True, help="SVM config (config/benchmarks/svm_voc07*.yaml)")
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (svm_voc07)",
    )
    parser.add_argument(
        "--model", required=True, help="the model, recorded in meta (config/models/{model}.yaml)"
    )
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/svm_voc07/{model}/metrics.json)"
    )
    parser.add_argument(
        "--solver",
        choices=("fast", "sklearn"),
        default="fast",
        help="fast: batched Newton solver, CUDA when present (default); sklearn: LIBLINEAR as the reference",
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, checked before the heavy imports

    from sslzoo.benchmarks.svm_voc07 import svm_benchmark

    metrics = svm_benchmark(
        args.trainval,
        args.test,
        args.config,
        args.out,
        solver=args.solver,
        benchmark_name=args.benchmark,
        model_name=args.model,
    )
    print(f"{args.out}: best layer {metrics['Best Layer']}, mAP {metrics['SVM']:.2f}")
