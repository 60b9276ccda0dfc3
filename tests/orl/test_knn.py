"""ORL stage 2 KNN: self exclusion, faiss vs matmul+topk, features, the knn file and its checks."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from PIL import Image

from sslzoo.data.datasets import ManifestDataset
from sslzoo.data.manifest import write_manifest
from sslzoo.errors import SslzooError
from sslzoo.io import write_json
from sslzoo.methods.byol import BYOL
from sslzoo.orl.knn import (
    build_knn,
    knn_faiss,
    knn_torch,
    knn_transform,
    load_stage1,
    projection_features,
)
from sslzoo.orl.knn_files import drop_self, knn_document, knn_protocol, read_knn
from sslzoo.runtime.dist import DistContext

# The BYOL keys of config/models/byol_resnet18_mini.yaml that BYOL.from_config reads, MLPs shrunk.
STAGE1_CONFIG: dict[str, Any] = {
    "method": "byol",
    "backbone": {"depth": 18, "sync_bn": False, "zero_init_residual": False},
    "method_args": {
        "base_momentum": 0.99,
        "projector": {"hidden": 32, "out": 16, "bias": False, "last_bias": False},
        "predictor": {"hidden": 32, "out": 16, "bias": False, "last_bias": False},
    },
}
# An ORL config as load_model_config returns it, reduced to what stage 2 reads.
ORL_CONFIG: dict[str, Any] = {
    "method": "orl",
    "stage2": {
        "knn": {"k": 2, "resize": 36, "crop": 32, "batch_size": 3},
        "correspondence": {
            "min_size": 6,
            "max_aspect_ratio": 3.0,
            "max_iou": 0.5,
            "max_boxes": 4,
            "crop": 32,
            "pair_ratio": 0.5,
            "batch_size": 5,
        },
    },
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one thread is as fast and leaves the other cores alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_byol() -> BYOL:
    torch.manual_seed(0)
    model = BYOL.from_config(STAGE1_CONFIG)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def write_checkpoint(path: Path, method: str = "byol") -> BYOL:
    model = tiny_byol()
    torch.save({"state_dict": model.state_dict(), "meta": {"method": method, "config": STAGE1_CONFIG}}, path)
    return model


def write_images(root: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` small RGB JPEGs of coloured blocks, named like COCO files; returns their names."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        h, w = int(rng.integers(36, 48)), int(rng.integers(40, 56))
        image = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        for _ in range(3):
            y, x = int(rng.integers(0, h - 10)), int(rng.integers(0, w - 10))
            image[y : y + int(rng.integers(6, 18)), x : x + int(rng.integers(6, 18))] = rng.integers(
                0, 256, 3
            )
        name = f"{100000 + 7 * index:012d}.jpg"
        Image.fromarray(image).save(root / name, quality=95)
        names.append(name)
    return names


def write_test_manifest(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    names = write_images(tmp_path / "train2017", count)
    path = tmp_path / "coco_train.json"
    write_manifest(
        {
            "dataset": "coco",
            "split": "train",
            "root": str(tmp_path / "train2017"),
            "classes": [],
            "samples": [[name, -1] for name in names],
        },
        path,
    )
    return path, names


def reference_knn_file(path: Path, names: list[str], rows: list[list[int]]) -> None:
    """A knn file as ORL publishes it: COCO ids, bare file names, an extra key."""
    ids = [int(Path(name).stem) for name in names]
    write_json(
        path,
        {
            "info": {"knn_image_num": len(rows[0]), "description": "train2017 10nn"},
            "images": {"file_name": names, "id": ids},
            "pseudo_annotations": {"image_id": ids, "knn_image_id": rows},
        },
        indent=None,
    )


# --------------------------------------------------------------------------- search


def test_drop_self_removes_the_query_wherever_it_stands() -> None:
    candidates = np.array([[0, 5, 6], [7, 1, 8], [9, 3, 4], [3, 4, 5]])
    # row 0: self first (the reference's case); row 1: a duplicate won the tie; rows 2, 3: self absent
    np.testing.assert_array_equal(drop_self(candidates), [[5, 6], [7, 8], [9, 3], [4, 5]])
    np.testing.assert_array_equal(drop_self(np.array([[4, 2]]), rows=np.array([4])), [[2]])


def brute_force_knn(features: np.ndarray, k: int) -> np.ndarray:
    sims = features @ features.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_faiss_and_torch_agree_with_brute_force() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((300, 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    expected = brute_force_knn(features.astype(np.float64), 5)
    by_faiss = knn_faiss(features, 5, gpu=False)
    by_torch = knn_torch(torch.from_numpy(features), 5, chunk_size=64)
    np.testing.assert_array_equal(by_faiss, expected)
    np.testing.assert_array_equal(by_torch, expected)
    assert not (by_faiss == np.arange(300)[:, None]).any()
    assert by_faiss.dtype == np.int64 and by_faiss.shape == (300, 5)


def test_k_must_be_below_the_image_count() -> None:
    with pytest.raises(SslzooError, match="needs more than k images"):
        knn_torch(torch.eye(3), 3)


def test_knn_protocol_reads_the_stage2_section_with_defaults() -> None:
    assert knn_protocol({"stage2": {"knn": {"k": 4}}}).k == 4
    assert knn_protocol({}).crop == 224
    with pytest.raises(SslzooError, match=r"stage2.knn: unknown key\(s\) \['kk'\]"):
        knn_protocol({"stage2": {"knn": {"kk": 4}}}, "orl.yaml")


# --------------------------------------------------------------------------- features


def test_projection_features_are_the_normalised_online_projection(tmp_path: Path) -> None:
    manifest, _ = write_test_manifest(tmp_path, 5)
    model = tiny_byol()
    dataset = ManifestDataset(manifest, knn_transform(36, 32))
    feats = projection_features(model, dataset, batch_size=2, workers=0, progress=False)
    images = torch.stack([dataset[i][0] for i in range(5)])
    with torch.no_grad():
        expected = F.normalize(model.online_projection(images), dim=1).numpy()
    assert feats is not None and feats.shape == (5, 16)
    np.testing.assert_allclose(feats, expected, atol=1e-5)
    assert images.shape[-2:] == (32, 32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sharded_worker(rank: int, world_size: int, port: int, manifest: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank, device=torch.device("cpu"))
    dataset = ManifestDataset(manifest, knn_transform(36, 32))
    feats = projection_features(tiny_byol(), dataset, batch_size=2, workers=0, ctx=ctx, progress=False)
    if rank == 0:
        assert feats is not None
        np.save(out, feats)
    else:
        assert feats is None
    dist.destroy_process_group()


def test_two_processes_give_the_single_process_features(tmp_path: Path) -> None:
    manifest, _ = write_test_manifest(tmp_path, 5)
    single = projection_features(
        tiny_byol(), ManifestDataset(manifest, knn_transform(36, 32)), batch_size=2, workers=0, progress=False
    )
    out = tmp_path / "sharded.npy"
    mp.start_processes(
        _sharded_worker,
        args=(2, _free_port(), str(manifest), str(out)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    np.testing.assert_allclose(np.load(out), single, atol=1e-6)


# --------------------------------------------------------------------------- files


def test_build_knn_writes_orl_layout_with_brute_force_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, names = write_test_manifest(tmp_path, 7)
    model = write_checkpoint(tmp_path / "final.pth")
    monkeypatch.setattr("sslzoo.orl.knn.load_model_config", lambda path: ORL_CONFIG)
    out = tmp_path / "orl" / "knn.json"
    build_knn(tmp_path / "final.pth", "orl.yaml", manifest, out, workers=0, ctx=DistContext())
    doc = json.loads(out.read_text())
    feats = projection_features(
        model, ManifestDataset(manifest, knn_transform(36, 32)), batch_size=7, workers=0, progress=False
    )
    assert doc["info"] == {"knn_image_num": 2}
    assert doc["images"] == {"file_name": names, "id": list(range(7))}
    assert doc["pseudo_annotations"]["image_id"] == list(range(7))
    assert doc["pseudo_annotations"]["knn_image_id"] == brute_force_knn(feats.astype(np.float64), 2).tolist()
    assert read_knn(out, manifest) == doc


def test_read_knn_accepts_the_reference_layout(tmp_path: Path) -> None:
    manifest, names = write_test_manifest(tmp_path, 4)
    rows = [[1, 2], [0, 3], [3, 0], [2, 1]]
    reference_knn_file(tmp_path / "train2017_10nn_instance.json", names, rows)
    doc = read_knn(tmp_path / "train2017_10nn_instance.json", manifest)
    assert doc["pseudo_annotations"]["knn_image_id"] == rows
    assert doc["images"]["id"][0] == 100000


def test_read_knn_refuses_another_image_list(tmp_path: Path) -> None:
    manifest, names = write_test_manifest(tmp_path, 4)
    path = tmp_path / "knn.json"
    reference_knn_file(path, names[:3], [[1, 2], [0, 2], [0, 1]])
    with pytest.raises(SslzooError, match=rf"{path}: 3 images but the manifest {manifest} has 4"):
        read_knn(path, manifest)
    reference_knn_file(path, [names[1], names[0], *names[2:]], [[1, 2], [0, 3], [3, 0], [2, 1]])
    with pytest.raises(SslzooError, match=rf"{path}: image 0 is '{names[1]}' but row 0 of the manifest"):
        read_knn(path, manifest)
    reference_knn_file(path, names, [[1, 2], [0, 4], [3, 0], [2, 1]])
    with pytest.raises(
        SslzooError, match=r"knn_image_id\[1\] = \[0, 4\] is not a non-empty list of row indices"
    ):
        read_knn(path, manifest)
    write_json(path, {"images": {}})
    with pytest.raises(SslzooError, match="not a KNN file"):
        read_knn(path, manifest)


def test_knn_document_uses_manifest_ids_when_stored() -> None:
    manifest = {"samples": [["a.jpg", -1], ["b.jpg", -1]], "ids": [9, 4]}
    doc = knn_document(np.array([[1], [0]]), manifest)
    assert doc["images"] == {"file_name": ["a.jpg", "b.jpg"], "id": [9, 4]}
    assert doc["pseudo_annotations"] == {"image_id": [9, 4], "knn_image_id": [[1], [0]]}


def test_load_stage1_refuses_another_method(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "final.pth", method="triplet")
    with pytest.raises(SslzooError, match="needs the stage-1 BYOL model"):
        load_stage1(tmp_path / "final.pth")
    model = write_checkpoint(tmp_path / "byol.pth")
    loaded = load_stage1(tmp_path / "byol.pth")
    assert not loaded.training
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())
