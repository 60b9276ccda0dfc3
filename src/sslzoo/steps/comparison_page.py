"""Write a published comparison table with our numbers beside it (config/comparison/<name>.yaml
-> results/tables/comparison.md, and HTML with --html): see sslzoo/comparison.py.

--metrics are the results/benchmarks/{benchmark}/{model}/metrics.json files of the rows' models
under each row's protocol; --models the zoo's models (a row whose model is not among them says
so); --stand-in FULL=MINI runs MINI in the place of the row model FULL (the mini zoo), without
the published numbers."""

from __future__ import annotations

import argparse

from sslzoo.errors import SslzooError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table", required=True, help="the comparison file, e.g. config/comparison/triplet.yaml"
    )
    parser.add_argument("--metrics", nargs="*", default=[], metavar="FILE", help="metrics.json files")
    parser.add_argument("--models", nargs="*", default=None, metavar="NAME", help="the zoo's models")
    parser.add_argument(
        "--stand-in",
        nargs="*",
        default=[],
        metavar="FULL=MINI",
        help="a model run in the place of a row's model",
    )
    parser.add_argument("--out", required=True, help="the markdown page, e.g. results/tables/comparison.md")
    parser.add_argument("--html", default=None, help="also write the page as standalone HTML here")


def parse_stand_ins(items: list[str]) -> dict[str, str]:
    """``["full=mini", ...]`` -> ``{"full": "mini"}``; anything else is refused, naming the option."""
    out: dict[str, str] = {}
    for item in items:
        full, sep, mini = item.partition("=")
        if not sep or not full or not mini:
            raise SslzooError(f"--stand-in {item!r}: expected FULL=MINI (two model names)")
        out[full] = mini
    return out


def main(args: argparse.Namespace) -> None:
    from sslzoo.comparison import write_comparison

    write_comparison(
        args.table, args.metrics, args.out, args.html, parse_stand_ins(args.stand_in), args.models
    )
