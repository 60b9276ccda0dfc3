"""metrics.json files -> markdown tables in the format of the MMSelfSup model-zoo pages.

Three kinds of page, each its own workflow job: one per method (``{method}.md``: the
method's models, each followed by its reported numbers, and the ``random`` baseline), one per
benchmark (``benchmarks/{benchmark}.md``: every model) and ``model_zoo.md`` (every model on
every benchmark); each also as standalone HTML for the Snakemake report. A page has one
section per benchmark that has at least one metrics file; the benchmark registry
(:data:`sslzoo.benchmarks.registry.SECTIONS`) says each section's heading, description and
columns (the column names of the model-zoo pages, which are also the keys of ``metrics.json``
and of a model config's ``reported``). A missing value is shown as "–". The section of a
paper's own protocol (registry ``every_model=False``, run only for the models that list it)
has rows for the models with a number in it only, ours or reported. A checkpoint a model's run
kept at an epoch (config ``snapshots:``) is a model of its own, ``<model>_ep<epoch>``: its row
follows the model's, with the snapshot's own reported numbers under it.

A row whose run differs from its protocol in world size or total batch gets a footnote under
the table (:class:`Footnotes`): the pretraining run (``results/pretrain/{model}/run.json``,
given for the pretrained models a page shows) and the benchmark run (``meta.run`` of the
metrics file) are each compared with the protocol values recorded beside them
(:mod:`sslzoo.run_record`). External checkpoints and ``random`` have no pretraining record; a
metrics file without ``meta.run`` (written before runs were recorded) gets no footnote.

A protocol repeated over seeds (``repeats: N``, :mod:`sslzoo.benchmarks.repeats`) shows the mean
of its runs with their sample standard deviation, ``82.60 ± 0.30``, and a footnote on the row
saying over how many runs and which seeds; each run's record is compared with its protocol.
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sslzoo.benchmarks.registry import BENCHMARKS, SECTION_OF, SECTIONS
from sslzoo.benchmarks.repeats import Repeats, repeats_of
from sslzoo.config import snapshot_name
from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes, read_json
from sslzoo.run_record import RunRecord, check_record, differs_from_protocol

MISSING = "–"
RANDOM_MODEL = "random"
REPORTED_SUFFIX = " (reported)"
CONFIG_HEADER = "Self-Supervised Config"
OURS, REPORTED = "ours", "reported"


@dataclass(frozen=True)
class ModelEntry:
    """A row of the tables: a model name, its method and title, and its reported numbers;
    ``parent`` names the pretrained model whose run a snapshot row's checkpoint comes from."""

    name: str
    method: str | None
    title: str
    reported: dict[str, dict[str, Any]] = field(default_factory=dict)
    parent: str | None = None


