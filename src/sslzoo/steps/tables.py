"""Write the markdown tables: one page per method and model_zoo.md, in the model-zoo format.

Reads results/benchmarks/{benchmark}/{model}/metrics.json files (benchmark and model from the
path) and the model configs (method, title, reported numbers) and writes {method}.md for each
method (its models, their reported numbers and the random baseline) and model_zoo.md (every
model) to --out-dir. A section per benchmark with at least one metrics file; "–" where missing."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="*", default=[], metavar="FILE", help="metrics.json files")
    parser.add_argument(
        "--models", nargs="*", default=[], metavar="CONFIG", help="model configs (config/models/*.yaml)"
    )
    parser.add_argument("--out-dir", required=True, help="directory of the pages (results/tables)")


def main(args: argparse.Namespace) -> None:
    from sslzoo.tables import write_tables

    write_tables(args.metrics, args.models, args.out_dir)
