"""The training loop: logs and checkpoints, bit-identical resume after a kill, gradient
accumulation, and DDP over two gloo processes against one process on the joint batch."""

from __future__ import annotations

import copy
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from sslzoo.engine.trainer import LATEST, TRAIN_LOG, train
from sslzoo.errors import SslzooError
from sslzoo.run_record import differs_from_protocol
from sslzoo.runtime.dist import cleanup, init_distributed


class Killed(Exception):
    """Stands in for a job killed mid-epoch."""


class NoisyVectors(Dataset):
    """``(x_i + noise, i)``; the noise is the random augmentation (off for exact comparisons)."""

    def __init__(self, size: int, noise: float) -> None:
        self.x = torch.randn(size, 4, generator=torch.Generator().manual_seed(123))
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index] + self.noise * torch.randn(4), index


class TinyMethod(nn.Module):
    """Regress a fixed map of the input; optional BatchNorm and dropout (both use state/RNG)."""

    def __init__(
        self, init_seed: int, bn: bool, dropout: float = 0.0, kill_at_forward: int | None = None
    ) -> None:
        super().__init__()
        torch.manual_seed(init_seed)
        self.backbone = nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8) if bn else nn.Identity(), nn.Tanh(), nn.Dropout(dropout)
        )
        self.head = nn.Linear(8, 2)
        self.target = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 1.5], [-1.0, 1.0]])
        self.kill_at_forward, self.forwards, self.progress = kill_at_forward, 0, []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.forwards += 1
        if self.forwards == self.kill_at_forward:
            raise Killed
        prediction = self.head(self.backbone(x))
        loss = F.mse_loss(prediction, x @ self.target)
        return {"loss": loss, "abs_error": (prediction - x @ self.target).abs().mean().detach()}

    def after_step(self, progress: float) -> None:
        self.progress.append(progress)


def make_cfg(batch_size: int, epochs: int = 2, accumulate: int = 1, workers: int = 0) -> dict:
    return {
        "method": "tiny",
        "title": "Tiny",
        "dataset": "vectors",
        "gpus": 1,
        "backbone": {"depth": 18, "sync_bn": True, "zero_init_residual": False},
        "views": {},
        "method_args": {},
        "reported": {},
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "accumulate": accumulate,
            "workers": workers,
            "amp": False,
            "channels_last": False,
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": False},
            "schedule": {
                "name": "step",
                "steps": [1],
                "gamma": 0.5,
                "warmup_epochs": 0.5,
                "warmup_ratio": 0.1,
                "by_epoch": True,
                "min_lr": 0.0,
            },
        },
    }


