"""Compare the results of two runs of the zoo number by number (:mod:`sslzoo.compare_results`).

Exits 0 when every metrics file, model, feature file and table of the first run equals the
second's (wall times, per-step seconds and git revisions aside), 1 otherwise, listing each
difference.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", help="working directory of the first run (holds results/)")
    parser.add_argument("second", help="working directory of the second run (holds results/)")


def main(args: argparse.Namespace) -> None:
    from sslzoo.compare_results import compare_trees

    result = compare_trees(args.first, args.second)
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result.compared.items()))
    print(f"compared {counts} files of {args.first}/results with {args.second}/results")
    for line in result.differences:
        print(f"DIFFERS {line}")
    if result.only_in_b:
        print(f"{len(result.only_in_b)} files only in {args.second}/results, e.g. {result.only_in_b[:3]}")
    print("identical" if result.identical else f"{len(result.differences)} differences")
    if not result.identical:
        raise SystemExit(1)
