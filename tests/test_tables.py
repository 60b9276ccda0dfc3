"""Markdown tables from metrics files and model configs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sslzoo.benchmarks.registry import SECTIONS
from sslzoo.benchmarks.repeats import average_runs
from sslzoo.errors import SslzooError
from sslzoo.run_record import protocol_batch
from sslzoo.runtime.record import run_record
from sslzoo.steps import tables as tables_step
from sslzoo.tables import (
    format_value,
    markdown_table,
    markdown_to_html,
    write_benchmark_table,
    write_method_page,
    write_model_zoo,
)

ROTATION = """\
method: rotation_pred
title: Rotation-Pred
reported:
  knn_imagenet: {"k=10": 11.0, "k=20": 11.9, "k=100": 12.6, "k=200": 12.4}
  det_coco: {"mAP(Box)": 37.9}
"""
ROTATION_MINI = "method: rotation_pred\ntitle: Rotation-Pred\n"
BYOL = "method: byol\ntitle: BYOL\nreported:\n  svm_voc07: {Best Layer: feature5, SVM: 86.31}\n"


def _write_metrics(root: Path, benchmark: str, model: str, values: dict) -> Path:
    path = root / "results" / "benchmarks" / benchmark / model / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**values, "meta": {"benchmark": benchmark, "model": model}}))
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    configs = tmp_path / "config" / "models"
    configs.mkdir(parents=True)
    (configs / "rot_r50.yaml").write_text(ROTATION)
    (configs / "rot_mini.yaml").write_text(ROTATION_MINI)
    (configs / "byol_r50.yaml").write_text(BYOL)
    metrics = [
        _write_metrics(
            tmp_path, "knn_imagenet", "rot_r50", {"k=10": 12.345, "k=20": 13, "k=100": 12.1, "k=200": 11.0}
        ),
        _write_metrics(tmp_path, "knn_imagenet", "rot_mini", {"k=10": 30.0, "k=20": 31.456, "k=100": 29.0}),
        _write_metrics(
            tmp_path, "knn_imagenet", "random", {"k=10": 9.5, "k=20": 9.25, "k=100": 8.0, "k=200": 7.125}
        ),
        _write_metrics(tmp_path, "svm_voc07", "byol_r50", {"Best Layer": "feature5", "SVM": 80.0}),
        _write_metrics(
            tmp_path,
            "knn_imagenet",
            "my-checkpoint",
            {"k=10": 50.0, "k=20": 51.0, "k=100": 52.0, "k=200": 53.0},
        ),
    ]
    return metrics, [configs / "rot_r50.yaml", configs / "rot_mini.yaml", configs / "byol_r50.yaml"]


EXPECTED_ROTATION_PAGE = """\
# Rotation-Pred

Results of the Rotation-Pred models of this zoo. Each of our rows is followed by the numbers the model zoo reports for the same config, labelled (reported), where there are any; `random` is a randomly initialised backbone. – marks a result that is not available.

## Classification

### VOC SVM

{svm}

| Self-Supervised Config | Best Layer | SVM |
| ---------------------- | ---------- | --- |
| rot_r50                | –          | –   |
| rot_mini               | –          | –   |
| random                 | –          | –   |

### ImageNet Nearest-Neighbor Classification

{knn}

