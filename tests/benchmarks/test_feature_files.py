"""Feature files: written atomically, read back layer by layer with the checks kNN and the SVMs rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslzoo.benchmarks.feature_files import feature_layers, label_array, read_layer, save_npz
from sslzoo.errors import SslzooError


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "feature2": rng.normal(size=(4, 3)).astype(np.float32),
        "feature5": rng.normal(size=(4, 2)).astype(np.float32),
        "labels": label_array([0, 2, 1, 2]),
        "classes": np.asarray(["a", "b", "c"], dtype=str),
    }


def test_a_saved_file_reads_back_layer_by_layer(tmp_path: Path) -> None:
    arrays = _arrays()
    path = tmp_path / "nested" / "imagenet_val.npz"
    save_npz(path, arrays)
    assert [p.name for p in path.parent.iterdir()] == ["imagenet_val.npz"]  # no temporary left
    assert feature_layers(path) == ["feature2", "feature5"]
    features, labels, classes = read_layer(path, "feature5", "fix it")
    np.testing.assert_array_equal(features, arrays["feature5"])
    assert labels.dtype == np.int64 and labels.tolist() == [0, 2, 1, 2]
    assert classes == ["a", "b", "c"]


def test_label_arrays_keep_single_and_multi_label_apart() -> None:
    assert label_array([[1, -1], [0, 1]]).dtype == np.int8
    with pytest.raises(SslzooError, match=r"labels must be \[N\] or \[N, C\]"):
        label_array(np.zeros((2, 2, 2)))


def test_bad_files_name_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "missing.npz"
    with pytest.raises(SslzooError, match="missing.npz: feature file not found; run `python -m sslzoo extract-features`"):
        read_layer(missing, "feature5", "fix it")
    arrays = _arrays()
    save_npz(tmp_path / "f.npz", arrays)
    with pytest.raises(SslzooError, match=r"f.npz: no layer 'feature1' \(has .*\); set the layer"):
        read_layer(tmp_path / "f.npz", "feature1", "set the layer")
    save_npz(tmp_path / "nolabels.npz", {k: v for k, v in arrays.items() if k != "labels"})
    with pytest.raises(SslzooError, match="nolabels.npz: no 'labels' array"):
        read_layer(tmp_path / "nolabels.npz", "feature5", "fix it")
    arrays["feature5"][1, 0] = np.nan
    save_npz(tmp_path / "nan.npz", arrays)
    with pytest.raises(SslzooError, match="nan.npz: layer 'feature5' holds NaN"):
        read_layer(tmp_path / "nan.npz", "feature5", "fix it")


def test_the_module_imports_no_torch() -> None:
    code = "import sys, sslzoo.benchmarks.feature_files; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
