"""Helpers to run the workflow from a scratch working directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


FOLDER_KEYS = ("images", "devkit", "root")
FILE_KEYS = ("list", "json", "annotations")


def make_placeholders(node: dict, workdir: Path) -> None:
    """Empty stand-ins for the dataset folders and files that a `datasets:` config node names."""
    for key, value in node.items():
        if isinstance(value, dict):
            make_placeholders(value, workdir)
        elif key in FOLDER_KEYS:
            (workdir / value).mkdir(parents=True, exist_ok=True)
        elif key in FILE_KEYS and value:
            (workdir / value).parent.mkdir(parents=True, exist_ok=True)
            (workdir / value).touch()


def placeholder_datasets(workdir: Path) -> dict:
    """Create the folders and files config/config.yaml points at (empty placeholders)."""
    cfg = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    make_placeholders(cfg["datasets"], workdir)
    for name, protocol in cfg["benchmarks"].items():
        split_file = yaml.safe_load((workdir / protocol).read_text()).get("split_file")
        if name.startswith("semi_") and split_file:
            make_placeholders({"list": split_file}, workdir)
    return cfg
