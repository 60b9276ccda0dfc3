"""SimSiam's loss and SwAV's Sinkhorn codes and loss against lightly 1.6.0 on the same tensors.

- SimSiam: ``lightly.loss.NegativeCosineSimilarity`` in lightly's SimSiam form
  ``0.5 (h(p1, z2) + h(p2, z1))`` with the targets detached (lightly's SimSiam example detaches
  ``z`` in the model), value and gradients;
- SwAV: ``lightly.loss.swav_loss.sinkhorn`` (one process) and ``lightly.loss.SwaVLoss`` with the
  two high-resolution crops as the assigned ones (our ``crops_for_assign`` [0, 1]) and the queue's
  scores as its ``queue_outputs`` (lightly appends them after the batch, mmselfsup puts them
  first: Sinkhorn treats samples alike, so the batch's codes agree).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslzoo.methods.simsiam import SimSiam
from sslzoo.methods.swav import SwAV, sinkhorn, swapped_prediction_loss
from tests.parity.reference import Recorder, import_side

LIGHTLY = "lightly==1.6.0"


def test_simsiam_loss_and_its_gradient_equal_lightlys(record: Recorder) -> None:
    criterion = import_side("lightly.loss", LIGHTLY).NegativeCosineSimilarity()
    torch.manual_seed(0)
    model = SimSiam(depth=18, projector={"hidden": 16, "out": 8}, predictor={"hidden": 4})
    generator = torch.Generator().manual_seed(1)
    views = (torch.randn(6, 3, 16, 16, generator=generator), torch.randn(6, 3, 16, 16, generator=generator))
    ours = model(views)["loss"]
    ours.backward()
    ours_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    z1, z2 = model.encode(views[0]), model.encode(views[1])  # train-mode BN: the same outputs
    p1, p2 = model.predictor(z1), model.predictor(z2)
    theirs = 0.5 * (criterion(p1, z2.detach()) + criterion(p2, z1.detach()))
    theirs.backward()
    record.add("simsiam_loss", ours=ours.item(), lightly=theirs.item())
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    for mine, other in zip(ours_grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("n", "k"), [(32, 3000), (64, 100), (7, 5)])
def test_sinkhorn_equals_lightlys(n: int, k: int, record: Recorder) -> None:
    reference = import_side("lightly.loss.swav_loss", LIGHTLY).sinkhorn
    generator = torch.Generator().manual_seed(n + k)
    z = F.normalize(torch.randn(n, 16, generator=generator), dim=1)
    prototypes = F.normalize(torch.randn(k, 16, generator=generator), dim=1)
    scores = z @ prototypes.t()
    ours = sinkhorn(scores, 3, 0.05)
    theirs = reference(scores, iterations=3, epsilon=0.05)
    record.add("swav_sinkhorn", n=n, k=k, max_abs_difference=(ours - theirs).abs().max().item())
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_loss_equals_lightlys(with_queue: bool, record: Recorder) -> None:
    """Our model's loss on its own scores against SwaVLoss on the same scores split by view."""
    criterion = import_side("lightly.loss", LIGHTLY).SwaVLoss(
        temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05
    )
    torch.manual_seed(0)
    model = SwAV(depth=18, views=5, batch_size=4, epochs=2, projector={"hidden": 16, "out": 8}, prototypes=6,
                 queue_length=8, queue_start_epoch=0)  # fmt: skip
    scores_seen: list[torch.Tensor] = []
    model.prototypes.register_forward_hook(lambda _m, _a, out: scores_seen.append(out))
    generator = torch.Generator().manual_seed(2)
    if with_queue:  # fill the queue (two batches of 4), then the third batch uses it
        for _ in range(2):
            model([torch.randn(4, 3, s, s, generator=generator) for s in (16, 16, 8, 8, 8)])
    queue = model.queue.clone()
    out = model([torch.randn(4, 3, s, s, generator=generator) for s in (16, 16, 8, 8, 8)])
    assert out["queue_used"].item() == float(with_queue)
    scores = scores_seen[-1]
    views = list(scores.split(4))
    queue_outputs = (
        [queue[i] @ model.prototypes.weight.detach().t() for i in range(2)] if with_queue else None
    )
    theirs = criterion(views[:2], views[2:], queue_outputs)
    record.add("swav_loss", queue=with_queue, ours=out["loss"].item(), lightly=theirs.item())
    assert out["loss"].item() == pytest.approx(theirs.item(), rel=1e-5)
    if not with_queue:  # and the loss function on its own, gradient included
        codes = [sinkhorn(v.detach(), 3, 0.05) for v in views[:2]]
        mine = swapped_prediction_loss(scores, codes, [0, 1], 5, 0.1)
        (grad_mine,) = torch.autograd.grad(mine, scores, retain_graph=True)
        (grad_theirs,) = torch.autograd.grad(criterion(views[:2], views[2:]), scores)
        torch.testing.assert_close(grad_mine, grad_theirs, rtol=1e-4, atol=1e-7)
