"""Shared fixtures: the mini datasets, generated once per pytest run."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslzoo.data.mini import make_mini_data

MINI_SEED = 0


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make_mini_data`` output with the default sizes (about 10 s)."""
    root = tmp_path_factory.mktemp("mini")
    make_mini_data(root, seed=MINI_SEED)
    return root
