"""Optimisers: SGD (torch) and LARS, with per-group weight decay and BN/bias exclusion.

LARS follows You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks"
(arXiv:1708.03888, Algorithm 1) in the form of mmselfsup 0.x ``mmselfsup/core/optimizer/optimizers.py``:
for each parameter ``w`` with gradient ``g``::

    trust = eta * ||w|| / (||g|| + wd * ||w|| + eps)     (1 when ||w|| or ||g|| is 0, or excluded)
    d     = (g + wd * w) * lr * trust
    buf   = d                           on the first step
    buf   = momentum * buf + (1 - dampening) * d   afterwards
    w    -= buf                          (nesterov: w -= d + momentum * buf)

Note the momentum buffer holds lr-scaled updates (unlike ``torch.optim.SGD``). Parameter groups
carrying ``lars_exclude=True`` skip the trust ratio; with ``optimizer.exclude_bn_bias`` the
parameters that the reference configs' ``paramwise_options`` name (:data:`LARS_EXCLUDE_PATTERNS`)
go to such a group with ``weight_decay=0``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from sslzoo.errors import SslzooError

# Norm layers by type (BatchNorm, SyncBatchNorm, InstanceNorm derive from _NormBase): mmcv's
# norm_decay_mult of the linear protocols (sslzoo.benchmarks.classifier_loop).
NORM_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)

# exclude_bn_bias: the reference's LARS paramwise_options, in this order,
#   {'(bn|gn)(\d+)?.(weight|bias)': dict(weight_decay=0., lars_exclude=True),
#    'bias': dict(weight_decay=0., lars_exclude=True)}
# of mmselfsup 0.x configs/selfsup/byol/byol_resnet50_8xb32-accum16-coslr-200e_in1k.py and of
# wanggrun/triplet configs/selfsup/triplet/r50_bs4096_accumulate4_ep1000_fp16_triplet_gpu3090.py;
# mmselfsup/core/optimizer/constructor.py gives a parameter the options of every pattern that
# re.search finds in its name. The first finds the norm layers named bn<N> or gn<N> (the ResNet's
# bn1..bn3, the necks' bn0) but not the shortcut's norm layer, "downsample.1", whose weight keeps
# its weight decay and trust ratio; the second every bias, the shortcut norm's too.
LARS_EXCLUDE_PATTERNS: tuple[str, ...] = (r"(bn|gn)(\d+)?.(weight|bias)", r"bias")


class LARS(Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with momentum (see the module docstring).

    Args:
        params: parameters or parameter-group dicts; a group may set ``lars_exclude=True``.
        lr: base learning rate.
        momentum: momentum factor.
        weight_decay: L2 penalty added to the gradient before scaling.
        dampening: momentum dampening.
        eta: the trust coefficient (0.001 in You et al. and MMSelfSup).
        nesterov: Nesterov momentum.
        eps: added to the trust-ratio denominator.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
        eps: float = 1e-8,
    ) -> None:
        if lr < 0.0 or momentum < 0.0 or weight_decay < 0.0 or eta < 0.0:
            raise ValueError(
                f"LARS needs non-negative lr, momentum, weight_decay, eta; got {lr}, {momentum}, {weight_decay}, {eta}"
            )
        if nesterov and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError("Nesterov momentum needs momentum > 0 and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            dampening=dampening,
            eta=eta,
            nesterov=nesterov,
            eps=eps,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, eta, eps = group["lr"], group["weight_decay"], group["eta"], group["eps"]
            momentum, dampening = group["momentum"], group["dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["lars_exclude"]:
                    scale: torch.Tensor | float = lr
                else:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        eta * w_norm / (g_norm + wd * w_norm + eps),
                        torch.ones_like(w_norm),
                    )
                    scale = trust * lr
                d_p = grad.add(p, alpha=wd).mul_(scale)
                if momentum != 0.0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(momentum).add_(d_p, alpha=1.0 - dampening)
                    d_p = d_p.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.sub_(d_p)
        return loss


def reference_names(model: nn.Module) -> dict[int, str]:
    """The name of each parameter (by ``id``) as the reference's ``named_parameters`` spells it.

    Our names but for the children that a module renames in its ``REFERENCE_NAMES`` mapping
    (``{our child name: the reference's}``, e.g. :class:`sslzoo.models.mlp.MLP`'s ``1`` ->
    ``bn0``); a parameter shared by several modules keeps its first name, as ``named_parameters``.
    The prefixes above the renamed modules differ from the reference's (``projector.`` where it
    has ``online_net.1.``) and match none of :data:`LARS_EXCLUDE_PATTERNS`.
    """
    names: dict[int, str] = {}

    def walk(module: nn.Module, prefix: str) -> None:
        aliases: dict[str, str] = getattr(module, "REFERENCE_NAMES", {})
        for name, param in module.named_parameters(recurse=False):
            names.setdefault(id(param), prefix + aliases.get(name, name))
        for name, child in module.named_children():
            walk(child, f"{prefix}{aliases.get(name, name)}.")

    walk(model, "")
    return names


def lars_excluded_parameters(model: nn.Module) -> set[int]:
    """``id``s of the parameters whose reference name (:func:`reference_names`) one of
    :data:`LARS_EXCLUDE_PATTERNS` is found in (``re.search``)."""
    return {
        key
        for key, name in reference_names(model).items()
        if any(re.search(pattern, name) for pattern in LARS_EXCLUDE_PATTERNS)
    }


def build_param_groups(model: nn.Module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Parameter groups for the optimiser.

    The method's own ``param_groups(cfg)`` when it has one (e.g. a head with its own weight
    decay), else one group of all trainable parameters. With ``train.optimizer.exclude_bn_bias``
    each group is split: the parameters of :func:`lars_excluded_parameters` (the norm layers the
    reference's patterns name, every bias) move to a copy of the group with ``weight_decay=0`` and
    ``lars_exclude=True``. Frozen parameters (``requires_grad=False``) are left out.

    Raises:
        SslzooError: the method's groups miss a trainable parameter or list one twice.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if callable(getattr(model, "param_groups", None)):
        groups = [dict(group) for group in model.param_groups(cfg)]
        for group in groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]
        listed = [id(p) for group in groups for p in group["params"]]
        if len(listed) != len(set(listed)) or set(listed) != {id(p) for p in trainable}:
            raise SslzooError(
                f"method {cfg.get('method')!r}: param_groups(cfg) must list every trainable parameter "
                f"exactly once ({len(listed)} listed, {len(set(listed))} distinct, {len(trainable)} trainable)"
            )
    else:
        groups = [{"params": trainable}]
    if cfg["train"]["optimizer"].get("exclude_bn_bias", False):
        excluded = lars_excluded_parameters(model)
        split: list[dict[str, Any]] = []
        for group in groups:
            options = {key: value for key, value in group.items() if key != "params"}
            split.append({**options, "params": [p for p in group["params"] if id(p) not in excluded]})
            split.append(
                {
                    **options,
                    "weight_decay": 0.0,
                    "lars_exclude": True,
                    "params": [p for p in group["params"] if id(p) in excluded],
                }
            )
        groups = split
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, cfg: dict[str, Any]) -> Optimizer:
    """SGD or LARS from ``cfg["train"]["optimizer"]`` over :func:`build_param_groups`.

    Every group records its ``initial_lr`` (the lr the schedule scales, as mmcv's LrUpdater).
    """
    opt = cfg["train"]["optimizer"]
    name, lr, momentum = opt["name"], float(opt["lr"]), float(opt.get("momentum", 0.9))
    nesterov = bool(opt.get("nesterov", False))
    if nesterov and momentum <= 0.0:
        raise SslzooError("train.optimizer.nesterov: Nesterov momentum needs train.optimizer.momentum > 0")
    groups = build_param_groups(model, cfg)
    common = dict(
        lr=lr, momentum=momentum, weight_decay=float(opt.get("weight_decay", 0.0)), nesterov=nesterov
    )
    optimizer: Optimizer
    if name == "sgd":
        optimizer = torch.optim.SGD(groups, **common)
    elif name == "lars":
        optimizer = LARS(groups, eta=float(opt.get("eta", 0.001)), **common)
    else:
        raise SslzooError(f"train.optimizer.name: expected one of sgd, lars; got {name!r}")
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer
