"""BYOL's loss and target update and one LARS step against lightly 1.6.0 on the same tensors.

- loss: ``lightly.loss.NegativeCosineSimilarity`` (``-cos(x0, x1).mean()``) in the reference's
  symmetric form ``2 * (h(p1, z2) + h(p2, z1))`` (mmselfsup 0.x BYOL; lightly's own BYOL example
  scales it by 0.5 instead);
- target update: ``lightly.models.utils.update_momentum`` at the momentum of
  ``lightly.utils.scheduler.cosine_schedule``;
- LARS: ``lightly.utils.lars.LARS`` (PyTorch Lightning Bolts'), whose parameters of weight decay 0
  skip the trust ratio - what our ``exclude_bn_bias`` groups do (weight decay 0, ``lars_exclude``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sslzoo.methods.byol import BYOL
from sslzoo.runtime.optim import build_optimizer
from sslzoo.runtime.schedules import cosine_momentum
from tests.parity.reference import Recorder, import_side

LIGHTLY = "lightly==1.6.0"
SMALL_MLP = {"hidden": 32, "out": 8}


def tiny_byol() -> BYOL:
    torch.manual_seed(0)
    return BYOL(depth=18, projector=SMALL_MLP, predictor=SMALL_MLP)


def test_byol_loss_and_its_gradient_equal_lightlys(record: Recorder) -> None:
    criterion = import_side("lightly.loss", LIGHTLY).NegativeCosineSimilarity()
    model = tiny_byol()
    generator = torch.Generator().manual_seed(1)
    views = (torch.randn(6, 3, 32, 32, generator=generator), torch.randn(6, 3, 32, 32, generator=generator))
    ours = model(views)["loss"]
    ours.backward()
    ours_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    # the same forward, the loss by lightly (train-mode BN: the same batch gives the same outputs)
    p1 = model.predictor(model.online_projection(views[0]))
    p2 = model.predictor(model.online_projection(views[1]))
    with torch.no_grad():
        z1, z2 = model.target_projection(views[0]), model.target_projection(views[1])
    theirs = 2 * (criterion(p1, z2) + criterion(p2, z1))
    theirs.backward()
    theirs_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    record.add("byol_loss", ours=ours.item(), lightly=theirs.item())
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert len(ours_grads) == len(theirs_grads) > 0
    for mine, other in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-7)


def test_momentum_schedule_and_target_update_equal_lightlys(record: Recorder) -> None:
    """Our update after iteration k of K uses ``cosine_momentum(m0, k / K)`` (trainer.py); lightly's
    ``cosine_schedule(step, max_steps, m0, 1)`` reaches 1 at ``step = max_steps - 1``: step k of K + 1."""
    scheduler = import_side("lightly.utils.scheduler", LIGHTLY)
    update_momentum = import_side("lightly.models.utils", LIGHTLY).update_momentum
    model = tiny_byol()
    online = nn.ModuleList([model.backbone, model.projector])
    target = copy.deepcopy(nn.ModuleList([model.target_backbone, model.target_projector]))
    generator = torch.Generator().manual_seed(2)
    total = 5
    for k in range(1, total + 1):
        with torch.no_grad():  # the online network moves between updates
            for param in online.parameters():
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
        model.after_step(k / total)
        momentum = scheduler.cosine_schedule(k, total + 1, 0.99, 1.0)
        record.add("byol_momentum", k=k, ours=model.momentum, lightly=momentum)
        assert model.momentum == pytest.approx(momentum, rel=0, abs=1e-15)
        update_momentum(online, target, momentum)
        ours_target = [*model.target_backbone.parameters(), *model.target_projector.parameters()]
        for mine, other in zip(ours_target, target.parameters(), strict=True):
            torch.testing.assert_close(mine, other, rtol=0, atol=1e-7)
    assert model.momentum == 1.0 and cosine_momentum(0.99, 0.0) == scheduler.cosine_schedule(
        0, total + 1, 0.99, 1.0
    )


class ConvBNLinear(nn.Module):
    """A conv without bias, a BN, a linear with bias: every kind of LARS group."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("steps", [1, 2])
def test_lars_steps_equal_lightlys(steps: int, record: Recorder) -> None:
    """BYOL's LARS (lr 4.8, momentum 0.9, wd 1e-6, eta 0.001, BN and biases excluded) at a
    constant lr; the momentum buffers of the two differ by the factor lr (ours holds lr-scaled
    updates as mmselfsup 0.x, lightly's the unscaled ones), the same thing while lr stays put."""
    lars = import_side("lightly.utils.lars", LIGHTLY).LARS
    model = ConvBNLinear()
    cfg = {
        "method": "parity",
        "train": {"optimizer": {"name": "lars", "lr": 4.8, "momentum": 0.9, "weight_decay": 1e-6,
                                "eta": 0.001, "exclude_bn_bias": True}},
    }  # fmt: skip
    ours = build_optimizer(model, cfg)
    twin = copy.deepcopy(model)
    index = {id(p): name for name, p in model.named_parameters()}
    twin_params = dict(twin.named_parameters())
    theirs = lars(
        [
            {"params": [twin_params[index[id(p)]] for p in group["params"]], "weight_decay": group["weight_decay"]}
            for group in ours.param_groups
        ],
        lr=4.8, momentum=0.9, trust_coefficient=0.001,
    )  # fmt: skip
    assert sorted(len(g["params"]) for g in ours.param_groups) == [2, 3]  # conv + fc.weight | bn + fc.bias
    generator = torch.Generator().manual_seed(4)
    for _ in range(steps):
        for name, param in model.named_parameters():
            param.grad = torch.randn(param.shape, generator=generator)
            twin_params[name].grad = param.grad.clone()
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        ours.step()
        theirs.step()
    for name, param in model.named_parameters():
        moved = (param - before[name]).abs().max().item()
        record.add("lars", steps=steps, parameter=name, max_abs_difference=(param - twin_params[name]).abs().max().item(),
                   update=moved)  # fmt: skip
        assert moved > 0, name
        torch.testing.assert_close(param, twin_params[name], rtol=1e-6, atol=1e-9)
