"""A batched solver for the L2-regularised squared-hinge linear SVM (LIBLINEAR's L2R_L2LOSS_SVC).

The problem is the one scikit-learn's ``LinearSVC(loss="squared_hinge", penalty="l2", dual=True,
fit_intercept=True, intercept_scaling=s, class_weight=...)`` hands to LIBLINEAR, the SVM of
mmselfsup 0.x ``tools/benchmarks/classification/svm_voc07`` (PROTOCOLS.md "VOC07 SVM")::

    min_w  1/2 ||w~||^2 + sum_i c_i max(0, 1 - y_i w~ . x~_i)^2,   x~_i = [x_i, s],  c_i = C * weight[y_i]

LIBLINEAR appends the constant feature ``s`` (``intercept_scaling``) to every row, so the
intercept ``s * w~[-1]`` is regularised like any other weight; so is it here.

How it is solved. The optimum lies in the span of the training rows, ``w~ = X~^T beta``, so the
problem is written with the kernel ``K = X~ X~^T = X X^T + s^2`` (``n x n``: VOC07 has fewer
images than feature dimensions, and one kernel serves every class, fold and cost). The method
is the modified finite Newton method of Keerthi & DeCoste (JMLR 6, 2005, "A Modified Finite
Newton Method for Fast Solution of Large Scale Linear SVMs") in these coordinates:

1. at the decision values ``f = K beta`` the active rows are ``A = {i: y_i f_i < 1}``;
2. the regularised least squares of the active rows, ``(K_AA + D_A) beta_A = y_A`` with
   ``D = diag(1 / (2 c_i))`` and ``beta`` zero elsewhere, is solved - by one batched Cholesky
   factorisation for small kernels; otherwise per problem by whichever a work estimate says is
   cheaper: a Cholesky factorisation of ``K_AA + D_A`` (large costs: few margin violators) or
   conjugate gradients preconditioned with the top eigenpairs of ``K`` (restricted to the
   active rows, ``K_AA ~ U_A Lambda U_A^T + tau I`` with ``tau`` the mean remaining eigenvalue,
   inverted by the Woodbury identity; a handful of steps for small costs). A CG solve whose
   extrapolated remaining steps would cost more than the factorisation is finished by it;
3. an exact line search on the piecewise quadratic objective towards that point;
4. stop when ``||grad F(w)|| <= tol ||w||``. ``F`` is 1-strongly convex, so then every decision
   value is within ``tol ||w|| ||x~||`` of the exact optimum's. A step that cannot decrease ``F``
   any more (floating-point floor) ends the problem after a direct solve confirms it.

At the optimum ``beta_i = 2 c_i (y_i - f_i)`` on the active rows and 0 elsewhere, i.e. the dual
variables of LIBLINEAR's coordinate descent are ``alpha = y beta``; both methods solve the same
strictly convex problem, so they agree up to their tolerances.

Every step is batched: the problems (classes x folds, or classes x costs for low-shot samples)
share one kernel or come in groups with one kernel each, and each step is one matrix product
over all of them. :func:`fit_cost_path` warm-starts each cost from the solution of the next
smaller one. The code runs on the device of the kernel (CUDA when the caller puts it there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sslzoo.errors import SslzooError

# bytes of temporaries one batched step may allocate (padded matrices, preconditioner set-up)
_DIRECT_BATCH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SolverOptions:
    """Stopping rules and method switches (none of them changes the optimum, only the work).

    Attributes:
        tol: largest relative gradient norm ``||grad F(w)|| / ||w||`` accepted at the solution. By
            strong convexity ``||w - w*|| <= ||grad F(w)||``, so every decision value is within
            ``tol * ||w|| * ||x~||`` of the exact optimum's.
        max_newton: Newton steps per problem before giving up (the last iterate is returned).
        cg_rtol: relative residual at which each conjugate-gradient solve stops.
        max_cg: conjugate-gradient steps per Newton step.
        rank: eigenpairs of the kernel in the conjugate-gradient preconditioner (0 = none).
        small: kernels up to this size solve every Newton step directly, in one batched
            Cholesky over all problems.
        method: how larger kernels solve a Newton step: ``auto`` (the cheaper of CG and a
            Cholesky factorisation by a work estimate), ``cg`` or ``direct``.
    """

    tol: float = 1e-6
    max_newton: int = 60
    cg_rtol: float = 1e-6
    max_cg: int = 500
    rank: int = 64
    small: int = 256
    method: str = "auto"


@dataclass
class SolveInfo:
    """Per problem ``[G, P]``: Newton steps, conjugate-gradient steps, direct solves, final residual.

    A problem whose residual stayed above ``tol`` either ran out of Newton steps or stopped
    because its objective could not decrease any more in floating point (see the line search).
    """

    newton_steps: torch.Tensor
    cg_steps: torch.Tensor
    direct_steps: torch.Tensor
    residual: torch.Tensor

    def converged(self, tol: float) -> torch.Tensor:
        """``[G, P]`` bool: the residual reached ``tol``."""
        return self.residual <= tol


def linear_kernel(a: torch.Tensor, b: torch.Tensor, intercept_scaling: float = 1.0) -> torch.Tensor:
    """``[a, s] [b, s]^T = a b^T + s^2``: the kernel of rows with LIBLINEAR's bias feature appended.

    Args:
        a: ``[N, D]``; b: ``[M, D]``. Returns ``[N, M]`` in their dtype, on their device.
    """
    return torch.addmm(torch.full((1, 1), intercept_scaling**2, dtype=a.dtype, device=a.device), a, b.T)


def primal_weights(
    features: torch.Tensor, beta: torch.Tensor, intercept_scaling: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``coef_`` and ``intercept_`` of ``LinearSVC`` from kernel coefficients.

    Args:
        features: ``[n, D]`` training rows; beta: ``[..., n]``.

    Returns:
        ``coef [..., D] = beta X`` and ``intercept [...] = s^2 sum(beta)`` (``s * w~[-1]``), so that
        the decision function is ``x . coef + intercept``.
    """
    return beta @ features, intercept_scaling**2 * beta.sum(-1)


