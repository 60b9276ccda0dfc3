"""The full zoo's DAG on config/config.yaml, with placeholder dataset folders."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from sslzoo.benchmarks.registry import BENCHMARKS, of_kind
from sslzoo.comparison import load_comparison, metrics_needed
from tests.workflow.conftest import REPO, make_placeholders, placeholder_datasets, snakemake


def snapshots_of(model_cfgs: dict[str, dict]) -> dict[str, dict]:
    """``<model>_ep<epoch>`` -> the `snapshots:` entry, for every snapshot of the models."""
    return {
        f"{name}_ep{snapshot['epoch']}": snapshot
        for name, model_cfg in model_cfgs.items()
        for snapshot in model_cfg.get("snapshots", [])
    }


def rows_of(
    benchmark: str, model_cfgs: dict[str, dict], n_models: int, shown: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """The rows a benchmark runs for: every model (``n_models`` with the snapshots and the
    baseline) for a common protocol; for a paper's own protocol the models and snapshots that
    list it under ``extra_benchmarks`` and the models a comparison page shows under it
    (``shown``: its (benchmark, model) pairs)."""
    if BENCHMARKS[benchmark].every_model:
        return [f"model {k}" for k in range(n_models)]
    listing = {**model_cfgs, **snapshots_of(model_cfgs)}
    listed = [name for name, entry in listing.items() if benchmark in entry.get("extra_benchmarks", [])]
    return listed + [model for bench, model in shown if bench == benchmark and model not in listed]


def comparison_pairs(workdir: Path, cfg: dict, model_cfgs: dict[str, dict]) -> list[tuple[str, str]]:
    """The (benchmark, model) pairs of the config's comparison page, computed apart from the workflow."""
    page = load_comparison(workdir / cfg["comparison"]["table"])
    models = [*model_cfgs, *snapshots_of(model_cfgs), "random"]
    return metrics_needed(page, models, list(cfg["benchmarks"]), cfg["comparison"].get("stand_ins", {}))


def model_configs(workdir: Path, names: list[str]) -> dict[str, dict]:
    return {
        name: yaml.safe_load((workdir / "config" / "models" / f"{name}.yaml").read_text()) for name in names
    }


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


class FullPlan(NamedTuple):
    """A dry run of the full zoo: its scratch directory, config/config.yaml, the run's output."""

    workdir: Path
    cfg: dict
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def full_plan(tmp_path_factory: pytest.TempPathFactory) -> FullPlan:
    """One dry run of config/config.yaml, shared by the tests that only read its plan."""
    workdir = tmp_path_factory.mktemp("full_plan")
    shutil.copytree(REPO / "config", workdir / "config")
    cfg = placeholder_datasets(workdir)
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    return FullPlan(workdir, cfg, result)


