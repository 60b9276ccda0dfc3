"""ResNet backbone init: each conv's std against He et al.'s sqrt(2 / fan) for the mode the config
names, normal (not uniform) weights, norm layers at 1 / 0, and the default left as torchvision's.
The window path of convs with a 1x1 output against ``F.conv2d``: values and gradients."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet50

from sslzoo.models.backbone import (
    DEFAULT_CONV_INIT,
    ResNetBackbone,
    WindowConv2d,
    kaiming_init_convs,
    use_plain_convs,
)

# P(|x| > sqrt(3) sigma) for a normal x: a uniform weight of the same std never gets there
NORMAL_TAIL_BEYOND_UNIFORM = math.erfc(math.sqrt(3.0) / math.sqrt(2.0))


def expected_std(conv: nn.Conv2d, mode: str) -> float:
    """sqrt(2 / fan) of He et al. 2015 (gain sqrt(2) of ReLU) for the conv's weight shape."""
    kernel_area = conv.kernel_size[0] * conv.kernel_size[1]
    fan = (
        conv.in_channels // conv.groups * kernel_area if mode == "fan_in" else conv.out_channels * kernel_area
    )
    return math.sqrt(2.0 / fan)


def convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_conv_std_follows_the_fan_of_its_mode(mode: str) -> None:
    torch.manual_seed(0)
    model = ResNetBackbone(depth=50, conv_init=mode)
    layers = convs(model)
    assert len(layers) == 53  # 1 stem + 16 blocks x 3 + 4 downsample convs
    distinguishing = 0
    for name, conv in layers:
        weight = conv.weight.detach().double()
        std = expected_std(conv, mode)
        # the sample std of >= 4096 normal values is within 2.2 % of sigma with 5-sigma certainty
        assert weight.std().item() == pytest.approx(std, rel=0.05), name
        assert abs(weight.mean().item()) < 5 * std / math.sqrt(weight.numel()), name
        tail = (weight.abs() > math.sqrt(3.0) * std).double().mean().item()
        assert tail == pytest.approx(NORMAL_TAIL_BEYOND_UNIFORM, abs=0.02), name
        other = expected_std(conv, "fan_out" if mode == "fan_in" else "fan_in")
        distinguishing += abs(other / std - 1) > 0.1
    # most layers change shape, so the other mode would fail above (conv1: fan_in 147, fan_out 3136)
    assert distinguishing >= 30


def test_norm_layers_start_at_one_and_zero_and_zero_init_residual_still_applies() -> None:
    model = ResNetBackbone(depth=18, conv_init="fan_in", zero_init_residual=True)
    for name, norm in model.named_modules():
        if isinstance(norm, nn.BatchNorm2d):
            last_of_block = name.endswith(".bn2")  # BasicBlock's last norm
            assert torch.equal(norm.weight, torch.full_like(norm.weight, 0.0 if last_of_block else 1.0)), name
            assert torch.equal(norm.bias, torch.zeros_like(norm.bias)), name


def test_the_default_is_torchvisions_init_unchanged() -> None:
    assert DEFAULT_CONV_INIT == "fan_out"
    torch.manual_seed(3)
    ours = ResNetBackbone(depth=50).state_dict()
    torch.manual_seed(3)
    theirs = {key: value for key, value in resnet50().state_dict().items() if not key.startswith("fc.")}
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_kaiming_init_convs_zeroes_a_conv_bias_and_refuses_an_unknown_mode() -> None:
    conv = nn.Conv2d(8, 16, 3, bias=True)
    kaiming_init_convs(conv, "fan_in")
    assert torch.equal(conv.bias, torch.zeros(16))
    with pytest.raises(ValueError, match="'fan_avg' is not one of"):
        kaiming_init_convs(conv, "fan_avg")
    with pytest.raises(ValueError, match="backbone.conv_init 'fan_avg' is not one of"):
        ResNetBackbone(depth=18, conv_init="fan_avg")


