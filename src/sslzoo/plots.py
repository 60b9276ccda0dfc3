"""Figures of the Snakemake report: pretraining loss curves and benchmark metrics against k.

- :func:`plot_loss`: one model's ``train_log.jsonl`` (one JSON line per optimizer step, written
  by :func:`sslzoo.engine.trainer.train`) as loss against iteration, the raw values and a
  running mean, with the learning rate on a second axis.
- :func:`plot_vs_k`: a benchmark whose columns are ``k=N`` (kNN top-1 against the number of
  neighbours, low-shot SVM mAP against positives per class), one line per model.

SVG output with a fixed hash salt and no date, so that the same numbers give the same file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402

from sslzoo.benchmarks.registry import SECTIONS  # noqa: E402
from sslzoo.errors import SslzooError  # noqa: E402
from sslzoo.io import read_json  # noqa: E402
from sslzoo.tables import parse_metrics_path  # noqa: E402

K_COLUMN = re.compile(r"^k=(\d+)$")
SVG_SETTINGS = {"svg.hashsalt": "sslzoo", "svg.fonttype": "none"}


def read_train_log(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``train_log.jsonl`` -> a frame with one row per iteration (columns ``iter``, ``loss``, ``lr``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: train log not found")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SslzooError(f"{path}:{number}: not a JSON line ({err})") from err
    frame = pd.DataFrame.from_records(records)
    missing = {"iter", "loss"} - set(frame.columns)
    if len(frame) == 0 or missing:
        raise SslzooError(
            f"{path}: expected JSON lines with 'iter' and 'loss', found columns {list(frame.columns)}"
        )
    return frame.sort_values("iter").reset_index(drop=True)


def running_mean(values: pd.Series, window: int) -> pd.Series:
    """The mean of the last ``window`` values at every position (fewer at the start)."""
    return values.rolling(window=max(int(window), 1), min_periods=1).mean()


def _save(fig: plt.Figure, out: str | os.PathLike[str]) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out)


def plot_loss(train_log: str | os.PathLike[str], out: str | os.PathLike[str], title: str) -> pd.DataFrame:
    """Loss against iteration for one pretraining run; returns the log with its running mean (``smoothed``)."""
    frame = read_train_log(train_log)
    frame["smoothed"] = running_mean(frame["loss"], max(len(frame) // 50, 5))
    with plt.rc_context(SVG_SETTINGS):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.plot(frame["iter"], frame["loss"], color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
        ax.plot(frame["iter"], frame["smoothed"], color="tab:blue", linewidth=1.6, label="running mean")
        ax.set_xlabel("iteration")
        ax.set_ylabel("training loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if "lr" in frame:
            lr_ax = ax.twinx()
            lr_ax.plot(frame["iter"], frame["lr"], color="tab:orange", linewidth=1.0, label="learning rate")
            lr_ax.set_ylabel("learning rate")
            more_handles, more_labels = lr_ax.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
        ax.legend(handles, labels, loc="upper right", fontsize="small")
        _save(fig, out)
    return frame


def k_curves(benchmark: str, metrics_paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """The ``k=N`` columns of ``benchmark``'s metrics files in long form: columns model, k, value."""
    if benchmark not in SECTIONS or not any(K_COLUMN.match(c) for c in SECTIONS[benchmark].columns):
        with_k = [name for name, s in SECTIONS.items() if any(K_COLUMN.match(c) for c in s.columns)]
        raise SslzooError(f"benchmark '{benchmark}' has no k=N columns; the benchmarks that do: {with_k}")
    records = []
    for path in metrics_paths:
        found, model = parse_metrics_path(path)
        if found != benchmark:
            raise SslzooError(f"{path}: a metrics file of {found}, not {benchmark}")
        for column, value in read_json(path).items():
            match = K_COLUMN.match(str(column))
            if match and isinstance(value, int | float) and not isinstance(value, bool):
                records.append({"model": model, "k": int(match.group(1)), "value": float(value)})
    return pd.DataFrame.from_records(records, columns=["model", "k", "value"])


def plot_vs_k(
    benchmark: str, metrics_paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], ylabel: str
) -> pd.DataFrame:
    """One line per model of ``benchmark``'s metric against k (log scale); returns :func:`k_curves`."""
    curves = k_curves(benchmark, metrics_paths)
    with plt.rc_context(SVG_SETTINGS):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for model, rows in curves.groupby("model", sort=True):
            rows = rows.sort_values("k")
            ax.plot(rows["k"], rows["value"], marker="o", linewidth=1.4, label=model)
        ax.set_xscale("log", base=2)
        ks = sorted(curves["k"].unique())
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k")
        ax.set_ylabel(ylabel)
        ax.set_title(SECTIONS[benchmark].heading)
        ax.grid(alpha=0.3)
        if len(curves):
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no k=N values", ha="center", va="center", transform=ax.transAxes)
        _save(fig, out)
    return curves