| Self-Supervised Config | k=10  | k=20  | k=100 | k=200 |
| ---------------------- | ----- | ----- | ----- | ----- |
| rot_r50                | 12.35 | 13.00 | 12.10 | 11.00 |
| rot_r50 (reported)     | 11.00 | 11.90 | 12.60 | 12.40 |
| rot_mini               | 30.00 | 31.46 | 29.00 | –     |
| random                 | 9.50  | 9.25  | 8.00  | 7.12  |
""".format(svm=SECTIONS["svm_voc07"].description, knn=SECTIONS["knn_imagenet"].description)


def write_tables(metrics: list[Path], configs: list[Path], out_dir: Path) -> None:
    """Every page the workflow writes from these inputs: one per method and model_zoo.md."""
    for method in sorted({yaml.safe_load(config.read_text())["method"] for config in configs}):
        write_method_page(method, metrics, configs, out_dir / f"{method}.md")
    write_model_zoo(metrics, configs, out_dir / "model_zoo.md")


def test_method_page_matches_expected_markdown(tmp_path: Path, inputs) -> None:
    metrics, configs = inputs
    page = write_method_page("rotation_pred", metrics, configs, tmp_path / "tables" / "rotation_pred.md")
    assert page == EXPECTED_ROTATION_PAGE
    assert (tmp_path / "tables" / "rotation_pred.md").read_text() == EXPECTED_ROTATION_PAGE


def test_unknown_method_names_the_methods_found(tmp_path: Path, inputs) -> None:
    metrics, configs = inputs
    with pytest.raises(SslzooError, match=r"no model config of method 'moco'.*\['byol', 'rotation_pred'\]"):
        write_method_page("moco", metrics, configs, tmp_path / "moco.md")


EXPECTED_KNN_TABLE = """\
# ImageNet Nearest-Neighbor Classification

Every model of this zoo on ImageNet Nearest-Neighbor Classification (classification). Each of our rows is followed by the numbers the model zoo reports for the same config, labelled (reported), where there are any; `random` is a randomly initialised backbone. – marks a result that is not available.

## Classification

### ImageNet Nearest-Neighbor Classification

{knn}

