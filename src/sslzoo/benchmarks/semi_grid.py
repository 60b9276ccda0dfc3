"""The semi-supervised grid: how a grid point is named, and the choice of the best one.

Each (lr, head multiplier) point of a semi-supervised benchmark is its own job
(:mod:`sslzoo.benchmarks.semi`); :func:`select_best` reads their ``metrics.json`` and keeps the
best top-1, as the reference reports the best of its grid (PROTOCOLS.md "Semi-supervised").
Reads JSON only: the selection job starts without importing torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sslzoo.errors import SslzooError
from sslzoo.io import read_json, write_json

TOP1, TOP5 = "Top-1 (%)", "Top-5 (%)"


def setting_label(lr: float, head_mult: float) -> str:
    """How a grid point is named in metrics and tables: ``lr 0.01 head x10``."""
    return f"lr {lr:g} head x{head_mult:g}"


def select_best(
    run_paths: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    benchmark_name: str,
    model_name: str,
) -> dict[str, Any]:
    """Keep the grid point with the best top-1 (then top-5, then the first given) and write it.

    ``out_path`` (``results/benchmarks/{benchmark}/{model}/metrics.json``) gets the best run's
    ``Top-1 (%)`` and ``Top-5 (%)`` with ``meta.setting`` (``lr 0.01 head x10``), the best run's
    meta (its ``meta.run`` record: how the selected numbers were trained) and every run's
    numbers under ``meta.runs``; ``meta.benchmark`` and ``meta.model`` are ``benchmark_name`` (a
    benchmark of :mod:`sslzoo.benchmarks.registry`) and ``model_name``.
    """
    if not run_paths:
        raise SslzooError("semi-select: no run metrics given (--runs)")
    runs: list[dict[str, Any]] = []
    for path in run_paths:
        metrics = read_json(path)
        meta = metrics.get("meta") if isinstance(metrics, dict) else None
        if not isinstance(meta, dict):
            raise SslzooError(f"{path}: not a semi-supervised run's metrics.json (no 'meta')")
        for key in (TOP1, TOP5):
            if not isinstance(metrics.get(key), int | float) or isinstance(metrics.get(key), bool):
                raise SslzooError(
                    f"{path}: '{key}' must be a number; rerun the semi-supervised job that wrote it"
                )
        for key in ("lr", "head_mult"):
            if not isinstance(meta.get(key), int | float):
                raise SslzooError(
                    f"{path}: meta.{key} is missing; rerun the semi-supervised job that wrote it"
                )
        runs.append(
            {
                "path": str(path),
                "lr": meta["lr"],
                "head_mult": meta["head_mult"],
                "setting": setting_label(meta["lr"], meta["head_mult"]),
                TOP1: metrics[TOP1],
                TOP5: metrics[TOP5],
                "meta": meta,
            }
        )
    settings = [run["setting"] for run in runs]
    if len(set(settings)) != len(settings):
        twice = next(s for s in settings if settings.count(s) > 1)
        raise SslzooError(
            f"semi-select: two runs with the setting '{twice}' among {list(map(str, run_paths))}"
        )
    best = max(runs, key=lambda run: (run[TOP1], run[TOP5], -runs.index(run)))
    out_path = Path(out_path)
    meta = {key: value for key, value in best["meta"].items() if key != "grid_point"}
    meta.update(
        {
            "benchmark": benchmark_name,
            "model": model_name,
            "setting": best["setting"],
            "selected_from": best["path"],
            "runs": [
                {key: run[key] for key in ("setting", "lr", "head_mult", TOP1, TOP5, "path")} for run in runs
            ],
        }
    )
    result = {TOP1: best[TOP1], TOP5: best[TOP5], "meta": meta}
    write_json(out_path, result)
    return result
