"""The workflow on a real SLURM cluster: `snakemake --profile profiles/slurm` on the single-node
cluster of tests/slurm/local_slurm.sh (root on Debian or Ubuntu; skipped elsewhere), whose fake
GPUs make the GPU jobs run on the CPU.

One run serves every test, to stay within CI's time: a reduced mini zoo (one method plus the
`random` row, the kNN benchmark) goes through SLURM while the same config runs locally (niced,
in the gaps). On the SLURM side
- the pretraining job is cancelled (`scancel`) in its second epoch; the profile's retry
  resubmits it and it resumes from its epoch checkpoint;
- one extra target, the random model's VOC07 test features, is the only job reading a VOC07
  test image, which is overwritten with garbage before the run: that job fails (twice: the
  retry) and the rest of the zoo finishes (`keep-going`).
The mini datasets are made once, before both runs, as make_mini_data would make them.
The tables and the pretrained weights then equal the local run's, bit for bit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from sslzoo.data.mini import make_mini_data
from tests.slurm import cluster
from tests.workflow.conftest import REPO

pytestmark = pytest.mark.slow

MODEL = "rotation-pred_resnet18_mini"
MODELS = (MODEL, "random")
BENCHMARKS = ("knn_imagenet",)
# "GPUs" of the pretraining job: 2 passes too (torchrun --nproc-per-node 2, DDP over gloo) but
# takes about 40 s longer here, the two processes competing for 2 cores with the other jobs; with
# 1 the step runs in the job's own process, without torchrun
PRETRAIN_GPUS = 1
# epochs of the pretraining run here (the mini config's are many more): the job is cancelled in
# the second and must resume there; the learning itself is tested by test_mini_zoo.py
PRETRAIN_EPOCHS = 2
CORRUPT_TARGET = "results/features/random/voc07_test.npz"
VOC07 = Path("resources", "mini", "voc", "VOCdevkit", "VOC2007")
RUN_TIMEOUT = 600  # seconds for both runs
# the test cluster's overrides: poll job states after 1 s at first (the profile waits 20 s), keep
# the SLURM logs of finished jobs, and log every sbatch call
SLURM_ARGS = ("--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs", "--verbose")


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    with cluster.local_slurm():
        yield


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini datasets of config/mini.yaml's seed, made once for both runs (as make_mini_data
    would: the same seed gives the same files)."""
    root = tmp_path_factory.mktemp("mini")
    make_mini_data(
        root, seed=yaml.safe_load((REPO / "config" / "mini.yaml").read_text())["mini_data"]["seed"]
    )
    return root


def _reduced_workdir(workdir: Path, mini_data: Path) -> Path:
    """A working directory holding config/ with mini.yaml reduced to MODELS and BENCHMARKS, and
    the mini datasets in resources/mini/."""
    shutil.copytree(REPO / "config", workdir / "config")
    shutil.copytree(mini_data, workdir / "resources" / "mini")
    path = workdir / "config" / "mini.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["models"] = [MODEL]
    cfg["benchmarks"] = {name: cfg["benchmarks"][name] for name in BENCHMARKS}
    cfg["resources"]["pretrain"]["gpu"] = PRETRAIN_GPUS
    path.write_text(yaml.safe_dump(cfg))
    model = workdir / "config" / "models" / f"{MODEL}.yaml"
    model.write_text(yaml.safe_dump(_shortened(yaml.safe_load(model.read_text()), PRETRAIN_EPOCHS)))
    return workdir


def _shortened(model_cfg: dict, epochs: int) -> dict:
    """``model_cfg`` trained for ``epochs`` epochs, its schedule's lr steps and warm-up at the same
    fractions of the run."""
    train = model_cfg["train"]
    scale = epochs / train["epochs"]
    schedule = train["schedule"]
    if "steps" in schedule:
        schedule["steps"] = [round(step * scale, 4) for step in schedule["steps"]]
    if "warmup_epochs" in schedule:
        schedule["warmup_epochs"] = round(schedule["warmup_epochs"] * scale, 4)
    train["epochs"] = epochs
    return model_cfg


def _snakemake(workdir: Path, profile: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        str(REPO / "profiles" / profile),
        "--configfile",
        "config/mini.yaml",
        *args,
    ]


def _in_second_epoch(workdir: Path) -> bool:
    """Pretraining saved its first epoch and logged an iteration of the second."""
    work = workdir / "results" / "pretrain" / MODEL / "work"
    log = work / "train_log.jsonl"
    if not (work / "latest.pth").exists() or not log.exists():
        return False
    for line in log.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] == 2:
                return True
        except ValueError:  # the line being written
            continue
    return False


