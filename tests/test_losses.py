"""The shared losses: BYOL's negative cosine (Triplet's truncated triplet loss is tested against a
naive loop in tests/methods/test_triplet.py, which shares that loop with the method's tests)."""

from __future__ import annotations

import math

import pytest
import torch

from sslzoo.losses import negative_cosine


def test_negative_cosine_on_tiny_tensors() -> None:
    prediction = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, -1.0], [3.0, 4.0]])
    # cosines 1/sqrt(2), -1, 1
    expected = -(1 / math.sqrt(2) - 1 + 1) / 3
    assert negative_cosine(prediction, target).item() == pytest.approx(expected, abs=1e-6)