# (in, out, kernel, stride, padding, dilation, groups, input size): 1x1 outputs of ResNet's last
# stages at 32 px (3x3 pad 1 on 1x1, strided 3x3 and 1x1 on 2x2), a window wider than the map, a
# map wider than the taps it meets, an unpadded window, a non-square input; then shapes that must
# take nn.Conv2d's path (a 2x2 output, dilation, groups)
WINDOW_SHAPES = [
    (16, 24, 3, 1, 1, 1, 1, (1, 1)),
    (16, 24, 3, 2, 1, 1, 1, (2, 2)),
    (16, 24, 1, 2, 0, 1, 1, (2, 2)),
    (8, 12, 3, 3, 1, 1, 1, (2, 2)),
    (8, 12, 3, 3, 1, 1, 1, (3, 3)),
    (8, 12, 3, 2, 0, 1, 1, (4, 3)),
    (8, 12, 7, 2, 3, 1, 1, (1, 2)),
]
CONV_SHAPES = [
    (16, 24, 3, 1, 1, 1, 1, (2, 2)),
    (16, 24, 3, 1, 2, 2, 1, (1, 1)),
    (16, 24, 3, 1, 1, 1, 4, (1, 1)),
]


@pytest.mark.parametrize("shape", WINDOW_SHAPES + CONV_SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_window_conv_equals_conv2d_in_values_and_gradients(shape: tuple, bias: bool) -> None:
    c_in, c_out, kernel, stride, padding, dilation, groups, size = shape
    torch.manual_seed(0)
    conv = WindowConv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=bias).double()
    assert (conv._window(size) is not None) == (shape in WINDOW_SHAPES)
    x = torch.randn(5, c_in, *size, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, c_out, 1, 1, dtype=torch.float64)
    ours = conv(x)
    (ours * target).sum().backward()
    ours_grads = [x.grad, conv.weight.grad] + ([conv.bias.grad] if bias else [])
    x2 = x.detach().clone().requires_grad_(True)
    weight = conv.weight.detach().clone().requires_grad_(True)
    bias_t = conv.bias.detach().clone().requires_grad_(True) if bias else None
    theirs = torch.nn.functional.conv2d(x2, weight, bias_t, stride, padding, dilation, groups)
    (theirs * target).sum().backward()
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    for got, want in zip(ours_grads, [x2.grad, weight.grad] + ([bias_t.grad] if bias else []), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _plain(model: ResNetBackbone) -> ResNetBackbone:
    """A copy of ``model`` with every conv an ``nn.Conv2d``."""
    plain = copy.deepcopy(model)
    use_plain_convs(plain)
    assert all(type(conv) is nn.Conv2d for _, conv in convs(plain))
    return plain


def test_a_32px_backbone_in_training_gives_what_plain_convs_give() -> None:
    """At 32 px layer4 is 1x1: in training its convs take the window path; the output and the
    gradients are nn.Conv2d's (batch statistics in both; float64, so that only the order of
    summation differs)."""
    model = ResNetBackbone(depth=18).double()
    assert all(type(conv) is WindowConv2d for _, conv in convs(model))
    plain = _plain(model).double()
    torch.manual_seed(1)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    outputs = []
    for network in (model, plain):
        network.train()
        out = network(x)[0]
        (out * torch.linspace(-1.0, 1.0, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
        outputs.append((out, network.layer4[1].conv2.weight.grad, network.layer4[0].conv1.weight.grad))
    assert outputs[0][0].shape == (8, 512, 1, 1)
    for ours, theirs in zip(outputs[0], outputs[1], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("batch", [1, 2, 3, 64])
def test_eval_mode_computes_exactly_what_plain_convs_compute(batch: int) -> None:
    """Eval mode runs nn.Conv2d, bit for bit: a matrix product may round a batch of 1-3 rows
    otherwise (BLAS's matrix-vector path), and features must not depend on the batch an image
    falls in (features of 1 and 3 processes are equal, tests/parity/test_process_count.py)."""
    model = ResNetBackbone(depth=18).eval()
    plain = _plain(model).eval()
    torch.manual_seed(2)
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x)[0], plain(x)[0])
