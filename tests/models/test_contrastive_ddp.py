"""The contrastive methods across two gloo processes (one spawn for all checks):

- NT-Xent over the gathered batch through DDP gives the loss (mean over the processes) and the
  gradients of one process holding the joint batch;
- Shuffling BN: one permutation, drawn on rank 0, of the global batch, undone exactly;
- MoCo: its key encoder sees the shuffled global batch and both queues take the keys of both
  processes in rank order; trained through the trainer (DDP), both processes end with the same
  weights, key encoder and queue.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sslzoo.engine.trainer import train
from sslzoo.methods.moco import MoCo
from sslzoo.models.contrastive import nt_xent
from sslzoo.models.shuffle_bn import shuffle_across_processes, unshuffle_across_processes
from sslzoo.runtime.dist import cleanup, init_distributed
from tests.engine.test_trainer import make_cfg
from tests.methods.test_simclr import TwoNoisyViews

N = 3  # samples per process
SHUFFLE_SEED, MOCO_SEED = 10, 20


def joint_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """The two views ``[2N, 6]`` of the joint batch; process r holds rows r N .. (r + 1) N - 1."""
    generator = torch.Generator().manual_seed(1)
    x1 = torch.randn(2 * N, 6, generator=generator)
    return x1, x1 + 0.5 * torch.randn(2 * N, 6, generator=generator)


def joint_images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return torch.randn(2 * N, 3, 16, 16, generator=generator), torch.randn(
        2 * N, 3, 16, 16, generator=generator
    )


def linear_net() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(6, 5)


def tiny_moco() -> MoCo:
    torch.manual_seed(0)
    return MoCo(depth=18, neck={"hidden": 16, "out": 8}, queue_len=4 * N, temperature=0.2)


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    ctx = init_distributed(use_cuda=False)
    out: dict[str, Any] = {}
    mine = slice(rank * N, (rank + 1) * N)
    try:
        # NT-Xent through DDP: both views in one forward, as SimCLR
        net = linear_net()
        x1, x2 = joint_inputs()
        ddp = DistributedDataParallel(net)  # held until backward: its reducer averages the gradients
        z = ddp(torch.cat([x1[mine], x2[mine]]))
        loss = nt_xent(z[:N], z[N:], 0.1)
        loss.backward()
        out["loss"] = loss.item()
        out["grads"] = [net.weight.grad.clone(), net.bias.grad.clone()]

        # Shuffling BN; each rank seeds differently: rank 0's permutation must win
        torch.manual_seed(SHUFFLE_SEED + rank)
        rows = torch.arange(2.0 * N).view(2 * N, 1)[mine]
        shuffled, unshuffle = shuffle_across_processes(rows)
        out["shuffled"] = shuffled
        out["restored"] = unshuffle_across_processes(shuffled * 10, unshuffle)

        # MoCo: what its key encoder sees, the keys it computes, its queue
        moco = tiny_moco()
        seen: list[torch.Tensor] = []
        moco.key_backbone.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
        encode_key = moco.encode_key
        keys: list[torch.Tensor] = []

        def recording(images: torch.Tensor) -> torch.Tensor:
            keys.append(encode_key(images))
            return keys[-1]

        moco.encode_key = recording  # type: ignore[method-assign]
        view1, view2 = joint_images()
        torch.manual_seed(MOCO_SEED + rank)  # the shuffle is the forward's first draw
        moco((view1[mine], view2[mine]))
        out["key_input"], out["keys"] = seen[0], keys[0]
        out["queue"], out["ptr"] = moco.key_queue.queue.clone(), moco.key_queue.ptr.clone()

        # MoCo through the trainer: 2 processes x 2 images, 2 iterations
        moco = tiny_moco()
        cfg = make_cfg(batch_size=2, epochs=1)
        cfg["train"]["optimizer"]["lr"] = 0.01
        train(moco, TwoNoisyViews(size=8), cfg, Path(out_dir) / "work", seed=0, ctx=ctx)
        out["trained"] = {key: value.clone() for key, value in moco.state_dict().items()}
    finally:
        cleanup()
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of the two processes recorded."""
    out_dir = tmp_path_factory.mktemp("contrastive_ddp")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # fork: the workers share the imported modules instead of importing torch again
    torch.multiprocessing.start_processes(
        _worker, args=(port, str(out_dir)), nprocs=2, join=True, start_method="fork"
    )
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=True) for rank in range(2)]


def test_nt_xent_over_two_processes_equals_one_process_on_the_joint_batch(
    ranks: list[dict[str, Any]],
) -> None:
    net = linear_net()
    x1, x2 = joint_inputs()
    z = net(torch.cat([x1, x2]))
    joint = nt_xent(z[: 2 * N], z[2 * N :], 0.1)
    joint.backward()
    # the log's and DDP's mean over the processes
    assert (ranks[0]["loss"] + ranks[1]["loss"]) / 2 == pytest.approx(joint.item(), rel=1e-6)
    assert ranks[0]["loss"] != pytest.approx(ranks[1]["loss"])  # each process its own rows
    for rank in ranks:
        for mine, expected in zip(rank["grads"], [net.weight.grad, net.bias.grad], strict=True):
            torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-7)


def test_shuffle_permutes_the_global_batch_by_rank_0s_draw_and_is_undone(ranks: list[dict[str, Any]]) -> None:
    torch.manual_seed(SHUFFLE_SEED)
    permutation = torch.randperm(2 * N)
    rows = torch.arange(2.0 * N).view(2 * N, 1)
    assert torch.equal(torch.cat([ranks[0]["shuffled"], ranks[1]["shuffled"]]), rows[permutation])
    assert permutation.tolist() != list(range(2 * N))
    for rank, recorded in enumerate(ranks):
        assert torch.equal(recorded["restored"], rows[rank * N : (rank + 1) * N] * 10)


def test_moco_keys_come_from_the_shuffled_global_batch_and_fill_both_queues(
    ranks: list[dict[str, Any]],
) -> None:
    torch.manual_seed(MOCO_SEED)
    permutation = torch.randperm(2 * N)
    _, view2 = joint_images()
    for rank, recorded in enumerate(ranks):
        assert torch.equal(recorded["key_input"], view2[permutation[rank * N : (rank + 1) * N]])
    keys = torch.cat([ranks[0]["keys"], ranks[1]["keys"]])  # [2N, 8], rank order
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"])
    assert ranks[0]["ptr"].tolist() == ranks[1]["ptr"].tolist() == [2 * N]
    torch.testing.assert_close(ranks[0]["queue"][:, : 2 * N], keys.t())
    untouched = tiny_moco().key_queue.queue[:, 2 * N :]
    assert torch.equal(ranks[0]["queue"][:, 2 * N :], untouched)


def test_moco_trained_on_two_processes_keeps_them_identical(ranks: list[dict[str, Any]]) -> None:
    first, second = ranks[0]["trained"], ranks[1]["trained"]
    assert first.keys() == second.keys()
    # every weight and the queue; not the BN running statistics, each process's own batches'
    shared = [
        key for key in first if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    assert "key_queue.queue" in shared and "key_neck.0.weight" in shared
    for key in shared:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=1e-6, msg=key)
    assert first["key_queue.ptr"].tolist() == [(2 * 2 * 2) % (4 * N)]  # 2 iterations of 2 x 2 keys
    start = tiny_moco().state_dict()
    assert not torch.equal(first["backbone.conv1.weight"], start["backbone.conv1.weight"])
    assert not torch.equal(first["key_backbone.conv1.weight"], start["key_backbone.conv1.weight"])
