"""The benchmark registry: its views and its checks."""

from __future__ import annotations

import pytest

from sslzoo.benchmarks import registry
from sslzoo.benchmarks.registry import BENCHMARKS, SECTION_OF, SECTIONS, benchmark, of_kind, table_of
from sslzoo.errors import SslzooError


def test_every_benchmark_is_a_section_or_a_column_of_one() -> None:
    assert set(SECTIONS) | set(SECTION_OF) == set(BENCHMARKS)
    assert not set(SECTIONS) & set(SECTION_OF)
    assert all(SECTION_OF[name] in SECTIONS for name in SECTION_OF)
    assert table_of("linear_avgpool_imagenet") == "linear_imagenet" and table_of("knn_imagenet") == "knn_imagenet"


def test_k_plots_are_the_benchmarks_whose_columns_are_k() -> None:
    with_k = {name for name, s in SECTIONS.items() if any(c.startswith("k=") for c in s.columns)}
    assert {name for name, b in BENCHMARKS.items() if b.k_label} == with_k


def test_of_kind_keeps_the_given_order_and_refuses_an_unknown_kind() -> None:
    names = ["semi_in1k_10pct", "knn_imagenet", "semi_in1k_1pct"]
    assert of_kind(names, "semi") == ["semi_in1k_10pct", "semi_in1k_1pct"]
    with pytest.raises(ValueError, match="unknown benchmark kind"):
        of_kind(names, "semi_supervised")


def test_unknown_benchmark_names_its_source_and_the_registry() -> None:
    with pytest.raises(SslzooError, match=r"metrics\.json: 'knn_places205' is not a benchmark.*registry\.py"):
        benchmark("knn_places205", "metrics.json")


def test_a_malformed_entry_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = dict(BENCHMARKS, broken=registry.Benchmark("knn", ("imagenet",), table="no_such_table"))
    monkeypatch.setattr(registry, "BENCHMARKS", bad)
    with pytest.raises(ValueError, match="broken: table 'no_such_table' has no section"):
        registry._check()