| Method        | Self-Supervised Config | k=10  | k=20  | k=100 | k=200 |
| ------------- | ---------------------- | ----- | ----- | ----- | ----- |
| Rotation-Pred | rot_r50                | 12.35 | 13.00 | 12.10 | 11.00 |
| Rotation-Pred | rot_r50 (reported)     | 11.00 | 11.90 | 12.60 | 12.40 |
| Rotation-Pred | rot_mini               | 30.00 | 31.46 | 29.00 | –     |
| BYOL          | byol_r50               | –     | –     | –     | –     |
| external      | my-checkpoint          | 50.00 | 51.00 | 52.00 | 53.00 |
| Random init   | random                 | 9.50  | 9.25  | 8.00  | 7.12  |
""".format(knn=SECTIONS["knn_imagenet"].description)


def test_benchmark_table_matches_expected_markdown(tmp_path: Path, inputs) -> None:
    metrics, configs = inputs
    knn = [path for path in metrics if "knn_imagenet" in path.parts]
    page = write_benchmark_table("knn_imagenet", knn, configs, tmp_path / "knn.md", tmp_path / "knn.html")
    assert page == EXPECTED_KNN_TABLE
    html = (tmp_path / "knn.html").read_text()
    assert (
        html.count("<tr") == 7
        and "<tr class='reported'><td>Rotation-Pred</td><td>rot_r50 (reported)</td>" in html
    )
    with pytest.raises(SslzooError, match=r"given metrics of other benchmarks: \['svm_voc07'\]"):
        write_benchmark_table("knn_imagenet", metrics, configs, tmp_path / "knn.md")


def test_markdown_to_html_escapes_and_keeps_structure() -> None:
    html = markdown_to_html(
        "# T <1>\n\nSome **bold** and `code` & more.\n\n| a | b |\n| - | - |\n| x<y | – |\n"
    )
    assert "<title>T &lt;1&gt;</title>" in html and "<h1>T &lt;1&gt;</h1>" in html
    assert "<p>Some <strong>bold</strong> and <code>code</code> &amp; more.</p>" in html
    assert "<tr><th>a</th><th>b</th></tr>" in html and "<tr><td>x&lt;y</td><td>–</td></tr>" in html


def test_model_zoo_lists_every_model_and_only_measured_sections(tmp_path: Path, inputs) -> None:
    metrics, configs = inputs
    write_tables(metrics, configs, tmp_path / "tables")
    zoo = (tmp_path / "tables" / "model_zoo.md").read_text()
    knn = zoo.split("### ImageNet Nearest-Neighbor Classification")[1]
    rows = [line for line in knn.splitlines() if line.startswith("| ")][2:]
    assert [row.split("|")[2].strip() for row in rows] == [
        "rot_r50",
        "rot_r50 (reported)",
        "rot_mini",
        "byol_r50",
        "my-checkpoint",
        "random",
    ]
    assert rows[3].split("|")[1].strip() == "BYOL"
    assert [cell.strip() for cell in rows[3].split("|")[3:7]] == ["–", "–", "–", "–"]
    assert [cell.strip() for cell in rows[4].split("|")[3:7]] == ["50.00", "51.00", "52.00", "53.00"]
    # the reported COCO numbers alone do not make a section: no metrics file for det_coco
    assert "COCO2017" not in zoo and "## Detection" not in zoo
    byol = (tmp_path / "tables" / "byol.md").read_text()
    svm = byol.split("### VOC SVM")[1].split("###")[0]
    cells = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in svm.splitlines()
        if line.startswith("| byol")
    ]
    assert cells == [["byol_r50", "feature5", "80.00"], ["byol_r50 (reported)", "feature5", "86.31"]]


def test_step_writes_pages_and_empty_pages_say_so(tmp_path: Path, inputs) -> None:
    metrics, configs = inputs
    parser = argparse.ArgumentParser()
    tables_step.add_arguments(parser)
    out = tmp_path / "out"
    tables_step.main(
        parser.parse_args(["--models", *map(str, configs), "--method", "byol", "--out", str(out / "byol.md")])
    )
    page = (out / "byol.md").read_text()
    assert page.startswith("# BYOL\n") and "No benchmark results yet." in page and "|" not in page
    args = ["--metrics", *map(str, metrics), "--models", *map(str, configs), "--out", str(out / "zoo.md")]
    tables_step.main(parser.parse_args([*args, "--html", str(out / "zoo.html")]))
    assert (
        "my-checkpoint" in (out / "zoo.md").read_text()
        and "<td>my-checkpoint</td>" in (out / "zoo.html").read_text()
    )


@pytest.mark.parametrize(
    ("benchmark", "values", "message"),
    [
        ("knn_imagenet", {"k=15": 1.0}, "'k=15' is not a column of knn_imagenet"),
        ("nonsense_bench", {"x": 1.0}, "benchmark 'nonsense_bench' has no table section"),
        ("knn_imagenet", {"k=10": [1.0]}, "must be a number or a string"),
    ],
)
def test_bad_metrics_are_errors(tmp_path: Path, benchmark: str, values: dict, message: str) -> None:
    path = _write_metrics(tmp_path, benchmark, "m", values)
    with pytest.raises(SslzooError, match=message):
        write_tables([path], [], tmp_path / "out")


def test_metrics_path_must_follow_the_layout(tmp_path: Path) -> None:
    path = tmp_path / "scores.json"
    path.write_text("{}")
    with pytest.raises(SslzooError, match=r"\{benchmark\}/\{model\}/metrics.json"):
        write_tables([path], [], tmp_path / "out")


def test_format_and_table_helpers() -> None:
    assert [format_value(v) for v in (1, 2.005, 63.9, None, float("nan"), "feature4")] == [
        "1.00",
        "2.00",
        "63.90",
        "–",
        "–",
        "feature4",
    ]
    assert [format_value(v, s) for v, s in ((82.6, 0.304), (1, float("nan")), (None, 0.3), ("x", 0.3))] == [
        "82.60 ± 0.30",
        "1.00",
        "–",
        "x",
    ]
    assert markdown_table(["a", "bbbb"], [["xx", "–"]]) == "| a   | bbbb |\n| --- | ---- |\n| xx  | –    |"


def test_avgpool_linear_metrics_fill_the_imagenet_linear_section(tmp_path: Path) -> None:
    (tmp_path / "byol.yaml").write_text(BYOL)
    mhead = {"Feature1": 15.0, "Feature2": 35.0, "Feature3": 47.5, "Feature4": 63.0, "Feature5": 71.25}
    metrics = [
        _write_metrics(tmp_path, "linear_imagenet", "byol", mhead),
        _write_metrics(tmp_path, "linear_avgpool_imagenet", "byol", {"AvgPool": 71.75}),
        _write_metrics(tmp_path, "linear_avgpool_imagenet", "random", {"AvgPool": 4.5}),
    ]
    write_tables(metrics, [tmp_path / "byol.yaml"], tmp_path / "out")
    page = (tmp_path / "out" / "byol.md").read_text()
    assert page.count("### ") == 1 and "### ImageNet Linear Evaluation" in page
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [cell.strip() for cell in line.split("|")[1:-1]]
            for line in page.splitlines()
            if line.startswith("| ") and not line.startswith("| Self") and not line.startswith("| -")
        )
    }
    assert rows == {
        "byol": ["15.00", "35.00", "47.50", "63.00", "71.25", "71.75"],
        "random": ["–", "–", "–", "–", "–", "4.50"],
    }

    clash = _write_metrics(tmp_path / "again", "linear_imagenet", "random", {"AvgPool": 5.0})
    with pytest.raises(SslzooError, match="linear_imagenet 'AvgPool' of random also comes from"):
        write_tables([metrics[2], clash], [], tmp_path / "out")


REPO_MODELS = Path(__file__).resolve().parents[1] / "config" / "models"


def _section_rows(page: str, heading: str) -> dict[str, list[str]]:
    """The rows (label -> cells after it) of the section ``### {heading}`` of a method page."""
    section = page.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    return {
        cells[0]: cells[1:]
        for cells in (
            [cell.strip() for cell in line.split("|")[1:-1]]
            for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| Self") and not line.startswith("| -")
        )
    }


