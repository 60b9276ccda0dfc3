"""Plot a benchmark's metric against k, one line per model (SVG, for the report).

For the benchmarks whose table columns are k=N: knn_imagenet (top-1 against the number of
neighbours) and lowshot_voc07 (mAP against positive images per class). Reads the
results/benchmarks/{benchmark}/{model}/metrics.json files given."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, help="e.g. knn_imagenet or lowshot_voc07")
    parser.add_argument(
        "--metrics", nargs="*", default=[], metavar="FILE", help="the benchmark's metrics.json files"
    )
    parser.add_argument("--ylabel", required=True, help="the y axis label, e.g. 'top-1 (%%)'")
    parser.add_argument("--out", required=True, help="the SVG, e.g. results/plots/knn_imagenet.svg")


def main(args: argparse.Namespace) -> None:
    from sslzoo.plots import plot_vs_k

    plot_vs_k(args.benchmark, args.metrics, args.out, args.ylabel)
