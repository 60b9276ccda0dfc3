"""The projector / predictor MLP of the BYOL family (BYOL, Triplet, ORL): fc -> BN -> ReLU -> fc."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from sslzoo.errors import SslzooError

# method_args.projector / method_args.predictor keys -> the BYOL reference's values
MLP_KEYS: dict[str, Any] = {"hidden": 4096, "out": 256, "bias": True, "last_bias": False, "init": "default"}


class MLP(nn.Sequential):
    """fc -> BatchNorm1d -> ReLU -> fc, no last BN: BYOL's projector and predictor.

    ``[N, in_channels]`` -> ``[N, out_channels]``. mmselfsup 0.x ``NonLinearNeck`` with
    ``num_layers=2, with_last_bn=False``.

    Args:
        bias: bias on the hidden fc (``with_bias``).
        last_bias: bias on the output fc (``with_last_bias``).
        init: ``default`` (PyTorch's Linear init, as mmselfsup), ``kaiming`` (normal, fan_in,
            ReLU gain, zero bias) or ``normal`` (std 0.01, zero bias), the last two being the
            projector and predictor init of wanggrun/triplet openselfsup/models/necks.py.
    """

    # our layers under the names of the reference's neck (mmselfsup 0.x NonLinearNeck, OpenSelfSup
    # NonLinearNeckSimCLR: fc0, bn0, fc1), which the LARS exclusion patterns of the reference
    # configs are matched against (sslzoo.runtime.optim.reference_names)
    REFERENCE_NAMES: ClassVar[dict[str, str]] = {"0": "fc0", "1": "bn0", "3": "fc1"}

    def __init__(
        self,
        in_channels: int,
        hidden: int = 4096,
        out: int = 256,
        bias: bool = True,
        last_bias: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__(
            nn.Linear(in_channels, hidden, bias=bias),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out, bias=last_bias),
        )
        if init not in ("default", "kaiming", "normal"):
            raise SslzooError(
                f"model config method_args: MLP init {init!r} is not one of default, kaiming, normal"
            )
        for layer in (self[0], self[3]):
            if init == "kaiming":
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            elif init == "normal":
                nn.init.normal_(layer.weight, std=0.01)
            if init != "default" and layer.bias is not None:
                nn.init.zeros_(layer.bias)