def test_byol_reported_avgpool_sits_under_our_row_of_its_lars_protocol(tmp_path: Path) -> None:
    """The repository's BYOL config: its reported AvgPool 71.72 came from the LARS protocol
    (resnet50_linear-8xb512-coslr-90e_in1k.py), so it is shown under our row of
    linear_avgpool_lars_imagenet and no longer in the ImageNet linear table (whose AvgPool column
    is the lr-30 protocol's); the LARS section has no row for random, which does not run it."""
    config = REPO_MODELS / "byol_resnet50_8xb32-accum16-coslr-200e_in1k.yaml"
    byol = config.stem
    mhead = {"Feature1": 15.0, "Feature2": 35.0, "Feature3": 47.5, "Feature4": 63.0, "Feature5": 71.25}
    metrics = [
        _write_metrics(tmp_path, "linear_imagenet", byol, mhead),
        _write_metrics(tmp_path, "linear_avgpool_imagenet", byol, {"AvgPool": 70.5}),
        _write_metrics(tmp_path, "linear_avgpool_imagenet", "random", {"AvgPool": 4.5}),
        _write_metrics(tmp_path, "linear_avgpool_lars_imagenet", byol, {"AvgPool": 71.5}),
    ]
    page = write_method_page("byol", metrics, [config], tmp_path / "byol.md")
    lars = SECTIONS["linear_avgpool_lars_imagenet"].heading
    assert _section_rows(page, lars) == {byol: ["71.50"], f"{byol} (reported)": ["71.72"]}
    assert _section_rows(page, "ImageNet Linear Evaluation") == {
        byol: ["15.00", "35.00", "47.50", "63.00", "71.25", "70.50"],
        f"{byol} (reported)": ["15.16", "35.26", "47.77", "63.10", "71.21", "–"],
        "random": ["–", "–", "–", "–", "–", "4.50"],
    }
    assert page.count("71.72") == 1


# ---------------------------------------------------------------- footnotes: runs unlike their protocol


def _run(
    world: int, per: int, accumulate: int, config: str, gpus: int, protocol_per: int, protocol_acc: int
) -> dict:
    return run_record(
        world_size=world,
        per_process_batch=per,
        accumulate=accumulate,
        seed=0,
        protocol=protocol_batch(config, gpus, per_process_batch=protocol_per, accumulate=protocol_acc),
    )


def _write_with_run(root: Path, benchmark: str, model: str, values: dict, run: dict) -> Path:
    path = root / "results" / "benchmarks" / benchmark / model / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**values, "meta": {"benchmark": benchmark, "model": model, "run": run}}))
    return path