def read_log(work_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (work_dir / TRAIN_LOG).read_text().splitlines()]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], exact: bool) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_two_epochs_write_log_latest_and_final(tmp_path: Path) -> None:
    method = TinyMethod(init_seed=0, bn=True)
    cfg = make_cfg(batch_size=8)
    result = train(
        method, NoisyVectors(70, noise=0.1), cfg, tmp_path / "work", tmp_path / "final.pth", seed=3
    )
    run = result.pop("run")
    assert result == {"epoch": 2, "iterations": 16, "iters_per_epoch": 8, "resumed_from_epoch": 0}
    log = read_log(tmp_path / "work")
    assert [r["iter"] for r in log] == list(range(1, 17))
    assert [r["epoch"] for r in log] == [1] * 8 + [2] * 8
    assert {"loss", "lr", "time", "abs_error"} <= log[0].keys()
    assert log[0]["lr"] == pytest.approx(0.01) and log[4]["lr"] == pytest.approx(0.1)
    assert log[8]["lr"] == pytest.approx(0.05)
    assert sum(r["loss"] for r in log[-4:]) < sum(r["loss"] for r in log[:4]) / 2
    assert method.progress == pytest.approx([i / 16 for i in range(1, 17)])
    final = torch.load(tmp_path / "final.pth", map_location="cpu", weights_only=True)
    assert set(final) == {"state_dict", "meta"}
    assert (
        final["meta"]["method"] == "tiny" and final["meta"]["epoch"] == 2 and final["meta"]["config"] == cfg
    )
    assert isinstance(final["meta"]["git_rev"], str)
    # the run record: one process of batch 8 without accumulation, as the protocol (gpus 1)
    assert final["meta"]["run"] == run
    assert (run["world_size"], run["per_process_batch"], run["accumulate"], run["total_batch"]) == (
        1,
        8,
        1,
        8,
    )
    assert (run["seed"], run["torch"], run["cuda"]) == (3, torch.__version__, torch.version.cuda)
    assert run["protocol"] == {
        "config": None,
        "gpus": cfg["gpus"],
        "per_process_batch": 8,
        "accumulate": 1,
        "total_batch": cfg["gpus"] * 8,
    }
    assert_same_weights(final["state_dict"], method.state_dict(), exact=True)
    latest = torch.load(tmp_path / "work" / LATEST, map_location="cpu", weights_only=True)
    assert {"state_dict", "optimizer", "epoch", "iteration"} <= latest.keys()
    assert (latest["epoch"], latest["iteration"]) == (2, 16)


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    cfg = make_cfg(batch_size=8, workers=1)
    data = NoisyVectors(70, noise=0.1)
    reference = TinyMethod(init_seed=0, bn=True, dropout=0.2)
    train(reference, data, cfg, tmp_path / "a", tmp_path / "a.pth", seed=5)

    killed = TinyMethod(init_seed=0, bn=True, dropout=0.2, kill_at_forward=8 + 3)  # mid epoch 2
    with pytest.raises(Killed):
        train(killed, data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=5)
    assert not (tmp_path / "b.pth").exists()
    assert torch.load(tmp_path / "b" / LATEST, weights_only=True)["epoch"] == 1
    assert len(read_log(tmp_path / "b")) == 10

    resumed = TinyMethod(init_seed=99, bn=True, dropout=0.2)  # other init: the checkpoint must win
    result = train(resumed, data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=5)
    assert result["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "a.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pth", weights_only=True)["state_dict"]
    assert_same_weights(a, b, exact=True)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in read_log(tmp_path / "a")]
    assert [{k: v for k, v in r.items() if k != "time"} for r in read_log(tmp_path / "b")] == strip


def test_changed_settings_set_the_old_run_aside_and_start_over(tmp_path: Path, capsys) -> None:
    data = NoisyVectors(40, noise=0.1)
    cfg = make_cfg(batch_size=8, epochs=1)
    train(TinyMethod(init_seed=0, bn=True), data, cfg, tmp_path / "w", seed=5)
    old_latest = (tmp_path / "w" / LATEST).read_bytes()

    other = make_cfg(batch_size=8, epochs=1)
    other["train"]["optimizer"]["lr"] = 0.2
    result = train(TinyMethod(init_seed=0, bn=True), data, other, tmp_path / "w", seed=5)
    assert result["resumed_from_epoch"] == 0
    assert "train.optimizer.lr" in capsys.readouterr().err
    (aside,) = (tmp_path / "w").glob("superseded-*")
    assert (aside / LATEST).read_bytes() == old_latest
    assert [r["iter"] for r in read_log(tmp_path / "w")] == list(range(1, 6))

    fresh = TinyMethod(init_seed=0, bn=True)
    train(fresh, data, other, tmp_path / "fresh", seed=5)
    now = torch.load(tmp_path / "w" / LATEST, weights_only=True)["state_dict"]
    assert_same_weights(now, fresh.state_dict(), exact=True)


def test_new_input_files_set_the_old_run_aside(tmp_path: Path, capsys) -> None:
    data = NoisyVectors(40, noise=0.1)
    cfg = make_cfg(batch_size=8, epochs=1)
    train(TinyMethod(init_seed=0, bn=True), data, cfg, tmp_path / "w", seed=5, inputs={"manifest": "aaa"})
    same = train(
        TinyMethod(init_seed=0, bn=True), data, cfg, tmp_path / "w", seed=5, inputs={"manifest": "aaa"}
    )
    assert same["resumed_from_epoch"] == 1 and not list((tmp_path / "w").glob("superseded-*"))

    result = train(
        TinyMethod(init_seed=0, bn=True), data, cfg, tmp_path / "w", seed=5, inputs={"manifest": "bbb"}
    )
    assert result["resumed_from_epoch"] == 0
    assert "input manifest changed" in capsys.readouterr().err
    assert len(list((tmp_path / "w").glob("superseded-*"))) == 1


