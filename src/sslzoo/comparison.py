"""A published comparison table reproduced row by row: ``config/comparison/<name>.yaml`` ->
``results/tables/comparison.md`` (and HTML for the report).

The file (``sslzoo/schemas/comparison.schema.yaml``) lists the published table's sections
(Triplet's README: ImageNet linear top-1, COCO, VOC), each with its columns (header ->
``metrics.json`` key) and rows: the method and epochs as published, our model of the row, the
published numbers and the benchmark whose protocol produced them (``protocol``), or null when
that is a protocol the zoo does not run.

Each row of the page is our number followed by the published one:

- ``<method>`` (ours): the metrics of the row's model under the row's ``protocol``, or under the
  section's ``ours`` benchmark when the row names none;
- ``<method> (reported)`` under it when the published numbers came from that same protocol;
  ``<method> (reported, other protocol)`` when they did not (the reported number never sits
  under a row of another protocol, as on every page of the zoo). A footnote gives each
  reported line's source.

A zoo that runs stand-ins for the rows' models (the mini zoo: ``--stand-in full=mini``) shows
the stand-ins' numbers and no reported lines: the published numbers belong to the full-scale
configs. A row whose model is not in the zoo shows "–" and says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sslzoo.benchmarks.registry import BENCHMARKS, SECTION_OF, SECTIONS
from sslzoo.benchmarks.repeats import repeats_of
from sslzoo.config import validate
from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes, read_json
from sslzoo.tables import (
    MISSING,
    format_value,
    markdown_table,
    markdown_to_html,
    parse_metrics_path,
    superscript,
)

SCHEMA = Path(__file__).resolve().parent / "schemas" / "comparison.schema.yaml"
OTHER_PROTOCOL = "other protocol"


@dataclass(frozen=True)
class Row:
    """One published row: ``reported`` has one number per column of its section."""

    method: str
    epochs: str
    model: str | None
    reported: tuple[float, ...]
    protocol: str | None
    source: str


@dataclass(frozen=True)
class Section:
    """One published table: ``columns`` maps each header to its ``metrics.json`` key."""

    title: str
    ours: str
    columns: dict[str, str]
    epochs_column: bool
    rows: tuple[Row, ...]

    def benchmark_of(self, row: Row) -> str:
        """The benchmark our number of ``row`` comes from: its protocol, else the section's ``ours``."""
        return row.protocol or self.ours


@dataclass(frozen=True)
class Comparison:
    title: str
    source: str
    sections: tuple[Section, ...]


def _check_benchmark(name: str, keys: Sequence[str], where: str) -> None:
    """``name`` is a registered benchmark whose table has every column in ``keys``."""
    if name not in BENCHMARKS:
        raise SslzooError(
            f"{where}: '{name}' is not a benchmark of sslzoo; the benchmarks are {list(BENCHMARKS)}"
        )
    columns = SECTIONS[SECTION_OF.get(name, name)].columns
    missing = [key for key in keys if key not in columns]
    if missing:
        raise SslzooError(f"{where}: {missing} are not columns of {name}; its columns are {list(columns)}")


def load_comparison(path: str | os.PathLike[str]) -> Comparison:
    """Read and check a comparison file: the schema, every benchmark registered and holding the
    section's columns, one reported number per column."""
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: comparison file not found")
    raw: Any = validate(yaml.safe_load(path.read_text()), SCHEMA, path)
    sections = []
    for s, section in enumerate(raw["sections"]):
        keys = list(section["columns"].values())
        _check_benchmark(section["ours"], keys, f"{path}: sections[{s}].ours")
        rows = []
        for r, row in enumerate(section["rows"]):
            where = f"{path}: sections[{s}].rows[{r}] ({row['method']})"
            if row["protocol"] is not None:
                _check_benchmark(row["protocol"], keys, f"{where}.protocol")
            if len(row["reported"]) != len(keys):
                raise SslzooError(
                    f"{where}: {len(row['reported'])} reported numbers for the columns {list(section['columns'])}"
                )
            rows.append(
                Row(
                    row["method"],
                    row["epochs"],
                    row["model"],
                    tuple(row["reported"]),
                    row["protocol"],
                    row["source"],
                )
            )
        sections.append(
            Section(
                section["title"],
                section["ours"],
                dict(section["columns"]),
                section["epochs_column"],
                tuple(rows),
            )
        )
    return Comparison(raw["title"], raw["source"], tuple(sections))


