"""Backbone extraction from every checkpoint layout, and the MMSelfSup / detectron2 conversions."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch
import torchvision

from sslzoo.checkpoints import (
    extract_backbone,
    from_detectron2,
    random_backbone,
    save_detectron2,
    to_detectron2,
    to_mmselfsup,
)
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.steps import extract_backbone as extract_backbone_step


@pytest.fixture(scope="module")
def backbone() -> ResNetBackbone:
    torch.manual_seed(1)
    model = ResNetBackbone(depth=18)
    # non-default BN statistics so that a dropped or misplaced buffer shows up
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.num_batches_tracked.fill_(7)
    return model


def _assert_same_backbone(written: dict[str, torch.Tensor], model: ResNetBackbone) -> None:
    resnet = torchvision.models.resnet18()
    resnet.load_state_dict(written, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(written[key], value), key
    assert torch.count_nonzero(written["fc.weight"]) == 0
    assert torch.count_nonzero(written["fc.bias"]) == 0
    assert written["fc.weight"].shape == (1000, 512)


def _layouts(model: ResNetBackbone) -> dict[str, dict]:
    backbone_sd = model.state_dict()
    head = {"head.fc.weight": torch.randn(4, 512), "head.fc.bias": torch.randn(4)}
    full = {**{f"backbone.{k}": v for k, v in backbone_sd.items()}, **head}
    plain_torchvision = {**backbone_sd, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}
    return {
        "ours": {"state_dict": full, "meta": {"method": "rotation_pred", "epoch": 70, "git_rev": "abc"}},
        "mmselfsup_full": {"meta": {"epoch": 70}, "state_dict": full},
        "openselfsup_model_key": {"model": full},
        "ddp_prefixed": {"state_dict": {f"module.{k}": v for k, v in full.items()}},
        "backbone_only": {"state_dict": dict(backbone_sd)},
        "plain_torchvision": plain_torchvision,
    }


@pytest.mark.parametrize(
    "layout",
    ["ours", "mmselfsup_full", "openselfsup_model_key", "ddp_prefixed", "backbone_only", "plain_torchvision"],
)
def test_extract_backbone_every_layout_loads_strictly(
    tmp_path: Path, backbone: ResNetBackbone, layout: str
) -> None:
    checkpoint = tmp_path / "in.pth"
    torch.save(_layouts(backbone)[layout], checkpoint)
    out = tmp_path / "backbones" / "model.pth"
    extract_backbone(checkpoint, out)
    written = torch.load(out, map_location="cpu", weights_only=True)
    _assert_same_backbone(written, backbone)


def test_full_checkpoint_without_backbone_names_prefixes(tmp_path: Path, backbone: ResNetBackbone) -> None:
    sd = {f"encoder_q.{k}": v for k, v in backbone.state_dict().items()}
    sd["neck.fc.weight"] = torch.zeros(2, 2)
    checkpoint = tmp_path / "moco.pth"
    torch.save({"state_dict": sd}, checkpoint)
    with pytest.raises(SslzooError) as err:
        extract_backbone(checkpoint, tmp_path / "out.pth")
    message = str(err.value)
    assert "moco.pth" in message
    assert "'encoder_q.'" in message and "'neck.'" in message  # what was found
    assert "backbone." in message and "conv1.*" in message  # what was expected
    assert not (tmp_path / "out.pth").exists()


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path, backbone: ResNetBackbone) -> None:
    sd = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    del sd["backbone.layer2.0.bn1.weight"]
    sd["backbone.layer2.0.extra.weight"] = torch.zeros(1)
    checkpoint = tmp_path / "broken.pth"
    torch.save({"state_dict": sd}, checkpoint)
    with pytest.raises(
        SslzooError,
        match=r"missing keys \['layer2.0.bn1.weight'\].*unexpected keys \['layer2.0.extra.weight'\]",
    ):
        extract_backbone(checkpoint, tmp_path / "out.pth")


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SslzooError, match="bad.pth"):
        extract_backbone(bad, tmp_path / "out.pth")
    with pytest.raises(SslzooError, match="not found"):
        extract_backbone(tmp_path / "absent.pth", tmp_path / "out.pth")


class _RunsCodeWhenUnpickled:
    """An object whose unpickling would call ``exec``: only a full pickle load runs it."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('ran').touch()",))