def test_full_zoo_dry_run_lists_expected_jobs(full_plan: FullPlan) -> None:
    workdir, cfg, result = full_plan
    jobs = planned_jobs(result.stdout)
    n_pretrained = len(cfg["models"])
    benchmarks = cfg["benchmarks"]
    linear = [name for name in benchmarks if name.startswith("linear_")]
    semi = [name for name in benchmarks if name.startswith("semi_")]
    grid = 0
    for name in semi:
        protocol = yaml.safe_load((workdir / benchmarks[name]).read_text())
        grid += len(protocol["lrs"]) * len(protocol["head_mults"])
    model_cfgs = {
        name: yaml.safe_load((workdir / "config" / "models" / f"{name}.yaml").read_text())
        for name in cfg["models"]
    }
    orl = [name for name, model_cfg in model_cfgs.items() if model_cfg["method"] == "orl"]
    stage1 = {model_cfgs[name]["stage1"] for name in orl} - set(cfg["models"])
    snapshots = snapshots_of(model_cfgs)
    n_models = n_pretrained + len(snapshots) + 1  # + the kept epochs' models, + the random baseline
    assert orl, "config/config.yaml should hold an ORL model"
    assert snapshots, "config/config.yaml should hold a model with snapshots (Triplet's 1000 epochs)"
    assert jobs["pretrain"] == n_pretrained + len(stage1)  # ORL stage-1 models are pretrained too
    assert jobs["extract_backbone"] == n_pretrained  # ... but only the listed models are benchmarked
    assert jobs["extract_snapshot"] == len(snapshots)  # one backbone per kept epoch
    assert jobs["coco_manifest"] == 1
    assert jobs["orl_proposals"] == cfg["orl"]["proposal_shards"]  # one dataset (COCO train2017)
    assert jobs["orl_merge_proposals"] == 1
    assert jobs["orl_knn"] == len(orl)
    assert jobs["orl_correspondence"] == cfg["orl"]["correspondence_shards"] * len(orl)
    assert jobs["orl_merge_correspondence"] == len(orl)
    assert jobs["random_backbone"] == 1
    assert jobs["manifest"] == 4  # imagenet and places205, train + val
    assert jobs["inat_manifest"] == 2
    voc = [name for name in benchmarks if name.endswith("_voc07")]
    assert jobs["voc_manifest"] == (2 if voc else 0)  # trainval + test
    # cached features: imagenet train + val for kNN, VOC07 trainval + test for the SVMs
    assert jobs["extract_features"] == (2 * ("knn_imagenet" in benchmarks) + 2 * bool(voc)) * n_models
    assert jobs["knn"] == n_models
    assert jobs["svm"] == ("svm_voc07" in benchmarks) * n_models
    assert jobs["lowshot"] == ("lowshot_voc07" in benchmarks) * n_models
    detection = [name for name in benchmarks if name.startswith("det_")]
    # MoCo's VOC protocol runs 5 times per Triplet model, then one job averages the runs
    # ... and for the models of Triplet's comparison tables (random, Relative-Loc, Rotation-Pred,
    # BYOL and Triplet's ep800 here), the C4 protocols of those tables
    once = [name for name in detection if name != "det_voc0712_moco"]
    shown = comparison_pairs(workdir, cfg, model_cfgs)
    assert {model for bench, model in shown if bench == "det_coco_c4_moco"} >= {
        "random",
        "relative-loc_resnet50_8xb64-steplr-70e_in1k",
        "rotation-pred_resnet50_8xb16-steplr-70e_in1k",
        "byol_resnet50_8xb32-accum16-coslr-200e_in1k",
        "triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k_ep800",
    }
    assert jobs["detection"] == sum(len(rows_of(name, model_cfgs, n_models, shown)) for name in once)
    moco_voc = rows_of("det_voc0712_moco", model_cfgs, n_models, shown)
    assert len(moco_voc) > 2 and jobs["detection_run"] == 5 * len(moco_voc)
    assert jobs["detection_average"] == len(moco_voc)
    assert jobs["segmentation"] == len([name for name in benchmarks if name.startswith("seg_")]) * n_models
    # a paper's own protocol runs for the models that list it under extra_benchmarks only
    listing = [*model_cfgs.values(), *snapshots.values()]
    own = sum(name in entry.get("extra_benchmarks", []) for entry in listing for name in linear)
    common = [name for name in linear if BENCHMARKS[name].every_model]
    own_protocols = set(linear) - set(common)
    assert own_protocols and all(
        any(name in e.get("extra_benchmarks", []) for e in listing) for name in own_protocols
    )
    assert jobs["linear"] == len(common) * n_models + own
    assert jobs["semi"] == grid * n_models
    assert jobs["semi_select"] == len(semi) * n_models
    # one job per page: model_zoo, each method, each benchmark table (AvgPool shares ImageNet linear's)
    methods = {model_cfg["method"] for model_cfg in model_cfgs.values()}
    tables = set(benchmarks) - ({"linear_avgpool_imagenet"} if "linear_imagenet" in benchmarks else set())
    assert jobs["model_zoo_table"] == 1
    assert jobs["method_page"] == len(methods)
    assert jobs["benchmark_table"] == len(tables)
    assert jobs["loss_curve"] == jobs["pretrain"]
    assert jobs["k_plot"] == len({"knn_imagenet", "lowshot_voc07"} & set(benchmarks))
    assert jobs["make_mini_data"] == 0


