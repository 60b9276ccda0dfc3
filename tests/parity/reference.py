"""Access to the reference implementations of the side environment ``.venv-parity/`` (``make parity-env``).

Nothing of the references is copied into the repository: ``make parity-env`` downloads them from
PyPI (pins in ``tests/parity/reference.txt``, ``requirements.txt``, ``requirements-scripts.txt``)
and the tests use them from there:

- mmselfsup 0.11.0's wheel, unpacked into ``unpacked/``: the VOC07 SVM scripts
  (``mmselfsup/.mim/tools/benchmarks/classification/svm_voc07/tools/*.py``) run as processes of
  their own with their own command lines, and ``mmselfsup/models/utils/knn_classifier.py`` loaded
  from its file (``import mmselfsup`` would need mmcv);
- ``site/``: lightly and torchmetrics, imported in the test process on top of .venv's torch;
- ``scripts/``: the NumPy and ``six`` the SVM scripts' processes run with.

Whatever is missing fails the test that needs it, naming the package and ``make parity-env``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: the side environment (the Makefile's PARITY, exported as SSLZOO_PARITY_ENV by ``make test``)
PARITY_ENV = Path(os.environ.get("SSLZOO_PARITY_ENV", ROOT / ".venv-parity"))
PIN_FILES = ("reference.txt", "requirements.txt", "requirements-scripts.txt")
MMSELFSUP = "mmselfsup==0.11.0"
UNPACKED = PARITY_ENV / "unpacked"
SVM_TOOLS = (
    UNPACKED / "mmselfsup" / ".mim" / "tools" / "benchmarks" / "classification" / "svm_voc07" / "tools"
)
KNN_CLASSIFIER = UNPACKED / "mmselfsup" / "models" / "utils" / "knn_classifier.py"
SITE = PARITY_ENV / "site"
SCRIPTS_SITE = PARITY_ENV / "scripts"
#: numpy seed of the reference SVM processes (tests/parity/run_seeded.py); our sklearn solver's default
REFERENCE_SEED = 100
BUILD = "build it with `make parity-env` (or `make test`, which builds it first)"


def fail_missing(package: str, what: Path | str) -> None:
    """Fail the calling test: the side environment lacks ``package``."""
    pytest.fail(
        f"reference package {package} is missing from the parity environment ({what}); {BUILD}", pytrace=False
    )


def check_environment() -> None:
    """Fail unless ``.venv-parity`` is complete and built from the pins of this checkout."""
    if not (PARITY_ENV / ".complete").is_file():
        fail_missing("environment", f"{PARITY_ENV}/.complete not found")
    for name in PIN_FILES:
        built, wanted = PARITY_ENV / name, HERE / name
        if not built.is_file() or built.read_text() != wanted.read_text():
            pytest.fail(
                f"{PARITY_ENV} was built from another {wanted.name}; rebuild it with `make parity-env`",
                pytrace=False,
            )


def svm_script(name: str) -> Path:
    """Path of one mmselfsup 0.11.0 SVM script (``train_svm_kfold.py`` ...), failing if absent."""
    check_environment()
    path = SVM_TOOLS / name
    if not path.is_file():
        fail_missing(MMSELFSUP, path)
    for module, package in (("numpy", "numpy (requirements-scripts.txt)"), ("six.py", "six")):
        if not (SCRIPTS_SITE / module).exists():
            fail_missing(package, SCRIPTS_SITE / module)
    return path


def load_knn_classifier() -> Any:
    """``knn_classifier`` of mmselfsup 0.11.0 ``mmselfsup/models/utils/knn_classifier.py``, loaded by path."""
    check_environment()
    if not KNN_CLASSIFIER.is_file():
        fail_missing(MMSELFSUP, KNN_CLASSIFIER)
    spec = importlib.util.spec_from_file_location("mmselfsup_0_11_knn_classifier", KNN_CLASSIFIER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.knn_classifier


def import_side(module: str, package: str) -> ModuleType:
    """Import ``module`` from ``.venv-parity/site`` (appended to ``sys.path``: .venv's packages win)."""
    check_environment()
    if not SITE.is_dir():
        fail_missing(package, SITE)
    if str(SITE) not in sys.path:
        sys.path.append(str(SITE))
    try:
        return importlib.import_module(module)
    except ImportError as err:
        fail_missing(package, f"import {module}: {err}")
        raise  # unreachable: pytest.fail raises


def run_script(script: Path, *args: str | os.PathLike[str], seed: int = REFERENCE_SEED) -> str:
    """Run a reference script as ``python SCRIPT ARGS`` with numpy seeded (``run_seeded.py``); its output.

    Fails the test with the script's output when it exits non-zero.
    """
    process = start_script(script, *args, seed=seed)
    return finish_script(process)


def start_script(script: Path, *args: str | os.PathLike[str], seed: int = REFERENCE_SEED) -> subprocess.Popen:
    """:func:`run_script` in the background: the process, for :func:`finish_script`."""
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS_SITE), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, str(HERE / "run_seeded.py"), str(seed), str(script), *map(str, args)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_script(process: subprocess.Popen) -> str:
    """Wait for a :func:`start_script` process; its output, or a failed test with it."""
    output, _ = process.communicate()
    if process.returncode != 0:
        pytest.fail(f"reference run failed ({' '.join(process.args[3:5])}):\n{output[-6000:]}", pytrace=False)
    return output


def reference_targets(targets: np.ndarray) -> np.ndarray:
    """Our VOC targets (1 present, -1 absent, 0 difficult) in the reference's encoding.

    mmselfsup 0.11.0 ``tools/data_converters/create_voc_data_files.py`` writes 1 present,
    0 absent and -1 ignore (difficult), int32.
    """
    return np.select([targets == 1, targets == -1], [1, 0], -1).astype(np.int32)


def lowshot_targets(targets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One low-shot sample in the layout of ``create_voc_low_shot_challenge_samples.py``.

    Args:
        targets: our ``[N, C]`` trainval targets.
        rows: ``[C, m]`` rows drawn for each class (:func:`sslzoo.benchmarks.svm_protocol.sample_lowshot`).

    Returns:
        ``[N, C]`` int32: -1 everywhere (not drawn) but 1 at the drawn present images and 0 at the
        drawn absent ones of each class.
    """
    out = -np.ones(targets.shape, dtype=np.int32)
    for c, class_rows in enumerate(rows):
        out[class_rows, c] = np.where(targets[class_rows, c] == 1, 1, 0)
    return out


class Recorder:
    """Numbers the parity tests compare, kept for ``tests/parity/report.py`` (docs/PARITY.md).

    With ``SSLZOO_PARITY_RECORD=<file>`` every :meth:`add` is appended to that JSON-lines file;
    without it the numbers are only printed (``pytest -s``).
    """

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None

    def add(self, table: str, **row: Any) -> None:
        """One row of ``table`` (e.g. our number and the reference's side by side)."""
        import json

        row = {key: _plain(value) for key, value in row.items()}
        print(f"[parity] {table}: {row}")
        if self.path is not None:
            with self.path.open("a") as handle:
                handle.write(json.dumps({"table": table, **row}) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