@dataclass(frozen=True)
class Preconditioner:
    """Top eigenpairs of a batch of kernels: ``vectors [G, m, k]``, ``values [G, k]``, ``tail [G]``."""

    vectors: torch.Tensor
    values: torch.Tensor
    tail: torch.Tensor


def top_eigenpairs(kernel: torch.Tensor, rank: int, iterations: int = 4, seed: int = 0) -> Preconditioner:
    """The ``rank`` largest eigenpairs of each kernel by randomised subspace iteration.

    Args:
        kernel: ``[G, m, m]`` symmetric positive semi-definite.
        rank: eigenpairs to keep (capped at ``m``).

    ``tail`` is the mean of the remaining eigenvalues, ``(trace - sum(values)) / (m - rank)``.
    The pairs only precondition the solver; their accuracy does not change its result.
    """
    groups, m, _ = kernel.shape
    rank = min(rank, m)
    trace = kernel.diagonal(dim1=1, dim2=2).sum(dim=1)
    if rank == 0:
        return Preconditioner(kernel.new_zeros(groups, m, 0), kernel.new_zeros(groups, 0), trace / m)
    width = min(m, rank + 16)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    basis = torch.randn(m, width, generator=gen, dtype=kernel.dtype).to(kernel.device)
    basis = basis.expand(groups, m, width)
    for _ in range(iterations):
        basis = torch.linalg.qr(kernel @ basis).Q
    values, rotation = torch.linalg.eigh(basis.transpose(1, 2) @ kernel @ basis)
    values, rotation = values.flip(-1)[:, :rank].clamp_min(0), rotation.flip(-1)[:, :, :rank]
    tail = ((trace - values.sum(dim=1)) / max(m - rank, 1)).clamp_min(0)
    return Preconditioner(basis @ rotation, values, tail)


