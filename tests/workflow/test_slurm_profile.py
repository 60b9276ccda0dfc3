"""profiles/slurm on the full zoo (a dry run, no cluster needed): every job's SLURM resources.

GPU rules (those declaring `gpu`) go to the `gpu` partition with their GPU count, CPUs per GPU,
memory and time limit from config/config.yaml `resources:` (pretraining: the model config's
`gpus`) and run `python -m sslzoo --nproc-per-node <gpu>` (torchrun for more than one); every other job goes to the `cpu` partition."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.workflow.conftest import REPO, placeholder_datasets, snakemake

# rules whose resources are another rule's `resources:` entry: each run of a repeated detection protocol
RESOURCES_OF = {"detection_run": "detection"}
JOB = re.compile(r"^rule (\w+):\n(.*?)(?=^\[|\Z)", re.MULTILINE | re.DOTALL)


def _jobs(stdout: str) -> list[tuple[str, dict[str, str], str]]:
    """(rule, resources, shell command) of every job a dry run prints."""
    jobs = []
    for rule, body in JOB.findall(stdout):
        resources = re.search(r"^\s+resources: (.*)$", body, re.MULTILINE)
        shell = re.search(r"^Shell command: (.*)$", body, re.MULTILINE)
        pairs = dict(item.split("=", 1) for item in resources.group(1).split(", ")) if resources else {}
        command = shell.group(1) if shell else "None"
        jobs.append((rule, pairs, "" if command == "None" else command))
    return jobs


def test_slurm_profile_puts_every_full_zoo_job_on_its_partition(workdir: Path) -> None:
    cfg = placeholder_datasets(workdir)
    profile = str(REPO / "profiles" / "slurm")
    result = snakemake(workdir, "-n", "--profile", profile, "--configfile", "config/config.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = [job for job in _jobs(result.stdout) if job[2]]  # target rules have no command
    assert len(jobs) > 100
    resources = cfg["resources"]
    gpu_rules = set()
    for rule, res, shell in jobs:
        assert res["slurm_account"] == "my_account" and int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0
        if "gpu" not in res:
            assert res["slurm_partition"] == "cpu" and "--nproc-per-node" not in shell, (rule, res)
            continue
        gpu_rules.add(rule)
        assert res["slurm_partition"] == "gpu", (rule, res)
        assert f"python -m sslzoo --nproc-per-node {res['gpu']} " in shell, (rule, shell)
        if rule == "pretrain":
            model = re.search(r"--config config/models/(\S+)\.yaml", shell).group(1)
            model_cfg = yaml.safe_load((workdir / "config" / "models" / f"{model}.yaml").read_text())
            assert int(res["gpu"]) == model_cfg["gpus"]
        else:
            assert int(res["gpu"]) == resources[RESOURCES_OF.get(rule, rule)]["gpu"], rule
        for key in ("cpus_per_gpu", "mem_mb", "runtime"):
            assert int(res[key]) == resources[RESOURCES_OF.get(rule, rule)][key], (rule, key)
    assert gpu_rules == {
        "pretrain",
        "extract_features",
        "linear",
        "semi",
        "detection",
        "detection_run",
        "segmentation",
        "orl_knn",
        "orl_correspondence",
    }