def _write_run_json(root: Path, model: str, run: dict) -> Path:
    path = root / "results" / "pretrain" / model / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(run))
    return path


def _expected_note(subject: str, verb: str, run: dict) -> str:
    """The footnote text, written out from the record's numbers."""
    p = run["protocol"]
    if run["accumulate"] == 1 and p["accumulate"] == 1:
        ran = f"{run['world_size']} processes x {run['per_process_batch']}"
        asked = f"{p['gpus']} x {p['per_process_batch']}"
    else:
        ran = f"{run['world_size']} processes x {run['per_process_batch']} x accum {run['accumulate']}"
        asked = f"{p['gpus']} x {p['per_process_batch']} x {p['accumulate']}"
    total = run["world_size"] * run["per_process_batch"] * run["accumulate"]
    protocol_total = p["gpus"] * p["per_process_batch"] * p["accumulate"]
    return (
        f"{subject}: {verb} with {ran} = {total} images per step; "
        f"the protocol (`{p['config']}`): {asked} = {protocol_total}"
    )


def _section(page: str, heading: str) -> str:
    return page.split(f"### {heading}\n")[1].split("\n### ")[0]


def _labels(section: str) -> list[str]:
    """The config cells of a section's rows (the column after Method)."""
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    return [row.split("|")[2].strip() for row in rows]


def _notes(section: str) -> list[str]:
    """The footnote paragraphs under a section's table."""
    return [line for line in section.splitlines() if line[:1] in "¹²³⁴⁵⁶⁷⁸⁹" and line[:1]]


@pytest.fixture
def runs(tmp_path: Path) -> dict:
    """BYOL pretrained with half the protocol's processes, its linear run on 2 processes, the
    random row's COCO run on 1 process of 4 images (the protocol: 8 x 2); everything else matches."""
    configs = tmp_path / "config" / "models"
    configs.mkdir(parents=True)
    (configs / "rot_r50.yaml").write_text(ROTATION)
    (configs / "byol_r50.yaml").write_text(BYOL)
    byol_pretrain = _run(4, 32, 16, "config/models/byol_r50.yaml", 8, 32, 16)
    rot_pretrain = _run(8, 32, 1, "config/models/rot_r50.yaml", 8, 32, 1)
    byol_linear = run_record(
        world_size=2,
        per_process_batch=128,
        accumulate=1,
        seed=0,
        protocol=protocol_batch("config/benchmarks/linear_imagenet.yaml", 8, total_batch=256),
    )
    rot_linear = run_record(
        world_size=8,
        per_process_batch=32,
        accumulate=1,
        seed=0,
        protocol=protocol_batch("config/benchmarks/linear_imagenet.yaml", 8, total_batch=256),
    )
    random_coco = run_record(
        world_size=1,
        per_process_batch=4,
        accumulate=1,
        seed=0,
        protocol=protocol_batch("config/benchmarks/det_coco.yaml", 8, total_batch=16),
    )
    knn = run_record(world_size=1, per_process_batch=None, accumulate=None, seed=None)
    linear = {f"Feature{i}": 10.0 * i for i in range(1, 6)}
    metrics = [
        _write_with_run(tmp_path, "linear_imagenet", "byol_r50", linear, byol_linear),
        _write_with_run(tmp_path, "linear_imagenet", "rot_r50", linear, rot_linear),
        _write_with_run(tmp_path, "knn_imagenet", "byol_r50", {"k=10": 1.0}, knn),
        _write_with_run(tmp_path, "knn_imagenet", "my-checkpoint", {"k=10": 2.0}, knn),
        _write_with_run(tmp_path, "det_coco", "random", {"mAP(Box)": 3.0}, random_coco),
        _write_metrics(tmp_path, "knn_imagenet", "random", {"k=10": 0.5}),  # no meta.run: no footnote
    ]
    return {
        "metrics": metrics,
        "configs": [configs / "rot_r50.yaml", configs / "byol_r50.yaml"],
        "runs": [
            _write_run_json(tmp_path, "byol_r50", byol_pretrain),
            _write_run_json(tmp_path, "rot_r50", rot_pretrain),
        ],
        "notes": {
            "pretrain": _expected_note("byol_r50", "pretrained", byol_pretrain),
            "linear": _expected_note("byol_r50 on linear_imagenet", "ran", byol_linear),
            "coco": _expected_note("random on det_coco", "ran", random_coco).replace(
                "1 processes", "1 process"
            ),
        },
    }


