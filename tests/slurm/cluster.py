"""Helpers for tests that run the workflow on the local SLURM cluster of local_slurm.sh:
starting and stopping it, running snakemake in the background, reading what the SLURM
executor plugin logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "local_slurm.sh"
SKIP_STATUS = 77  # local_slurm.sh: SLURM cannot run on this machine (the reason is on stderr)

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: (\w+)\)")
FAILED = re.compile(
    r"Error in rule (\w+):\n\s+message: SLURM-job '(\d+)' failed[^\n]*\n(?:\s+\w+: [^\n]*\n)*?\s+output: (\S+)"
)
SBATCH = re.compile(r"sbatch call: (sbatch .*?) --wrap=")
COMMENT_RULE = re.compile(r"--comment rule_([a-z0-9_]+?)(?:_wildcards_\S+)?\s")


@contextmanager
def local_slurm() -> Iterator[None]:
    """Start the cluster (installing it on first use), skip when this machine cannot run it, and
    stop its daemons at the end whatever happens (unless it was running before)."""
    start = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if start.returncode == SKIP_STATUS:
        pytest.skip(start.stderr.strip().splitlines()[-1])
    if start.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)
        pytest.fail(f"local SLURM did not start:\n{start.stdout}{start.stderr}")
    ours = "already running" not in start.stderr
    try:
        yield
    finally:
        if ours:
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)


def start(cmd: list[str], workdir: Path, log_name: str) -> subprocess.Popen[bytes]:
    """Run ``cmd`` in ``workdir`` in the background, stdout and stderr to ``workdir/log_name``."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    with open(workdir / log_name, "wb") as out:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt a running snakemake (it cancels its SLURM jobs on Ctrl-C); kill it after 60 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def finish(proc: subprocess.Popen[bytes], deadline: float) -> int:
    """Wait for ``proc`` until ``deadline`` (a time.time()); stop it and raise after that."""
    try:
        return proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        stop(proc)
        raise


def running_job(rule: str) -> str | None:
    """The SLURM id of a running job of ``rule`` (the plugin names the rule in the job comment)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True, check=True
    ).stdout
    ours = re.compile(rf"^(\d+)\|rule_{rule}(_wildcards_.*)?$")
    ids = [match.group(1) for match in map(ours.match, out.splitlines()) if match]
    return ids[0] if ids else None


def submissions(output: str) -> dict[str, list[tuple[str, Path]]]:
    """Snakemake job id -> [(SLURM job id, SLURM log)], in submission order (retries included)."""
    found: dict[str, list[tuple[str, Path]]] = {}
    for job, slurm_id, log in SUBMITTED.findall(output):
        found.setdefault(job, []).append((slurm_id, Path(log)))
    return found


def finished(output: str) -> dict[str, str]:
    """Snakemake job id -> rule, for every job that finished."""
    return dict(FINISHED.findall(output))


def failed(output: str) -> list[tuple[str, str, str]]:
    """(rule, SLURM job id, first output) of every failed SLURM job, in order."""
    return FAILED.findall(output)


def sbatch_calls(output: str) -> dict[str, list[str]]:
    """Rule -> the sbatch calls of its jobs (logged with --verbose)."""
    calls: dict[str, list[str]] = {}
    for call in SBATCH.findall(output):
        calls.setdefault(COMMENT_RULE.search(call).group(1), []).append(call)
    return calls