def _check_columns(benchmark: str, values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` keyed by the section's column names (matched case-insensitively), values checked."""
    if benchmark not in SECTIONS:
        raise SslzooError(
            f"{source}: benchmark '{benchmark}' has no table section; register it in sslzoo/benchmarks/registry.py"
        )
    columns = {column.lower(): column for column in SECTIONS[benchmark].columns}
    out: dict[str, Any] = {}
    for key, value in values.items():
        column = columns.get(str(key).lower())
        if column is None:
            raise SslzooError(
                f"{source}: '{key}' is not a column of {benchmark}; the columns are {list(SECTIONS[benchmark].columns)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float | str | None):
            raise SslzooError(f"{source}: {benchmark} '{key}' must be a number or a string, got {value!r}")
        out[column] = value
    return out


def _reported(cfg: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """The ``reported:`` numbers of a config (or of one of its snapshots), columns checked."""
    return {
        benchmark: _check_columns(benchmark, values or {}, f"{where}reported.{benchmark}")
        for benchmark, values in (cfg.get("reported") or {}).items()
    }


def load_model_entries(path: str | os.PathLike[str]) -> list[ModelEntry]:
    """The rows of a model config: the model (name: the file stem), then one per entry of its
    ``snapshots:`` in the listed order (``<name>_ep<epoch>``, same method and title, its own
    reported numbers)."""
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: model config not found")
    cfg = yaml.safe_load(path.read_text()) or {}
    for key in ("method", "title"):
        if key not in cfg:
            raise SslzooError(f"{path}: missing key '{key}'")
    method, title = str(cfg["method"]), str(cfg["title"])
    entries = [ModelEntry(name=path.stem, method=method, title=title, reported=_reported(cfg, f"{path}: "))]
    for index, snapshot in enumerate(cfg.get("snapshots") or []):
        name = snapshot_name(path.stem, snapshot["epoch"])
        reported = _reported(snapshot, f"{path}: snapshots[{index}].")
        entries.append(ModelEntry(name=name, method=method, title=title, reported=reported, parent=path.stem))
    return entries


def load_model_entry(path: str | os.PathLike[str]) -> ModelEntry:
    """Name (file stem), method, title and ``reported`` of a model config (its snapshots aside)."""
    return load_model_entries(path)[0]


def parse_metrics_path(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``results/benchmarks/{benchmark}/{model}/metrics.json`` -> (benchmark, model)."""
    path = Path(path)
    if path.name != "metrics.json" or len(path.parts) < 3:
        raise SslzooError(f"{path}: expected a path .../{{benchmark}}/{{model}}/metrics.json")
    return path.parent.parent.name, path.parent.name


def load_results(
    metrics_paths: Sequence[str | os.PathLike[str]], models: Sequence[ModelEntry]
) -> pd.DataFrame:
    """Every number of the tables in long form: columns model, source (ours/reported), benchmark,
    column, value and std (the standard deviation over the runs of a repeated protocol, else None)."""
    records: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    filled: dict[tuple[str, str, str], str] = {}
    for path in metrics_paths:
        benchmark, model = parse_metrics_path(path)
        if (benchmark, model) in seen:
            raise SslzooError(f"{path}: a second metrics file for {benchmark}/{model}")
        seen.add((benchmark, model))
        metrics = read_json(path)
        if not isinstance(metrics, dict):
            raise SslzooError(f"{path}: expected a JSON object of table column -> number")
        benchmark = SECTION_OF.get(benchmark, benchmark)
        values = _check_columns(benchmark, {k: v for k, v in metrics.items() if k != "meta"}, str(path))
        repeats = repeats_of(metrics, str(path))
        stds = _check_columns(benchmark, repeats.std, f"{path}: meta.repeats.std") if repeats else {}
        for column in values:
            if (benchmark, model, column) in filled:
                raise SslzooError(
                    f"{path}: {benchmark} '{column}' of {model} also comes from {filled[benchmark, model, column]}"
                )
            filled[benchmark, model, column] = str(path)
        records += [
            dict(model=model, source=OURS, benchmark=benchmark, column=c, value=v, std=stds.get(c))
            for c, v in values.items()
        ]
    for entry in models:
        for benchmark, values in entry.reported.items():
            records += [
                dict(model=entry.name, source=REPORTED, benchmark=benchmark, column=c, value=v)
                for c, v in values.items()
            ]
    # a benchmark with a metrics file but no numbers still gets its section
    records += [
        dict(model=m, source=OURS, benchmark=SECTION_OF.get(b, b), column=None, value=None) for b, m in seen
    ]
    return pd.DataFrame.from_records(
        records, columns=["model", "source", "benchmark", "column", "value", "std"]
    )


# ---------------------------------------------------------------- footnotes: runs unlike their protocol

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_FOOTNOTE_LINE = re.compile("^[⁰¹²³⁴⁵⁶⁷⁸⁹]+ ")


def superscript(number: int) -> str:
    """``12`` -> ``¹²`` (a footnote marker)."""
    return str(number).translate(_SUPERSCRIPT)


def mismatch_footnote(subject: str, verb: str, record: RunRecord) -> str:
    """The footnote text of a run whose world size or total batch differs from its protocol's.

    E.g. ``byol_r50: pretrained with 4 processes x 32 x accum 16 = 2048 images per step; the
    protocol (`config/models/byol_r50.yaml`): 8 x 32 x 16 = 4096`` (the accumulation is shown
    where either side has one).
    """
    protocol = record["protocol"]
    assert protocol is not None
    accumulate = record["accumulate"] != 1 or protocol["accumulate"] != 1
    processes = record["world_size"]
    ran = f"{processes} process{'' if processes == 1 else 'es'} x {record['per_process_batch']}"
    asked = f"{protocol['gpus']} x {protocol['per_process_batch']}"
    if accumulate:
        ran += f" x accum {record['accumulate']}"
        asked += f" x {protocol['accumulate']}"
    source = f" (`{protocol['config']}`)" if protocol.get("config") else ""
    return (
        f"{subject}: {verb} with {ran} = {record['total_batch']} images per step; "
        f"the protocol{source}: {asked} = {protocol['total_batch']}"
    )


@dataclass(frozen=True)
class Footnotes:
    """The footnotes of a page's rows: one per run that differs from its protocol.

    Attributes:
        pretrain: model -> the footnote of its pretraining run (on the model's row in every table).
        benchmark: (section, model) -> the footnotes of the benchmark runs behind that row (two
            for the ImageNet linear row: the Feature1..5 and the AvgPool protocols).
    """

    pretrain: dict[str, str] = field(default_factory=dict)
    benchmark: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def of_row(self, section: str, model: str) -> list[str]:
        """The footnotes of ``model``'s row in ``section``'s table, pretraining first."""
        return ([self.pretrain[model]] if model in self.pretrain else []) + self.benchmark.get(
            (section, model), []
        )


def load_footnotes(
    metrics_paths: Sequence[str | os.PathLike[str]], run_paths: Sequence[str | os.PathLike[str]] = ()
) -> Footnotes:
    """Footnotes from the pretraining run records ``run_paths`` (``results/pretrain/{model}/run.json``)
    and the ``meta.run`` of each metrics file, for the runs whose world size or total batch
    differ from their protocol's (:func:`sslzoo.run_record.differs_from_protocol`)."""
    footnotes = Footnotes()
    for path in run_paths:
        model = Path(path).parent.name
        record = check_record(read_json(path), str(path))
        if differs_from_protocol(record):
            footnotes.pretrain[model] = mismatch_footnote(model, "pretrained", record)
    for path in metrics_paths:
        benchmark, model = parse_metrics_path(path)
        metrics = read_json(path)
        meta = metrics.get("meta") if isinstance(metrics, dict) else None
        if not isinstance(meta, dict):
            continue
        subject, notes = f"{model} on {benchmark}", []
        repeats = repeats_of(metrics, str(path))
        if repeats:
            notes.append(repeats_footnote(subject, repeats))
            records = [check_record(record, f"{path}: meta.runs[].run") for record in repeats.records]
        else:
            records = [check_record(meta["run"], f"{path}: meta.run")] if "run" in meta else []
        for record in records:
            if differs_from_protocol(record) and mismatch_footnote(subject, "ran", record) not in notes:
                notes.append(mismatch_footnote(subject, "ran", record))
        if notes:
            footnotes.benchmark.setdefault((SECTION_OF.get(benchmark, benchmark), model), []).extend(notes)
    return footnotes


def repeats_footnote(subject: str, repeats: Repeats) -> str:
    """The footnote of a row averaged over runs, e.g. ``triplet_r50 on det_voc0712_moco: mean ±
    std of 5 runs with seeds 0, 1, 2, 3, 4 (sample standard deviation, ddof 1)``."""
    seeds = ", ".join(map(str, repeats.seeds))
    return (
        f"{subject}: mean ± std of {repeats.count} runs with seeds {seeds} "
        f"(sample standard deviation, ddof {repeats.std_ddof})"
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def format_value(value: Any, std: Any = None) -> str:
    """Numbers with 2 decimals, strings as they are, anything missing as "–"; a number with a
    standard deviation over runs as ``82.60 ± 0.30``."""
    if _missing(value):
        return MISSING
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return f"{value:.2f}" if _missing(std) else f"{value:.2f} ± {std:.2f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table with every column padded to its widest cell, like the model-zoo pages."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    widths = [max(width, 3) for width in widths]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))
            + " |"
        )

    return "\n".join([line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def _section_rows(
    results: pd.DataFrame,
    benchmark: str,
    models: Sequence[ModelEntry],
    with_method: bool,
    footnotes: Footnotes,
    numbers: dict[str, int],
) -> list[list[str]]:
    """The rows of one section; a row with footnotes gets their markers after its label, each
    footnote numbered on first use on the page (``numbers``: text -> number, filled here). A
    paper's own protocol has rows for the models with a number in it only."""
    columns = list(SECTIONS[benchmark].columns)
    known = results[(results.benchmark == benchmark) & results.column.notna()]
    table = known.pivot(index=["model", "source"], columns="column", values="value") if len(known) else None
    stds = known.pivot(index=["model", "source"], columns="column", values="std") if len(known) else None
    if not BENCHMARKS[benchmark].every_model:
        models = [entry for entry in models if entry.name in set(known.model)]
    rows: list[list[str]] = []
    for entry in models:
        sources = [OURS] + ([REPORTED] if benchmark in entry.reported else [])
        for source in sources:
            label = entry.name + (REPORTED_SUFFIX if source == REPORTED else "")
            notes = footnotes.of_row(benchmark, entry.name) if source == OURS else []
            if notes:
                label += " " + ",".join(superscript(numbers.setdefault(n, len(numbers) + 1)) for n in notes)
            if table is not None and (entry.name, source) in table.index:
                values = table.loc[(entry.name, source)].reindex(columns)
                spread = stds.loc[(entry.name, source)].reindex(columns)
                cells = [format_value(values[column], spread[column]) for column in columns]
            else:
                cells = [MISSING] * len(columns)
            rows.append(([entry.title] if with_method else []) + [label, *cells])
    return rows


def render_page(
    title: str,
    intro: str,
    results: pd.DataFrame,
    models: Sequence[ModelEntry],
    with_method: bool = False,
    footnotes: Footnotes | None = None,
) -> str:
    """The markdown of one page: a section per benchmark that has at least one metrics file,
    each table followed by the footnotes of its rows (one paragraph each, numbered per page)."""
    footnotes = footnotes or Footnotes()
    measured = set(results.loc[results.source == OURS, "benchmark"])
    lines = [f"# {title}", "", intro, ""]
    group = None
    written = 0
    numbers: dict[str, int] = {}
    for benchmark, section in SECTIONS.items():
        if benchmark not in measured:
            continue
        if section.group != group:
            group = section.group
            lines += [f"## {group}", ""]
        header = (["Method"] if with_method else []) + [CONFIG_HEADER, *section.columns]
        table = markdown_table(
            header, _section_rows(results, benchmark, models, with_method, footnotes, numbers)
        )
        lines += [f"### {section.heading}", "", section.description, "", table, ""]
        used = {text for entry in models for text in footnotes.of_row(benchmark, entry.name)}
        for text in sorted(used, key=numbers.__getitem__):
            lines += [f"{superscript(numbers[text])} {text}", ""]
        written += 1
    if not written:
        lines += ["No benchmark results yet.", ""]
    return "\n".join(lines)


def _intro(what: str) -> str:
    return (
        f"{what}. Each of our rows is followed by the numbers the model zoo reports for the same "
        f"config, labelled {REPORTED_SUFFIX.strip()}, where there are any; `{RANDOM_MODEL}` is a randomly "
        f"initialised backbone. {MISSING} marks a result that is not available."
    )


RANDOM_ENTRY = ModelEntry(name=RANDOM_MODEL, method=None, title="Random init")


def _load_inputs(
    metrics_paths: Sequence[str | os.PathLike[str]],
    model_config_paths: Sequence[str | os.PathLike[str]],
    run_paths: Sequence[str | os.PathLike[str]] = (),
) -> tuple[list[ModelEntry], pd.DataFrame, Footnotes]:
    """The model configs' rows (models and their snapshots, checked for duplicates), the
    long-form results of every metrics file and the footnotes of the runs that differ from their
    protocols (a snapshot row shares its run's pretraining footnote)."""
    configured = [entry for path in model_config_paths for entry in load_model_entries(path)]
    names = [entry.name for entry in configured]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SslzooError(f"model configs given twice: {duplicates}")
    footnotes = load_footnotes(metrics_paths, run_paths)
    for entry in configured:
        if entry.parent in footnotes.pretrain:
            footnotes.pretrain[entry.name] = footnotes.pretrain[entry.parent]
    return configured, load_results(metrics_paths, configured), footnotes


def _every_model(configured: list[ModelEntry], results: pd.DataFrame) -> list[ModelEntry]:
    """The configured models, then any other measured model (external checkpoints), then ``random``."""
    known = {entry.name for entry in configured} | {RANDOM_MODEL}
    others = sorted(set(results.loc[results.source == OURS, "model"]) - known)
    return (
        configured
        + [ModelEntry(name=name, method=None, title="external") for name in others]
        + [RANDOM_ENTRY]
    )


def _write(markdown: str, out: str | os.PathLike[str], html: str | os.PathLike[str] | None) -> None:
    atomic_write_bytes(out, markdown.encode())
    if html is not None:
        atomic_write_bytes(html, markdown_to_html(markdown).encode())


def write_model_zoo(
    metrics_paths: Sequence[str | os.PathLike[str]],
    model_config_paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    html: str | os.PathLike[str] | None = None,
    run_paths: Sequence[str | os.PathLike[str]] = (),
) -> str:
    """``model_zoo.md``: every model (configured, external, ``random``) on every measured benchmark.

    ``run_paths``: the pretraining run records (``run.json``) of the pretrained models, for the
    footnotes (likewise for the other pages)."""
    configured, results, footnotes = _load_inputs(metrics_paths, model_config_paths, run_paths)
    page = render_page(
        "Model Zoo",
        _intro("Every model of this zoo on every benchmark"),
        results,
        _every_model(configured, results),
        with_method=True,
        footnotes=footnotes,
    )
    _write(page, out, html)
    return page


def write_method_page(
    method: str,
    metrics_paths: Sequence[str | os.PathLike[str]],
    model_config_paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    html: str | os.PathLike[str] | None = None,
    run_paths: Sequence[str | os.PathLike[str]] = (),
) -> str:
    """``{method}.md``: the models of ``method`` among the configs, each with its reported numbers, and ``random``."""
    configured, results, footnotes = _load_inputs(metrics_paths, model_config_paths, run_paths)
    rows = [entry for entry in configured if entry.method == method]
    if not rows:
        found = sorted({str(entry.method) for entry in configured})
        raise SslzooError(
            f"no model config of method '{method}' among {list(model_config_paths)}; methods found: {found}"
        )
    title = rows[0].title
    page = render_page(
        title,
        _intro(f"Results of the {title} models of this zoo"),
        results,
        [*rows, RANDOM_ENTRY],
        footnotes=footnotes,
    )
    _write(page, out, html)
    return page


def write_benchmark_table(
    benchmark: str,
    metrics_paths: Sequence[str | os.PathLike[str]],
    model_config_paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    html: str | os.PathLike[str] | None = None,
    run_paths: Sequence[str | os.PathLike[str]] = (),
) -> str:
    """One benchmark's table (a section of :data:`SECTIONS`) with every model, as its own page."""
    if benchmark not in SECTIONS:
        raise SslzooError(f"benchmark '{benchmark}' has no table section; the sections are {list(SECTIONS)}")
    configured, results, footnotes = _load_inputs(metrics_paths, model_config_paths, run_paths)
    other = sorted(set(results.loc[results.source == OURS, "benchmark"]) - {benchmark})
    if other:
        raise SslzooError(f"the {benchmark} table was given metrics of other benchmarks: {other}")
    section = SECTIONS[benchmark]
    page = render_page(
        section.heading,
        _intro(f"Every model of this zoo on {section.heading} ({section.group.lower()})"),
        results,
        _every_model(configured, results),
        with_method=True,
        footnotes=footnotes,
    )
    _write(page, out, html)
    return page


# ---------------------------------------------------------------- HTML (the Snakemake report)

_INLINE = re.compile(r"\*\*(.+?)\*\*|`(.+?)`")
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}"
    "th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}"
    "tr.reported td{color:#666;font-style:italic}th{background:#f3f3f3}"
    "p.footnote{font-size:0.9em;color:#444;margin:0.2em 0}"
)


def _inline_html(text: str) -> str:
    """``**bold**`` and ```code``` of the page texts as HTML, everything else escaped."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html_escape(text[last : match.start()]))
        bold, code = match.groups()
        out.append(
            f"<strong>{html_escape(bold)}</strong>"
            if bold is not None
            else f"<code>{html_escape(code)}</code>"
        )
        last = match.end()
    out.append(html_escape(text[last:]))
    return "".join(out)


def _table_html(lines: list[str]) -> str:
    """A pipe table (header, separator, rows) as an HTML table; (reported) rows get their own class."""
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]
    parts = ["<table>", "<tr>" + "".join(f"<th>{_inline_html(c)}</th>" for c in header) + "</tr>"]
    for row in rows:
        reported = any(cell.endswith(REPORTED_SUFFIX) for cell in row)
        parts.append(
            ("<tr class='reported'>" if reported else "<tr>")
            + "".join(f"<td>{_inline_html(c)}</td>" for c in row)
            + "</tr>"
        )
    return "\n".join([*parts, "</table>"])


def markdown_to_html(markdown: str) -> str:
    """A standalone HTML page of a page written by this module (headings, paragraphs, pipe
    tables, footnotes: paragraphs starting with a superscript number)."""
    body: list[str] = []
    lines = markdown.splitlines()
    title = lines[0].lstrip("# ") if lines else ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            body.append(_table_html(lines[i:end]))
            i = end
            continue
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline_html(line[level:].strip())}</h{level}>")
        elif _FOOTNOTE_LINE.match(line):
            body.append(f"<p class='footnote'>{_inline_html(line)}</p>")
        elif line.strip():
            body.append(f"<p>{_inline_html(line)}</p>")
        i += 1
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html_escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
