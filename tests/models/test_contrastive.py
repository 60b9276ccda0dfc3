"""The contrastive losses: NT-Xent against SimCLR's Algorithm 1 written out, InfoNCE against the
cross-entropy written out; single process (the two-process runs: test_contrastive_ddp.py)."""

from __future__ import annotations

import math

import pytest
import torch

from sslzoo.models.contrastive import info_nce, nt_xent


def algorithm_1(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Chen et al. 2020, Algorithm 1, in plain Python floats: the views of image k are
    ``z_{2k-1}``, ``z_{2k}``; ``s_ij`` their cosine similarity; ``l(i, j) = -log(exp(s_ij / t) /
    sum_{k != i} exp(s_ik / t))``; ``L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]``."""
    n = z1.shape[0]
    z = [v.double() for k in range(n) for v in (z1[k], z2[k])]
    s = [[float(a @ b / (a.norm() * b.norm())) for b in z] for a in z]

    def loss(i: int, j: int) -> float:
        return -math.log(
            math.exp(s[i][j] / temperature)
            / sum(math.exp(s[i][k] / temperature) for k in range(2 * n) if k != i)
        )

    return sum(loss(2 * k, 2 * k + 1) + loss(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize(("n", "temperature", "noise"), [(5, 0.1, 0.3), (8, 0.5, 2.0), (3, 0.07, 3.0)])
def test_nt_xent_is_simclr_algorithm_1(n: int, temperature: float, noise: float) -> None:
    generator = torch.Generator().manual_seed(n)
    z1 = torch.randn(n, 7, generator=generator)
    z2 = z1 + noise * torch.randn(n, 7, generator=generator)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(algorithm_1(z1, z2, temperature), rel=1e-5)


def test_nt_xent_does_not_depend_on_the_scale_of_the_projections() -> None:
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    scales = torch.rand(4, 1, generator=generator) + 0.1
    assert nt_xent(z1 * scales, z2, 0.1).item() == pytest.approx(nt_xent(z1, z2, 0.1).item(), rel=1e-6)


def test_nt_xent_gradient_equals_that_of_algorithm_1() -> None:
    generator = torch.Generator().manual_seed(1)
    z1 = torch.randn(3, 5, generator=generator, dtype=torch.double, requires_grad=True)
    z2 = torch.randn(3, 5, generator=generator, dtype=torch.double, requires_grad=True)

    def by_hand(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # Algorithm 1 in torch ops
        z = torch.stack([v for k in range(3) for v in (a[k], b[k])])
        z = z / z.norm(dim=1, keepdim=True)
        s = z @ z.t() / 0.1
        terms = []
        for i in range(6):
            j = i + 1 if i % 2 == 0 else i - 1
            others = torch.stack([s[i, k] for k in range(6) if k != i])
            terms.append(-(s[i, j] - torch.logsumexp(others, dim=0)))
        return torch.stack(terms).mean()

    ours = torch.autograd.grad(nt_xent(z1, z2, 0.1), (z1, z2))
    theirs = torch.autograd.grad(by_hand(z1, z2), (z1, z2))
    for mine, other in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.double(), other, rtol=1e-4, atol=1e-6)


def test_info_nce_is_the_cross_entropy_of_the_positive() -> None:
    positive = torch.tensor([[0.9], [0.1]])
    negative = torch.tensor([[0.5, -0.2, 0.0], [0.3, 0.8, -1.0]])
    expected = 0.0
    for pos, negs in zip(positive[:, 0].tolist(), negative.tolist(), strict=True):
        logits = [pos / 0.2] + [v / 0.2 for v in negs]
        expected += -(logits[0] - math.log(sum(math.exp(v) for v in logits)))
    assert info_nce(positive, negative, 0.2).item() == pytest.approx(expected / 2, rel=1e-6)
