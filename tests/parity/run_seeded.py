"""Run a reference script as ``python SCRIPT ARGS...`` would, numpy's global generator seeded first.

Usage: ``python run_seeded.py SEED SCRIPT [ARGS...]``.

The mmselfsup 0.11.0 SVM scripts (tools/benchmarks/classification/svm_voc07/tools/) give each
``LinearSVC`` no ``random_state``, so LIBLINEAR's coordinate order is drawn from numpy's global
generator, which they never seed (their ``--random_seed`` is parsed and unused). Seeding it here,
before the script starts, makes a reference run repeatable and lets ``--solver sklearn`` draw the
same LIBLINEAR seeds (``sslzoo.benchmarks.svm_sklearn.liblinear_states``). Nothing else is changed: the
script runs as ``__main__`` with its own directory first on ``sys.path`` and its own arguments.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> None:
    """Seed numpy's global generator with ``argv[0]`` and run the script ``argv[1]`` with ``argv[2:]``."""
    if len(argv) < 2:
        raise SystemExit("usage: run_seeded.py SEED SCRIPT [ARGS...]")
    seed, script = int(argv[0]), Path(argv[1]).resolve()
    np.random.seed(seed)
    sys.argv = [str(script), *argv[2:]]
    sys.path[0] = str(script.parent)
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
