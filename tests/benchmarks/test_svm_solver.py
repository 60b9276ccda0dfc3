"""The batched squared-hinge SVM solver against scikit-learn's LinearSVC (LIBLINEAR) on small problems."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from sslzoo.benchmarks.svm_solver import (
    SolverOptions,
    fit_cost_path,
    linear_kernel,
    primal_weights,
    solve_kernel_svm,
)
from sslzoo.benchmarks.voc_ap import voc_ap
from sslzoo.errors import SslzooError


def _problem(n: int, dim: int, seed: int, positive_fraction: float = 0.2):
    """Non-negative, unit-norm rows (like pooled ReLU features) with a learnable +1/-1 target."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < positive_fraction, 1, -1)
    direction = rng.normal(size=dim)
    x = np.maximum(rng.normal(size=(n, dim)) + 0.8 * np.outer(y, direction) / np.sqrt(dim) * 4 + 0.5, 0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, y


def _liblinear(x, y, cost, weights=(2.0, 1.0), scaling=1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LinearSVC(
            C=cost,
            class_weight={1: weights[0], -1: weights[1]},
            intercept_scaling=scaling,
            loss="squared_hinge",
            penalty="l2",
            dual=True,
            tol=1e-10,
            max_iter=200_000,
        ).fit(x, y)


def _solve(x, y, cost, weights=(2.0, 1.0), scaling=1.0, options=None):
    xt = torch.from_numpy(x)
    kernel = linear_kernel(xt, xt, scaling)[None]
    yt = torch.from_numpy(y).double()[None, None]
    c = torch.where(yt > 0, weights[0], weights[1]).double() * cost
    beta, f, info = solve_kernel_svm(kernel, yt, c, options=options or SolverOptions(tol=1e-9))
    coef, intercept = primal_weights(xt, beta[0, 0], scaling)
    return coef.numpy(), float(intercept), f[0, 0].numpy(), info


@pytest.mark.parametrize("cost", [1e-4, 0.0625, 1.0, 100.0])
@pytest.mark.parametrize("weights", [(2.0, 1.0), (1.0, 1.0)])
def test_matches_liblinear_on_a_small_problem(cost, weights):
    x, y = _problem(120, 60, seed=1)
    coef, intercept, f, info = _solve(x, y, cost, weights)
    reference = _liblinear(x, y, cost, weights)
    expected = reference.decision_function(x)
    spread = expected.std()
    assert np.abs(f - expected).max() < 1e-5 * spread + 1e-9
    assert np.abs(x @ coef + intercept - expected).max() < 1e-5 * spread + 1e-9
    assert np.abs(coef - reference.coef_[0]).max() < 1e-5 * np.abs(reference.coef_).max() + 1e-12
    assert intercept == pytest.approx(
        float(reference.intercept_[0]), abs=1e-5 * abs(float(reference.intercept_[0])) + 1e-9
    )
    assert bool((info.residual <= 1e-9).all())


def test_the_intercept_is_regularised_like_liblinear():
    # with intercept_scaling s the bias feature is s and the intercept s * w[-1]: a larger s
    # regularises the intercept less, which changes the solution; both must follow LIBLINEAR
    x, y = _problem(80, 30, seed=2, positive_fraction=0.7)
    results = {}
    for scaling in (1.0, 5.0):
        _, intercept, f, _ = _solve(x, y, 0.5, scaling=scaling)
        reference = _liblinear(x, y, 0.5, scaling=scaling)
        assert np.abs(f - reference.decision_function(x)).max() < 1e-6
        assert intercept == pytest.approx(float(reference.intercept_[0]), abs=1e-6)
        results[scaling] = intercept
    assert abs(results[1.0] - results[5.0]) > 1e-3


@pytest.mark.parametrize("method", ["cg", "direct", "auto"])
@pytest.mark.parametrize("cost", [3e-5, 0.03125, 10.0])
def test_large_problem_with_conjugate_gradients_and_cholesky_steps(cost, method):
    # 600 rows: above SolverOptions.small, so the Newton steps use CG and/or Cholesky solves
    x, y = _problem(600, 200, seed=3, positive_fraction=0.1)
    _, _, f, info = _solve(x, y, cost, options=SolverOptions(tol=1e-8, rank=16, method=method))
    reference = _liblinear(x, y, cost).decision_function(x)
    assert np.abs(f - reference).max() < 1e-5 * reference.std()
    positives = np.where(y > 0, 1, -1)
    assert voc_ap(f, positives) == pytest.approx(voc_ap(reference, positives), abs=1e-9)
    if method == "cg":
        assert int(info.cg_steps.sum()) > 0
    if method == "direct":
        assert int(info.cg_steps.sum()) == 0 and int(info.direct_steps.sum()) > 0


def test_cost_path_with_held_out_rows_and_groups():
    x, y = _problem(150, 40, seed=4)
    xt = torch.from_numpy(x)
    kernel = linear_kernel(xt, xt)[None]
    held_out = np.arange(150) % 3 == 0
    yt = torch.from_numpy(y).double()
    weight = torch.where(yt > 0, 2.0, 1.0).double()
    # problem 0: all rows; problem 1: without the held-out rows
    row_weight = torch.stack([weight, weight * torch.from_numpy(~held_out)])[None]
    costs = [1.0, 0.01, 0.1]
    betas, values, infos = fit_cost_path(
        kernel, yt.expand(1, 2, -1), row_weight, costs, SolverOptions(tol=1e-9)
    )
    assert len(infos) == len(costs)
    for index, cost in enumerate(costs):
        full = _liblinear(x, y, cost).decision_function(x)
        part = _liblinear(x[~held_out], y[~held_out], cost).decision_function(x)
        assert np.abs(values[index, 0, 0].numpy() - full).max() < 1e-6
        # held-out rows get the decision values of the model trained without them
        assert np.abs(values[index, 0, 1].numpy() - part).max() < 1e-6
        assert bool((betas[index, 0, 1][torch.from_numpy(held_out)] == 0).all())
    # two groups with their own kernels in one batch give the same solutions as one at a time
    x2, y2 = _problem(150, 40, seed=5)
    kernels = torch.stack([kernel[0], linear_kernel(torch.from_numpy(x2), torch.from_numpy(x2))])
    targets = torch.stack([yt, torch.from_numpy(y2).double()])[:, None]
    c = torch.where(targets > 0, 2.0, 1.0).double() * 0.3
    beta, f, _ = solve_kernel_svm(kernels, targets, c, options=SolverOptions(tol=1e-9))
    for group in range(2):
        _, f_one, _ = solve_kernel_svm(kernels[group : group + 1], targets[group : group + 1], c[group : group + 1],
                                       options=SolverOptions(tol=1e-9))  # fmt: skip
        assert torch.allclose(f[group], f_one[0], atol=1e-8)


def test_rejects_bad_shapes_and_costs():
    kernel = torch.eye(4, dtype=torch.float64)[None]
    with pytest.raises(SslzooError, match="do not fit"):
        solve_kernel_svm(kernel, torch.ones(1, 1, 3), torch.ones(1, 1, 3))
    with pytest.raises(SslzooError, match="positive"):
        fit_cost_path(kernel, torch.ones(1, 1, 4), torch.ones(1, 1, 4), [1.0, 0.0])
    with pytest.raises(SslzooError, match="method"):
        solve_kernel_svm(
            kernel, torch.ones(1, 1, 4), torch.ones(1, 1, 4), options=SolverOptions(method="newton")
        )