def test_footnotes_mark_exactly_the_rows_whose_runs_differ(tmp_path: Path, runs: dict) -> None:
    notes = runs["notes"]
    assert notes["pretrain"] == (
        "byol_r50: pretrained with 4 processes x 32 x accum 16 = 2048 images per step; "
        "the protocol (`config/models/byol_r50.yaml`): 8 x 32 x 16 = 4096"
    )
    page = write_model_zoo(
        runs["metrics"], runs["configs"], tmp_path / "zoo.md", tmp_path / "zoo.html", run_paths=runs["runs"]
    )
    linear = _section(page, "ImageNet Linear Evaluation")
    assert _labels(linear) == ["rot_r50", "byol_r50 ¹,²", "my-checkpoint", "random"]  # rot_r50 matches
    assert _notes(linear) == [f"¹ {notes['pretrain']}", f"² {notes['linear']}"]
    knn = _section(page, "ImageNet Nearest-Neighbor Classification")
    # the pretraining footnote keeps its number on the page; external and random have none
    assert _labels(knn) == ["rot_r50", "rot_r50 (reported)", "byol_r50 ¹", "my-checkpoint", "random"]
    assert _notes(knn) == [f"¹ {notes['pretrain']}"]
    coco = _section(page, "COCO2017")
    assert _labels(coco) == ["rot_r50", "rot_r50 (reported)", "byol_r50 ¹", "my-checkpoint", "random ³"]
    assert _notes(coco) == [f"¹ {notes['pretrain']}", f"³ {notes['coco']}"]
    assert coco.endswith(f"\n\n¹ {notes['pretrain']}\n\n³ {notes['coco']}\n")  # one paragraph each
    assert (tmp_path / "zoo.md").read_text() == page

    html = (tmp_path / "zoo.html").read_text()
    pretrain_html = notes["pretrain"].replace(
        "(`config/models/byol_r50.yaml`)", "(<code>config/models/byol_r50.yaml</code>)"
    )
    assert html.count(f"<p class='footnote'>¹ {pretrain_html}</p>") == 3  # under each of the three tables
    assert html.count("<p class='footnote'>") == 5 and "<td>byol_r50 ¹,²</td>" in html


def test_pages_of_matching_runs_have_no_footnotes(tmp_path: Path, runs: dict) -> None:
    rotation = write_method_page(
        "rotation_pred",
        runs["metrics"],
        runs["configs"],
        tmp_path / "rot.md",
        tmp_path / "rot.html",
        run_paths=runs["runs"][1:],
    )
    superscripts = set("⁰¹²³⁴⁵⁶⁷⁸⁹")
    # rot_r50 matches; the random row's COCO run does not, and is the only footnote of the page
    assert _notes(_section(rotation, "COCO2017")) == [f"¹ {runs['notes']['coco']}"]
    assert not superscripts & set(_section(rotation, "ImageNet Linear Evaluation"))
    knn_only = [path for path in runs["metrics"] if "knn_imagenet" in path.parts]
    table = write_benchmark_table(
        "knn_imagenet", knn_only, runs["configs"], tmp_path / "knn.md", tmp_path / "knn.html"
    )
    assert not superscripts & set(table) and "<p class='footnote'>" not in (tmp_path / "knn.html").read_text()
    # the same page with BYOL's pretraining record footnotes BYOL's row only
    table = write_benchmark_table(
        "knn_imagenet", knn_only, runs["configs"], tmp_path / "knn.md", run_paths=runs["runs"]
    )
    assert [label for label in _labels(table) if superscripts & set(label)] == ["byol_r50 ¹"]