def _kernel_times(
    kernel: torch.Tensor, v: torch.Tensor, problems: torch.Tensor | None = None
) -> torch.Tensor:
    """``v K`` (rows of ``K v``, ``K`` symmetric) for ``v [G, P, m]``, ``K [G, m, m]``.

    Only the selected ``problems [G, P]`` are multiplied (the others get 0): one matrix product
    per group over its selected problems.
    """
    if problems is None or bool(problems.all()):
        if kernel.shape[0] == 1:
            return (v[0] @ kernel[0]).unsqueeze(0)
        return torch.bmm(v, kernel)
    out = torch.zeros_like(v)
    for g in problems.any(-1).nonzero().squeeze(1).tolist():
        index = problems[g].nonzero().squeeze(1)
        out[g, index] = v[g, index] @ kernel[g]
    return out


class _ActiveSystem:
    """``(K_AA + D_A) x = y_A`` for a batch of problems (inactive rows masked) and its preconditioner."""

    def __init__(
        self,
        kernel: torch.Tensor,
        pre: Preconditioner,
        active: torch.Tensor,
        diag: torch.Tensor,
        problems: torch.Tensor,
    ):
        self.kernel = kernel
        self.mask = active.to(kernel.dtype)
        self.diag = diag * self.mask
        self.pre = pre
        # M = U_A Lambda U_A^T + diag(d + tau) on the active rows; M^-1 = S - S U W^-1 U^T S (Woodbury)
        self.scale = self.mask / (diag + pre.tail[:, None, None])
        self.inner = None
        k = pre.values.shape[-1]
        if k:
            eye = torch.eye(k, dtype=kernel.dtype, device=kernel.device)
            inner = eye.expand(*active.shape[:2], k, k).clone()
            index = problems.nonzero()
            m = kernel.shape[-1]
            chunk = max(1, _DIRECT_BATCH_BYTES // (2 * m * k * kernel.element_size()))
            for start in range(0, len(index), chunk):  # W = Lambda^-1 + U_A^T S U_A per problem
                g, p = index[start : start + chunk].unbind(1)
                u = pre.vectors[g]  # [Q, m, k]
                inner[g, p] = (u * self.scale[g, p][..., None]).transpose(-1, -2) @ u + torch.diag_embed(
                    1.0 / pre.values[g].clamp_min(1e-12)
                )
            self.inner = torch.linalg.cholesky(inner)

    def apply(self, v: torch.Tensor, problems: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K_AA + D_A) v_A`` (masked) and ``K v_A`` on all rows (for the decision values)."""
        v = v * self.mask
        full = _kernel_times(self.kernel, v, problems)
        return full * self.mask + self.diag * v, full

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        s = self.scale * r
        if self.inner is None:
            return s
        u = self.pre.vectors
        projected = torch.einsum("gmk,gpm->gpk", u, s).unsqueeze(-1)
        solved = torch.cholesky_solve(projected, self.inner).squeeze(-1)
        return s - self.scale * torch.einsum("gmk,gpk->gpm", u, solved)


def _conjugate_gradients(
    system: _ActiveSystem,
    rhs: torch.Tensor,
    x0: torch.Tensor,
    f0: torch.Tensor,
    problems: torch.Tensor,
    rtol: float,
    floor: torch.Tensor,
    max_steps: int,
    direct_work: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched preconditioned CG for the selected ``problems [G, P]``, started at ``x0`` masked to
    the active rows (``f0 = K x0``).

    A problem stops when its residual's 2-norm fell by ``rtol`` or below ``floor [G, P]``. A
    problem whose remaining steps (extrapolated from its convergence rate so far) would cost
    more than a direct solve (``direct_work [G, P]``, in multiply-adds) is handed back unsolved.

    Returns:
        the solution ``x [G, P, m]`` (0 off the active rows), ``K x`` on all rows (tracked along
        the iterations, so the decision values need no extra product), the steps per problem
        and the problems handed back for a direct solve.
    """
    m = system.kernel.shape[-1]
    x = x0 * system.mask
    # K x = f unless the start has weight on rows that left the active set
    moved = problems & ((x0 - x) != 0).any(-1)
    kx = torch.where(moved[..., None], system.apply(x, moved)[1], f0)
    r = (rhs - kx - system.diag * x) * system.mask * problems[..., None]
    start_norm = r.norm(dim=-1)
    limit = torch.maximum(rtol * start_norm, floor)
    z = system.precondition(r)
    p = z
    rz = (r * z).sum(-1)
    steps = torch.zeros(rz.shape, dtype=torch.long, device=rz.device)
    running = problems & (start_norm > limit)
    handed = torch.zeros_like(running)
    for step in range(1, max_steps + 1):
        if not bool(running.any()):
            break
        ap, kp = system.apply(p, running)
        pap = (p * ap).sum(-1)
        positive = running & (pap > 0)
        alpha = torch.where(positive, rz / pap.where(positive, torch.ones_like(pap)), torch.zeros_like(pap))
        x = x + alpha[..., None] * p
        kx = kx + alpha[..., None] * kp
        r = r - alpha[..., None] * ap
        steps += running.long()
        norm = r.norm(dim=-1)
        running = positive & (norm > limit)
        if step >= 4 and bool(running.any()):
            rate = (norm / start_norm.clamp_min(1e-300)).clamp(1e-300, 1.0) ** (1.0 / step)
            remaining = (limit / norm).log() / rate.clamp(max=1 - 1e-6).log()
            # a step reads every kernel that still has running problems: with few problems per
            # kernel it costs about as much as a product with 8 of them
            count = int(running.sum())
            step_work = 2.0 * m * m * max(count, 8 * int(running.any(-1).sum())) / count
            hand = running & (remaining * step_work > direct_work)
            handed |= hand
            running &= ~hand
        z = system.precondition(r)
        rz_new = (r * z).sum(-1)
        ratio = torch.where(running, rz_new / rz.where(rz != 0, torch.ones_like(rz)), torch.zeros_like(rz))
        p = z + ratio[..., None] * p
        rz = rz_new
    return x * system.mask, kx, steps, handed


def _direct_padded(
    kernel: torch.Tensor, active: torch.Tensor, diag: torch.Tensor, y: torch.Tensor, problems: torch.Tensor
) -> torch.Tensor:
    """Exact solutions of the selected problems, all at once: inactive rows padded with identity rows."""
    out = torch.zeros_like(y)
    index = problems.nonzero()
    m = kernel.shape[-1]
    chunk = max(1, _DIRECT_BATCH_BYTES // (m * m * kernel.element_size()))
    for start in range(0, len(index), chunk):
        g, p = index[start : start + chunk].unbind(1)
        mask = active[g, p].to(kernel.dtype)
        matrix = kernel[g] * mask[:, :, None] * mask[:, None, :]
        matrix = matrix + torch.diag_embed(torch.where(mask > 0, diag[g, p], torch.ones_like(mask)))
        factor = torch.linalg.cholesky(matrix)
        out[g, p] = torch.cholesky_solve((y[g, p] * mask).unsqueeze(-1), factor).squeeze(-1) * mask
    return out


def _direct_gathered(
    kernel: torch.Tensor, active: torch.Tensor, diag: torch.Tensor, y: torch.Tensor, problems: torch.Tensor
) -> torch.Tensor:
    """Exact solutions of the selected problems, one Cholesky factorisation of ``K_AA + D_A`` each."""
    out = torch.zeros_like(y)
    for g, p in problems.nonzero().tolist():
        rows = active[g, p].nonzero().squeeze(1)
        if not rows.numel():
            continue
        matrix = kernel[g][rows[:, None], rows[None, :]]
        matrix.diagonal().add_(diag[g, p, rows])
        factor = torch.linalg.cholesky(matrix)
        out[g, p, rows] = torch.cholesky_solve(y[g, p, rows].unsqueeze(-1), factor).squeeze(-1)
    return out


def _line_search(
    beta: torch.Tensor,
    f: torch.Tensor,
    delta: torch.Tensor,
    e: torch.Tensor,
    y: torch.Tensor,
    c: torch.Tensor,
) -> torch.Tensor:
    """Exact minimiser ``t >= 0`` of ``F(beta + t delta)`` per problem (``[G, P]``).

    ``F(t) = 1/2 (beta + t delta)^T K (beta + t delta) + sum_i c_i max(0, u_i - t v_i)^2`` with
    ``u = 1 - y f``, ``v = y e`` and ``e = K delta``. ``F'`` is piecewise linear and non-decreasing;
    its root is found by sweeping the sorted breakpoints ``u_i / v_i`` (Keerthi & DeCoste 2005, sec. 3).
    """
    u = 1.0 - y * f
    v = y * e
    active0 = (u > 0) & (c > 0)
    # on a segment F'(t) = const + lin * t
    const0 = (delta * f).sum(-1) - (2 * c * u * v * active0).sum(-1)
    lin0 = (delta * e).sum(-1) + (2 * c * v * v * active0).sum(-1)
    # a row leaves the active set at u/v when v > 0, enters it there when v < 0
    safe_v = v.where(v != 0, torch.ones_like(v))
    t_break = u / safe_v
    changes = (c > 0) & (t_break >= 0) & (((v > 0) & active0) | ((v < 0) & ~active0))
    inf = torch.full_like(u, float("inf"))
    t_break = t_break.where(changes, inf)
    sign = torch.where(v > 0, -1.0, 1.0).to(u.dtype) * changes
    order = t_break.argsort(dim=-1)
    t_sorted = t_break.gather(-1, order)
    const = torch.cat(
        [const0[..., None], const0[..., None] + (sign * -2 * c * u * v).gather(-1, order).cumsum(-1)], -1
    )
    lin = torch.cat(
        [lin0[..., None], lin0[..., None] + (sign * 2 * c * v * v).gather(-1, order).cumsum(-1)], -1
    )
    starts = torch.cat([torch.zeros_like(t_sorted[..., :1]), t_sorted], dim=-1)
    ends = torch.cat([t_sorted, inf[..., :1]], dim=-1)
    root = torch.where(
        lin > 0, -const / lin.where(lin > 0, torch.ones_like(lin)), torch.full_like(lin, float("inf"))
    )
    inside = (root >= starts) & (root <= ends)
    t = root.gather(-1, inside.to(torch.uint8).argmax(dim=-1, keepdim=True)).squeeze(-1)
    t = t.where(inside.any(-1), torch.ones_like(t))
    return t.where(const0 < 0, torch.zeros_like(t)).clamp_min(0)


def _relative_gradient(
    kernel: torch.Tensor,
    pre: Preconditioner | None,
    rho: torch.Tensor,
    norm: torch.Tensor,
    tol: float,
    problems: torch.Tensor,
) -> torch.Tensor:
    """``||grad F(w)|| / ||w||`` with ``grad F(w) = X~^T rho``, ``||grad F||^2 = rho^T K rho``.

    First the bound ``sum_j lambda_j (u_j . rho)^2 + lambda_k ||rho||^2`` from the preconditioner's
    eigenpairs (no kernel product); the exact value only for the problems the bound cannot settle.
    """
    squared = torch.full_like(norm, float("inf"))
    exact = problems
    if pre is not None and pre.values.shape[-1]:
        projected = torch.einsum("gmk,gpm->gpk", pre.vectors, rho)
        bound = (projected.square() * pre.values[:, None]).sum(-1) + pre.values[:, -1:] * rho.square().sum(-1)
        settled = problems & (bound <= (tol * norm) ** 2)
        squared = torch.where(settled, bound, squared)
        exact = problems & ~settled
    if bool(exact.any()):
        value = (rho * _kernel_times(kernel, rho, exact)).sum(-1).clamp_min(0)
        squared = torch.where(exact, value, squared)
    ratio = squared.sqrt() / norm.where(norm > 0, torch.ones_like(norm))
    return ratio.where(norm > 0, torch.full_like(ratio, float("inf")))


def solve_kernel_svm(
    kernel: torch.Tensor,
    y: torch.Tensor,
    c: torch.Tensor,
    beta0: torch.Tensor | None = None,
    options: SolverOptions | None = None,
    pre: Preconditioner | None = None,
    f0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, SolveInfo]:
    """Solve a batch of squared-hinge SVMs in kernel coordinates.

    Args:
        kernel: ``[G, m, m]``, ``K = X~ X~^T`` (:func:`linear_kernel`): ``G`` groups of problems.
        y: ``[G, P, m]`` targets +1/-1 (any value on excluded rows).
        c: ``[G, P, m]`` row costs ``C * class_weight[y]``; 0 leaves the row out of the problem.
        beta0: ``[G, P, m]`` starting point (warm start); zero by default. It must be 0 on the
            rows ``c`` leaves out.
        options: stopping rules (:class:`SolverOptions`).
        pre: the kernels' :func:`top_eigenpairs` (computed here when needed and omitted).
        f0: ``K beta0`` when the caller has it.

    Returns:
        ``beta [G, P, m]`` (``w~ = X~^T beta``, 0 on excluded rows), the decision values of all
        ``m`` rows ``f = K beta`` (excluded rows included: held-out scores; updated along the
        steps, equal to a fresh product up to rounding) and :class:`SolveInfo`.
    """
    options = options or SolverOptions()
    if options.method not in ("auto", "cg", "direct"):
        raise SslzooError(f"svm solver: method must be auto, cg or direct, got {options.method!r}")
    if (
        kernel.ndim != 3
        or y.shape != c.shape
        or y.shape[0] != kernel.shape[0]
        or y.shape[-1] != kernel.shape[-1]
    ):
        raise SslzooError(
            f"svm solver: kernel {tuple(kernel.shape)}, targets {tuple(y.shape)} and costs {tuple(c.shape)} do not fit"
        )
    dtype = kernel.dtype
    m = kernel.shape[-1]
    y = y.to(dtype)
    c = c.to(dtype)
    included = c > 0
    two_c = (2 * c).where(included, torch.ones_like(c))
    diag = 1.0 / two_c
    if beta0 is None:
        beta, f = torch.zeros_like(c), torch.zeros_like(c)
    else:
        beta = beta0.to(dtype) * included
        f = _kernel_times(kernel, beta) if f0 is None else f0.to(dtype)
    if m > options.small and pre is None:
        pre = top_eigenpairs(kernel, options.rank)
    top = (pre.values[:, 0] if pre.values.shape[-1] else pre.tail) if pre is not None else None
    shape = c.shape[:2]
    newton, cg, direct_count = (torch.zeros(shape, dtype=torch.long, device=c.device) for _ in range(3))
    residual = torch.full(shape, float("inf"), dtype=dtype, device=c.device)
    running = torch.ones(shape, dtype=torch.bool, device=c.device)
    stalled = torch.zeros_like(running)
    exact = torch.zeros_like(running)  # solve the next Newton step directly
    for step in range(options.max_newton + 1):
        active = included & (y * f < 1)
        rho = beta - 2 * c * (y - f) * active  # at the optimum beta = 2 c (y - f) on A, 0 elsewhere
        norm = (beta * f).sum(-1).clamp_min(0).sqrt()
        if step > 0:  # a new cost never starts at its optimum
            residual = torch.where(
                running, _relative_gradient(kernel, pre, rho, norm, options.tol, running), residual
            )
            running = (residual > options.tol) & ~stalled
        if not bool(running.any()) or step == options.max_newton:
            break
        delta = torch.zeros_like(beta)
        e = torch.zeros_like(beta)
        if m <= options.small:
            delta = (_direct_padded(kernel, active, diag, y, running) - beta) * running[..., None]
            e = _kernel_times(kernel, delta, running)
            direct = running
        else:
            # Work of one Newton step in units of multiply-adds of the batched kernel product:
            # a Cholesky solve (a^3/3, plus ~360 a^2 for gathering K_AA and the triangular solves,
            # measured on CPU) against the expected preconditioned CG steps (2 m^2 each), which
            # grow with the ratio of the kernel's tail to the smallest diagonal 1/(2c).
            sizes = active.sum(-1).to(dtype)
            d_min = diag.where(active, torch.full_like(diag, float("inf"))).amin(-1)
            expected_cg = 4 + 8 * (pre.tail[:, None] / d_min).clamp_min(0) ** 0.25
            direct_work = (sizes**3 / 3 + 360 * sizes**2) * (4.0 if kernel.is_cuda else 1.0)
            cheaper = direct_work < expected_cg * 2 * m * m
            if options.method != "auto":
                cheaper = torch.full_like(cheaper, options.method == "direct")
                direct_work = torch.full_like(direct_work, float("inf"))  # no hand-over from CG
            direct = running & (cheaper | exact)
            iterative = running & ~direct
            if bool(iterative.any()):
                system = _ActiveSystem(kernel, pre, active, diag, iterative)
                # a CG residual r moves ||grad F|| by at most 2 max(c) sqrt(lambda_max) ||r||
                floor = 0.1 * options.tol * norm / (2 * c.amax(-1) * top[:, None].sqrt())
                solved, k_solved, steps, handed = _conjugate_gradients(
                    system, y, beta, f, iterative, options.cg_rtol, floor, options.max_cg, direct_work
                )
                finished = iterative & ~handed
                delta = torch.where(finished[..., None], solved - beta, delta)
                e = torch.where(finished[..., None], k_solved - f, e)
                cg += steps
                direct |= handed
            if bool(direct.any()):
                solved = _direct_gathered(kernel, active, diag, y, direct)
                delta = torch.where(direct[..., None], solved - beta, delta)
                e = e + _kernel_times(kernel, delta * direct[..., None], direct)
        direct_count += direct.long()
        t = _line_search(beta, f, delta, e, y, c)
        # No descent along the Newton direction: after an exact (direct) step the objective is at
        # its floating-point floor; after a CG step the next step is solved directly.
        no_descent = running & (t == 0)
        stalled |= no_descent & direct
        exact = no_descent & ~direct
        beta = beta + t[..., None] * delta
        f = f + t[..., None] * e
        newton += running.long()
    return beta, f, SolveInfo(newton_steps=newton, cg_steps=cg, direct_steps=direct_count, residual=residual)


def fit_cost_path(
    kernel: torch.Tensor,
    y: torch.Tensor,
    row_weight: torch.Tensor,
    costs: Sequence[float],
    options: SolverOptions | None = None,
    pre: Preconditioner | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[SolveInfo]]:
    """Solve every problem for every cost, each cost warm-started from the next smaller one.

    Args:
        kernel: ``[G, m, m]``.
        y: ``[G, P, m]`` +1/-1.
        row_weight: ``[G, P, m]`` class weight of each row (0 leaves it out); the row cost is ``C * weight``.
        costs: the costs ``C``, in any order.
        options: stopping rules.
        pre: the kernels' :func:`top_eigenpairs` (computed here when needed and omitted).

    Returns:
        ``beta`` and ``f = K beta``, both ``[len(costs), G, P, m]`` in the order of ``costs``, and
        the :class:`SolveInfo` of each cost (same order).
    """
    options = options or SolverOptions()
    if any(float(cost) <= 0 for cost in costs):
        raise SslzooError(f"svm solver: costs must be positive, got {list(costs)}")
    if pre is None and kernel.shape[-1] > options.small:
        pre = top_eigenpairs(kernel, options.rank)
    betas = torch.empty((len(costs), *y.shape), dtype=kernel.dtype, device=kernel.device)
    values = torch.empty_like(betas)
    infos: dict[int, SolveInfo] = {}
    beta = f = None
    for index in sorted(range(len(costs)), key=lambda i: float(costs[i])):
        cost = float(costs[index])
        beta, f, infos[index] = solve_kernel_svm(kernel, y, row_weight * cost, beta, options, pre, f)
        betas[index] = beta
        values[index] = f
    return betas, values, [infos[i] for i in range(len(costs))]
