"""ResNet backbone with multi-stage outputs, in torchvision's parameter layout.

The five stages follow MMSelfSup's benchmark naming: ``feature1`` is the stem (conv1, bn1,
relu) *before* max-pool, ``feature2``..``feature5`` are ``layer1``..``layer4``. Parameter
names are torchvision's, so ``state_dict()`` is a torchvision ResNet state dict without
``fc.*`` (see :mod:`sslzoo.checkpoints` for the strict-loading export).

Init (He et al. 2015, "Delving Deep into Rectifiers"): every conv weight normal with std
``sqrt(2 / fan)``, norm layers weight 1 and bias 0. ``fan`` is ``fan_out`` (output channels x
kernel area) in torchvision and in the mmcls ResNet of MMSelfSup 0.x (Relative-Loc,
Rotation-Pred, BYOL), ``fan_in`` (input channels x kernel area) in OpenSelfSup's
``openselfsup/models/backbones/resnet.py`` that ORL (Jiahao000/ORL) and Triplet
(wanggrun/triplet) build on; the model config's ``backbone.conv_init`` picks it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from sslzoo.config import model_schema_default

# depth -> (block, blocks per stage), as torchvision.models.resnet{18,34,50,101,152}
RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}

STAGE_NAMES: tuple[str, ...] = ("feature1", "feature2", "feature3", "feature4", "feature5")

# backbone.conv_init of a model config without one (sslzoo/schemas/model.schema.yaml)
DEFAULT_CONV_INIT: str = model_schema_default("backbone", "conv_init")
CONV_INIT_MODES: tuple[str, ...] = ("fan_out", "fan_in")


def backbone_args(cfg: dict) -> dict:
    """The :class:`ResNetBackbone` arguments of a model config's ``backbone`` section: ``depth``
    (default 50), ``zero_init_residual`` (False) and ``conv_init`` (the model schema's default)."""
    backbone = cfg.get("backbone", {})
    return {
        "depth": int(backbone.get("depth", 50)),
        "zero_init_residual": bool(backbone.get("zero_init_residual", False)),
        "conv_init": backbone.get("conv_init", DEFAULT_CONV_INIT),
    }


def kaiming_init_convs(module: nn.Module, mode: str) -> None:
    """He et al. 2015 normal init of every ``nn.Conv2d`` in ``module``, biases zero.

    A conv weight ``[C_out, C_in / groups, kh, kw]`` gets std ``sqrt(2 / fan)`` with
    ``fan = C_in / groups * kh * kw`` (``mode="fan_in"``) or ``C_out * kh * kw`` (``"fan_out"``),
    as ``nn.init.kaiming_normal_(nonlinearity="relu")`` and mmcv 1.0's
    ``kaiming_init(distribution='normal', bias=0)`` that OpenSelfSup's ResNet calls.
    """
    if mode not in CONV_INIT_MODES:
        raise ValueError(f"conv init mode {mode!r} is not one of {list(CONV_INIT_MODES)}")
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode=mode, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class WindowConv2d(nn.Conv2d):
    """``nn.Conv2d`` that, in training, computes a 1x1 output as one matrix product over the window
    it reads.

    A convolution whose output map is 1x1 (a 3x3 conv with padding 1 on a 1x1 map, the strided
    first conv of ``layer4`` on a 2x2 map: ResNet's last stages at the 32 px of the mini zoo)
    reads only the taps of its kernel that overlap the input. Computed as
    ``linear(x[:, :, :h, :w].flatten(1), weight[:, :, p:p+h, p:p+w].flatten(1))``, it is the same
    function with the same gradients (the other taps multiply padding zeros and get zero
    gradient either way), up to the order of float summation, and on CPU far faster: oneDNN's
    backward of a 512->512 3x3 conv on ``[256, 512, 1, 1]`` takes about 25 times the
    product's time. In eval mode, and for any other shape, dilation, groups or padding mode, it
    runs ``nn.Conv2d``: a matrix product may round an image's row differently in a batch of 1-3
    rows (BLAS's matrix-vector path), and extracted features must not depend on the batch an
    image falls in (the 1- and 3-process parity of ``tests/parity/test_process_count.py``).
    Parameters and ``state_dict`` are ``nn.Conv2d``'s.
    """

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        window = self._window(input.shape[-2:]) if self.training else None
        if window is None:
            return super()._conv_forward(input, weight, bias)
        (top, height), (left, width) = window
        taps = weight[:, :, top : top + height, left : left + width].flatten(1)  # [C_out, C_in*h*w]
        out = F.linear(input[:, :, :height, :width].flatten(1), taps, bias)  # [B, C_out]
        return out.view(out.shape[0], out.shape[1], 1, 1)

    def _window(self, size: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """Per axis (first kernel tap, taps read) when the output map is 1x1, else None."""
        if (
            self.groups != 1
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
            or any(d != 1 for d in self.dilation)
        ):
            return None
        window = []
        for extent, kernel, stride, pad in zip(
            size, self.kernel_size, self.stride, self.padding, strict=True
        ):
            if (extent + 2 * pad - kernel) // stride + 1 != 1:
                return None
            # output position 0 reads input rows 0..extent-1 with kernel taps pad..pad+extent-1
            window.append((pad, min(kernel - pad, extent)))
        return window[0], window[1]


def use_window_convs(module: nn.Module) -> None:
    """Make every plain ``nn.Conv2d`` in ``module`` a :class:`WindowConv2d` (same parameters)."""
    for layer in module.modules():
        if type(layer) is nn.Conv2d:
            layer.__class__ = WindowConv2d


def use_plain_convs(module: nn.Module) -> None:
    """Undo :func:`use_window_convs`: every conv of ``module`` an ``nn.Conv2d`` again (the peer
    that tests and ``bench/window_conv.py`` compare the window path with)."""
    for layer in module.modules():
        if isinstance(layer, WindowConv2d):
            layer.__class__ = nn.Conv2d


class ResNetBackbone(ResNet):
    """torchvision ResNet without ``fc`` that returns the requested stages.

    Args:
        depth: 18, 34, 50, 101 or 152.
        zero_init_residual: zero the last BN of each residual block (torchvision's option).
        replace_stride_with_dilation: torchvision's option, e.g. ``[False, True, True]`` for
            the dilated ResNet-D8 of FCN (strides 1,2,1,1 in layer1..4).
        conv_init: ``"fan_out"`` (torchvision's init) or ``"fan_in"`` (OpenSelfSup's), see
            :func:`kaiming_init_convs`; norm layers and ``zero_init_residual`` as torchvision.
    """

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        replace_stride_with_dilation: list[bool] | None = None,
        conv_init: str = DEFAULT_CONV_INIT,
    ) -> None:
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(RESNET_LAYOUTS)}")
        if conv_init not in CONV_INIT_MODES:
            raise ValueError(f"backbone.conv_init {conv_init!r} is not one of {list(CONV_INIT_MODES)}")
        block, layers = RESNET_LAYOUTS[depth]
        super().__init__(
            block,
            layers,
            zero_init_residual=zero_init_residual,
            replace_stride_with_dilation=replace_stride_with_dilation,
        )
        del self.fc
        # torchvision's __init__ drew fan_out weights; draw again only for another mode, so a
        # fan_out backbone keeps torchvision's weights and random stream exactly
        if conv_init != "fan_out":
            kaiming_init_convs(self, conv_init)
        use_window_convs(self)
        self.depth = depth
        self.conv_init = conv_init
        self.stage_channels: tuple[int, ...] = (64,) + tuple(64 * 2**i * block.expansion for i in range(4))
        self.out_channels: int = self.stage_channels[-1]

    def forward(self, x: torch.Tensor, stages: Sequence[int] = (5,)) -> list[torch.Tensor]:  # type: ignore[override]
        """Run the network up to the deepest requested stage.

        Args:
            x: images, ``[B, 3, H, W]``.
            stages: which of 1..5 to return, in the order given.

        Returns:
            One tensor per requested stage; for ResNet-50 and a 224 px input these are
            ``[B, 64, 112, 112]`` (1), ``[B, 256, 56, 56]`` (2), ``[B, 512, 28, 28]`` (3),
            ``[B, 1024, 14, 14]`` (4), ``[B, 2048, 7, 7]`` (5).
        """
        wanted = set(stages)
        if not wanted or not wanted <= {1, 2, 3, 4, 5}:
            raise ValueError(f"stages must be a non-empty subset of 1..5, got {list(stages)}")
        last = max(wanted)
        outs: dict[int, torch.Tensor] = {}
        x = self.relu(self.bn1(self.conv1(x)))
        outs[1] = x
        if last > 1:
            x = self.maxpool(x)
            for index, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=2):
                x = layer(x)
                outs[index] = x
                if index == last:
                    break
        return [outs[s] for s in stages]


def depth_from_state_dict(state_dict: dict[str, torch.Tensor]) -> int:
    """Infer the ResNet depth from a torchvision-layout state dict (blocks per stage, block type)."""
    counts = []
    for stage in range(1, 5):
        blocks = {key.split(".")[1] for key in state_dict if key.startswith(f"layer{stage}.")}
        counts.append(len(blocks))
    bottleneck = any(key.endswith("conv3.weight") for key in state_dict)
    for depth, (block, layers) in RESNET_LAYOUTS.items():
        if layers == counts and (block is Bottleneck) == bottleneck:
            return depth
    raise ValueError(
        f"state dict is not a torchvision ResNet: blocks per stage {counts}, bottleneck={bottleneck}"
    )
