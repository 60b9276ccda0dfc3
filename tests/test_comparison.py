"""The comparison page: Triplet's tables as published, our numbers beside them under the
protocol that produced each reported number, and the checks of a comparison file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sslzoo.comparison import load_comparison, metrics_needed, render_comparison
from sslzoo.config import load_model_config
from sslzoo.errors import SslzooError

REPO = Path(__file__).resolve().parents[1]
TRIPLET = REPO / "config" / "comparison" / "triplet.yaml"

# wanggrun/triplet README.md, as published: (method, epochs, top-1) of the ImageNet table, and
# (method, numbers) of the COCO (AP box, AP mask) and VOC (AP50, AP, AP75) tables.
README_LINEAR = [
    ("supervised", "100", 76.3), ("supervised", "270", 78.4), ("supervised + linear eval", "100", 74.1),
    ("Random", "0", 4.4), ("Relative-Loc", "200", 38.8), ("Rotation-Pred", "200", 47.0),
    ("DeepCluster", "200", 46.9), ("NPID", "200", 56.6), ("ODC", "200", 53.4), ("SimCLR", "200", 60.6),
    ("SimCLR", "1000", 69.3), ("MoCo", "200", 61.9), ("MoCo v2", "200", 67.0), ("MoCo v2", "800", 71.1),
    ("SwAV (single crop)", "200", 69.1), ("SwAV (multi crop)", "200", 72.7), ("BYOL", "200", 71.5),
    ("BYOL", "300", 72.5), ("BYOL", "1000", 74.3), ("SimSiam", "100", 68.1), ("SimSiam", "200", 70.0),
    ("SimSiam", "400", 70.8), ("SimSiam", "800", 71.3), ("Triplet", "200", 73.8), ("Triplet", "700-900", 75.9),
]  # fmt: skip
README_COCO = [
    ("supervised", (40.0, 34.7)), ("Random", (35.6, 31.4)), ("Relative-Loc", (40.0, 35.0)),
    ("Rotation-Pred", (40.0, 34.9)), ("NPID", (39.4, 34.5)), ("SimCLR", (39.6, 34.6)), ("MoCo", (40.9, 35.5)),
    ("MoCo v2", (40.9, 35.5)), ("BYOL", (40.3, 35.1)), ("Triplet", (41.7, 36.2)),
]  # fmt: skip
README_VOC = [
    ("supervised", (81.6, 54.2, 59.8)), ("Random", (59.0, 32.8, 31.6)), ("Relative-Loc", (80.4, 55.1, 61.2)),
    ("Rotation-Pred", (80.9, 55.5, 61.4)), ("NPID", (80.0, 54.1, 59.5)), ("SimCLR", (79.4, 51.5, 55.6)),
    ("MoCo", (81.4, 56.0, 62.2)), ("MoCo v2", (82.0, 56.6, 62.9)), ("BYOL", (81.0, 51.9, 56.5)),
    ("Triplet", (82.6, 56.9, 63.8)),
]  # fmt: skip


def test_every_row_of_the_readme_with_its_published_numbers() -> None:
    linear, coco, voc = load_comparison(TRIPLET).sections
    assert [(r.method, r.epochs, *r.reported) for r in linear.rows] == [tuple(row) for row in README_LINEAR]
    assert [(r.method, r.reported) for r in coco.rows] == README_COCO
    assert [(r.method, r.reported) for r in voc.rows] == README_VOC
    assert (linear.columns, coco.columns) == (
        {"top-1": "AvgPool"},
        {"AP(box)": "mAP(Box)", "AP(mask)": "mAP(Mask)"},
    )


def test_each_reported_number_names_the_protocol_traced_for_it() -> None:
    linear, coco, voc = load_comparison(TRIPLET).sections
    protocols = {(r.method, r.epochs): r.protocol for r in linear.rows}
    # OpenSelfSup's ImageNet (Last) column is mmselfsup's AvgPool protocol
    for method in ("Random", "Relative-Loc", "Rotation-Pred", "DeepCluster", "NPID", "ODC"):
        assert protocols[method, "0" if method == "Random" else "200"] == "linear_avgpool_imagenet", method
    assert {protocols["SimSiam", e] for e in ("100", "200", "400", "800")} == {"linear_avgpool_lars_imagenet"}
    assert protocols["Triplet", "200"] == "linear_triplet_less_imagenet"
    assert protocols["Triplet", "700-900"] == "linear_triplet_more_imagenet"
    untraced = {key for key, protocol in protocols.items() if protocol is None}
    assert untraced == {
        ("supervised", "100"), ("supervised", "270"), ("SimCLR", "200"), ("SimCLR", "1000"), ("MoCo", "200"),
        ("MoCo v2", "200"), ("MoCo v2", "800"), ("SwAV (single crop)", "200"), ("SwAV (multi crop)", "200"),
        ("BYOL", "200"), ("BYOL", "300"), ("BYOL", "1000"),
    }  # fmt: skip
    assert {r.protocol for r in coco.rows} == {"det_coco_c4_moco"}
    assert {r.protocol for r in voc.rows} == {"det_voc0712_moco"}
    # Triplet's detection numbers are those of its epoch-800 checkpoint, its linear ones of 940
    assert (
        coco.rows[-1].model
        == voc.rows[-1].model
        == "triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k_ep800"
    )
    assert linear.rows[-1].model == "triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k_ep940"


def test_every_named_model_has_a_config() -> None:
    for section in load_comparison(TRIPLET).sections:
        for row in section.rows:
            if row.model in (None, "random"):
                continue
            name = row.model.rsplit("_ep", 1)[0] if "-1000e_in1k_ep" in row.model else row.model
            assert (REPO / "config" / "models" / f"{name}.yaml").is_file(), row.model


# Rows whose model trains for other epochs than the README's column says: OpenSelfSup's configs
# behind its numbers (the comparison file's header): relative_loc/r50.py and rotation_pred/r50.py
# train 70 epochs, odc/r50_v1.py 440.
OTHER_EPOCHS = {("Relative-Loc", "200"): 70, ("Rotation-Pred", "200"): 70, ("ODC", "200"): 440}


def test_every_imagenet_row_has_a_model_of_its_epochs() -> None:
    linear = load_comparison(TRIPLET).sections[0]
    for row in linear.rows:
        assert row.model, (row.method, row.epochs)
        if row.model == "random" or not row.epochs.isdigit():  # Triplet's "700-900": a kept epoch
            continue
        cfg = load_model_config(REPO / "config" / "models" / f"{row.model}.yaml")
        expected = OTHER_EPOCHS.get((row.method, row.epochs), int(row.epochs))
        assert cfg["train"]["epochs"] == expected, (row.method, row.epochs, row.model)
    # SwAV's two rows: two 224 px views alone, and the same with six 96 px views
    crops = {
        row.method: [(group["count"], group["image_size"]) for group in load_model_config(
            REPO / "config" / "models" / f"{row.model}.yaml")["views"]["crops"]]
        for row in linear.rows
        if row.method.startswith("SwAV")
    }  # fmt: skip
    assert crops == {"SwAV (single crop)": [(2, 224)], "SwAV (multi crop)": [(2, 224), (6, 96)]}


SMALL = {
    "title": "Small",
    "source": "a README",
    "sections": [
        {
            "title": "Linear",
            "ours": "linear_avgpool_imagenet",
            "columns": {"top-1": "AvgPool"},
            "epochs_column": True,
            "rows": [
                {"method": "A", "epochs": "200", "model": "a", "reported": [50.0],
                 "protocol": "linear_avgpool_imagenet", "source": "a table"},
                {"method": "B", "epochs": "800", "model": "b", "reported": [70.0], "protocol": None,
                 "source": "a paper"},
                {"method": "C", "epochs": "100", "model": "c", "reported": [60.0],
                 "protocol": "linear_avgpool_lars_imagenet", "source": "another paper"},
                {"method": "D", "epochs": "1000", "model": None, "reported": [75.0], "protocol": None,
                 "source": "a paper"},
            ],
        },
        {
            "title": "VOC",
            "ours": "det_voc0712_moco",
            "columns": {"AP50": "AP50", "AP": "AP"},
            "rows": [{"method": "A", "model": "a", "reported": [80.0, 55.0], "protocol": "det_voc0712_moco",
                      "source": "the README"}],
        },
    ],
}  # fmt: skip


def _write(tmp_path: Path, page: dict) -> Path:
    path = tmp_path / "page.yaml"
    path.write_text(yaml.safe_dump(page, sort_keys=False))
    return path


def _metrics(tmp_path: Path, benchmark: str, model: str, values: dict) -> Path:
    path = tmp_path / "results" / "benchmarks" / benchmark / model / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    return path


def _row(markdown: str, label: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_ours_and_reported_under_the_same_protocol_only(tmp_path: Path) -> None:
    page = load_comparison(_write(tmp_path, SMALL))
    paths = [
        _metrics(tmp_path, "linear_avgpool_imagenet", "a", {"AvgPool": 51.234}),
        _metrics(tmp_path, "linear_avgpool_imagenet", "b", {"AvgPool": 66.0}),
        _metrics(tmp_path, "linear_avgpool_lars_imagenet", "c", {"AvgPool": 61.5}),
        _metrics(tmp_path, "linear_avgpool_imagenet", "c", {"AvgPool": 1.0}),  # not the row's protocol
        _metrics(
            tmp_path, "det_voc0712_moco", "a",
            {"AP50": 81.0, "AP": 56.0, "meta": {"repeats": {"count": 2, "seeds": [0, 1], "std_ddof": 1, "std": {"AP50": 0.5, "AP": 0.25}},
                                                "runs": [{}, {}]}},
        ),
    ]  # fmt: skip
    markdown = render_comparison(page, paths, models=["a", "b", "c"])
    assert _row(markdown, "A") == ["A", "200", "a", "linear_avgpool_imagenet", "51.23"]
    assert _row(markdown, "A (reported)¹") == ["A (reported)¹", "200", "", "linear_avgpool_imagenet", "50.00"]
    # B's published number came from a protocol the zoo does not run: ours is the section's AvgPool
    assert _row(markdown, "B") == ["B", "800", "b", "linear_avgpool_imagenet", "66.00"]
    assert _row(markdown, "B (reported, other protocol)²")[3:] == ["–", "70.00"]
    assert _row(markdown, "C")[3:] == ["linear_avgpool_lars_imagenet", "61.50"]
    assert _row(markdown, "D")[2:] == ["(no config in the zoo)", "linear_avgpool_imagenet", "–"]
    assert "² a paper; other protocol than linear_avgpool_imagenet" in markdown
    assert _row(markdown.split("## VOC")[1], "A")[1:] == [
        "a",
        "det_voc0712_moco",
        "81.00 ± 0.50",
        "56.00 ± 0.25",
    ]
    assert "¹ the README" in markdown.split("## VOC")[1]


def test_stand_ins_show_their_numbers_and_no_published_ones(tmp_path: Path) -> None:
    page = load_comparison(_write(tmp_path, SMALL))
    paths = [_metrics(tmp_path, "linear_avgpool_imagenet", "a_mini", {"AvgPool": 30.0})]
    markdown = render_comparison(page, paths, stand_ins={"a": "a_mini"}, models=["a_mini"])
    assert _row(markdown, "A")[2:] == ["a_mini", "linear_avgpool_imagenet", "30.00"]
    assert "(reported" not in markdown.split("\n\n", 2)[2]
    assert _row(markdown, "B")[2] == "b (not in this zoo's models)"


def test_metrics_needed_are_the_rows_the_zoo_runs() -> None:
    page = load_comparison(TRIPLET)
    pairs = metrics_needed(page, ["random", "x"], ["linear_avgpool_imagenet", "det_voc0712_moco"], {})
    assert pairs == [("linear_avgpool_imagenet", "random"), ("det_voc0712_moco", "random")]
    stand = metrics_needed(
        page, ["random", "m"], ["det_coco_c4_moco"], {"relative-loc_resnet50_8xb64-steplr-70e_in1k": "m"}
    )
    assert stand == [("det_coco_c4_moco", "random"), ("det_coco_c4_moco", "m")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["sections"][0].update(ours="linear_nowhere"), "'linear_nowhere' is not a benchmark"),
        (lambda p: p["sections"][1].update(columns={"AP50": "AP50", "top": "Top-1"}), r"\['Top-1'\] are not columns"),
        (lambda p: p["sections"][0]["rows"][0].update(reported=[1.0, 2.0]), r"rows\[0\] \(A\): 2 reported numbers"),
        (lambda p: p["sections"][0]["rows"][1].pop("protocol"), "'protocol' is a required property"),
        (lambda p: p["sections"][0]["rows"][0].update(protocol="det_coco"), r"\['AvgPool'\] are not columns of det_coco"),
    ],
)  # fmt: skip
def test_a_wrong_comparison_file_is_refused_naming_the_key(tmp_path: Path, change, message: str) -> None:
    page = json.loads(json.dumps(SMALL))
    change(page)
    with pytest.raises(SslzooError, match=message):
        load_comparison(_write(tmp_path, page))
