"""kNN with the test rows split over processes: 1 and 2 gloo processes give knn_classify's result exactly."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from sslzoo.benchmarks.knn import knn_classify
from sslzoo.runtime.dist import DistContext
from tests.benchmarks.knn_dist import knn_classify_distributed, rank_rows

KS = (1, 5, 20, 60)
# (test rows, chunk size): several blocks with a short last one; fewer blocks than processes
CASES = ((157, 16), (40, 64))


def _data(num_test: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(9, 16))
    train_y = rng.integers(0, 9, 200)
    test_y = rng.integers(0, 8, num_test)  # class 8 occurs only among the training rows
    train_x = centres[train_y] + 1.5 * rng.normal(size=(200, 16))
    test_x = centres[test_y] + 1.5 * rng.normal(size=(num_test, 16))
    return (
        torch.from_numpy(train_x.astype(np.float32)),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x.astype(np.float32)),
        torch.from_numpy(test_y),
    )


def _results(ctx: DistContext | None) -> list[list[dict]]:
    out = []
    for num_test, chunk_size in CASES:
        train_x, train_y, test_x, test_y = _data(num_test)
        results = knn_classify_distributed(
            train_x, train_y, test_x, test_y, KS, 0.07, chunk_size=chunk_size, ctx=ctx
        )
        out.append([asdict(result) for result in results])
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results = _results(DistContext(rank=rank, world_size=2, local_rank=rank))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def test_rank_rows_cover_every_row_once_in_whole_blocks() -> None:
    for rows, chunk, world in ((157, 16, 2), (157, 16, 3), (40, 64, 2), (256, 256, 4), (1, 1, 1)):
        shards = [rank_rows(rows, chunk, rank, world).tolist() for rank in range(world)]
        assert sorted(sum(shards, [])) == list(range(rows))
        for shard in shards:
            assert all(row % chunk == 0 for row in shard[::chunk])  # each shard is whole blocks


def test_one_and_two_gloo_processes_equal_knn_classify(tmp_path: Path) -> None:
    expected = []
    for num_test, chunk_size in CASES:
        train_x, train_y, test_x, test_y = _data(num_test)
        single = knn_classify(
            train_x, train_y, test_x, test_y, KS, 0.07, num_classes=9, chunk_size=chunk_size
        )
        expected.append([asdict(result) for result in single])
    assert _results(None) == expected
    assert 100 / 9 < expected[0][2]["top1"] < 100  # the data carry signal: not a trivial equality

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_worker, args=(port, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected, rank
