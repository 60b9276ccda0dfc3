"""A protocol repeated over seeds: each run's seed, and the mean and std of the runs.

A detection protocol with ``repeats: N`` (``sslzoo/schemas/detection.schema.yaml``) runs N
times, each run its own job with its own seed (:func:`run_seed`) writing
``results/benchmarks/{benchmark}/{model}/run{i}/metrics.json``; :func:`average_runs` (the
``average-runs`` step) writes ``results/benchmarks/{benchmark}/{model}/metrics.json`` with the
mean of each metric, which the tables show, and under ``meta``:

- ``repeats``: ``count`` (N), ``seeds``, ``std`` (metric -> the sample standard deviation,
  ``std_ddof`` 1: the "mean ± std over runs" papers report) and ``std_ddof``;
- ``runs``: each run's ``path``, ``seed``, metrics and run record (``run``, :mod:`sslzoo.run_record`).

MoCo reports VOC07+12 detection as "means of 5 trials" (facebookresearch/moco
detection/README.md), Triplet asks for the average of several VOC runs (wanggrun/triplet
README.md). Reads JSON only: the averaging job and the table jobs start without torch.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslzoo.errors import SslzooError
from sslzoo.io import read_json, write_json

STD_DDOF = 1  # sample standard deviation: sum of squared deviations / (N - 1)


def run_seed(seed: int, index: int) -> int:
    """The seed of run ``index`` (0-based) of a repeated protocol: the workflow's ``seed`` +
    ``index``, so run 0 has the seed a single run gets and the runs' seeds differ."""
    return seed + index


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_run(path: str | os.PathLike[str], benchmark_name: str, model_name: str) -> dict[str, Any]:
    """One run's metrics.json, checked: numbers beside ``meta``, of this benchmark and model, a seed."""
    fix = "rerun the job that writes it"
    if not Path(path).is_file():
        raise SslzooError(f"{path}: a run's metrics file is missing; {fix} (snakemake {path})")
    metrics = read_json(path)
    meta = metrics.get("meta") if isinstance(metrics, dict) else None
    if not isinstance(meta, dict):
        raise SslzooError(f"{path}: not a benchmark run's metrics.json (no 'meta'); {fix}")
    for key, expected in (("benchmark", benchmark_name), ("model", model_name)):
        if meta.get(key) != expected:
            raise SslzooError(
                f"{path}: meta.{key} is {meta.get(key)!r}, not {expected!r}: a run of another "
                f"{key} was given; pass the runs of {benchmark_name}/{model_name} only"
            )
    if not isinstance(meta.get("seed"), int) or isinstance(meta.get("seed"), bool):
        raise SslzooError(f"{path}: meta.seed must be an integer, got {meta.get('seed')!r}; {fix}")
    values = {key: value for key, value in metrics.items() if key != "meta"}
    if not values:
        raise SslzooError(f"{path}: no metric beside 'meta'; {fix}")
    for key, value in values.items():
        if not _is_number(value):
            raise SslzooError(f"{path}: '{key}' must be a number, got {value!r}; {fix}")
    return metrics


