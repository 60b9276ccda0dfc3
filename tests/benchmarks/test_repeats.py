"""A protocol repeated over seeds: the runs' seeds, their mean and sample std, and the
average-runs step's failures (a missing run, runs with other metrics or the same seed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sslzoo.benchmarks.repeats import STD_DDOF, average_runs, repeats_of, run_seed
from sslzoo.cli import main as cli_main
from sslzoo.errors import SslzooError
from sslzoo.run_record import protocol_batch
from sslzoo.runtime.record import run_record

BENCH, MODEL = "det_voc0712_moco", "triplet_r50"


def _write_run(root: Path, index: int, values: dict, seed: int | None = None, **meta: object) -> Path:
    """``root/run{index}/metrics.json`` as the detection step writes it (metrics, then meta)."""
    path = root / f"run{index}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = run_record(
        world_size=8,
        per_process_batch=2,
        accumulate=1,
        seed=index if seed is None else seed,
        protocol=protocol_batch("config/benchmarks/det_voc0712_moco.yaml", 8, total_batch=16),
    )
    run_meta = {"benchmark": BENCH, "model": MODEL, "seed": index if seed is None else seed, "run": record}
    path.write_text(json.dumps({**values, "meta": {**run_meta, **meta}}))
    return path


RUNS = [
    {"AP50": 82.31, "AP": 56.72, "AP75": 63.40},
    {"AP50": 82.90, "AP": 57.05, "AP75": 64.12},
    {"AP50": 82.47, "AP": 56.81, "AP75": 63.55},
    {"AP50": 82.66, "AP": 57.30, "AP75": 63.91},
]


def test_run_seeds_start_at_the_workflow_seed_and_differ() -> None:
    assert [run_seed(0, index) for index in range(5)] == [0, 1, 2, 3, 4]
    assert [run_seed(7, index) for index in range(3)] == [7, 8, 9]


def test_mean_and_sample_std_match_numpy(tmp_path: Path) -> None:
    paths = [_write_run(tmp_path, index, values) for index, values in enumerate(RUNS)]
    out = tmp_path / "metrics.json"
    result = average_runs(paths, out, benchmark_name=BENCH, model_name=MODEL)
    assert json.loads(out.read_text()) == result
    table = np.array([[run[name] for name in ("AP50", "AP", "AP75")] for run in RUNS])
    means, stds = table.mean(axis=0), table.std(axis=0, ddof=1)
    assert [result[name] for name in ("AP50", "AP", "AP75")] == pytest.approx(means.tolist(), abs=1e-12)
    repeats = result["meta"]["repeats"]
    assert [repeats["std"][name] for name in ("AP50", "AP", "AP75")] == pytest.approx(
        stds.tolist(), abs=1e-12
    )
    # the sample std, not the population std (ddof 0), which is smaller by sqrt((N - 1) / N)
    assert repeats["std"]["AP50"] != pytest.approx(table[:, 0].std(ddof=0))
    assert (repeats["count"], repeats["seeds"], repeats["std_ddof"]) == (4, [0, 1, 2, 3], STD_DDOF)
    assert STD_DDOF == 1
    runs = result["meta"]["runs"]
    assert [run["path"] for run in runs] == list(map(str, paths))
    assert [{name: run[name] for name in ("AP50", "AP", "AP75")} for run in runs] == RUNS
    assert [run["run"]["seed"] for run in runs] == [0, 1, 2, 3]
    assert (result["meta"]["benchmark"], result["meta"]["model"]) == (BENCH, MODEL)
    # what the tables read back
    summary = repeats_of(result, str(out))
    assert summary is not None and (summary.count, summary.seeds, summary.std_ddof) == (4, (0, 1, 2, 3), 1)
    assert summary.std == repeats["std"] and len(summary.records) == 4


def test_two_runs_give_half_the_absolute_difference_times_sqrt2(tmp_path: Path) -> None:
    paths = [_write_run(tmp_path, 0, {"AP50": 80.0}), _write_run(tmp_path, 1, {"AP50": 81.0})]
    result = average_runs(paths, tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)
    assert result["AP50"] == 80.5
    assert result["meta"]["repeats"]["std"]["AP50"] == pytest.approx(np.sqrt(0.5))


def test_a_missing_run_names_the_file_and_the_fix(tmp_path: Path) -> None:
    paths = [_write_run(tmp_path, 0, RUNS[0]), tmp_path / "run1" / "metrics.json"]
    with pytest.raises(SslzooError, match=rf"{paths[1]}: a run's metrics file is missing; rerun the job"):
        average_runs(paths, tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)
    assert not (tmp_path / "metrics.json").exists()


def test_runs_with_other_metric_names_are_refused(tmp_path: Path) -> None:
    paths = [
        _write_run(tmp_path, 0, RUNS[0]),
        _write_run(tmp_path, 1, {"AP50": 82.0, "AP": 57.0}),  # no AP75
    ]
    with pytest.raises(SslzooError, match=r"run1/metrics.json: metrics \['AP', 'AP50'\] differ from"):
        average_runs(paths, tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)
    paths[1] = _write_run(tmp_path, 1, {**RUNS[1], "mAP(Box)": 40.0})  # one more
    with pytest.raises(SslzooError, match="report the same metrics"):
        average_runs(paths, tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (dict(seed=0), "two runs with seed 0"),
        (dict(model="other"), "meta.model is 'other', not 'triplet_r50'"),
        (dict(benchmark="det_voc0712"), "meta.benchmark is 'det_voc0712'"),
    ],
)
def test_runs_of_the_same_seed_or_of_another_row_are_refused(
    tmp_path: Path, edit: dict, message: str
) -> None:
    seed = edit.pop("seed", None)
    paths = [_write_run(tmp_path, 0, RUNS[0]), _write_run(tmp_path, 1, RUNS[1], seed=seed, **edit)]
    with pytest.raises(SslzooError, match=message):
        average_runs(paths, tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)


def test_a_metric_that_is_not_a_number_and_a_single_run_are_refused(tmp_path: Path) -> None:
    paths = [_write_run(tmp_path, 0, RUNS[0]), _write_run(tmp_path, 1, {**RUNS[1], "AP": "57"})]
    with pytest.raises(SslzooError, match="run1/metrics.json: 'AP' must be a number"):
        average_runs(paths, tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)
    with pytest.raises(SslzooError, match="need at least 2"):
        average_runs(paths[:1], tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)


def test_the_step_writes_the_average_and_reports_a_failure(tmp_path: Path, capsys) -> None:
    paths = [str(_write_run(tmp_path, index, values)) for index, values in enumerate(RUNS[:3])]
    out = tmp_path / "metrics.json"
    args = ["average-runs", "--benchmark", BENCH, "--model", MODEL, "--out", str(out)]
    assert cli_main([*args, "--runs", *paths]) == 0
    ap50 = [run["AP50"] for run in RUNS[:3]]
    assert json.loads(out.read_text())["AP50"] == pytest.approx(np.mean(ap50))
    assert f"AP50 {np.mean(ap50):.2f} ± {np.std(ap50, ddof=1):.2f}" in capsys.readouterr().out
    assert cli_main([*args, "--runs", *paths, str(tmp_path / "run9" / "metrics.json")]) == 2
    assert "run9/metrics.json: a run's metrics file is missing" in capsys.readouterr().err
    assert cli_main([*args, "--runs", *paths, "--benchmark", "det_nowhere"]) == 2


def test_an_averaged_file_without_its_std_is_refused_by_the_reader(tmp_path: Path) -> None:
    paths = [_write_run(tmp_path, index, values) for index, values in enumerate(RUNS[:2])]
    result = average_runs(paths, tmp_path / "metrics.json", benchmark_name=BENCH, model_name=MODEL)
    assert repeats_of(json.loads(paths[0].read_text()), "run0") is None  # one run's file
    del result["meta"]["repeats"]["std"]["AP75"]
    with pytest.raises(SslzooError, match="metrics.json: meta.repeats.std must give a number for each of"):
        repeats_of(result, str(tmp_path / "metrics.json"))
