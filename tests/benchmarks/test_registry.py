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


def _with_own_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry with one paper's own protocol, ``linear_own``, run only for models that list it."""
    own = registry.Benchmark("linear", ("imagenet",), registry.Section("Own", "d", ("AvgPool",)), every_model=False)
    monkeypatch.setattr(registry, "BENCHMARKS", dict(BENCHMARKS, linear_own=own))


def test_reported_numbers_of_an_own_protocol_need_the_model_to_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_own_protocol(monkeypatch)
    registry.check_model_benchmarks(["linear_own"], ["linear_own", "knn_imagenet"], "m.yaml")
    registry.check_model_benchmarks([], ["linear_imagenet", "knn_imagenet"], "m.yaml")
    with pytest.raises(SslzooError, match=r"m\.yaml: reported\.linear_own .* add 'linear_own' to the model's extra_benchmarks"):
        registry.check_model_benchmarks([], ["linear_own"], "m.yaml")


def test_extra_benchmarks_name_only_registered_own_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_own_protocol(monkeypatch)
    with pytest.raises(SslzooError, match=r"m\.yaml: extra_benchmarks names 'knn_imagenet', which runs for every model"):
        registry.check_model_benchmarks(["knn_imagenet"], [], "m.yaml")
    with pytest.raises(SslzooError, match=r"m\.yaml: extra_benchmarks: 'linear_nope' is not a benchmark"):
        registry.check_model_benchmarks(["linear_nope"], [], "m.yaml")


def test_a_column_benchmark_runs_for_the_models_of_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_own_protocol(monkeypatch)
    bad = dict(registry.BENCHMARKS, linear_own_col=registry.Benchmark("linear", ("imagenet",), table="linear_own"))
    monkeypatch.setattr(registry, "BENCHMARKS", bad)
    monkeypatch.setattr(registry, "SECTIONS", dict(SECTIONS, linear_own=bad["linear_own"].section))
    with pytest.raises(ValueError, match="linear_own_col: runs for other models than table 'linear_own'"):
        registry._check()