def _corrupt_voc07_test_image(workdir: Path) -> Path:
    """Overwrite the first VOC07 test image with garbage; return its path as jobs name it."""
    first = (workdir / VOC07 / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    image = VOC07 / "JPEGImages" / f"{first}.jpg"
    (workdir / image).write_bytes(b"\x00garbage, not an image\xff" * 10)
    return image


@dataclass
class ZooRuns:
    """What the tests read: both working directories and the SLURM run's outcome."""

    local: Path
    slurm: Path
    status: int  # the SLURM run's exit status
    output: str  # the SLURM run's snakemake output
    cancelled: str  # the SLURM id of the cancelled pretraining job
    corrupt: Path  # the corrupt image, relative to the working directory


@pytest.fixture(scope="module")
def zoo_runs(slurm_cluster: None, mini_data: Path, tmp_path_factory: pytest.TempPathFactory) -> ZooRuns:
    """The reduced zoo locally and on SLURM side by side, with the two faults on the SLURM side."""
    local = _reduced_workdir(tmp_path_factory.mktemp("local"), mini_data)
    slurm = _reduced_workdir(tmp_path_factory.mktemp("slurm"), mini_data)
    corrupt = _corrupt_voc07_test_image(slurm)
    deadline = time.time() + RUN_TIMEOUT
    local_cmd = ["nice", "-n", "10", *_snakemake(local, "local", "--cores", "2")]
    local_run = cluster.start(local_cmd, local, "snakemake.out")
    slurm_cmd = _snakemake(slurm, "slurm", *SLURM_ARGS, "all", CORRUPT_TARGET)
    slurm_run = cluster.start(slurm_cmd, slurm, "snakemake.out")
    try:
        cancelled = None
        while cancelled is None:
            assert slurm_run.poll() is None, "the SLURM run ended before pretraining reached epoch 2"
            assert time.time() < deadline, "pretraining did not reach its second epoch in time"
            if _in_second_epoch(slurm):
                cancelled = cluster.running_job("pretrain")
                final = slurm / "results" / "pretrain" / MODEL / "final.pth"
                assert not final.exists(), "pretraining finished before it could be cancelled"
            time.sleep(0.2)
        subprocess.run(["scancel", cancelled], check=True, timeout=30)
        status = cluster.finish(slurm_run, deadline)
        local_status = cluster.finish(local_run, deadline)
    finally:
        cluster.stop(slurm_run)
        cluster.stop(local_run)
    assert local_status == 0, (local / "snakemake.out").read_text()[-5000:]
    output = (slurm / "snakemake.out").read_text()
    return ZooRuns(local, slurm, status, output, cancelled, corrupt)


def test_every_job_ran_as_a_slurm_job(zoo_runs: ZooRuns) -> None:
    done = {job: rule for job, rule in cluster.finished(zoo_runs.output).items() if rule != "all"}
    submitted = cluster.submissions(zoo_runs.output)
    assert len(done) >= 15 and set(done) <= set(submitted), (done, submitted)
    assert len(set(submitted) - set(done)) == 1  # the job reading the corrupt image
    slurm_ids = [slurm_id for subs in submitted.values() for slurm_id, _ in subs]
    assert len(set(slurm_ids)) == len(slurm_ids)
    for job, rule in done.items():
        log = submitted[job][-1][1]  # SLURM's log of the job (kept with --slurm-keep-successful-logs)
        assert log.is_file() and f"rule {rule}:" in log.read_text(), (rule, log)


def _tables(workdir: Path) -> dict[str, str]:
    root = workdir / "results" / "tables"
    return {str(path.relative_to(root)): path.read_text() for path in sorted(root.rglob("*.md"))}


def test_tables_equal_the_local_run(zoo_runs: ZooRuns) -> None:
    slurm, local = _tables(zoo_runs.slurm), _tables(zoo_runs.local)
    assert "model_zoo.md" in slurm and slurm.keys() == local.keys()
    for name, text in slurm.items():
        assert text == local[name], name
    assert MODEL in slurm["model_zoo.md"] and "random" in slurm["model_zoo.md"]
    for bench in BENCHMARKS:
        for model in MODELS:
            path = Path("results", "benchmarks", bench, model, "metrics.json")
            ours, reference = (_metrics(root / path) for root in (zoo_runs.slurm, zoo_runs.local))
            assert ours == reference, path


# Fields of a metrics.json that say when and from which commit it ran, not what it measured: the
# wall time differs between any two runs, the git revision when a commit lands while they run.
_RUN_DEPENDENT = ("git_rev", "wall_time_s")


def _metrics(path: Path) -> dict:
    """A metrics.json without the fields of :data:`_RUN_DEPENDENT` (top level and ``meta.run``)."""
    metrics = json.loads(path.read_text())
    for record in (metrics["meta"], metrics["meta"].get("run", {})):
        for field in _RUN_DEPENDENT:
            record.pop(field, None)
    return metrics


def test_cancelled_pretraining_resumed_to_the_same_weights(zoo_runs: ZooRuns) -> None:
    job = next(job for job, rule in cluster.finished(zoo_runs.output).items() if rule == "pretrain")
    attempts = [slurm_id for slurm_id, _ in cluster.submissions(zoo_runs.output)[job]]
    assert len(attempts) == 2 and attempts[0] == zoo_runs.cancelled, attempts
    assert f"SLURM-job '{zoo_runs.cancelled}' failed, SLURM status is: 'CANCELLED'" in zoo_runs.output
    assert f"Trying to restart job {job}." in zoo_runs.output  # the profile's `retries: 1`
    log = (zoo_runs.slurm / "logs" / "pretrain" / f"{MODEL}.log").read_text()
    assert re.search(rf"resuming from \S+/latest\.pth: epoch 1/{PRETRAIN_EPOCHS}", log), log[-3000:]
    final = Path("results", "pretrain", MODEL, "final.pth")
    ours = torch.load(zoo_runs.slurm / final, map_location="cpu", weights_only=True)["state_dict"]
    reference = torch.load(zoo_runs.local / final, map_location="cpu", weights_only=True)["state_dict"]
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[key], reference[key]) for key in ours)


