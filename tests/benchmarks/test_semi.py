"""Semi-supervised fine-tuning: labelled subsets, head lr multiplier, best-run selection, the step."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sslzoo.benchmarks.semi import (
    FineTuneClassifier,
    class_balanced_subset,
    head_param_groups,
    load_semi_config,
    split_file_subset,
)
from sslzoo.benchmarks.semi_grid import select_best
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.schedules import LrSchedule, apply_lr
from tests.benchmarks.protocols import reference_gpus_and_batch

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"


def test_class_balanced_subset_is_seeded_balanced_and_the_right_size() -> None:
    sizes = {0: 50, 1: 30, 2: 7, 3: 1, 4: 120}
    labels = np.random.default_rng(0).permutation(np.repeat(list(sizes), list(sizes.values())))
    subset = class_balanced_subset(labels, 0.1, seed=3)
    assert np.array_equal(subset, np.sort(subset)) and len(set(subset.tolist())) == len(subset)
    assert dict(Counter(labels[subset].tolist())) == {0: 5, 1: 3, 2: 1, 3: 1, 4: 12}
    assert np.array_equal(class_balanced_subset(labels, 0.1, seed=3), subset)
    assert not np.array_equal(class_balanced_subset(labels, 0.1, seed=4), subset)
    # at least one image per class even where the fraction rounds to zero
    assert dict(Counter(labels[class_balanced_subset(labels, 0.001, seed=0)].tolist())) == dict.fromkeys(
        sizes, 1
    )
    assert len(class_balanced_subset(labels, 1.0, seed=0)) == len(labels)


def test_split_file_picks_exactly_the_listed_files(tmp_path: Path) -> None:
    paths = [f"n0{c}/n0{c}_{i}.JPEG" for c in range(3) for i in range(5)]
    split = tmp_path / "1percent.txt"
    split.write_text("n01_3.JPEG\nn00_0.JPEG\n\nn02/n02_4.JPEG 2\n")
    subset = split_file_subset(paths, split)
    assert [paths[i] for i in subset] == ["n00/n00_0.JPEG", "n01/n01_3.JPEG", "n02/n02_4.JPEG"]

    split.write_text("n01_3.JPEG\nn07_1.JPEG\n")
    with pytest.raises(SslzooError, match=r"n07_1\.JPEG is not in the training manifest"):
        split_file_subset(paths, split)
    split.write_text("n01_3.JPEG\nn01_3.JPEG\n")
    with pytest.raises(SslzooError, match="listed twice"):
        split_file_subset(paths, split)
    with pytest.raises(SslzooError, match="subset file not found"):
        split_file_subset(paths, tmp_path / "10percent.txt")


def test_head_lr_multiplier_sets_the_param_group_lrs() -> None:
    model = FineTuneClassifier(ResNetBackbone(18), num_classes=4)
    assert torch.count_nonzero(model.head.bias) == 0 and model.head.in_features == 512
    optimizer = torch.optim.SGD(head_param_groups(model, 0.01, 100.0, 5e-4), lr=0.01, momentum=0.9)
    backbone, head = optimizer.param_groups
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert (backbone["lr"], head["lr"]) == (0.01, pytest.approx(1.0))
    assert backbone["weight_decay"] == head["weight_decay"] == 5e-4
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    apply_lr(optimizer, LrSchedule("step", epochs=20, iters_per_epoch=1, steps=(12.0, 16.0), gamma=0.2), 16)
    assert (backbone["lr"], head["lr"]) == (pytest.approx(0.01 * 0.04), pytest.approx(0.04))


def _run(root: Path, lr: float, mult: float, top1: float, top5: float) -> Path:
    path = root / "semi_in1k_1pct" / "byol" / f"lr{lr:g}_head{mult:g}" / "metrics.json"
    path.parent.mkdir(parents=True)
    meta = {
        "benchmark": "semi_in1k_1pct",
        "model": "byol",
        "grid_point": path.parent.name,
        "lr": lr,
        "head_mult": mult,
        "run": {"world_size": 4, "seed": int(mult)},  # stands for the run record, copied as it is
    }
    path.write_text(json.dumps({"Top-1 (%)": top1, "Top-5 (%)": top5, "meta": meta}))
    return path


def test_select_best_keeps_the_best_top1_and_its_setting(tmp_path: Path) -> None:
    from sslzoo.steps import semi_select as step

    runs = [
        _run(tmp_path, 0.1, 1, 40.0, 70.0),
        _run(tmp_path, 0.01, 10, 52.5, 75.0),
        _run(tmp_path, 0.001, 100, 52.5, 76.0),
        _run(tmp_path, 0.01, 1, 30.0, 80.0),
    ]
    out = tmp_path / "semi_in1k_1pct" / "byol" / "metrics.json"
    parser = argparse.ArgumentParser()
    step.add_arguments(parser)
    step.main(
        parser.parse_args(
            ["--runs", *map(str, runs), "--benchmark", "semi_in1k_1pct", "--model", "byol", "--out", str(out)]
        )
    )
    best = json.loads(out.read_text())
    assert (best["Top-1 (%)"], best["Top-5 (%)"]) == (52.5, 76.0)  # a tie on top-1 goes to top-5
    assert best["meta"]["setting"] == "lr 0.001 head x100" and best["meta"]["model"] == "byol"
    # the selected numbers keep the record of the run that trained them; the grid folder goes
    assert (
        best["meta"]["run"] == json.loads(runs[2].read_text())["meta"]["run"]
        and "grid_point" not in best["meta"]
    )
    assert [run["setting"] for run in best["meta"]["runs"]] == [
        "lr 0.1 head x1", "lr 0.01 head x10", "lr 0.001 head x100", "lr 0.01 head x1",
    ]  # fmt: skip
    names = {"benchmark_name": "semi_in1k_1pct", "model_name": "byol"}
    assert (
        select_best(runs[:2], tmp_path / "m" / "metrics.json", **names)["meta"]["setting"]
        == "lr 0.01 head x10"
    )

    bad = tmp_path / "bad" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"Top-1 (%)": 1.0, "meta": {"lr": 0.1, "head_mult": 1}}))
    with pytest.raises(SslzooError, match=r"'Top-5 \(%\)' must be a number"):
        select_best([runs[0], bad], out, **names)
    with pytest.raises(SslzooError, match="two runs with the setting 'lr 0.1 head x1'"):
        select_best([runs[0], runs[0]], out, **names)


def test_protocol_gpus_are_the_reference_process_counts_and_bad_ones_are_named(tmp_path: Path) -> None:
    for path in sorted(CONFIG_DIR.glob("semi_*.yaml")):
        config, _ = load_semi_config(path)
        expected = 1 if path.stem.endswith("_mini") else reference_gpus_and_batch(path)[0]
        assert config.gpus == expected, path
    text = (CONFIG_DIR / "semi_in1k_1pct_mini.yaml").read_text()
    for value, message in (
        ("'4'", "gpus: '4' is not of type 'integer'"),
        ("-1", "gpus: -1 is less than the minimum of 1"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text.replace("gpus: 1", f"gpus: {value}"))
        with pytest.raises(SslzooError, match=f"bad.yaml: {message}"):
            load_semi_config(bad)


def test_repository_configs_load_with_the_protocol_numbers() -> None:
    one, _ = load_semi_config(CONFIG_DIR / "semi_in1k_1pct.yaml")
    ten, _ = load_semi_config(CONFIG_DIR / "semi_in1k_10pct.yaml")
    assert one.lrs == ten.lrs == (0.1, 0.01, 0.001) and one.head_mults == ten.head_mults == (1.0, 10.0, 100.0)
    assert (one.weight_decay, ten.weight_decay) == (5e-4, 1e-4)
    assert one.train.steps == (12, 16) and one.train.gamma == 0.2 and one.train.epochs == 20
    mini_crop = yaml.safe_load((CONFIG_DIR / "features_mini.yaml").read_text())["crop"]
    for name in ("semi_in1k_1pct_mini.yaml", "semi_in1k_10pct_mini.yaml"):
        mini, _ = load_semi_config(CONFIG_DIR / name)
        # the resolution the mini models are pretrained and read at
        assert mini.split_file is None and mini.train_transform.size == mini.eval_transform.crop == mini_crop
        assert round(mini.fraction * 60) >= 3  # a few of the ~60 mini images of each class


def test_step_fine_tunes_and_writes_the_run_metrics(tmp_path: Path) -> None:
    from PIL import Image

    from sslzoo.checkpoints import random_backbone
    from sslzoo.steps import semi_benchmark as step

    random_backbone(18, 0, tmp_path / "backbone.pth")
    rng = np.random.default_rng(0)
    samples = []
    for index in range(12):
        rel = f"c{index % 2}/img{index}.JPEG"
        (tmp_path / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(tmp_path / "images" / rel)
        samples.append([rel, index % 2])
    for split, rows in (("train", samples[:8]), ("val", samples[8:])):
        manifest = {"dataset": "imagenet", "split": split, "root": str(tmp_path / "images"),
                    "classes": ["c0", "c1"], "samples": rows}  # fmt: skip
        (tmp_path / f"{split}.json").write_text(json.dumps(manifest))
    config = tmp_path / "semi.yaml"
    config.write_text(
        "split_file: null\nfraction: 0.5\nlrs: [0.1]\nhead_mults: [10]\nepochs: 2\nbatch_size: 2\nworkers: 0\n"
        "optimizer: {momentum: 0.9, weight_decay: 5.0e-4}\nschedule: {steps: [1], gamma: 0.2}\n"
        "train_transform: {crop: random_resized, size: 32}\neval_transform: {resize: 36, crop: 32}\n"
    )
    out = tmp_path / "semi_in1k_1pct" / "random" / "lr0.1_head10" / "metrics.json"
    parser = argparse.ArgumentParser()
    step.add_arguments(parser)
    step.main(parser.parse_args([
        "--backbone", str(tmp_path / "backbone.pth"), "--train-manifest", str(tmp_path / "train.json"),
        "--val-manifest", str(tmp_path / "val.json"), "--config", str(config),
        "--benchmark", "semi_in1k_1pct", "--model", "random", "--grid-point", "lr0.1_head10", "--lr", "0.1",
        "--head-mult", "10", "--work-dir", str(out.parent / "work"), "--out", str(out),
    ]))  # fmt: skip
    metrics = json.loads(out.read_text())
    assert metrics["Top-1 (%)"] in (0.0, 25.0, 50.0, 75.0, 100.0) and metrics["Top-5 (%)"] == 100.0
    meta = metrics["meta"]
    assert (meta["benchmark"], meta["model"], meta["lr"], meta["head_mult"]) == (
        "semi_in1k_1pct",
        "random",
        0.1,
        10.0,
    )
    assert meta["setting"] == "lr 0.1 head x10" and meta["num_labelled"] == 4 and meta["iterations"] == 4
    assert meta["grid_point"] == "lr0.1_head10"
    run = meta["run"]  # one process took the whole batch of 2; the protocol (no gpus key) is 1 x 2
    assert (run["world_size"], run["per_process_batch"], run["total_batch"], run["seed"]) == (1, 2, 2, 0)
    assert run["protocol"]["config"] == str(config) and run["torch"] == torch.__version__
    assert not (out.parent / "work" / "latest.pth").exists()  # the output written, the resume state goes
    log = [json.loads(line) for line in (out.parent / "work" / "train_log.jsonl").read_text().splitlines()]
    assert [line["lr"] for line in log] == pytest.approx([0.1, 0.1, 0.02, 0.02])  # the backbone group