def metrics_needed(
    comparison: Comparison, models: Sequence[str], benchmarks: Sequence[str], stand_ins: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The (benchmark, model) pairs whose metrics the page shows, for the models and benchmarks
    a zoo runs (a row's model replaced by its stand-in where it has one), in page order."""
    available, configured = set(models), set(benchmarks)
    pairs: list[tuple[str, str]] = []
    for section in comparison.sections:
        for row in section.rows:
            model = stand_ins.get(row.model or "", row.model)
            pair = (section.benchmark_of(row), model)
            if model in available and pair[0] in configured and pair not in pairs:
                pairs.append(pair)  # type: ignore[arg-type]
    return pairs  # type: ignore[return-value]


def _our_values(
    metrics: Mapping[tuple[str, str], dict[str, Any]], benchmark: str, model: str | None, keys: Sequence[str]
) -> list[str]:
    """Our numbers of ``model`` under ``benchmark`` (mean ± std for a repeated protocol)."""
    values = metrics.get((benchmark, model or ""), {})
    repeats = repeats_of(values, f"{benchmark}/{model}") if values else None
    std = repeats.std if repeats else {}
    return [format_value(values.get(key), std.get(key)) for key in keys]


def render_comparison(
    comparison: Comparison,
    metrics_paths: Sequence[str | os.PathLike[str]],
    stand_ins: Mapping[str, str] | None = None,
    models: Sequence[str] | None = None,
) -> str:
    """The page as markdown: a section per published table, ours then reported per row;
    ``models`` (the zoo's models, when given) marks the rows whose model the zoo does not run."""
    stand_ins = dict(stand_ins or {})
    metrics: dict[tuple[str, str], dict[str, Any]] = {}
    for path in metrics_paths:
        benchmark, model = parse_metrics_path(path)
        metrics[benchmark, model] = read_json(path)
    intro = (
        f"Every row of the tables of {comparison.source}: our number on the first line of a row, the "
        "published one under it, labelled (reported) when the same protocol produced it and (reported, "
        f"{OTHER_PROTOCOL}) when it came from a protocol the zoo does not run; the footnotes give each "
        f"published number's source. {MISSING} marks a number that is not available."
    )
    if stand_ins:
        intro += (
            " This zoo runs stand-ins for the rows' models (the Config column names them): the published "
            "numbers belong to the full-scale configs and are not shown beside them."
        )
    lines = [f"# {comparison.title}", "", intro, ""]
    for section in comparison.sections:
        notes: list[str] = []
        header = [
            "Method",
            *(["Epochs"] if section.epochs_column else []),
            "Config",
            "Protocol",
            *section.columns,
        ]
        table: list[list[str]] = []
        keys = list(section.columns.values())
        for row in section.rows:
            model = stand_ins.get(row.model or "", row.model)
            benchmark = section.benchmark_of(row)
            epochs = [row.epochs] if section.epochs_column else []
            if model is None:
                config = "(no config in the zoo)"
            elif models is not None and model not in models:
                config = f"{model} (not in this zoo's models)"
            else:
                config = model
            table.append(
                [row.method, *epochs, config, benchmark, *_our_values(metrics, benchmark, model, keys)]
            )
            if stand_ins:
                continue
            notes.append(
                f"{row.source}" + ("" if row.protocol else f"; {OTHER_PROTOCOL} than {section.ours}")
            )
            label = "(reported)" if row.protocol else f"(reported, {OTHER_PROTOCOL})"
            table.append(
                [
                    f"{row.method} {label}{superscript(len(notes))}",
                    *epochs,
                    "",
                    row.protocol or "–",
                    *(format_value(value) for value in row.reported),
                ]
            )
        lines += [f"## {section.title}", "", markdown_table(header, table), ""]
        lines += [f"{superscript(number)} {note}" for number, note in enumerate(notes, start=1)]
        lines += [""] if notes else []
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(
    table_path: str | os.PathLike[str],
    metrics_paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    html: str | os.PathLike[str] | None = None,
    stand_ins: Mapping[str, str] | None = None,
    models: Sequence[str] | None = None,
) -> None:
    """Render the comparison page of ``table_path`` to ``out`` (markdown) and ``html``."""
    markdown = render_comparison(load_comparison(table_path), metrics_paths, stand_ins, models)
    atomic_write_bytes(out, markdown.encode())
    if html is not None:
        atomic_write_bytes(html, markdown_to_html(markdown).encode())