def test_external_checkpoint_is_a_row_of_every_benchmark(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    baseline = _dry_run_with(workdir, cfg)
    (workdir / "ckpt").mkdir()
    (workdir / "ckpt" / "mine.pth").touch()
    cfg["external"] = {"my-ckpt": "ckpt/mine.pth"}
    jobs = _dry_run_with(workdir, cfg)
    assert jobs["import_external"] == 1 and jobs["pretrain"] == baseline["pretrain"]
    rules = {
        "knn": "knn",
        "svm": "svm",
        "lowshot": "lowshot",
        "linear": "linear",
        "semi_select": "semi",
        "segmentation": "seg",
        "detection": "det",
    }
    for rule, kind in rules.items():
        # one more job per benchmark of the rule's kind, a paper's own protocol aside (it gets
        # no row for the checkpoint)
        common = [name for name in of_kind(list(cfg["benchmarks"]), kind) if BENCHMARKS[name].every_model]
        assert jobs[rule] == baseline[rule] + len(common), rule
    result = snakemake(
        workdir, "-n", "--configfile", "config/changed.yaml", "--cores", "1", "-p", "model_zoo_table"
    )
    command = next(line for line in result.stdout.splitlines() if "sslzoo tables" in line)
    for benchmark in cfg["benchmarks"]:
        row = f"results/benchmarks/{benchmark}/my-ckpt/metrics.json"
        assert (row in command) == BENCHMARKS[benchmark].every_model, benchmark
    # the pretraining run records of the pretrained rows feed the footnotes; a checkpoint has none
    runs = command.split(" --runs ")[1].split(" --")[0].split()
    assert runs == [f"results/pretrain/{model}/run.json" for model in cfg["models"]]


def _model_cfg(workdir: Path, name: str) -> dict:
    return yaml.safe_load((workdir / "config" / "models" / f"{name}.yaml").read_text())


def test_mocos_detection_protocols_are_planned_for_the_triplet_and_comparison_models(
    full_plan: FullPlan,
) -> None:
    workdir, cfg, result = full_plan
    triplet = {name for name in cfg["models"] if name.startswith("triplet_")}
    # and the checkpoint the README's detection numbers come from (epoch 800 of the 1000-epoch run)
    ep800 = "triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k_ep800"
    model_cfgs = model_configs(workdir, cfg["models"])
    shown = comparison_pairs(workdir, cfg, model_cfgs)
    for moco in ("det_voc0712_moco", "det_coco_c4_moco"):
        assert moco in cfg["benchmarks"] and not BENCHMARKS[moco].every_model
        rows = set(re.findall(rf"results/benchmarks/{moco}/([^/\s]+)/metrics\.json", result.stdout))
        listing = {name for name in triplet if moco in _model_cfg(workdir, name).get("extra_benchmarks", [])}
        compared = {model for bench, model in shown if bench == moco}
        # no other model: the ORL model is in neither list
        assert listing and rows == {*listing, ep800, *compared}, moco
        assert not any(name.startswith("orl") for name in rows)
    voc = set(re.findall(r"results/benchmarks/det_voc0712/([^/\s]+)/metrics\.json", result.stdout))
    snapshots = {f"{ep800[: -len('_ep800')]}_ep{epoch}" for epoch in (940, 800)}
    assert voc == {*cfg["models"], *snapshots, "random"}  # the model zoo's protocol: every row
    # Triplet's reported VOC numbers sit under the protocol that produced them
    for name in triplet:
        model_cfg = yaml.safe_load((workdir / "config" / "models" / f"{name}.yaml").read_text())
        assert "det_voc0712" not in model_cfg.get("reported", {}) and "det_coco" not in model_cfg.get(
            "reported", {}
        )
    mini = yaml.safe_load((workdir / "config" / "mini.yaml").read_text())
    mini_cfgs = {
        name: yaml.safe_load((workdir / "config" / "models" / f"{name}.yaml").read_text())
        for name in mini["models"]
    }
    for moco in ("det_voc0712_moco", "det_coco_c4_moco"):
        assert rows_of(moco, mini_cfgs, 0) == [n for n in mini["models"] if n.startswith("triplet_")]


RUN_RESULT = re.compile(r"results/benchmarks/(\w+)/([\w.-]+)/run(\d+)/metrics\.json")


def test_a_repeated_detection_protocol_runs_each_seed_then_averages(workdir: Path) -> None:
    """The mini zoo: det_voc0712_moco_mini.yaml says repeats: 2, the other detection protocols run once."""
    mini = yaml.safe_load((workdir / "config" / "mini.yaml").read_text())
    result = snakemake(workdir, "-n", "-p", "--configfile", "config/mini.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = planned_jobs(result.stdout)
    model_cfgs = {
        name: yaml.safe_load((workdir / "config" / "models" / f"{name}.yaml").read_text())
        for name in mini["models"]
    }
    n_models = len(mini["models"]) + 1
    once = [name for name in mini["benchmarks"] if name.startswith("det_") and name != "det_voc0712_moco"]
    assert len(once) == 3
    assert jobs["detection"] == sum(len(rows_of(name, model_cfgs, n_models)) for name in once)
    assert (jobs["detection_run"], jobs["detection_average"]) == (2, 1)
    # run i of triplet_resnet18_mini has the seed config `seed` + i, its own work dir and metrics
    assert set(RUN_RESULT.findall(result.stdout)) == {
        ("det_voc0712_moco", "triplet_resnet18_mini", "0"),
        ("det_voc0712_moco", "triplet_resnet18_mini", "1"),
    }
    runs = [line for line in result.stdout.splitlines() if " detection " in line and "/run" in line]
    root = "results/benchmarks/det_voc0712_moco/triplet_resnet18_mini"
    for index in (0, 1):
        (command,) = [line for line in runs if f"--out {root}/run{index}/metrics.json" in line]
        assert f"--work-dir {root}/run{index}/work --seed {mini['seed'] + index} " in command
    (average,) = [line for line in result.stdout.splitlines() if "sslzoo average-runs" in line]
    assert f"--runs {root}/run0/metrics.json {root}/run1/metrics.json " in average
    assert f"--out {root}/metrics.json" in average
    # a protocol run once keeps its single job, writing the table's metrics.json directly
    (single,) = [
        line
        for line in result.stdout.splitlines()
        if " detection " in line and "--out results/benchmarks/det_voc0712/triplet_resnet18_mini/" in line
    ]
    single_root = "results/benchmarks/det_voc0712/triplet_resnet18_mini"
    assert f"{single_root}/work --seed {mini['seed']} --out {single_root}/metrics.json" in single


def test_a_table_or_page_file_plans_only_what_it_needs(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(cfg))

    def plan(target: str) -> Counter:
        result = snakemake(workdir, "-n", "--configfile", "config/changed.yaml", "--cores", "1", target)
        assert result.returncode == 0, result.stderr + result.stdout
        return planned_jobs(result.stdout)

    n_rows = len(cfg["models"]) + len(snapshots_of(model_configs(workdir, cfg["models"]))) + 1
    knn = plan("results/tables/benchmarks/knn_imagenet.md")
    assert knn["benchmark_table"] == 1 and knn["knn"] == n_rows
    assert not any(
        knn[rule] for rule in ("linear", "semi", "svm", "detection", "method_page", "model_zoo_table")
    )
    # the AvgPool protocol's jobs fill the same table
    linear = plan("results/tables/benchmarks/linear_imagenet.md")
    assert linear["linear"] == 2 * n_rows and linear["knn"] == 0
    page = plan("results/tables/byol.md")
    assert page["method_page"] == 1 and page["model_zoo_table"] == 0
    byol = [name for name in cfg["models"] if name.startswith("byol_")]
    assert page["extract_backbone"] == len(byol)

    del cfg["benchmarks"]["det_coco"]
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/tables/benchmarks/det_coco.md"
    result = snakemake(workdir, "-n", "--configfile", "config/changed.yaml", "--cores", "1", target)
    assert result.returncode != 0  # the `table` wildcard takes the configured tables only
    assert f"No rule to produce {target}" in result.stdout + result.stderr


def _dry_run_with(workdir: Path, cfg: dict) -> Counter:
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "--configfile", "config/changed.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    return planned_jobs(result.stdout)


def test_orl_published_files_replace_their_stages(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    published = {name: f"data/coco/meta/{name}.json" for name in ("knn", "proposals", "correspondence")}
    for path in published.values():
        make_placeholders({"list": path}, workdir)

    cfg["orl"]["published"] = {"proposals": published["proposals"]}
    jobs = _dry_run_with(workdir, cfg)
    assert jobs["orl_proposals"] == jobs["orl_merge_proposals"] == 0
    assert jobs["orl_knn"] == 1 and jobs["orl_correspondence"] == cfg["orl"]["correspondence_shards"]

    cfg["orl"]["published"] = {"knn": published["knn"], "proposals": published["proposals"]}
    jobs = _dry_run_with(workdir, cfg)
    assert jobs["orl_knn"] == 0 and jobs["orl_correspondence"] == cfg["orl"]["correspondence_shards"]

    # the correspondence file is all stage 3 needs: no stage-2 job and no stage-1 pretraining
    cfg["orl"]["published"] = {"correspondence": published["correspondence"]}
    jobs = _dry_run_with(workdir, cfg)
    assert not any(jobs[rule] for rule in jobs if rule.startswith("orl_"))
    assert jobs["pretrain"] == len(cfg["models"])


def test_learning_margins_page_reads_every_model_on_each_measure(workdir: Path) -> None:
    """Asked for by `learning_margins:` (the mini zoo's), absent from the full zoo's config; its
    one job reads each measure's metrics of every model and the random row."""
    cfg = placeholder_datasets(workdir)
    assert "learning_margins" not in cfg and _dry_run_with(workdir, cfg)["learning_margins"] == 0
    measures = {"knn_imagenet": "k=20", "svm_voc07": "SVM"}
    cfg["learning_margins"] = {"margin": 2.5, "measures": measures}
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "-p", "--configfile", "config/changed.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    assert planned_jobs(result.stdout)["learning_margins"] == 1
    (command,) = [line for line in result.stdout.splitlines() if "sslzoo learning-margins" in line]
    n_models = len(cfg["models"]) + len(snapshots_of(model_configs(workdir, cfg["models"]))) + 1
    assert command.count("/metrics.json") == 2 * n_models
    assert "results/benchmarks/svm_voc07/random/metrics.json" in command
    assert "--measures 'knn_imagenet=k=20' 'svm_voc07=SVM' --margin 2.5 " in command


def test_learning_margins_keep_the_configured_measures_and_need_the_random_row(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    cfg["learning_margins"] = {"margin": 3, "measures": {"knn_imagenet": "k=20", "svm_voc07": "SVM"}}
    del cfg["benchmarks"]["svm_voc07"]  # a config reduced to fewer benchmarks keeps the rest
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "-p", "--configfile", "config/changed.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    (command,) = [line for line in result.stdout.splitlines() if "sslzoo learning-margins" in line]
    assert "--measures 'knn_imagenet=k=20' --margin 3 " in command and "svm_voc07" not in command
    assert _dry_run_with(workdir, {**cfg, "baseline": {"enabled": False}})["learning_margins"] == 0
    cfg["learning_margins"]["measures"] = {"linear_avgpool_lars_imagenet": "AvgPool"}
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "--configfile", "config/changed.yaml", "--cores", "1")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "learning_margins" in out and "not a benchmark that every model runs" in out, out[-3000:]


def test_missing_published_orl_file_names_key_and_path(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    cfg["orl"]["published"] = {"knn": "data/coco/meta/missing_knn.json"}
    (workdir / "config" / "changed.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "--configfile", "config/changed.yaml", "--cores", "1")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "orl.published.knn" in out and "data/coco/meta/missing_knn.json" in out


def test_shard_counts_come_from_the_config(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    cfg["orl"].update(proposal_shards=5, correspondence_shards=3)
    jobs = _dry_run_with(workdir, cfg)
    assert jobs["orl_proposals"] == 5 and jobs["orl_correspondence"] == 3


def test_missing_dataset_folder_names_key_and_path(workdir: Path) -> None:
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "--cores", "1")
    assert result.returncode != 0
    assert "datasets.imagenet.train.images" in result.stdout + result.stderr
    assert "data/imagenet/train" in result.stdout + result.stderr


def test_missing_semi_split_file_names_benchmark_and_fix(workdir: Path) -> None:
    placeholder_datasets(workdir)
    (workdir / "data" / "imagenet" / "meta" / "1percent.txt").unlink()
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "--cores", "1")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "benchmarks.semi_in1k_1pct" in out and "split_file: null" in out


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


def test_unregistered_benchmark_names_the_key_and_the_registry(workdir: Path) -> None:
    cfg = yaml.safe_load((workdir / "config" / "mini.yaml").read_text())
    cfg["benchmarks"]["knn_places205"] = cfg["benchmarks"]["knn_imagenet"]
    (workdir / "config" / "bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(workdir, "-n", "--configfile", "config/bad.yaml", "--cores", "1")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "config key 'benchmarks.knn_places205': not a benchmark of sslzoo" in out
    assert "src/sslzoo/benchmarks/registry.py" in out


def test_invalid_protocol_file_fails_before_any_job_naming_file_and_key(workdir: Path) -> None:
    protocols = workdir / "config" / "benchmarks"
    knn = protocols / "knn_mini.yaml"
    knn.write_text(knn.read_text().replace("temperature: 0.07", "temperature: warm"))
    semi = protocols / "semi_in1k_1pct_mini.yaml"
    semi.write_text(
        "\n".join(line for line in semi.read_text().splitlines() if not line.startswith("epochs:"))
    )
    result = snakemake(workdir, "-n", "--configfile", "config/mini.yaml", "--cores", "1")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    # the first invalid file in config order stops the run: its config key, file and key
    assert (
        "config key 'benchmarks.knn_imagenet': invalid protocol file config/benchmarks/knn_mini.yaml" in out
    )
    assert "config/benchmarks/knn_mini.yaml: temperature: 'warm' is not of type 'number'" in out
    knn.write_text(knn.read_text().replace("temperature: warm", "temperature: 0.07"))
    result = snakemake(workdir, "-n", "--configfile", "config/mini.yaml", "--cores", "1")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "config/benchmarks/semi_in1k_1pct_mini.yaml: (top level): 'epochs' is a required property" in out


OWN_PROTOCOL_RESULT = re.compile(r"results/benchmarks/(\w+)/([\w.-]+)/metrics\.json")


def _planned_results(stdout: str) -> dict[str, set[str]]:
    """benchmark -> the models whose metrics.json a dry run plans."""
    planned: dict[str, set[str]] = {}
    for benchmark, model in OWN_PROTOCOL_RESULT.findall(stdout):
        planned.setdefault(benchmark, set()).add(model)
    return planned


def test_own_protocols_are_planned_only_for_the_models_that_list_them(full_plan: FullPlan) -> None:
    workdir, cfg, result = full_plan
    planned = _planned_results(result.stdout)
    model_cfgs = model_configs(workdir, cfg["models"])
    lars = {
        name
        for name, entry in model_cfgs.items()
        if "linear_avgpool_lars_imagenet" in entry.get("extra_benchmarks", [])
    }
    # BYOL's, SimCLR's and SimSiam's reported AvgPool come from the LARS protocol
    assert {"byol_resnet50_8xb32-accum16-coslr-200e_in1k", "simsiam_resnet50_8xb32-coslr-100e_in1k"} <= lars
    shown = {
        model
        for bench, model in comparison_pairs(workdir, cfg, model_cfgs)
        if bench == "linear_avgpool_lars_imagenet"
    }
    assert planned["linear_avgpool_lars_imagenet"] == lars | shown
    assert planned["linear_triplet_less_imagenet"] == {"triplet_resnet50_8xb128-amp-accum4-coslr-200e_in1k"}
    longer = "triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k"
    # the README's 75.9: its epoch-940 checkpoint; neither epoch 800 nor the final one lists it
    assert planned["linear_triplet_more_imagenet"] == {f"{longer}_ep940"}
    # the common protocol: every row, the kept epochs' too
    assert planned["linear_avgpool_imagenet"] == {
        *cfg["models"],
        f"{longer}_ep940",
        f"{longer}_ep800",
        "random",
    }
    # the mini zoo: BYOL's and Triplet's mini models run their papers' protocols, nothing else does
    result = snakemake(workdir, "-n", "--configfile", "config/mini.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    planned = _planned_results(result.stdout)
    assert "rule extract_snapshot" not in result.stdout  # the mini zoo keeps no epoch as a model
    assert planned["linear_avgpool_lars_imagenet"] == {"byol_resnet18_mini"}
    assert planned["linear_triplet_less_imagenet"] == {"triplet_resnet18_mini"}
    assert "linear_triplet_more_imagenet" not in planned


@pytest.mark.parametrize(
    ("model", "benchmark"),
    [
        ("byol_resnet50_8xb32-accum16-coslr-200e_in1k", "linear_avgpool_lars_imagenet"),
        ("triplet_resnet50_8xb128-amp-accum4-coslr-200e_in1k", "linear_triplet_less_imagenet"),
    ],
)
def test_reported_numbers_of_an_own_protocol_not_listed_stop_the_workflow(
    workdir: Path, model: str, benchmark: str
) -> None:
    placeholder_datasets(workdir)
    path = workdir / "config" / "models" / f"{model}.yaml"
    text = path.read_text()
    listed = next(line for line in text.splitlines() if line.startswith("extra_benchmarks:"))
    kept = [name for name in yaml.safe_load(listed)["extra_benchmarks"] if name != benchmark]
    assert len(kept) == len(yaml.safe_load(listed)["extra_benchmarks"]) - 1
    path.write_text(text.replace(listed, f"extra_benchmarks: {kept}"))
    result = snakemake(workdir, "-n", "--configfile", "config/config.yaml", "--cores", "1")
    assert result.returncode != 0
    out = " ".join((result.stdout + result.stderr).split())
    assert (
        f"config/models/{model}.yaml: reported.{benchmark} holds numbers of a paper's own protocol, which "
        f"runs only for the models that list it; add '{benchmark}' to the model's extra_benchmarks"
    ) in out


LONGER = "triplet_resnet50_8xb196-amp-accum4-coslr-1000e_in1k"


def test_kept_epochs_are_extracted_after_their_run_and_benchmarked_as_models(full_plan: FullPlan) -> None:
    workdir, cfg, result = full_plan
    # one job per kept epoch: after the run (its final checkpoint is the input), reading the
    # epoch's checkpoint from the run's work folder
    commands = sorted(
        line.split("Shell command: ")[1]
        for line in result.stdout.splitlines()
        if "sslzoo extract-snapshot" in line
    )
    assert commands == [
        f"python -m sslzoo extract-snapshot --final results/pretrain/{LONGER}/final.pth"
        f" --work-dir results/pretrain/{LONGER}/work --epoch {epoch} --out results/backbones/{LONGER}_ep{epoch}.pth"
        f" > logs/extract_backbone/{LONGER}_ep{epoch}.log 2>&1"
        for epoch in (800, 940)
    ]
    # each kept epoch runs every common benchmark, and of the papers' own only those it lists
    snapshots = snapshots_of(model_configs(workdir, cfg["models"]))
    assert set(snapshots) == {f"{LONGER}_ep940", f"{LONGER}_ep800"}
    planned = _planned_results(result.stdout)
    for benchmark in cfg["benchmarks"]:
        for name, snapshot in snapshots.items():
            listed = BENCHMARKS[benchmark].every_model or benchmark in snapshot["extra_benchmarks"]
            assert (name in planned.get(benchmark, set())) == listed, (benchmark, name)
    # the Triplet page shows them (with the reported numbers of its config's snapshots)
    result = snakemake(
        workdir, "-n", "--configfile", "config/config.yaml", "--cores", "1", "results/tables/triplet.md"
    )
    page = next(line for line in result.stdout.splitlines() if "sslzoo tables --method triplet" in line)
    metrics = set(re.findall(r"results/benchmarks/(\w+)/([\w.-]+)/metrics\.json", page))
    assert ("linear_triplet_more_imagenet", f"{LONGER}_ep940") in metrics
    assert ("det_coco_c4_moco", f"{LONGER}_ep800") in metrics and (
        "knn_imagenet",
        f"{LONGER}_ep800",
    ) in metrics
    models = page.split(" --models ")[1].split(" --")[0].split()
    assert f"config/models/{LONGER}.yaml" in models and not any("_ep" in name for name in models)


def test_bad_snapshots_stop_the_workflow_naming_the_file_and_a_good_one_is_planned(workdir: Path) -> None:
    path = workdir / "config" / "models" / "triplet_resnet18_mini.yaml"
    text = path.read_text()
    path.write_text(text + "snapshots: [{epoch: 11}]\n")  # the mini run has 10 epochs
    result = snakemake(workdir, "-n", "--configfile", "config/mini.yaml", "--cores", "1")
    assert result.returncode != 0
    out = " ".join((result.stdout + result.stderr).split())
    assert (
        "config/models/triplet_resnet18_mini.yaml: snapshots[0].epoch: 11 is beyond train.epochs (10)" in out
    )
    assert "list an epoch from 1 to 10, or remove the entry" in out

    path.write_text(
        text + "snapshots: [{epoch: 5, reported: {linear_triplet_more_imagenet: {AvgPool: 1.0}}}]\n"
    )
    result = snakemake(workdir, "-n", "--configfile", "config/mini.yaml", "--cores", "1")
    assert result.returncode != 0
    out = " ".join((result.stdout + result.stderr).split())
    assert (
        "config/models/triplet_resnet18_mini.yaml: snapshot epoch 5: reported.linear_triplet_more_imagenet holds "
        "numbers of a paper's own protocol"
    ) in out

    path.write_text(text + "snapshots: [{epoch: 5}]\n")
    result = snakemake(workdir, "-n", "--configfile", "config/mini.yaml", "--cores", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    assert planned_jobs(result.stdout)["extract_snapshot"] == 1
    planned = _planned_results(result.stdout)
    assert "triplet_resnet18_mini_ep5" in planned["knn_imagenet"]  # a common protocol
    # not the model's own protocols: a snapshot lists its own (none here)
    assert "triplet_resnet18_mini_ep5" not in planned["linear_triplet_less_imagenet"]
