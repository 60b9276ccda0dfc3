"""The learning-margins page: how far each model is above the randomly initialised backbone on
the measures the zoo's config names, and which models fall under the margin it asks for.

A pretrained model that does not beat the same network with random weights has learnt nothing
its benchmarks can read; the mini zoo asks every method for 3 points on kNN top-1 (k=20),
AvgPool linear top-1 and VOC07 SVM mAP (config/mini.yaml ``learning_margins``). The page makes
that visible in every run, for every model of the config (``make zoo-all``: all of them), and
the end-to-end test checks the same numbers. Reads ``metrics.json`` files only: no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from sslzoo.errors import SslzooError
from sslzoo.tables import RANDOM_MODEL, markdown_table, parse_metrics_path


def read_measures(
    paths: Sequence[str | os.PathLike[str]], measures: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """``{model: {benchmark: value}}`` of the column ``measures[benchmark]`` of every
    ``results/benchmarks/{benchmark}/{model}/metrics.json`` in ``paths``."""
    values: dict[str, dict[str, float]] = {}
    for path in paths:
        benchmark, model = parse_metrics_path(path)
        if benchmark not in measures:
            raise SslzooError(f"{path}: benchmark '{benchmark}' is not one of the measures {sorted(measures)}")
        metrics = json.loads(Path(path).read_text())
        column = measures[benchmark]
        if column not in metrics:
            raise SslzooError(f"{path}: no column '{column}' (has {sorted(k for k in metrics if k != 'meta')})")
        values.setdefault(model, {})[benchmark] = float(metrics[column])
    return values


def margins(values: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Each model's value minus the random-init row's, per benchmark: ``{model: {benchmark:
    margin}}`` for every model but ``random``, which every benchmark must have."""
    if RANDOM_MODEL not in values:
        raise SslzooError(f"no '{RANDOM_MODEL}' row among the models {sorted(values)}: enable `baseline:`")
    base = values[RANDOM_MODEL]
    out: dict[str, dict[str, float]] = {}
    for model, row in values.items():
        if model == RANDOM_MODEL:
            continue
        missing = sorted(set(base) - set(row))
        if missing:
            raise SslzooError(f"model '{model}' has no value for {missing}")
        out[model] = {benchmark: row[benchmark] - base[benchmark] for benchmark in base}
    return out


def render_margins(
    values: Mapping[str, Mapping[str, float]], measures: Mapping[str, str], margin: float
) -> str:
    """The page: one row per model, each measure as ``value (+margin)``, the random row first,
    and the models under ``margin`` on any measure listed below the table."""
    gaps = margins(values)
    benchmarks = list(measures)
    header = ["model", *(f"{b} {measures[b]}" for b in benchmarks), f"every margin >= {margin:g}"]
    rows = [[f"{RANDOM_MODEL} (random init)", *(f"{values[RANDOM_MODEL][b]:.1f}" for b in benchmarks), ""]]
    short: list[str] = []
    for model in sorted(gaps):
        cells = [f"{values[model][b]:.1f} ({gaps[model][b]:+.1f})" for b in benchmarks]
        under = [b for b in benchmarks if gaps[model][b] < margin]
        rows.append([model, *cells, "no" if under else "yes"])
        if under:
            short.append(f"- {model}: " + ", ".join(f"{b} {gaps[model][b]:+.1f}" for b in under))
    lines = [
        "# Learning margins over the random-init backbone",
        "",
        f"Each model's number and, in brackets, its margin over the randomly initialised backbone; "
        f"a method that learnt what these benchmarks read is {margin:g} points or more above it "
        "on every measure.",
        "",
        markdown_table(header, rows),
    ]
    if short:
        lines += ["", f"Under the {margin:g}-point margin:", "", *short]
    return "\n".join(lines) + "\n"


def write_margins(
    paths: Sequence[str | os.PathLike[str]], measures: Mapping[str, str], margin: float, out: str | os.PathLike[str]
) -> None:
    """Read the ``metrics.json`` files and write the page to ``out``."""
    text = render_margins(read_measures(paths, measures), measures, margin)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