def test_step_reads_the_pretraining_records_and_names_a_bad_one(tmp_path: Path, runs: dict) -> None:
    parser = argparse.ArgumentParser()
    tables_step.add_arguments(parser)
    args = ["--metrics", *map(str, runs["metrics"]), "--models", *map(str, runs["configs"])]
    out = tmp_path / "out" / "byol.md"
    tables_step.main(
        parser.parse_args([*args, "--runs", *map(str, runs["runs"]), "--method", "byol", "--out", str(out)])
    )
    assert f"¹ {runs['notes']['pretrain']}" in out.read_text().splitlines()
    bad = runs["runs"][0]
    bad.write_text(json.dumps({**json.loads(bad.read_text()), "world_size": "4"}))
    with pytest.raises(SslzooError, match=rf"{bad}: 'world_size' must be a positive integer"):
        tables_step.main(parser.parse_args([*args, "--runs", str(bad), "--out", str(out)]))


TRIPLET = (
    "method: triplet\ntitle: Triplet\nreported:\n  det_voc0712_moco: {AP50: 82.6, AP: 56.9, AP75: 63.8}\n"
)


def test_a_repeated_protocol_shows_mean_and_std_and_says_over_how_many_runs(tmp_path: Path) -> None:
    configs = tmp_path / "config" / "models"
    configs.mkdir(parents=True)
    (configs / "triplet_r50.yaml").write_text(TRIPLET)
    runs_dir = tmp_path / "results" / "benchmarks" / "det_voc0712_moco" / "triplet_r50"
    values = [(82.31, 56.72, 63.40), (82.90, 57.05, 64.12), (82.47, 56.81, 63.55)]
    paths = []
    for index, (ap50, ap, ap75) in enumerate(values):
        # run 2 ran on 4 processes of 4 images (the protocol: 8 x 2): a footnote, once
        world, per_process = (4, 4) if index == 2 else (8, 2)
        record = run_record(
            world_size=world,
            per_process_batch=per_process,
            accumulate=1,
            seed=index,
            protocol=protocol_batch("config/benchmarks/det_voc0712_moco.yaml", 8, total_batch=16),
        )
        path = runs_dir / f"run{index}" / "metrics.json"
        path.parent.mkdir(parents=True)
        meta = {"benchmark": "det_voc0712_moco", "model": "triplet_r50", "seed": index, "run": record}
        path.write_text(json.dumps({"AP50": ap50, "AP": ap, "AP75": ap75, "meta": meta}))
        paths.append(path)
    average_runs(
        paths, runs_dir / "metrics.json", benchmark_name="det_voc0712_moco", model_name="triplet_r50"
    )
    page = write_benchmark_table(
        "det_voc0712_moco",
        [runs_dir / "metrics.json"],
        [configs / "triplet_r50.yaml"],
        tmp_path / "det.md",
        tmp_path / "det.html",
    )
    table = np.array(values)
    cells = [f"{m:.2f} ± {s:.2f}" for m, s in zip(table.mean(axis=0), table.std(axis=0, ddof=1), strict=True)]
    rows = [line for line in page.splitlines() if line.startswith("| ")][2:]
    assert [[cell.strip() for cell in row.split("|")[1:-1]] for row in rows] == [
        ["Triplet", "triplet_r50 ¹,²", *cells],
        ["Triplet", "triplet_r50 (reported)", "82.60", "56.90", "63.80"],  # as it was
    ]
    ran = (
        "triplet_r50 on det_voc0712_moco: ran with 4 processes x 4 = 16 images per step; "
        "the protocol (`config/benchmarks/det_voc0712_moco.yaml`): 8 x 2 = 16"
    )
    assert _notes(page) == [
        "¹ triplet_r50 on det_voc0712_moco: mean ± std of 3 runs with seeds 0, 1, 2 "
        "(sample standard deviation, ddof 1)",
        f"² {ran}",
    ]
    html = (tmp_path / "det.html").read_text()
    assert f"<td>{cells[0]}</td>" in html and html.count("<p class='footnote'>") == 2
    # the model zoo shows the same row
    zoo = write_model_zoo([runs_dir / "metrics.json"], [configs / "triplet_r50.yaml"], tmp_path / "zoo.md")
    assert f"| {cells[0]} |" in zoo


