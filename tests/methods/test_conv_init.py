"""Every method builds its backbone with the model config's ``backbone.conv_init``; the momentum
methods' target backbone starts as a copy of the online one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sslzoo.config import load_model_config
from sslzoo.methods import METHODS
from sslzoo.models.backbone import ResNetBackbone

REPO = Path(__file__).resolve().parents[2]
SMALL_MLP = {"hidden": 16, "out": 8}
# the smallest config each method builds from (ORL checks that stage1 / stage2 are there)
CONFIGS: dict[str, dict] = {
    "relative_loc": {"method_args": {"hidden": 16}},
    "rotation_pred": {},
    "byol": {"method_args": {"projector": SMALL_MLP, "predictor": SMALL_MLP}},
    "triplet": {"method_args": {"projector": SMALL_MLP, "predictor": SMALL_MLP}, "train": {"batch_size": 16}},
    "orl": {
        "method_args": {"projector": SMALL_MLP, "predictor": SMALL_MLP},
        "stage1": "orl-stage1_resnet18_mini",
        "stage2": {"knn": {}, "correspondence": {}},
    },
    # without the Sobel layer: the stem below takes the 3 colour channels
    "deepcluster": {"method_args": {"num_clusters": 4, "with_sobel": False}},
    "odc": {"method_args": {"num_clusters": 4, "neck": {"hidden": 16, "out": 8}}},
}
# the other methods from their mini configs (views, train and method_args as the zoo runs them)
MINI = {"npid": "npid", "supervised": "supervised", "simclr": "simclr", "mocov1": "mocov1",
        "mocov2": "mocov2", "simsiam": "simsiam", "swav": "swav"}  # fmt: skip
for _method, _stem in MINI.items():
    _cfg = load_model_config(REPO / "config" / "models" / f"{_stem}_resnet18_mini.yaml")
    CONFIGS[_method] = {key: value for key, value in _cfg.items() if key != "backbone"}


def test_every_method_is_covered() -> None:
    assert set(CONFIGS) == set(METHODS)


@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_the_backbone_follows_conv_init(method: str, mode: str) -> None:
    torch.manual_seed(0)
    cfg = {**CONFIGS[method], "backbone": {"depth": 18, "conv_init": mode}}
    model = METHODS[method].from_config(cfg)
    backbone: ResNetBackbone = model.backbone
    assert backbone.conv_init == mode
    # ResNet-18 stem 64 x 3 x 7 x 7: fan_in 147, fan_out 3136 (std 0.117 vs 0.025)
    fan = 3 * 49 if mode == "fan_in" else 64 * 49
    assert backbone.conv1.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan), rel=0.05)
    target = getattr(model, "target_backbone", None)
    if target is not None:
        online, copied = backbone.state_dict(), target.state_dict()
        assert all(torch.equal(online[key], copied[key]) for key in online)
