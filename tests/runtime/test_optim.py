"""LARS against a manual computation (You et al. 2017 / mmselfsup 0.x), BN/bias exclusion and
parameter groups."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from sslzoo.config import load_model_config
from sslzoo.errors import SslzooError
from sslzoo.methods import build_method
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.optim import LARS, build_optimizer, build_param_groups, lars_excluded_parameters

MODELS = Path(__file__).resolve().parents[2] / "config" / "models"
# The reference's LARS paramwise_options, written out: mmselfsup 0.x
# configs/selfsup/byol/byol_resnet50_8xb32-accum16-coslr-200e_in1k.py, wanggrun/triplet
# configs/selfsup/triplet/r50_bs4096_accumulate4_ep1000_fp16_triplet_gpu3090.py
REFERENCE_PARAMWISE = {
    "(bn|gn)(\\d+)?.(weight|bias)": {"weight_decay": 0.0, "lars_exclude": True},
    "bias": {"weight_decay": 0.0, "lars_exclude": True},
}


def reference_excluded(names: list[str]) -> set[str]:
    """The names that mmselfsup's DefaultOptimizerConstructor gives lars_exclude (re.search)."""
    return {
        name
        for name in names
        if any(
            re.search(regexp, name) and options["lars_exclude"]
            for regexp, options in REFERENCE_PARAMWISE.items()
        )
    }


def make_cfg(name: str = "lars", exclude: bool = True, **opt: float) -> dict:
    optimizer = {
        "name": name,
        "lr": 0.5,
        "momentum": 0.9,
        "weight_decay": 0.01,
        "eta": 0.001,
        "exclude_bn_bias": exclude,
        **opt,
    }
    return {"method": "tiny", "train": {"optimizer": optimizer}}


class LinearBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)


def set_grads(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    grads = {}
    for name, param in model.named_parameters():
        param.grad = torch.randn(param.shape, generator=generator)
        grads[name] = param.grad.clone()
    return grads


def test_two_lars_steps_match_the_manual_update_with_excluded_bn_and_bias() -> None:
    model = LinearBN()
    lr, momentum, wd, eta, eps = 0.5, 0.9, 0.01, 0.001, 1e-8
    optimizer = build_optimizer(model, make_cfg())
    assert isinstance(optimizer, LARS)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers: dict[str, torch.Tensor] = {}
    for step in range(2):
        grads = set_grads(model, seed=step)
        optimizer.step()
        for name, w in weights.items():
            g = grads[name]
            if name == "linear.weight":  # adapted, with weight decay
                trust = eta * w.norm() / (g.norm() + wd * w.norm() + eps)
                update = (g + wd * w) * lr * trust
            else:  # linear.bias, bn.weight, bn.bias: no adaptation, no weight decay
                update = g * lr
            buffers[name] = update if step == 0 else momentum * buffers[name] + update
            weights[name] = w - buffers[name]
        for name, param in model.named_parameters():
            torch.testing.assert_close(param.detach(), weights[name], rtol=1e-6, atol=1e-7, msg=name)


def test_without_exclusion_every_parameter_is_adapted_and_decayed() -> None:
    model = LinearBN()
    optimizer = build_optimizer(model, make_cfg(exclude=False, momentum=0.0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = set_grads(model, seed=3)
    optimizer.step()
    for name, param in model.named_parameters():
        w, g = before[name], grads[name]
        trust = 0.001 * w.norm() / (g.norm() + 0.01 * w.norm() + 1e-8)
        torch.testing.assert_close(param.detach(), w - (g + 0.01 * w) * 0.5 * trust, msg=name)


def test_zero_weight_norm_falls_back_to_plain_sgd_step() -> None:
    weight = nn.Parameter(torch.zeros(4))
    weight.grad = torch.ones(4)
    LARS([weight], lr=0.1, weight_decay=0.0).step()
    torch.testing.assert_close(weight.detach(), torch.full((4,), -0.1))


class WithHead(nn.Module):
    """A method with its own parameter groups: the head gets weight decay 5e-4."""

    def __init__(self, forget_head: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 4, 3), bn1=nn.BatchNorm2d(4)))
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.forget_head = forget_head

    def param_groups(self, cfg: dict) -> list[dict]:
        groups = [{"params": list(self.backbone.parameters())}]
        if not self.forget_head:
            groups.append({"params": list(self.head.parameters()), "weight_decay": 5e-4})
        return groups


def test_method_param_groups_are_kept_and_split_for_bn_and_bias() -> None:
    model = WithHead()
    groups = build_param_groups(model, make_cfg(exclude=True))
    ids = [[id(p) for p in group["params"]] for group in groups]
    conv, bn, head = model.backbone[0], model.backbone[1], model.head
    assert ids == [
        [id(conv.weight)],
        [id(conv.bias), id(bn.weight), id(bn.bias)],
        [id(head.weight)],
        [id(head.bias)],
    ]
    assert [g.get("weight_decay") for g in groups] == [None, 0.0, 5e-4, 0.0]
    assert [g.get("lars_exclude", False) for g in groups] == [False, True, False, True]
    optimizer = build_optimizer(model, make_cfg(name="sgd", exclude=True))
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0, 5e-4, 0.0]
    assert all(g["initial_lr"] == 0.5 for g in optimizer.param_groups)


