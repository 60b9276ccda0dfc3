"""Helpers to run the workflow from a scratch working directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run ``snakemake`` on the repository's Snakefile with ``workdir`` as working directory."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    env_path = str(Path(sys.executable).parent)
    import os

    env = dict(os.environ, PATH=env_path + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch working directory holding a copy of config/ (the paths rules read)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path