def test_randomness_depends_on_the_seed_not_on_the_global_rng_history(tmp_path: Path) -> None:
    data = NoisyVectors(40, noise=0.3)
    cfg = make_cfg(batch_size=8, workers=1)
    runs = {}
    for name, seed, draws in (("a", 5, 0), ("b", 5, 1000), ("c", 6, 0)):
        method = TinyMethod(init_seed=0, bn=True, dropout=0.2)
        torch.rand(draws)  # whatever ran before training must not matter
        train(method, data, cfg, tmp_path / name, seed=seed)
        runs[name] = method.state_dict()
    assert_same_weights(runs["a"], runs["b"], exact=True)
    assert not torch.equal(runs["a"]["head.weight"], runs["c"]["head.weight"])


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path: Path) -> None:
    data = NoisyVectors(64, noise=0.0)
    whole = TinyMethod(init_seed=1, bn=False)
    halves = TinyMethod(init_seed=1, bn=False)
    train(whole, data, make_cfg(batch_size=16), tmp_path / "whole", seed=2)
    train(halves, data, make_cfg(batch_size=8, accumulate=2), tmp_path / "halves", seed=2)
    assert_same_weights(whole.state_dict(), halves.state_dict(), exact=False)
    log_whole, log_halves = read_log(tmp_path / "whole"), read_log(tmp_path / "halves")
    assert len(log_whole) == len(log_halves) == 8
    assert [r["loss"] for r in log_halves] == pytest.approx([r["loss"] for r in log_whole], rel=1e-5)
    untouched = TinyMethod(init_seed=1, bn=False)
    assert not torch.allclose(untouched.head.weight, halves.head.weight)


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    ctx = init_distributed(use_cuda=False)
    try:
        method = TinyMethod(init_seed=7, bn=False)
        train(
            method,
            NoisyVectors(16, noise=0.0),
            make_cfg(batch_size=8, epochs=1),
            Path(out_dir) / "work",
            Path(out_dir) / "final.pth",
            seed=1,
            ctx=ctx,
        )
    finally:
        cleanup()


