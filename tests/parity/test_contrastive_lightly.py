"""SimCLR's and MoCo's losses, MoCo's queue, key update and single-process shuffle against
lightly 1.6.0 on the same tensors.

- NT-Xent: ``lightly.loss.NTXentLoss`` (``gather_distributed=False`` in one process; ``True``
  in two gloo processes, each with its own rows: loss and gradients per process);
- MoCo's InfoNCE against the queue and the queue update: ``NTXentLoss`` with a memory bank
  (``memory_bank_size=(K, D)``), its bank started from our queue: lightly scores the same
  ``[q.k, q.bank]`` and then enqueues the keys, for a few steps (K a multiple of the batch, the
  reference's case: lightly drops the keys past the end, we wrap around);
- the key encoder update: ``lightly.models.utils.update_momentum``;
- the shuffle of one process: ``lightly.models.utils.batch_shuffle`` / ``batch_unshuffle``.
"""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslzoo.methods.moco import MoCo
from sslzoo.models.contrastive import info_nce, nt_xent
from sslzoo.models.queue import KeyQueue
from sslzoo.models.shuffle_bn import shuffle_across_processes, unshuffle_across_processes
from sslzoo.runtime.dist import cleanup, init_distributed
from tests.parity.reference import Recorder, import_side

LIGHTLY = "lightly==1.6.0"
N, D = 4, 6  # samples per process, projection width


def projections(seed: int, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, D, generator=generator)
    return z1, z1 + 0.7 * torch.randn(n, D, generator=generator)


def loss_and_grads(loss_fn: object, z1: torch.Tensor, z2: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    loss = loss_fn(a, b)  # type: ignore[operator]
    loss.backward()
    return loss.item(), [a.grad, b.grad]  # type: ignore[list-item]


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_equals_lightlys_in_one_process(temperature: float, record: Recorder) -> None:
    criterion = import_side("lightly.loss", LIGHTLY).NTXentLoss(
        temperature=temperature, gather_distributed=False
    )
    z1, z2 = projections(0, n=6)
    ours, ours_grads = loss_and_grads(lambda a, b: nt_xent(a, b, temperature), z1, z2)
    theirs, theirs_grads = loss_and_grads(criterion, z1, z2)
    record.add("nt_xent", processes=1, temperature=temperature, ours=ours, lightly=theirs)
    assert ours == pytest.approx(theirs, rel=1e-6)
    for mine, other in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-5, atol=1e-7)


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    criterion = import_side("lightly.loss", LIGHTLY).NTXentLoss(temperature=0.1, gather_distributed=True)
    init_distributed(use_cuda=False)
    try:
        z1, z2 = projections(10 + rank)  # each process its own rows
        ours = loss_and_grads(lambda a, b: nt_xent(a, b, 0.1), z1, z2)
        theirs = loss_and_grads(criterion, z1, z2)
    finally:
        cleanup()
    torch.save({"ours": ours, "lightly": theirs}, Path(out_dir) / f"rank{rank}.pt")


def test_nt_xent_over_two_processes_equals_lightlys_gather_distributed(
    tmp_path: Path, record: Recorder
) -> None:
    import_side("lightly.loss", LIGHTLY)  # fail here, not in a child, when lightly is missing
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # fork: the workers share the imported modules instead of importing torch again
    torch.multiprocessing.start_processes(
        _worker, args=(port, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        (ours, ours_grads), (theirs, theirs_grads) = out["ours"], out["lightly"]
        record.add("nt_xent", processes=2, rank=rank, ours=ours, lightly=theirs)
        assert ours == pytest.approx(theirs, rel=1e-6)
        for mine, other in zip(ours_grads, theirs_grads, strict=True):
            torch.testing.assert_close(mine, other, rtol=1e-5, atol=1e-7)


def test_moco_loss_and_queue_equal_lightlys_memory_bank(record: Recorder) -> None:
    length, temperature = 3 * N, 0.2
    torch.manual_seed(0)
    queue = KeyQueue(D, length)
    criterion = import_side("lightly.loss", LIGHTLY).NTXentLoss(
        temperature=temperature, memory_bank_size=(length, D)
    )
    criterion.memory_bank.bank.copy_(queue.queue.t())  # lightly keeps [K, D]
    criterion.memory_bank.bank_ptr.zero_()
    for step in range(5):  # past the end of the queue and around again
        q, k = projections(20 + step)
        q = q.requires_grad_(True)
        qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
        ours = info_nce((qn * kn).sum(dim=1, keepdim=True), qn @ queue.negatives(), temperature)
        (ours_grad,) = torch.autograd.grad(ours, q)
        queue.enqueue(kn)
        twin = q.detach().clone().requires_grad_(True)
        theirs = criterion(twin, k)  # scores against the bank, then enqueues normalize(k)
        theirs.backward()
        record.add("moco_queue", step=step, ours=ours.item(), lightly=theirs.item())
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
        torch.testing.assert_close(ours_grad, twin.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(queue.queue, criterion.memory_bank.bank.t(), rtol=0, atol=1e-7)
        assert queue.ptr.item() == criterion.memory_bank.bank_ptr.item() == ((step + 1) * N) % length


def test_key_encoder_update_equals_lightlys(record: Recorder) -> None:
    update_momentum = import_side("lightly.models.utils", LIGHTLY).update_momentum
    torch.manual_seed(0)
    model = MoCo(depth=18, neck={"hidden": 16, "out": 8}, queue_len=8, momentum=0.99)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.query_parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    online = nn.ModuleList([model.backbone, model.neck])
    target = copy.deepcopy(nn.ModuleList([model.key_backbone, model.key_neck]))
    model.momentum_update()
    update_momentum(online, target, 0.99)
    differences = [
        (mine - other).abs().max().item()
        for mine, other in zip(model.key_parameters(), target.parameters(), strict=True)
    ]
    record.add("moco_momentum", max_abs_difference=max(differences))
    assert max(differences) <= 1e-7


def test_single_process_shuffle_equals_lightlys() -> None:
    utils = import_side("lightly.models.utils", LIGHTLY)
    images = torch.randn(8, 3, 2, 2)
    torch.manual_seed(3)
    ours, unshuffle = shuffle_across_processes(images)
    torch.manual_seed(3)
    theirs, shuffle = utils.batch_shuffle(images)
    assert torch.equal(ours, theirs)
    outputs = ours.flatten(1) * 2
    assert torch.equal(
        unshuffle_across_processes(outputs, unshuffle), utils.batch_unshuffle(outputs, shuffle)
    )
