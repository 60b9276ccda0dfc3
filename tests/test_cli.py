"""Every step answers --help, quickly, and a user-fixable error exits 2 with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sslzoo.cli import STEPS, build_parser, main


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_step_has_help_with_its_arguments(step: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([step, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m sslzoo {step}" in out
    assert "--" in out.split("options:")[-1]  # at least one option documented


def test_top_level_help_lists_every_step() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sslzoo", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for step in STEPS:
        assert step in result.stdout


def test_help_does_not_import_torch() -> None:
    code = "import sys; from sslzoo.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_user_error_exits_2_with_message(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.txt"
    code = main(
        [
            "manifest",
            "--dataset",
            "imagenet",
            "--images",
            str(tmp_path),
            "--list",
            str(missing),
            "--split",
            "train",
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("sslzoo manifest: error:") and str(missing) in err


def test_worker_errors_show_the_original_message() -> None:
    from sslzoo.cli import error_message
    from sslzoo.errors import SslzooError

    wrapped = SslzooError(
        "Caught SslzooError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "datasets.py", line 25, in load_rgb\n    raise SslzooError(\n'
        "sslzoo.errors.SslzooError: data/a.jpg: cannot read image (OSError: truncated); replace it\n"
    )
    assert error_message(wrapped) == "data/a.jpg: cannot read image (OSError: truncated); replace it"
    assert error_message(SslzooError("plain: message")) == "plain: message"
