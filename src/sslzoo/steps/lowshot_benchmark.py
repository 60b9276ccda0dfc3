"""Low-shot linear SVMs on cached VOC07 features (VOC Low-shot SVM, k = 1 .. 96).

Reads the VOC07 trainval and test feature files and, on each configured layer, for each k and
each of the configured samples (drawn with --seed) trains one squared-hinge linear SVM per class
and cost on k present and 19k absent trainval images, and scores the test set with the VOC AP
(mmselfsup svm_voc07 low-shot protocol). Writes metrics.json: "Best Layer" (the layer whose
numbers have the best mean over k) and its "k=<k>": the mean mAP (%) over the samples at the cost
with the best mean test mAP, the reference's choice; "meta" holds min/max/std, a cross-validated
cost choice beside it, and every layer's numbers."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trainval", required=True, help="trainval features (results/features/{model}/voc07_trainval.npz)"
    )
    parser.add_argument(
        "--test", required=True, help="test features (results/features/{model}/voc07_test.npz)"
    )
    parser.add_argument(
        "--config", required=True, help="low-shot config (config/benchmarks/lowshot_voc07*.yaml)"
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (lowshot_voc07)",
    )
    parser.add_argument(
        "--model", required=True, help="the model, recorded in meta (config/models/{model}.yaml)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the low-shot samples (default 0)")
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/lowshot_voc07/{model}/metrics.json)"
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

    from sslzoo.benchmarks.svm_lowshot import lowshot_benchmark

    metrics = lowshot_benchmark(
        args.trainval,
        args.test,
        args.config,
        args.out,
        seed=args.seed,
        solver=args.solver,
        benchmark_name=args.benchmark,
        model_name=args.model,
    )
    shots = ", ".join(f"{key} {value:.2f}" for key, value in metrics.items() if key.startswith("k="))
    print(f"{args.out}: {metrics['Best Layer']}: {shots}")