def average_runs(
    run_paths: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    benchmark_name: str,
    model_name: str,
) -> dict[str, Any]:
    """Average the runs of a repeated protocol and write the metrics file of the table.

    Args:
        run_paths: each run's ``metrics.json`` (``.../run{i}/metrics.json``), at least two, all
            with the same metric names and different seeds.
        out_path: ``results/benchmarks/{benchmark}/{model}/metrics.json``.
        benchmark_name, model_name: what ``meta`` records; each run's ``meta`` must name the same.

    Returns:
        What was written: the mean of each metric (``statistics.fmean``), and ``meta.repeats``
        (``count``, ``seeds``, ``std``: ``statistics.stdev``, ddof 1, ``std_ddof``) and
        ``meta.runs`` (each run's path, seed, metrics and run record).
    """
    if len(run_paths) < 2:
        raise SslzooError(
            f"average-runs: {len(run_paths)} run given (--runs); the mean and sample std (ddof 1) need at "
            "least 2; a protocol with repeats: 1 writes its metrics.json directly"
        )
    runs = [_read_run(path, benchmark_name, model_name) for path in run_paths]
    names = [key for key in runs[0] if key != "meta"]
    for path, metrics in zip(run_paths[1:], runs[1:], strict=True):
        other = [key for key in metrics if key != "meta"]
        if set(other) != set(names):
            raise SslzooError(
                f"{path}: metrics {sorted(other)} differ from {sorted(names)} of {run_paths[0]}; the runs of "
                f"one protocol report the same metrics: rerun the runs with the current protocol"
            )
    seeds = [metrics["meta"]["seed"] for metrics in runs]
    if len(set(seeds)) != len(seeds):
        twice = next(seed for seed in seeds if seeds.count(seed) > 1)
        raise SslzooError(
            f"average-runs: two runs with seed {twice} among {list(map(str, run_paths))}; each run of a "
            "repeated protocol needs its own seed"
        )
    columns = {name: [float(metrics[name]) for metrics in runs] for name in names}
    means = {name: statistics.fmean(values) for name, values in columns.items()}
    stds = {name: statistics.stdev(values) for name, values in columns.items()}
    per_run = []
    for path, metrics in zip(run_paths, runs, strict=True):
        entry = {"path": str(path), "seed": metrics["meta"]["seed"], **{n: metrics[n] for n in names}}
        if "run" in metrics["meta"]:
            entry["run"] = metrics["meta"]["run"]
        per_run.append(entry)
    result = {
        **means,
        "meta": {
            "benchmark": benchmark_name,
            "model": model_name,
            "repeats": {"count": len(runs), "seeds": seeds, "std": stds, "std_ddof": STD_DDOF},
            "runs": per_run,
        },
    }
    write_json(out_path, result)
    return result


@dataclass(frozen=True)
class Repeats:
    """What the tables read of an averaged metrics file (:func:`repeats_of`).

    Attributes:
        count: runs averaged.
        seeds: their seeds, in run order.
        std: metric -> sample standard deviation over the runs (ddof ``std_ddof``).
        std_ddof: the delta degrees of freedom of ``std`` (1).
        records: the run record (``meta.run``) of each run that has one.
    """

    count: int
    seeds: tuple[int, ...]
    std: dict[str, float]
    std_ddof: int
    records: tuple[Any, ...]


def repeats_of(metrics: dict[str, Any], source: str) -> Repeats | None:
    """The ``meta.repeats`` of a metrics file written by :func:`average_runs`, checked, with the
    run records of ``meta.runs``; None for a single run's metrics file. ``source``: the file."""
    meta = metrics.get("meta")
    if not isinstance(meta, dict) or "repeats" not in meta:
        return None
    fix = "rerun its average-runs job"
    summary, runs = meta["repeats"], meta.get("runs")
    if not isinstance(summary, dict) or not isinstance(runs, list):
        raise SslzooError(f"{source}: meta.repeats must be an object beside a list meta.runs; {fix}")
    count, seeds, std = summary.get("count"), summary.get("seeds"), summary.get("std")
    if not isinstance(count, int) or count != len(runs) or not isinstance(std, dict):
        raise SslzooError(f"{source}: meta.repeats needs 'count' (the length of meta.runs) and 'std'; {fix}")
    if not isinstance(seeds, list) or len(seeds) != count or not isinstance(summary.get("std_ddof"), int):
        raise SslzooError(f"{source}: meta.repeats needs 'seeds' (one per run) and 'std_ddof'; {fix}")
    names = [key for key in metrics if key != "meta"]
    if set(std) != set(names) or not all(_is_number(value) for value in std.values()):
        raise SslzooError(f"{source}: meta.repeats.std must give a number for each of {names}; {fix}")
    return Repeats(
        count=count,
        seeds=tuple(seeds),
        std={key: float(value) for key, value in std.items()},
        std_ddof=summary["std_ddof"],
        records=tuple(run["run"] for run in runs if isinstance(run, dict) and "run" in run),
    )
