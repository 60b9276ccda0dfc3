"""The memory bank: normalised init, momentum update at the batch's indices, uniform negatives."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from sslzoo.errors import SslzooError
from sslzoo.models.memory_bank import MemoryBank


def test_rows_start_as_normalised_standard_normal_draws() -> None:
    torch.manual_seed(3)
    bank = MemoryBank(length=5, dim=4, momentum=0.5)
    torch.manual_seed(3)
    raw = torch.randn(5, 4)
    expected = raw / raw.norm(dim=1, keepdim=True)
    torch.testing.assert_close(bank.features, expected)
    assert "features" in bank.state_dict()


def test_update_mixes_the_new_feature_by_momentum_and_renormalises() -> None:
    bank = MemoryBank(length=4, dim=2, momentum=0.25)
    bank.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]]))
    # row 1 gets (3, 0): normalised (1, 0); 0.75 (0, 1) + 0.25 (1, 0) = (0.25, 0.75) -> / sqrt(0.625)
    # row 3 gets (0, -2): normalised (0, -1); 0.75 (-1, 0) + 0.25 (0, -1) = (-0.75, -0.25) -> / sqrt(0.625)
    bank.update(torch.tensor([1, 3]), torch.tensor([[3.0, 0.0], [0.0, -2.0]]))
    norm = math.sqrt(0.625)
    expected = torch.tensor([[1.0, 0.0], [0.25 / norm, 0.75 / norm], [0.6, 0.8], [-0.75 / norm, -0.25 / norm]])
    torch.testing.assert_close(bank.features, expected)


def test_lookup_copies_the_rows() -> None:
    bank = MemoryBank(length=6, dim=3, momentum=0.5)
    rows = bank.lookup(torch.tensor([4, 0, 4]))
    torch.testing.assert_close(rows, bank.features[[4, 0, 4]])
    rows.zero_()
    assert bank.features.abs().sum() > 0


def test_negatives_are_uniform_over_the_rows() -> None:
    bank = MemoryBank(length=5, dim=2, momentum=0.5)
    torch.manual_seed(0)
    drawn = bank.sample(50_000)
    counts = torch.bincount(drawn, minlength=5).double() / len(drawn)
    assert drawn.dtype == torch.int64 and int(drawn.min()) == 0 and int(drawn.max()) == 4
    torch.testing.assert_close(counts, torch.full((5,), 0.2, dtype=torch.float64), atol=0.01, rtol=0)


def test_exclude_never_draws_the_sample_itself() -> None:
    bank = MemoryBank(length=3, dim=2, momentum=0.5)
    torch.manual_seed(0)
    own = torch.tensor([0, 2, 1, 0])
    drawn = bank.sample(4 * 300, exclude=own).view(4, 300)
    assert not (drawn == own.view(-1, 1)).any()
    for row, index in zip(drawn, own.tolist(), strict=True):  # both other rows still drawn
        assert set(row.tolist()) == {0, 1, 2} - {index}


def test_an_index_beyond_the_bank_names_the_fix() -> None:
    bank = MemoryBank(length=3, dim=2, momentum=0.5)
    with pytest.raises(SslzooError, match="size of the training set"):
        bank.update(torch.tensor([3]), torch.ones(1, 2))
    with pytest.raises(SslzooError, match="momentum"):
        MemoryBank(length=3, dim=2, momentum=1.5)


# rank r of two processes updates rows BATCHES[r] with features FEATURES[r]
BATCHES = ([5, 1, 0], [2, 6, 3])
FEATURES = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(9))


def _start_bank() -> MemoryBank:
    torch.manual_seed(2)
    return MemoryBank(length=8, dim=4, momentum=0.3)


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        bank = _start_bank()
        bank.update(torch.tensor(BATCHES[rank]), FEATURES[rank])
        torch.save(bank.features, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_write_both_batches_into_both_banks(tmp_path: Path) -> None:
    single = _start_bank()
    single.update(torch.tensor(BATCHES[0] + BATCHES[1]), FEATURES.reshape(6, 4))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_worker, args=(port, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True), single.features)
    start = _start_bank().features
    written = BATCHES[0] + BATCHES[1]
    assert torch.equal(single.features[[4, 7]], start[[4, 7]])  # the rows no process wrote
    assert not torch.isclose(single.features[written], start[written]).all(dim=1).any()
