"""Write one page of the model-zoo tables, in markdown (and HTML with --html).

Reads results/benchmarks/{benchmark}/{model}/metrics.json files (benchmark and model from the
path) and the model configs (method, title, reported numbers) and writes one of:

- with --method M: the page of method M (its models, their reported numbers, the random row);
- with --benchmark B: the table of benchmark B (every model);
- with neither: model_zoo.md (every model on every benchmark).

A section per benchmark with at least one metrics file; "–" where a number is missing. A row
whose run used another world size or total batch than its protocol gets a footnote under the
table: the pretraining run (--runs, results/pretrain/{model}/run.json) and the benchmark run
(meta.run of its metrics.json), each against the protocol values recorded beside it."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="*", default=[], metavar="FILE", help="metrics.json files")
    parser.add_argument(
        "--models", nargs="*", default=[], metavar="CONFIG", help="model configs (config/models/*.yaml)"
    )
    parser.add_argument(
        "--runs",
        nargs="*",
        default=[],
        metavar="FILE",
        help="pretraining run records (results/pretrain/{model}/run.json) of the models shown",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--method", help="write this method's page (e.g. byol)")
    which.add_argument("--benchmark", help="write this benchmark's table (e.g. knn_imagenet)")
    parser.add_argument("--out", required=True, help="the markdown page, e.g. results/tables/model_zoo.md")
    parser.add_argument("--html", default=None, help="also write the page as standalone HTML here")


def main(args: argparse.Namespace) -> None:
    from sslzoo.tables import write_benchmark_table, write_method_page, write_model_zoo

    if args.method:
        write_method_page(args.method, args.metrics, args.models, args.out, args.html, args.runs)
    elif args.benchmark:
        write_benchmark_table(args.benchmark, args.metrics, args.models, args.out, args.html, args.runs)
    else:
        write_model_zoo(args.metrics, args.models, args.out, args.html, args.runs)
