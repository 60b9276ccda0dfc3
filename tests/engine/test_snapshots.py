"""Snapshots: a listed epoch's checkpoint is kept, survives a kill and a resume, and its
extracted backbone is the weights the run had at that epoch (recorded step by step by the
method itself, independently of the snapshot machinery)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchvision.models import resnet18

from sslzoo.cli import main as cli_main
from sslzoo.engine.snapshots import extract_snapshot
from sslzoo.engine.trainer import LATEST, train
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.run_dir import RunDir
from tests.engine.test_trainer import Killed, assert_same_weights, make_cfg

EPOCHS, BATCH, IMAGES = 3, 4, 16
ITERS_PER_EPOCH = IMAGES // BATCH


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class NoisyImages(Dataset):
    """``(image_i + noise, i)``: 16 px RGB images, the noise standing in for augmentation."""

    def __init__(self) -> None:
        self.images = torch.randn(IMAGES, 3, 16, 16, generator=torch.Generator().manual_seed(7))

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index] + 0.1 * torch.randn(3, 16, 16), index


class TinyResNetMethod(nn.Module):
    """A ResNet-18 (``backbone.*``, torchvision names) whose pooled features regress a fixed map
    of the image means; ``history`` holds a copy of every weight after each optimizer step."""

    def __init__(self, init_seed: int, kill_at_forward: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(init_seed)
        self.backbone = ResNetBackbone(depth=18)
        self.head = nn.Linear(512, 3)
        self.kill_at_forward, self.forwards = kill_at_forward, 0
        self.history: list[dict[str, torch.Tensor]] = []

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.forwards += 1
        if self.forwards == self.kill_at_forward:
            raise Killed
        features = self.backbone(images)[0].mean(dim=(2, 3))  # [B, 512]
        return {"loss": F.mse_loss(self.head(features), images.mean(dim=(2, 3)))}

    def after_step(self, progress: float) -> None:
        self.history.append(copy.deepcopy(self.state_dict()))


def snapshot_cfg(*epochs: int) -> dict:
    cfg = make_cfg(batch_size=BATCH, epochs=EPOCHS)
    cfg["train"]["optimizer"]["lr"] = 0.001  # a ResNet regressing image means: 0.1 diverges
    cfg["snapshots"] = [{"epoch": epoch, "extra_benchmarks": [], "reported": {}} for epoch in epochs]
    return cfg


def backbone_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        key.removeprefix("backbone."): value for key, value in state.items() if key.startswith("backbone.")
    }


def test_a_listed_epoch_is_kept_and_its_backbone_is_the_weights_of_that_epoch(tmp_path: Path) -> None:
    method = TinyResNetMethod(init_seed=0)
    cfg = snapshot_cfg(2)
    train(method, NoisyImages(), cfg, tmp_path / "work", tmp_path / "final.pth", seed=1)
    assert sorted(path.name for path in (tmp_path / "work").glob("epoch_*.pth")) == ["epoch_2.pth"]
    kept = torch.load(tmp_path / "work" / "epoch_2.pth", weights_only=True)
    assert (kept["meta"]["epoch"], kept["meta"]["method"], kept["meta"]["config"]) == (2, "tiny", cfg)

    code = cli_main(
        ["extract-snapshot", "--final", str(tmp_path / "final.pth"), "--work-dir", str(tmp_path / "work")]
        + ["--epoch", "2", "--out", str(tmp_path / "ep2.pth")]
    )
    assert code in (0, None)
    extracted = torch.load(tmp_path / "ep2.pth", weights_only=True)
    resnet18().load_state_dict(extracted, strict=True)  # the backbone contract
    at_epoch_2 = backbone_of(method.history[2 * ITERS_PER_EPOCH - 1])
    assert_same_weights({key: extracted[key] for key in at_epoch_2}, at_epoch_2, exact=True)
    # not the final weights, nor those one step earlier or later
    for step in (2 * ITERS_PER_EPOCH - 2, 2 * ITERS_PER_EPOCH, len(method.history) - 1):
        other = backbone_of(method.history[step])
        assert not torch.equal(extracted["layer4.1.conv2.weight"], other["layer4.1.conv2.weight"]), step


def test_a_run_killed_after_a_listed_epoch_and_resumed_still_has_its_checkpoint(tmp_path: Path) -> None:
    data, cfg = NoisyImages(), snapshot_cfg(1, 2)
    train(TinyResNetMethod(init_seed=0), data, cfg, tmp_path / "a", tmp_path / "a.pth", seed=1)

    killed = TinyResNetMethod(init_seed=0, kill_at_forward=2 * ITERS_PER_EPOCH + 2)  # mid epoch 3
    with pytest.raises(Killed):
        train(killed, data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=1)
    assert torch.load(tmp_path / "b" / LATEST, weights_only=True)["epoch"] == 2
    result = train(TinyResNetMethod(init_seed=9), data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=1)
    assert result["resumed_from_epoch"] == 2
    pairs = [(tmp_path / run / f"epoch_{epoch}.pth" for run in "ab") for epoch in (1, 2)]
    for a, b in [*pairs, (tmp_path / "a.pth", tmp_path / "b.pth")]:
        kept_a = torch.load(a, weights_only=True)["state_dict"]
        assert_same_weights(kept_a, torch.load(b, weights_only=True)["state_dict"], exact=True)


def test_a_run_killed_before_the_resume_state_of_a_listed_epoch_writes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint is written before the epoch's resume state: a kill in between leaves the
    checkpoint and a resume state of the epoch before, so the resumed run redoes the epoch."""
    data, cfg = NoisyImages(), snapshot_cfg(2)
    train(TinyResNetMethod(init_seed=0), data, cfg, tmp_path / "a", tmp_path / "a.pth", seed=1)

    save = RunDir.save

    def killed_at_epoch_2(self: RunDir, state: dict, ctx: object) -> None:
        if state["epoch"] == 2:
            raise Killed
        save(self, state, ctx)

    monkeypatch.setattr(RunDir, "save", killed_at_epoch_2)
    with pytest.raises(Killed):
        train(TinyResNetMethod(init_seed=0), data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=1)
    assert (tmp_path / "b" / "epoch_2.pth").is_file()
    assert torch.load(tmp_path / "b" / LATEST, weights_only=True)["epoch"] == 1
    monkeypatch.setattr(RunDir, "save", save)
    result = train(TinyResNetMethod(init_seed=0), data, cfg, tmp_path / "b", tmp_path / "b.pth", seed=1)
    assert result["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "a" / "epoch_2.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "epoch_2.pth", weights_only=True)["state_dict"]
    assert_same_weights(a, b, exact=True)