def test_ddp_two_gloo_processes_equal_one_process_on_the_joint_batch(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp_final = torch.load(tmp_path / "ddp" / "final.pth", weights_only=True)
    ddp = ddp_final["state_dict"]

    single = TinyMethod(init_seed=7, bn=False)
    initial = copy.deepcopy(single.state_dict())
    one = train(
        single, NoisyVectors(16, noise=0.0), make_cfg(batch_size=16, epochs=1), tmp_path / "one", seed=1
    )
    # the record says what ran: 2 processes x 8 against the protocol's 1 x 8; the same total as 1 x 16
    ddp_run = ddp_final["meta"]["run"]
    assert (ddp_run["world_size"], ddp_run["per_process_batch"]) == (2, 8)
    assert ddp_run["total_batch"] == one["run"]["total_batch"] == 16 and one["run"]["world_size"] == 1
    assert ddp_run["protocol"]["total_batch"] == 8 and differs_from_protocol(ddp_run)
    assert len(read_log(tmp_path / "ddp" / "work")) == len(read_log(tmp_path / "one")) == 1
    assert_same_weights(ddp, single.state_dict(), exact=False)
    assert not torch.allclose(initial["head.weight"], ddp["head.weight"])


class DatasetHookMethod(TinyMethod):
    """A method that builds its own dataset (the ``build_dataset`` hook of the pretrain step)."""

    calls: list[tuple[object, object]] = []

    @classmethod
    def from_config(cls, cfg: dict) -> DatasetHookMethod:
        return cls(init_seed=0, bn=False)

    @classmethod
    def build_dataset(cls, cfg: dict, manifest_path: object, correspondence: object = None) -> Dataset:
        cls.calls.append((manifest_path, correspondence))
        return NoisyVectors(16, noise=0.0)


def test_pretrain_from_files_uses_the_method_dataset_hook(tmp_path: Path, monkeypatch) -> None:
    import yaml

    import sslzoo.methods
    from sslzoo.engine.trainer import pretrain_from_files
    from sslzoo.errors import SslzooError

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(make_cfg(batch_size=4, epochs=1, accumulate=2)))
    monkeypatch.setitem(sslzoo.methods.METHODS, "tiny", DatasetHookMethod)
    monkeypatch.setattr(DatasetHookMethod, "calls", [])
    monkeypatch.chdir(tmp_path)
    Path("m.json").write_text("{}")  # the hook reads neither; their digests go into the resume state
    Path("c.json").write_text("{}")
    result = pretrain_from_files(
        config,
        "m.json",
        tmp_path / "work",
        tmp_path / "final.pth",
        correspondence="c.json",
        train_log_out=tmp_path / "out" / "train_log.jsonl",
        run_out=tmp_path / "out" / "run.json",
    )
    assert DatasetHookMethod.calls == [("m.json", "c.json")]
    # run.json is the final checkpoint's run record: 1 process x 4 x accum 2, protocol 1 x 4 x 2
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run == torch.load(tmp_path / "final.pth", weights_only=True)["meta"]["run"] == result["run"]
    assert (run["world_size"], run["per_process_batch"], run["accumulate"], run["total_batch"]) == (
        1,
        4,
        2,
        8,
    )
    assert run["protocol"] == {
        "config": str(config),
        "gpus": 1,
        "per_process_batch": 4,
        "accumulate": 2,
        "total_batch": 8,
    }
    assert not differs_from_protocol(run)
    copied = (tmp_path / "out" / "train_log.jsonl").read_text()
    assert copied == (tmp_path / "work" / "train_log.jsonl").read_text()
    assert [json.loads(line)["iter"] for line in copied.splitlines()] == [1, 2]
    inputs = torch.load(tmp_path / "work" / LATEST, weights_only=True)["inputs"]
    assert set(inputs) == {"manifest", "correspondence"}
    assert result["iterations"] == 2 and (tmp_path / "final.pth").is_file()
    # a method without the hook reads the manifest only: a correspondence file is a wiring mistake
    monkeypatch.setitem(sslzoo.methods.METHODS, "tiny", TinyMethod)
    with pytest.raises(SslzooError, match="--correspondence c.json: method 'tiny'"):
        pretrain_from_files(
            config, "m.json", tmp_path / "work2", tmp_path / "final2.pth", correspondence="c.json"
        )


