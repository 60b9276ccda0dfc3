"""`snakemake --lint` finds nothing in the workflow."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.workflow.conftest import REPO, snakemake


def test_lint_is_clean(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = snakemake(tmp_path, "--lint", "--configfile", "config/mini.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
