"""Every step answers --help, quickly, and a user-fixable error exits 2 with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sslzoo.cli import STEPS, build_parser, main, torchrun_command


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


def test_one_process_runs_the_step_here(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.execv", lambda *args: pytest.fail(f"exec'd {args}"))
    out = tmp_path / "random.pth"
    assert (
        main(["--nproc-per-node", "1", "random-backbone", "--depth", "18", "--seed", "0", "--out", str(out)])
        == 0
    )
    assert out.is_file()


def test_several_processes_exec_torchrun(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def fake_execv(path: str, command: list[str]) -> None:
        calls.append((path, command))
        raise SystemExit(0)  # execv does not return

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr("os.execv", fake_execv)
    argv = [
        "--nproc-per-node",
        "3",
        "knn",
        "--train",
        "a.npz",
        "--test",
        "b.npz",
        "--config",
        "k.yaml",
        "--benchmark",
        "knn_imagenet",
        "--model",
        "random",
        "--out",
        "m.json",
    ]
    with pytest.raises(SystemExit):
        main(argv)
    assert calls == [(sys.executable, torchrun_command(3, argv[2:]))]
    assert calls[0][1][1:8] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "3",
        "-m",
        "sslzoo",
    ]
    assert (
        "launching torchrun --standalone --nproc-per-node 3 -m sslzoo knn --train a.npz"
        in capsys.readouterr().err
    )


def test_a_torchrun_worker_never_launches_again(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    monkeypatch.setattr("os.execv", lambda *args: pytest.fail(f"exec'd {args}"))
    out = tmp_path / "random.pth"
    assert (
        main(["--nproc-per-node", "2", "random-backbone", "--depth", "18", "--seed", "0", "--out", str(out)])
        == 0
    )


def test_nproc_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    knn = ["knn", "--train", "a", "--test", "b", "--config", "c", "--benchmark", "knn_imagenet"]
    assert main(["--nproc-per-node", "0", *knn, "--model", "m", "--out", "d"]) == 2
    assert "--nproc-per-node must be >= 1" in capsys.readouterr().err


def test_an_unregistered_benchmark_is_refused_with_the_known_ones(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.json"
    argv = ["knn", "--train", "a", "--test", "b", "--config", "c", "--benchmark", "knn_imagnet"]
    assert main([*argv, "--model", "m", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sslzoo knn: error: --benchmark: 'knn_imagnet' is not a benchmark of sslzoo" in err
    assert "'knn_imagenet'" in err and not out.exists()