def test_method_param_groups_must_cover_every_trainable_parameter() -> None:
    with pytest.raises(SslzooError, match="every trainable parameter"):
        build_param_groups(WithHead(forget_head=True), make_cfg())


def test_lars_exclusion_of_a_resnet50_is_the_reference_regexes_on_its_names() -> None:
    backbone = ResNetBackbone(50)
    names = dict(backbone.named_parameters())
    # our backbone has torchvision's parameter names, which are also mmcv's ResNet's
    assert set(names) == {name for name, _ in torchvision.models.resnet50().named_parameters()} - {
        "fc.weight",
        "fc.bias",
    }
    expected = reference_excluded(list(names))
    excluded = lars_excluded_parameters(backbone)
    assert {name for name, param in names.items() if id(param) in excluded} == expected
    # the shortcut's norm layer is not named by the first pattern: its weight is adapted and decayed
    assert "layer1.0.downsample.1.weight" not in expected and "layer1.0.downsample.1.bias" in expected
    assert {"bn1.weight", "layer4.2.bn3.weight", "layer3.5.bn2.bias"} <= expected
    assert not any(name.startswith("conv") or ".conv" in name for name in expected)
    assert len(expected) == 53 + 49  # every norm layer's bias, the weights of all but the 4 shortcut norms


# our MLP's layers under the reference necks' names (NonLinearNeck / NonLinearNeckSimCLR: fc0, bn0, fc1)
NECK_NAMES = {"0": "fc0", "1": "bn0", "3": "fc1"}


def reference_name(name: str) -> str:
    """Our BYOL/Triplet parameter name as the reference's model spells it (mmselfsup 0.x
    mmselfsup/models/algorithms/byol.py, wanggrun/triplet openselfsup/models/triplet.py:
    online_net = Sequential(backbone, neck), head.predictor)."""
    part, _, rest = name.partition(".")
    if part == "backbone":
        return f"online_net.0.{rest}"
    layer, _, param = rest.partition(".")
    return {"projector": "online_net.1.", "predictor": "head.predictor."}[
        part
    ] + f"{NECK_NAMES[layer]}.{param}"


@pytest.mark.parametrize(
    "config",
    [
        "byol_resnet50_8xb32-accum16-coslr-200e_in1k.yaml",
        "triplet_resnet50_8xb128-amp-accum4-coslr-200e_in1k.yaml",
    ],
)
def test_lars_groups_of_the_lars_configs_follow_the_reference_names(config: str) -> None:
    cfg = load_model_config(MODELS / config)
    assert cfg["train"]["optimizer"]["name"] == "lars" and cfg["train"]["optimizer"]["exclude_bn_bias"]
    model = build_method(cfg)
    names = {id(param): name for name, param in model.named_parameters() if param.requires_grad}
    expected = {
        name for name in names.values() if reference_name(name) in reference_excluded([reference_name(name)])
    }
    groups = build_param_groups(model, cfg)
    assert [(group.get("weight_decay"), group.get("lars_exclude", False)) for group in groups] == [
        (None, False),
        (0.0, True),
    ]
    assert {names[id(param)] for param in groups[1]["params"]} == expected
    assert {names[id(param)] for param in groups[0]["params"]} == set(names.values()) - expected
    # the necks' norm layers (bn0 in the reference) are excluded, the shortcut norms' weights are not
    assert {"projector.1.weight", "predictor.1.bias", "projector.0.bias"} <= expected
    assert "backbone.layer2.0.downsample.1.weight" not in expected