def test_sbatch_calls_carry_the_rules_resources(zoo_runs: ZooRuns) -> None:
    resources = yaml.safe_load((zoo_runs.slurm / "config" / "mini.yaml").read_text())["resources"]
    calls = cluster.sbatch_calls(zoo_runs.output)
    gpu_rules = {"pretrain": PRETRAIN_GPUS, "extract_features": 1}
    for rule, gpus in gpu_rules.items():
        res = resources[rule]
        for call in calls[rule]:
            cpus = res["cpus_per_gpu"]
            for flag in ("-p gpu", f"--gpus={gpus}", f"--cpus-per-gpu={cpus}", f"--mem {res['mem_mb']}"):
                assert flag in call, (flag, call)
            assert f"-t {res['runtime']} " in call and "--requeue" in call and "-A my_account" in call, call
    assert {"manifest", "voc_manifest", "knn", "extract_backbone", "random_backbone"} <= set(calls)
    for rule in set(calls) - set(gpu_rules):
        for call in calls[rule]:
            assert "-p cpu" in call and "--gpus" not in call and "--cpus-per-task=" in call, call
            assert "--requeue" in call and "-A my_account" in call, call
    assert f"--mem {resources['knn']['mem_mb']} " in calls["knn"][0]


def test_gpu_jobs_run_one_process_per_gpu(zoo_runs: ZooRuns) -> None:
    job = next(job for job, rule in cluster.finished(zoo_runs.output).items() if rule == "pretrain")
    log = cluster.submissions(zoo_runs.output)[job][-1][1].read_text()
    assert f"python -m sslzoo --nproc-per-node {PRETRAIN_GPUS} pretrain" in log
    job_log = (zoo_runs.slurm / "logs" / "pretrain" / f"{MODEL}.log").read_text()
    launched = f"launching torchrun --standalone --nproc-per-node {PRETRAIN_GPUS} -m sslzoo pretrain"
    assert (launched in job_log) == (PRETRAIN_GPUS > 1), job_log[-2000:]
    assert f"'SLURM_GPUS_ON_NODE': '{PRETRAIN_GPUS}'" in log  # the job's allocation
    resources = yaml.safe_load((zoo_runs.slurm / "config" / "mini.yaml").read_text())["resources"]
    assert f"'SLURM_CPUS_PER_GPU': '{resources['pretrain']['cpus_per_gpu']}'" in log


def test_corrupt_image_fails_only_the_job_reading_it(zoo_runs: ZooRuns) -> None:
    assert zoo_runs.status != 0, zoo_runs.output[-5000:]
    failed = [
        (rule, out)
        for rule, slurm_id, out in cluster.failed(zoo_runs.output)
        if slurm_id != zoo_runs.cancelled
    ]
    assert failed == [("extract_features", CORRUPT_TARGET)] * 2, failed  # the job and its retry
    message = f"{zoo_runs.corrupt}: cannot read image"
    log = zoo_runs.slurm / "logs" / "extract_features" / "random" / "voc07_test.log"
    assert message in log.read_text() and message in zoo_runs.output  # show-failed-logs
    assert not (zoo_runs.slurm / CORRUPT_TARGET).exists()
    assert (zoo_runs.slurm / "results" / "tables" / "model_zoo.md").is_file()  # the rest finished
