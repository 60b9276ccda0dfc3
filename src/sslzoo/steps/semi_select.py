"""Keep the best run of the semi-supervised lr x head-multiplier grid.

Reads the metrics.json of every grid point (semi-benchmark) and writes the one with the best
top-1 (ties: top-5, then the first given) to results/benchmarks/{benchmark}/{model}/metrics.json,
with its setting ("lr 0.01 head x10"), the record of the run that trained it ("meta.run") and
every run's numbers under "meta"."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs",
        nargs="+",
        required=True,
        help="metrics.json of each grid point (.../lr{X}_head{Y}/metrics.json)",
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (semi_in1k_1pct, ...)",
    )
    parser.add_argument(
        "--model", required=True, help="the model, recorded in meta (config/models/{model}.yaml)"
    )
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/{benchmark}/{model}/metrics.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, or stop here

    from sslzoo.benchmarks.semi_grid import select_best

    result = select_best(args.runs, args.out, benchmark_name=args.benchmark, model_name=args.model)
    print(f"{args.out}: {result['meta']['setting']} (top-1 {result['Top-1 (%)']:.2f})")