def test_checkpoints_are_loaded_weights_only(tmp_path: Path, backbone: ResNetBackbone, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "evil.pth"
    torch.save({"state_dict": backbone.state_dict(), "hook": _RunsCodeWhenUnpickled()}, checkpoint)
    with pytest.raises(
        SslzooError, match=r"(?s)evil.pth: cannot be read as a tensors-only checkpoint.*weights_only=True"
    ):
        extract_backbone(checkpoint, tmp_path / "out.pth")
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out.pth").exists()


def test_random_backbone_is_seeded_and_strict(tmp_path: Path) -> None:
    a = random_backbone(18, 0, tmp_path / "a.pth")
    b = random_backbone(18, 0, tmp_path / "b.pth")
    c = random_backbone(18, 1, tmp_path / "c.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    loaded = torch.load(tmp_path / "a.pth", map_location="cpu", weights_only=True)
    torchvision.models.resnet18().load_state_dict(loaded, strict=True)
    assert torch.equal(loaded["layer4.1.conv2.weight"], a["layer4.1.conv2.weight"])


def test_to_mmselfsup_round_trips_through_extraction(tmp_path: Path, backbone: ResNetBackbone) -> None:
    sd = backbone.state_dict()
    converted = to_mmselfsup({**sd, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    assert set(converted["state_dict"]) == {f"backbone.{k}" for k in sd}
    torch.save(converted, tmp_path / "mm.pth")
    out = tmp_path / "back.pth"
    extract_backbone(tmp_path / "mm.pth", out)
    _assert_same_backbone(torch.load(out, map_location="cpu", weights_only=True), backbone)


def test_detectron2_documented_key_mapping(backbone: ResNetBackbone) -> None:
    resnet50 = torchvision.models.resnet50().state_dict()
    model = to_detectron2(resnet50)["model"]
    expected_pairs = {
        "layer1.0.downsample.1.weight": "res2.0.shortcut.norm.weight",
        "layer1.0.downsample.0.weight": "res2.0.shortcut.weight",
        "conv1.weight": "stem.conv1.weight",
        "bn1.running_mean": "stem.conv1.norm.running_mean",
        "layer4.2.bn3.bias": "res5.2.conv3.norm.bias",
        "layer3.5.conv2.weight": "res4.5.conv2.weight",
    }
    for old, new in expected_pairs.items():
        assert new in model, new
        assert (model[new] == resnet50[old].numpy()).all()
    assert not any(key.startswith(("fc.", "stem.fc")) for key in model)
    assert len(model) == len(resnet50) - 2


def test_detectron2_pickle_round_trip(tmp_path: Path, backbone: ResNetBackbone) -> None:
    sd = backbone.state_dict()
    path = tmp_path / "d2.pkl"
    save_detectron2(sd, path)
    with path.open("rb") as handle:
        loaded = pickle.load(handle)
    assert loaded["matching_heuristics"] is True
    assert isinstance(loaded["__author__"], str)
    assert loaded["model"]["res3.0.shortcut.norm.running_var"].dtype.kind == "f"
    back = from_detectron2(loaded)
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_extract_backbone_step_writes_each_format(tmp_path: Path, backbone: ResNetBackbone) -> None:
    checkpoint = tmp_path / "final.pth"
    torch.save(_layouts(backbone)["ours"], checkpoint)
    for fmt, name in (("torchvision", "tv.pth"), ("mmselfsup", "mm.pth"), ("detectron2", "d2.pkl")):
        parser = argparse.ArgumentParser()
        extract_backbone_step.add_arguments(parser)
        extract_backbone_step.main(
            parser.parse_args(
                ["--checkpoint", str(checkpoint), "--out", str(tmp_path / name), "--format", fmt]
            )
        )
    _assert_same_backbone(torch.load(tmp_path / "tv.pth", weights_only=True), backbone)
    assert (
        "backbone.layer1.0.conv1.weight" in torch.load(tmp_path / "mm.pth", weights_only=True)["state_dict"]
    )
    with (tmp_path / "d2.pkl").open("rb") as handle:
        assert "res5.1.conv2.weight" in pickle.load(handle)["model"]