def test_resuming_past_a_listed_epoch_never_kept_stops_with_the_fix(tmp_path: Path) -> None:
    data = NoisyImages()
    killed = TinyResNetMethod(init_seed=0, kill_at_forward=2 * ITERS_PER_EPOCH + 1)
    with pytest.raises(Killed):
        train(killed, data, snapshot_cfg(), tmp_path / "w", seed=1)
    # epoch 1 listed after the run passed it: the run resumes (the list does not change the
    # weights) and stops at once, naming the missing file and both fixes
    with pytest.raises(SslzooError) as error:
        train(
            TinyResNetMethod(init_seed=0),
            data,
            snapshot_cfg(1),
            tmp_path / "w",
            seed=1,
            protocol_path="m.yaml",
        )
    message = str(error.value)
    assert str(tmp_path / "w" / "epoch_1.pth") in message and "resuming after epoch 2" in message
    assert "Remove them from snapshots in m.yaml" in message and f"move {tmp_path / 'w'} aside" in message


def test_a_run_with_other_settings_sets_the_kept_checkpoints_aside(tmp_path: Path) -> None:
    data, cfg = NoisyImages(), snapshot_cfg(1)
    cfg["train"]["epochs"] = 1
    train(TinyResNetMethod(init_seed=0), data, cfg, tmp_path / "w", seed=1)
    old = (tmp_path / "w" / "epoch_1.pth").read_bytes()
    cfg["train"]["optimizer"]["lr"] = 0.002
    train(TinyResNetMethod(init_seed=0), data, cfg, tmp_path / "w", seed=1)
    (aside,) = (tmp_path / "w").glob("superseded-*")
    assert (aside / "epoch_1.pth").read_bytes() == old
    new = torch.load(tmp_path / "w" / "epoch_1.pth", weights_only=True)["meta"]["config"]
    assert new["train"]["optimizer"]["lr"] == 0.002


def test_extraction_refuses_a_checkpoint_never_kept_or_of_another_run(tmp_path: Path) -> None:
    cfg = snapshot_cfg(2)
    train(TinyResNetMethod(init_seed=0), NoisyImages(), cfg, tmp_path / "w", tmp_path / "final.pth", seed=1)
    with pytest.raises(SslzooError, match="kept no checkpoint of epoch 1.*Remove epoch 1 from snapshots"):
        extract_snapshot(tmp_path / "final.pth", tmp_path / "w", 1, tmp_path / "ep1.pth")

    (tmp_path / "w" / "epoch_2.pth").rename(tmp_path / "w" / "epoch_1.pth")
    with pytest.raises(SslzooError, match="holds epoch 2, expected 1"):
        extract_snapshot(tmp_path / "final.pth", tmp_path / "w", 1, tmp_path / "ep1.pth")

    kept = torch.load(tmp_path / "w" / "epoch_1.pth", weights_only=True)
    kept["meta"]["epoch"] = 1
    kept["meta"]["config"]["train"]["optimizer"]["lr"] = 0.3
    torch.save(kept, tmp_path / "w" / "epoch_1.pth")
    with pytest.raises(SslzooError, match="written by a run with another training config"):
        extract_snapshot(tmp_path / "final.pth", tmp_path / "w", 1, tmp_path / "ep1.pth")
    kept["meta"]["config"] = {**cfg, "title": "renamed", "reported": {"knn_imagenet": {"k=10": 1.0}}}
    torch.save(kept, tmp_path / "w" / "epoch_1.pth")  # display keys may differ
    extract_snapshot(tmp_path / "final.pth", tmp_path / "w", 1, tmp_path / "ep1.pth")
    assert not any(tmp_path.glob("ep2.pth")) and (tmp_path / "ep1.pth").is_file()
