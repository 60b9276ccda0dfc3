"""compare-results: two result trees agree exactly when their numbers do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sslzoo import cli
from sslzoo.compare_results import compare_trees, first_difference, without_run_fields


def _tree(root: Path, *, wall: float, top1: float, weight: float, feature: float) -> Path:
    metrics = root / "results" / "benchmarks" / "knn_imagenet" / "m" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    meta = {
        "run": {"world_size": 1, "wall_time_s": wall, "git_rev": f"r{wall}"},
        "layers": {"a": {"seconds": wall}},
    }
    metrics.write_text(json.dumps({"k=20": top1, "meta": meta}))
    log = root / "results" / "pretrain" / "m" / "train_log.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps({"iter": i, "loss": 1.0 / i, "time": wall * i}) + "\n" for i in (1, 2)))
    torch.save(
        {"state_dict": {"w": torch.full((2,), weight)}, "meta": {"git_rev": f"r{wall}"}},
        log.parent / "final.pth",
    )
    (root / "results" / "pretrain" / "m" / "work").mkdir()
    torch.save({"anything": torch.rand(3)}, root / "results" / "pretrain" / "m" / "work" / "latest.pth")
    features = root / "results" / "features" / "m" / "imagenet_val.npz"
    features.parent.mkdir(parents=True)
    np.savez(features, avgpool=np.full((2, 3), feature, np.float32))
    return root


def test_runs_that_differ_only_in_when_they_ran_are_identical(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", wall=1.0, top1=50.0, weight=0.5, feature=1.0)
    b = _tree(tmp_path / "b", wall=2.0, top1=50.0, weight=0.5, feature=1.0)
    result = compare_trees(a, b)
    assert result.identical, result.differences
    assert result.compared == {".json": 1, ".jsonl": 1, ".pth": 1, ".npz": 1}  # work/ skipped


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"top1": 50.2}, "knn_imagenet/m/metrics.json: .k=20: 50.0 vs 50.2"),
        ({"weight": 0.5000001}, "pretrain/m/final.pth: 1 of 1 tensors differ, e.g. state_dict.w"),
        ({"feature": 1.0 + 1e-7}, "features/m/imagenet_val.npz: arrays differ: ['avgpool']"),
    ],
)
def test_a_changed_number_is_named_with_its_file(tmp_path: Path, change: dict, expected: str) -> None:
    values = {"wall": 1.0, "top1": 50.0, "weight": 0.5, "feature": 1.0}
    a = _tree(tmp_path / "a", **values)
    b = _tree(tmp_path / "b", **{**values, **change})
    result = compare_trees(a, b)
    assert len(result.differences) == 1 and expected in result.differences[0], result.differences


def test_missing_file_differs_and_extra_file_is_listed(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", wall=1.0, top1=50.0, weight=0.5, feature=1.0)
    b = _tree(tmp_path / "b", wall=1.0, top1=50.0, weight=0.5, feature=1.0)
    (b / "results" / "features" / "m" / "imagenet_val.npz").rename(
        b / "results" / "features" / "m" / "other.npz"
    )
    result = compare_trees(a, b)
    assert result.differences == [f"results/features/m/imagenet_val.npz: missing in {b}"]
    assert result.only_in_b == ["results/features/m/other.npz"]


def test_the_step_exits_1_on_a_difference_and_0_without(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a = _tree(tmp_path / "a", wall=1.0, top1=50.0, weight=0.5, feature=1.0)
    b = _tree(tmp_path / "b", wall=3.0, top1=50.0, weight=0.5, feature=1.0)
    c = _tree(tmp_path / "c", wall=1.0, top1=49.0, weight=0.5, feature=1.0)
    assert cli.main(["compare-results", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip().endswith("identical")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare-results", str(a), str(c)])
    assert (
        exit_info.value.code == 1
        and "DIFFERS results/benchmarks/knn_imagenet/m/metrics.json" in capsys.readouterr().out
    )


def test_run_fields_are_dropped_at_any_depth_and_nothing_else() -> None:
    doc = {"time": 1, "a": [{"seconds": 2, "b": 3}], "meta": {"run": {"git_rev": "x", "seed": 0}}}
    assert without_run_fields(doc) == {"a": [{"b": 3}], "meta": {"run": {"seed": 0}}}
    assert first_difference({"a": [1, 2]}, {"a": [1, 2, 3]}) == ".a (length 2 vs 3)"
    assert first_difference({"a": 1}, {"b": 1}) == ".a (only in A)"
