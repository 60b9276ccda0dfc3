"""The side environment: complete and built from this checkout's pins, and a missing piece fails
the parity tests with the package and the command that builds it (never a silent skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.parity import reference


def test_the_side_environment_holds_every_reference() -> None:
    reference.check_environment()
    for script in ("train_svm_kfold.py", "test_svm.py", "train_svm_low_shot.py", "test_svm_low_shot.py",
                   "aggregate_low_shot_svm_stats.py", "svm_helper.py"):  # fmt: skip
        assert reference.svm_script(script).is_file()
    assert callable(reference.load_knn_classifier())
    for module, package in (("lightly.loss", "lightly"), ("torchmetrics.classification", "torchmetrics")):
        assert reference.import_side(module, package) is not None
    wheel = reference.UNPACKED / "mmselfsup-0.11.0.dist-info"
    assert wheel.is_dir(), f"{reference.UNPACKED} holds another mmselfsup than 0.11.0"


def test_a_missing_package_fails_with_its_name_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "venv-parity"
    empty.mkdir()
    monkeypatch.setattr(reference, "PARITY_ENV", empty)
    with pytest.raises(pytest.fail.Exception, match=r"environment is missing .*`make parity-env`"):
        reference.check_environment()
    (empty / ".complete").touch()
    for name in reference.PIN_FILES:
        (empty / name).write_text((reference.HERE / name).read_text())
    reference.check_environment()  # complete, same pins
    monkeypatch.setattr(reference, "SVM_TOOLS", empty / "unpacked" / "tools")
    with pytest.raises(pytest.fail.Exception, match=r"mmselfsup==0\.11\.0 is missing .*`make parity-env`"):
        reference.svm_script("train_svm_kfold.py")
    monkeypatch.setattr(reference, "KNN_CLASSIFIER", empty / "knn_classifier.py")
    with pytest.raises(pytest.fail.Exception, match=r"mmselfsup==0\.11\.0 is missing"):
        reference.load_knn_classifier()
    monkeypatch.setattr(reference, "SITE", empty / "site")
    with pytest.raises(pytest.fail.Exception, match=r"lightly==1\.6\.0 is missing .*`make parity-env`"):
        reference.import_side("lightly_not_installed_here", "lightly==1.6.0")
    (empty / "requirements.txt").write_text("lightly==0.0\n")
    with pytest.raises(
        pytest.fail.Exception, match=r"built from another requirements\.txt.*`make parity-env`"
    ):
        reference.check_environment()