def test_an_averaged_metrics_file_without_its_std_names_the_file(tmp_path: Path) -> None:
    path = _write_metrics(tmp_path, "det_voc0712_moco", "triplet_r50", {"AP50": 82.0, "AP": 57.0})
    metrics = json.loads(path.read_text())
    metrics["meta"].update(
        repeats={"count": 2, "seeds": [0, 1], "std": {"AP50": 0.1}, "std_ddof": 1}, runs=[{}, {}]
    )
    path.write_text(json.dumps(metrics))
    with pytest.raises(SslzooError, match=rf"{path}: meta.repeats.std must give a number for each of"):
        write_model_zoo([path], [], tmp_path / "zoo.md")


# ---------------------------------------------------------------- snapshots: a kept epoch is a row of its own

TRIPLET_1000E = """\
method: triplet
title: Triplet
extra_benchmarks: [linear_triplet_more_imagenet]
snapshots:
  - epoch: 940
    extra_benchmarks: [linear_triplet_more_imagenet]
    reported:
      linear_triplet_more_imagenet: {AvgPool: 75.9}
  - epoch: 800
"""


def test_a_snapshot_is_a_row_of_its_own_under_its_model_with_its_numbers(tmp_path: Path) -> None:
    configs = tmp_path / "config" / "models"
    configs.mkdir(parents=True)
    config = configs / "trip.yaml"
    config.write_text(TRIPLET_1000E)
    metrics = [
        _write_metrics(tmp_path, "linear_triplet_more_imagenet", "trip", {"AvgPool": 70.0}),
        _write_metrics(tmp_path, "linear_triplet_more_imagenet", "trip_ep940", {"AvgPool": 71.0}),
        _write_metrics(tmp_path, "knn_imagenet", "trip", {"k=10": 1.0}),
        _write_metrics(tmp_path, "knn_imagenet", "trip_ep800", {"k=10": 2.0}),
        _write_metrics(tmp_path, "knn_imagenet", "trip_ep940", {"k=10": 3.0}),
        _write_metrics(tmp_path, "knn_imagenet", "random", {"k=10": 0.5}),
    ]
    pretrain = _run(4, 196, 4, "config/models/trip.yaml", 8, 196, 4)  # the run behind all three rows
    runs = [_write_run_json(tmp_path, "trip", pretrain)]
    page = write_method_page("triplet", metrics, [config], tmp_path / "triplet.md", run_paths=runs)
    more = SECTIONS["linear_triplet_more_imagenet"].heading
    assert _section_rows(page, more) == {
        "trip ¹": ["70.00"],
        "trip_ep940 ¹": ["71.00"],
        "trip_ep940 (reported)": ["75.90"],
    }
    knn = _section_rows(page, "ImageNet Nearest-Neighbor Classification")
    assert list(knn) == ["trip ¹", "trip_ep940 ¹", "trip_ep800 ¹", "random"]  # in the config's order
    assert [cells[0] for cells in knn.values()] == ["1.00", "3.00", "2.00", "0.50"]
    assert _notes(_section(page, more)) == [f"¹ {_expected_note('trip', 'pretrained', pretrain)}"]
    zoo = write_model_zoo(metrics, [config], tmp_path / "zoo.md", run_paths=runs)
    assert "external" not in zoo and "trip_ep940 (reported)" in zoo


def test_a_snapshots_reported_column_is_checked_naming_the_entry(tmp_path: Path) -> None:
    config = tmp_path / "trip.yaml"
    config.write_text(TRIPLET_1000E.replace("{AvgPool: 75.9}", "{Top1: 75.9}"))
    with pytest.raises(SslzooError, match=r"snapshots\[0\]\.reported\.linear_triplet_more_imagenet: 'Top1'"):
        write_method_page("triplet", [], [config], tmp_path / "triplet.md")
