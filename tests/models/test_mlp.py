"""The BYOL-family projector / predictor MLP."""

from __future__ import annotations

import pytest
import torch

from sslzoo.models.mlp import MLP


@pytest.mark.parametrize(("bias", "last_bias"), [(True, False), (False, False), (True, True)])
def test_mlp_biases_are_configurable(bias: bool, last_bias: bool) -> None:
    mlp = MLP(16, hidden=32, out=8, bias=bias, last_bias=last_bias)
    assert (mlp[0].bias is not None, mlp[3].bias is not None) == (bias, last_bias)
    assert isinstance(mlp[1], torch.nn.BatchNorm1d) and len(mlp) == 4  # no BN after the last fc
    assert mlp(torch.randn(5, 16)).shape == (5, 8)
