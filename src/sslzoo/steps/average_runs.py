"""Average the runs of a protocol repeated over seeds (a detection protocol's `repeats: N`).

Reads each run's metrics.json (results/benchmarks/{benchmark}/{model}/run{i}/metrics.json,
written by the detection step with seed = the workflow's seed + i) and writes
results/benchmarks/{benchmark}/{model}/metrics.json: the mean of each metric (what the tables
show), and under "meta.repeats" the run count, the seeds and the sample standard deviation of
each metric (ddof 1), under "meta.runs" every run's numbers and run record. The runs must
report the same metrics and have different seeds."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs",
        nargs="+",
        required=True,
        help="metrics.json of each run, at least two (.../run{i}/metrics.json)",
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, which each run's meta must name: one of sslzoo/benchmarks/registry.py (det_voc0712_moco, ...)",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="the model, which each run's meta must name (config/models/{model}.yaml)",
    )
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/{benchmark}/{model}/metrics.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, or stop here

    from sslzoo.benchmarks.repeats import average_runs

    result = average_runs(args.runs, args.out, benchmark_name=args.benchmark, model_name=args.model)
    spread = ", ".join(
        f"{name} {result[name]:.2f} ± {std:.2f}" for name, std in result["meta"]["repeats"]["std"].items()
    )
    print(f"{args.out}: mean ± std of {len(args.runs)} runs: {spread}")
