"""The full zoo's DAG on config/config.yaml, with placeholder dataset folders."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import yaml

from tests.workflow.conftest import snakemake


def placeholder_datasets(workdir: Path) -> dict:
    """Create the folders and list files config/config.yaml points at (empty placeholders)."""
    cfg = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    for splits in cfg["datasets"].values():
        for where in splits.values():
            (workdir / where["images"]).mkdir(parents=True, exist_ok=True)
            if where.get("list"):
                (workdir / where["list"]).parent.mkdir(parents=True, exist_ok=True)
                (workdir / where["list"]).touch()
    return cfg


def planned_jobs(stdout: str) -> Counter:
    """Parse the 'Job stats' table of a dry run into rule -> count."""
    counts: Counter = Counter()
    in_table = False
    for line in stdout.splitlines():
        if line.startswith("Job stats"):
            in_table = True
            continue
        if in_table:
            match = re.match(r"^(\w+)\s+(\d+)\s*$", line)
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
            elif line.startswith("total"):
                break
    return counts


def test_full_zoo_dry_run_lists_expected_jobs(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = planned_jobs(result.stdout)
    n_pretrained = len(cfg["models"])
    n_models = n_pretrained + 1  # + the random baseline
    assert jobs["pretrain"] == n_pretrained
    assert jobs["extract_backbone"] == n_pretrained
    assert jobs["random_backbone"] == 1
    assert jobs["manifest"] == 2  # imagenet train + val
    assert jobs["extract_features"] == 2 * n_models
    assert jobs["knn"] == n_models
    assert jobs["tables"] == 1
    assert jobs["make_mini_data"] == 0


def test_missing_dataset_folder_names_key_and_path(workdir: Path) -> None:
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "--cores", "1")
    assert result.returncode != 0
    assert "datasets.imagenet.train.images" in result.stdout + result.stderr
    assert "data/imagenet/train" in result.stdout + result.stderr


def test_bad_config_value_names_the_key(workdir: Path) -> None:
    cfg = yaml.safe_load((workdir / "config" / "mini.yaml").read_text())
    cfg["seed"] = -3
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "--configfile", "config/bad.yaml", "--cores", "1")
    assert result.returncode != 0
    assert "seed" in result.stdout + result.stderr


def test_unknown_model_names_its_missing_config(workdir: Path) -> None:
    cfg = yaml.safe_load((workdir / "config" / "mini.yaml").read_text())
    cfg["models"].append("no-such-model_mini")
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "--configfile", "config/bad.yaml", "--cores", "1")
    assert result.returncode != 0
    assert "config/models/no-such-model_mini.yaml" in result.stdout + result.stderr
