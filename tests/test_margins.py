"""The learning-margins page against hand-computed margins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sslzoo.errors import SslzooError
from sslzoo.margins import margins, read_measures, render_margins, write_margins

MEASURES = {"knn_imagenet": "k=20", "svm_voc07": "SVM"}


def _write(root: Path, benchmark: str, model: str, **columns: float) -> Path:
    path = root / "results" / "benchmarks" / benchmark / model / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**columns, "meta": {"model": model}}))
    return path


def _zoo(root: Path) -> list[Path]:
    return [
        _write(root, "knn_imagenet", "random", **{"k=10": 30.0, "k=20": 31.6}),
        _write(root, "knn_imagenet", "good", **{"k=10": 44.0, "k=20": 46.2}),
        _write(root, "knn_imagenet", "weak", **{"k=10": 33.0, "k=20": 33.6}),
        _write(root, "svm_voc07", "random", SVM=19.1),
        _write(root, "svm_voc07", "good", SVM=25.0),
        _write(root, "svm_voc07", "weak", SVM=24.1),
    ]


def test_each_model_minus_the_random_row(tmp_path: Path) -> None:
    values = read_measures(_zoo(tmp_path), MEASURES)
    assert values["good"] == {"knn_imagenet": 46.2, "svm_voc07": 25.0}  # k=20, not k=10
    gaps = margins(values)
    assert set(gaps) == {"good", "weak"}
    assert gaps["good"] == pytest.approx({"knn_imagenet": 14.6, "svm_voc07": 5.9})
    assert gaps["weak"] == pytest.approx({"knn_imagenet": 2.0, "svm_voc07": 5.0})


def test_the_page_flags_the_models_under_the_margin(tmp_path: Path) -> None:
    out = tmp_path / "results" / "tables" / "learning_margins.md"
    write_margins(_zoo(tmp_path), MEASURES, 3.0, out)
    text = out.read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "31.6" in rows["random (random init)"] and "19.1" in rows["random (random init)"]
    assert "46.2 (+14.6)" in rows["good"] and "25.0 (+5.9)" in rows["good"] and rows["good"].rstrip(" |").endswith("yes")
    assert "33.6 (+2.0)" in rows["weak"] and rows["weak"].rstrip(" |").endswith("no")
    assert text.endswith("Under the 3-point margin:\n\n- weak: knn_imagenet +2.0\n")
    # at a 2-point margin nobody is under it
    assert "Under the" not in render_margins(read_measures(_zoo(tmp_path), MEASURES), MEASURES, 2.0)


def test_missing_rows_and_columns_are_refused_with_what_is_missing(tmp_path: Path) -> None:
    paths = _zoo(tmp_path)
    with pytest.raises(SslzooError, match="no 'random' row.*enable `baseline:`"):
        margins({"good": {"knn_imagenet": 40.0}})
    with pytest.raises(SslzooError, match="model 'weak' has no value for \\['svm_voc07'\\]"):
        margins(read_measures([p for p in paths if not ("weak" in p.parts and "svm_voc07" in p.parts)], MEASURES))
    with pytest.raises(SslzooError, match="no column 'AvgPool'"):
        read_measures(paths, {"knn_imagenet": "AvgPool", "svm_voc07": "SVM"})
    with pytest.raises(SslzooError, match="'svm_voc07' is not one of the measures"):
        read_measures(paths, {"knn_imagenet": "k=20"})
