"""Write the learning-margins page (results/tables/learning_margins.md): every model's number
on each configured measure and its margin over the random-init backbone, with the models under
the margin listed (:mod:`sslzoo.margins`)."""

from __future__ import annotations

import argparse


def _measure(text: str) -> tuple[str, str]:
    benchmark, sep, column = text.partition("=")
    if not sep or not benchmark or not column:
        raise argparse.ArgumentTypeError(f"'{text}': expected BENCHMARK=COLUMN, e.g. knn_imagenet=k=20")
    return benchmark, column


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="+", required=True, metavar="FILE", help="metrics.json files")
    parser.add_argument(
        "--measures",
        nargs="+",
        required=True,
        type=_measure,
        metavar="BENCHMARK=COLUMN",
        help="the column read from each benchmark's metrics, e.g. knn_imagenet=k=20 svm_voc07=SVM",
    )
    parser.add_argument("--margin", type=float, required=True, help="points every model should be above random")
    parser.add_argument("--out", required=True, help="the markdown page")


def main(args: argparse.Namespace) -> None:
    from sslzoo.margins import write_margins

    write_margins(args.metrics, dict(args.measures), args.margin, args.out)
