"""The online network and its slow-moving (EMA) target that BYOL, Triplet and ORL build on.

Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, as MMSelfSup 0.x builds it
(mmselfsup/models/algorithms/byol.py, mmselfsup/models/necks/nonlinear_neck.py,
mmselfsup/core/hooks/momentum_update_hook.py):

- online: backbone -> global avgpool -> projector ``C -> hidden -> out`` -> predictor
  ``out -> hidden -> out`` (:class:`~sslzoo.models.mlp.MLP`);
- target: a copy of backbone + projector, updated only by the exponential moving average
  ``t <- m t + (1 - m) o`` after each optimizer step, with the cosine momentum of
  :func:`~sslzoo.runtime.schedules.cosine_momentum` (parameters only; the target's BN running
  statistics follow its own forward passes, as in the reference);
- :meth:`MomentumPair.branch_loss`: the symmetric loss ``loss_scale * (pair_loss(q(o(x1)), t(x2))
  + pair_loss(q(o(x2)), t(x1)))`` of one predictor head ``q``, with BYOL's ``pair_loss``
  (:func:`~sslzoo.losses.negative_cosine`) and ``loss_scale`` 2 unless a method changes them.

The modules are attributes of the method itself (``backbone``, ``projector``, ``predictor``,
``target_backbone``, ``target_projector``, created in that order), so a method's checkpoint keys
are ``backbone.*``, ``projector.*``, ... and ``self.backbone`` is the online backbone (the one
extracted).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.errors import SslzooError
from sslzoo.losses import negative_cosine
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args
from sslzoo.models.mlp import MLP, MLP_KEYS
from sslzoo.runtime.schedules import cosine_momentum

# method_args keys -> the BYOL reference's values
METHOD_KEYS: dict[str, Any] = {"base_momentum": 0.99, "projector": {}, "predictor": {}}


class MomentumPair(nn.Module):
    """Online backbone + projector + predictor and an EMA target backbone + projector.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone.
        conv_init: the backbone's conv init mode (``backbone.conv_init``, :class:`ResNetBackbone`);
            the target backbone starts as a copy of the online one.
        base_momentum: ``m0`` of the cosine momentum schedule.
        projector: :class:`MLP` keyword arguments (``hidden``, ``out``, ``bias``, ``last_bias``,
            ``init``) for ``C -> hidden -> out``.
        predictor: the same for ``out -> hidden -> out``.
    """

    #: factor on ``pair_loss(o1, t2) + pair_loss(o2, t1)`` (the reference's ``2. * (...)``)
    loss_scale: float = 2.0

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = False,
        conv_init: str = DEFAULT_CONV_INIT,
        base_momentum: float = 0.99,
        projector: Mapping[str, Any] | None = None,
        predictor: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        projector = section_with_defaults(projector, MLP_KEYS, "method_args.projector")
        predictor = section_with_defaults(predictor, MLP_KEYS, "method_args.predictor")
        if not 0.0 <= base_momentum <= 1.0:
            raise SslzooError(f"model config method_args.base_momentum = {base_momentum}: must be in [0, 1]")
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        self.projector = MLP(self.backbone.out_channels, **projector)
        self.predictor = MLP(int(projector["out"]), **predictor)
        self.target_backbone = copy.deepcopy(self.backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for param in self.target_parameters():
            param.requires_grad_(False)
        self.base_momentum = float(base_momentum)
        self.momentum = float(base_momentum)

    @classmethod
    def method_kwargs(cls, cfg: dict) -> dict[str, Any]:
        """Constructor arguments from a model config (``backbone`` and ``method_args``)."""
        args = section_with_defaults(cfg.get("method_args"), cls.method_keys(), "method_args")
        return {
            **backbone_args(cfg),
            **args,
        }

    @classmethod
    def method_keys(cls) -> dict[str, Any]:
        """The ``method_args`` keys this class takes, with the reference defaults."""
        return dict(METHOD_KEYS)

    @classmethod
    def from_config(cls, cfg: dict) -> MomentumPair:
        """Build from a model config; ``method_args``: ``base_momentum``, ``projector``, ``predictor``."""
        return cls(**cls.method_kwargs(cfg))

    # ---- networks

    def online_parameters(self) -> list[nn.Parameter]:
        """Parameters the EMA reads from: online backbone then projector."""
        return list(self.backbone.parameters()) + list(self.projector.parameters())

    def target_parameters(self) -> list[nn.Parameter]:
        """Parameters the EMA writes, matching :meth:`online_parameters` one to one."""
        return list(self.target_backbone.parameters()) + list(self.target_projector.parameters())

    def online_projection(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> online projection ``[N, out]``."""
        return self.projector(self.backbone(images)[0].mean(dim=(2, 3)))

    @torch.no_grad()
    def target_projection(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> target projection ``[N, out]`` (no gradient)."""
        return self.target_projector(self.target_backbone(images)[0].mean(dim=(2, 3)))

    # ---- hooks a subclass may change

    def online_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the online network sees of a view (unchanged for BYOL)."""
        return images

    def target_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the target network sees of a view (unchanged for BYOL)."""
        return images

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of one (online prediction ``[N, D]``, target projection ``[N, D]``) pair: ``h``."""
        return negative_cosine(prediction, target)

    # ---- loss and EMA

    def branch_loss(
        self, head: Callable[[torch.Tensor], torch.Tensor], x1: torch.Tensor, x2: torch.Tensor
    ) -> torch.Tensor:
        """``loss_scale * (pair_loss(head(o(x1)), t(x2)) + pair_loss(head(o(x2)), t(x1)))`` for two
        ``[B, 3, H, W]`` views, ``o`` and ``t`` the online and target projections of
        :meth:`online_input` and :meth:`target_input`; with ``head = self.predictor`` BYOL's loss."""
        pred1 = head(self.online_projection(self.online_input(x1)))
        pred2 = head(self.online_projection(self.online_input(x2)))
        with torch.no_grad():
            target1 = self.target_projection(self.target_input(x1))
            target2 = self.target_projection(self.target_input(x2))
        return self.loss_scale * (self.pair_loss(pred1, target2) + self.pair_loss(pred2, target1))

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """``target <- momentum * target + (1 - momentum) * online``, parameter by parameter."""
        targets, onlines = self.target_parameters(), self.online_parameters()
        if len(targets) != len(onlines):
            raise RuntimeError("target and online networks differ in their parameters")
        # one multi-tensor kernel per op instead of two per parameter (same arithmetic)
        torch._foreach_mul_(targets, momentum)
        torch._foreach_add_(targets, [p.detach() for p in onlines], alpha=1.0 - momentum)

    def after_step(self, progress: float) -> None:
        """Set the cosine momentum for ``progress`` (finished / total iterations) and update the
        target (mmselfsup 0.x mmselfsup/core/hooks/momentum_update_hook.py, which takes ``k / K``
        from the iterations finished before the step: one iteration earlier than here)."""
        self.momentum = cosine_momentum(self.base_momentum, progress)
        self.momentum_update(self.momentum)
