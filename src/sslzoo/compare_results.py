"""Compare two result trees number by number: did a change of code or config move any result?

``python -m sslzoo compare-results A B`` walks ``A/results`` and compares each file with the same
path under ``B/results``:

- ``*.json`` (metrics.json, run.json, the ORL files) and ``*.jsonl`` (training logs): equal after
  dropping the fields that say when and with which commit a job ran, at any depth
  (:data:`RUN_DEPENDENT`: wall times, per-step seconds, the git revision);
- ``*.pth`` (backbones, final models): every tensor, found at any depth, equal bit for bit, with
  the same names; non-tensor metadata (git revision, config) is not compared;
- ``*.npz`` (cached features): every array equal bit for bit;
- ``*.md`` (tables): equal text.

Training work directories (``*/work/``: resume state) and other files (figures, HTML, logs) are
skipped. A file of A missing from B counts as a difference; files only in B are listed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslzoo.errors import SslzooError

# keys whose values differ between two runs of the same job: when it ran and with which code
RUN_DEPENDENT: frozenset[str] = frozenset({"git_rev", "wall_time_s", "seconds", "time"})
COMPARED_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".pth", ".npz", ".md")


@dataclass
class Comparison:
    """What :func:`compare_trees` found: files compared per kind, differences, files only in B."""

    compared: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def without_run_fields(value: Any) -> Any:
    """``value`` with every dict key of :data:`RUN_DEPENDENT` dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_run_fields(v) for k, v in value.items() if k not in RUN_DEPENDENT}
    if isinstance(value, list):
        return [without_run_fields(v) for v in value]
    return value


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The path of the first value that differs between two JSON-like values, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key} (only in {'B' if key not in a else 'A'})"
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path or '.'}: {a!r} vs {b!r}"


def _tensors(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:

    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{path}[{i}]")


def _compare_file(a: Path, b: Path) -> str | None:
    """Why ``a`` and ``b`` differ (one line), or None when they agree."""
    if a.suffix in (".json", ".jsonl"):
        lines_a, lines_b = a.read_text().splitlines(), b.read_text().splitlines()
        docs_a = [json.loads(line) for line in lines_a] if a.suffix == ".jsonl" else json.loads(a.read_text())
        docs_b = [json.loads(line) for line in lines_b] if a.suffix == ".jsonl" else json.loads(b.read_text())
        return first_difference(without_run_fields(docs_a), without_run_fields(docs_b))
    if a.suffix == ".pth":
        ta = dict(_tensors(torch.load(a, map_location="cpu", weights_only=True)))
        tb = dict(_tensors(torch.load(b, map_location="cpu", weights_only=True)))
        if ta.keys() != tb.keys():
            return f"tensor names differ: {sorted(set(ta) ^ set(tb))[:5]}"
        bad = [name for name in ta if ta[name].dtype != tb[name].dtype or not torch.equal(ta[name], tb[name])]
        return f"{len(bad)} of {len(ta)} tensors differ, e.g. {bad[0]}" if bad else None
    if a.suffix == ".npz":
        with np.load(a) as za, np.load(b) as zb:
            if set(za.files) != set(zb.files):
                return f"arrays differ: {sorted(set(za.files) ^ set(zb.files))}"
            bad = [name for name in za.files if not np.array_equal(za[name], zb[name])]
        return f"arrays differ: {bad}" if bad else None
    return None if a.read_text() == b.read_text() else "text differs"


def _result_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and path.suffix in COMPARED_SUFFIXES and "work" not in relative.parts[:-1]:
            yield relative


def compare_trees(a: str | Path, b: str | Path) -> Comparison:
    """Compare ``a/results`` with ``b/results`` as the module docstring says."""
    root_a, root_b = Path(a) / "results", Path(b) / "results"
    for root in (root_a, root_b):
        if not root.is_dir():
            raise SslzooError(f"{root} is not a folder: give the working directories of two runs")
    result = Comparison()
    files_a = list(_result_files(root_a))
    for relative in files_a:
        kind = relative.suffix
        result.compared[kind] = result.compared.get(kind, 0) + 1
        other = root_b / relative
        if not other.is_file():
            result.differences.append(f"results/{relative}: missing in {b}")
            continue
        why = _compare_file(root_a / relative, other)
        if why:
            result.differences.append(f"results/{relative}: {why}")
    seen = set(files_a)
    result.only_in_b = [f"results/{p}" for p in _result_files(root_b) if p not in seen]
    return result