class LabelledVectors(NoisyVectors):
    """``(x_i, 10 + i % 3)``: labels that are not the indices."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index], 10 + index % 3


class SeesLabelsAndIndices(TinyMethod):
    """Records the ``labels`` and ``indices`` it is given (its ``batch_fields``)."""

    batch_fields = ("labels", "indices")

    def __init__(self) -> None:
        super().__init__(0, bn=False)
        self.seen: list[tuple[list[int], list[int]]] = []

    def forward(
        self, x: torch.Tensor, *, labels: torch.Tensor, indices: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.seen.append((labels.tolist(), indices.tolist()))
        return super().forward(x)


def test_batch_fields_give_each_sample_its_label_and_index(tmp_path: Path) -> None:
    method = SeesLabelsAndIndices()
    train(method, LabelledVectors(12, 0.0), make_cfg(batch_size=4, epochs=1), tmp_path / "work")
    labels = [label for batch_labels, _ in method.seen for label in batch_labels]
    indices = [index for _, batch_indices in method.seen for index in batch_indices]
    assert sorted(indices) == list(range(12))  # one epoch: every sample once, shuffled
    assert indices != list(range(12))
    assert labels == [10 + index % 3 for index in indices]


def test_methods_without_batch_fields_get_the_views_only(tmp_path: Path) -> None:
    method = TinyMethod(0, bn=False)  # forward(x) takes no keyword: a field passed would fail
    train(method, LabelledVectors(8, 0.0), make_cfg(batch_size=4, epochs=1), tmp_path / "work")
    assert method.forwards == 2


def test_an_unknown_batch_field_is_refused(tmp_path: Path) -> None:
    method = SeesLabelsAndIndices()
    method.batch_fields = ("labels", "boxes")
    with pytest.raises(SslzooError, match=r"batch_fields: \['boxes'\]"):
        train(method, LabelledVectors(8, 0.0), make_cfg(batch_size=4, epochs=1), tmp_path / "work")


class DropsHeadGradient(TinyMethod):
    """Records at each ``before_step`` the iteration, whether the head has its gradient and the
    weights; drops the head's gradient at iteration 0, as SwAV's frozen prototypes."""

    def __init__(self) -> None:
        super().__init__(0, bn=False)
        self.calls: list[tuple[int, bool, torch.Tensor, torch.Tensor]] = []

    def before_step(self, iteration: int) -> None:
        weights = (self.head.weight.detach().clone(), self.backbone[0].weight.detach().clone())
        self.calls.append((iteration, self.head.weight.grad is not None, *weights))
        if iteration == 0:
            self.head.weight.grad = None


def test_before_step_comes_between_the_backward_and_the_optimizer_step(tmp_path: Path) -> None:
    method = DropsHeadGradient()
    head, backbone = method.head.weight.detach().clone(), method.backbone[0].weight.detach().clone()
    train(method, NoisyVectors(8, 0.0), make_cfg(batch_size=2, epochs=1, accumulate=2), tmp_path / "work")
    assert [call[:2] for call in method.calls] == [(0, True), (1, True)]  # once a step, after its backward
    assert method.forwards == 4 and method.progress == [0.5, 1.0]
    (_, _, head0, backbone0), (_, _, head1, backbone1) = method.calls
    assert torch.equal(head0, head) and torch.equal(backbone0, backbone)  # before the first step
    assert torch.equal(head1, head)  # step 0 skipped the head (no gradient: no decay, no momentum)
    assert not torch.equal(backbone1, backbone)  # but moved the rest
    assert not torch.equal(method.head.weight, head)  # step 1 moved the head


class PreparesEpochs(TinyMethod):
    """A ``before_epoch`` method: records what the trainer gives it, returns a fixed order."""

    batch_fields = ("indices",)

    def __init__(self, order: list[int] | None) -> None:
        super().__init__(0, bn=True)
        self.order = order
        self.calls: list[tuple[int, int, list[list[float]], bool]] = []
        self.seen: list[list[int]] = []

    def before_epoch(self, epoch: int, extract, seed: int) -> list[int] | None:
        modes = []

        def features(x: torch.Tensor) -> torch.Tensor:
            modes.append(self.training)
            return x[:, :2] * 2.0

        extracted = extract(features)
        self.calls.append((epoch, seed, extracted.tolist(), all(not m for m in modes) and bool(modes)))
        return self.order

    def forward(self, x: torch.Tensor, *, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append(indices.tolist())
        return super().forward(x)


def test_before_epoch_gets_the_features_of_every_sample_and_its_order_replaces_the_shuffle(
    tmp_path: Path,
) -> None:
    from sslzoo.runtime.seeding import derived_seed

    order = [3, 3, 0, 11, 5, 5, 5, 1, 2, 4, 6, 7]
    method = PreparesEpochs(order)
    clean = NoisyVectors(12, noise=0.0)
    train(
        method,
        NoisyVectors(12, noise=0.1),
        make_cfg(batch_size=4),
        tmp_path / "w",
        seed=4,
        extract_dataset=clean,
    )
    expected = (clean.x[:, :2] * 2.0).tolist()  # in dataset order, extracted in eval mode
    assert method.calls == [(0, derived_seed(4, 0), expected, True), (1, derived_seed(4, 1), expected, True)]
    assert method.training  # back in training mode
    assert method.seen == [order[:4], order[4:8], order[8:]] * 2


def test_before_epoch_without_an_order_keeps_the_shuffle(tmp_path: Path) -> None:
    method = PreparesEpochs(None)
    data = NoisyVectors(12, noise=0.0)
    train(method, data, make_cfg(batch_size=4, epochs=1), tmp_path / "w", seed=4, extract_dataset=data)
    shuffled = SeesLabelsAndIndices()
    train(shuffled, LabelledVectors(12, 0.0), make_cfg(batch_size=4, epochs=1), tmp_path / "s", seed=4)
    assert method.seen == [indices for _, indices in shuffled.seen]


def test_before_epoch_needs_an_extraction_dataset(tmp_path: Path) -> None:
    with pytest.raises(SslzooError, match="extract_dataset="):
        train(PreparesEpochs(None), NoisyVectors(8, 0.0), make_cfg(batch_size=4, epochs=1), tmp_path / "w")
