"""ORL stage 2 correspondence: box filter, pair selection, batched crop features, shards and files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as TF

from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.data.images import load_rgb
from sslzoo.errors import SslzooError
from sslzoo.io import write_json
from sslzoo.orl.correspondence import (
    compute_correspondence,
    correspondence_shard,
    crop_boxes,
    encode_images,
    plan_chunks,
    select_pairs,
)
from sslzoo.orl.correspondence_files import (
    CorrespondenceProtocol,
    correspondence_protocol,
    filter_boxes,
    merge_correspondence,
    read_correspondence,
)
from sslzoo.runtime.dist import DistContext
from tests.orl.test_knn import (
    ORL_CONFIG,
    _one_thread,  # noqa: F401  (autouse fixture)
    reference_knn_file,
    tiny_byol,
    write_checkpoint,
    write_test_manifest,
)

# --------------------------------------------------------------------------- box filter


def test_size_rule_drops_boxes_narrower_or_lower_than_min_size() -> None:
    boxes = [[0, 0, 95, 200], [0, 0, 200, 95], [0, 300, 96, 96], [300, 0, 150, 120]]
    assert filter_boxes(boxes, min_size=96) == [[0, 300, 96, 96], [300, 0, 150, 120]]


def test_aspect_rule_drops_boxes_longer_than_the_ratio_either_way() -> None:
    boxes = [[0, 0, 301, 100], [0, 0, 100, 301], [0, 200, 300, 100], [400, 0, 100, 300]]
    assert filter_boxes(boxes, min_size=96, max_aspect_ratio=3) == [[0, 200, 300, 100], [400, 0, 100, 300]]


def test_iou_rule_is_greedy_against_kept_boxes_only() -> None:
    a = [0, 0, 100, 100]
    b = [20, 0, 100, 100]  # IoU(a, b) = 80/120 > 0.5: dropped
    c = [40, 0, 100, 100]  # IoU(b, c) > 0.5, but b was dropped; IoU(a, c) = 60/140 <= 0.5: kept
    d = [0, 0, 100, 50]  # IoU(a, d) = 0.5 exactly: kept (only > max_iou drops)
    assert filter_boxes([a, b, c, d], min_size=10, max_iou=0.5) == [a, c, d]
    assert filter_boxes([b, a, c], min_size=10, max_iou=0.5) == [b]  # order matters


def test_max_boxes_keeps_the_first_survivors() -> None:
    boxes = [[200 * i, 0, 100, 100] for i in range(6)]
    boxes.insert(1, [0, 0, 10, 10])
    assert filter_boxes(boxes, min_size=96, max_boxes=3) == [
        [0, 0, 100, 100],
        [200, 0, 100, 100],
        [400, 0, 100, 100],
    ]


def test_nothing_survives_keeps_the_first_box() -> None:
    boxes = [[5, 6, 10, 10], [0, 0, 20, 500]]
    assert filter_boxes(boxes) == [[5, 6, 10, 10]]
    with pytest.raises(ValueError, match="non-empty list"):
        filter_boxes([])


def test_zero_thresholds_turn_rules_off_and_values_keep_their_type() -> None:
    boxes = [[0, 0, 10, 90], [0, 0, 10, 90], [1.5, 2.5, 3.0, 4.0]]
    kept = filter_boxes(boxes, min_size=0, max_aspect_ratio=0, max_iou=0, max_boxes=0)
    assert kept == [[0.0, 0.0, 10.0, 90.0], [0.0, 0.0, 10.0, 90.0], [1.5, 2.5, 3.0, 4.0]]
    ints = filter_boxes([[1, 2, 100, 100]])
    assert ints == [[1, 2, 100, 100]] and all(type(v) is int for v in ints[0])


def reference_box_filter(boxes, min_size, max_ratio, top_n, max_iou_thr):  # type: ignore[no-untyped-def]
    """ORL's box_filter (openselfsup/datasets/correspondence.py) written out box by box."""
    kept: list = []
    for box in boxes:
        w, h = box[2], box[3]
        if min_size and (w < min_size or h < min_size):
            continue
        if max_ratio and (w / h > max_ratio or h / w > max_ratio):
            continue
        if max_iou_thr and kept:
            best = 0.0
            for other in kept:
                iw = max(min(other[0] + other[2], box[0] + w) - max(other[0], box[0]), 0.0)
                ih = max(min(other[1] + other[3], box[1] + h) - max(other[1], box[1]), 0.0)
                inter = iw * ih
                best = max(best, inter / (other[2] * other[3] + w * h - inter))
            if best > max_iou_thr:
                continue
        kept.append(box)
    if not kept:
        kept.append(boxes[0])
    return kept[:top_n] if top_n else kept


def test_filter_matches_the_reference_on_random_selective_search_like_boxes() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 400))
        xy = rng.integers(0, 500, (n, 2))
        wh = rng.integers(1, 400, (n, 2))
        boxes = np.concatenate([xy, wh], axis=1).tolist()
        max_boxes = [100, 5, 0][trial % 3]
        assert filter_boxes(boxes, 96, 3.0, 0.5, max_boxes) == reference_box_filter(
            boxes, 96, 3.0, max_boxes, 0.5
        )


# --------------------------------------------------------------------------- pairs


def brute_force_pairs(feats, knn_feats, boxes, knn_boxes, ratio):  # type: ignore[no-untyped-def]
    scored = []
    for a in range(len(boxes)):
        for b in range(len(knn_boxes)):
            scored.append((float(feats[a] @ knn_feats[b]), boxes[a] + knn_boxes[b]))
    scored.sort(key=lambda item: -item[0])
    return [pair for _, pair in scored[: max(int(ratio * len(boxes)), 1)]]


@pytest.mark.parametrize(("b", "b_knn", "count"), [(25, 7, 2), (5, 30, 1), (40, 3, 4), (1, 1, 1)])
def test_pairs_are_the_top_entries_of_the_cosine_matrix(b: int, b_knn: int, count: int) -> None:
    generator = torch.Generator().manual_seed(b)
    feats = F.normalize(torch.randn(b, 8, generator=generator), dim=1)
    knn_feats = F.normalize(torch.randn(b_knn, 8, generator=generator), dim=1)
    boxes = [[i, 2 * i, 10 + i, 20 + i] for i in range(b)]
    knn_boxes = [[100 + i, i, 30, 40 + i] for i in range(b_knn)]
    pairs = select_pairs(feats, knn_feats, boxes, knn_boxes, 0.1)
    assert len(pairs) == count  # int(0.1 * B) of the QUERY's boxes, at least 1
    assert pairs == brute_force_pairs(feats.double(), knn_feats.double(), boxes, knn_boxes, 0.1)


# --------------------------------------------------------------------------- crops and features


def reference_box_features(backbone, image, boxes, size):  # type: ignore[no-untyped-def]
    """One box per forward pass through ORL's pipeline: resized_crop -> ToTensor -> Normalize."""
    out = []
    for x, y, w, h in boxes:
        patch = TF.normalize(
            TF.to_tensor(TF.resized_crop(image, y, x, h, w, [size, size])), IMAGENET_MEAN, IMAGENET_STD
        )
        with torch.no_grad():
            pooled = F.adaptive_avg_pool2d(backbone(patch[None], (5,))[0], 1).flatten(1)
        out.append(F.normalize(pooled, dim=1)[0])
    return torch.stack(out)


def test_batched_crops_equal_one_box_per_forward_pass(tmp_path: Path) -> None:
    write_test_manifest(tmp_path, 3)
    images = [load_rgb(path) for path in sorted((tmp_path / "train2017").iterdir())]
    boxes = [
        [[0, 0, 20, 20], [5, 3, 30, 12], [10, 10, 8, 25]],
        [[2, 2, 30, 30]],
        [[1, 1, 9, 9], [0, 4, 40, 30]],
    ]
    backbone = tiny_byol().backbone
    items = [(row, boxes[row], crop_boxes(images[row], boxes[row], 32)) for row in range(3)]
    assert items[0][2].dtype == torch.uint8 and items[0][2].shape == (3, 3, 32, 32)
    batched = list(encode_images(backbone, items, batch_size=4))  # batches cut across images
    single = list(encode_images(backbone, items, batch_size=1))
    assert [row for row, _, _ in batched] == [0, 1, 2]
    for (row, kept, feats), (_, _, one) in zip(batched, single, strict=True):
        assert kept == boxes[row] and feats.shape == (len(boxes[row]), 512)
        torch.testing.assert_close(feats, one, atol=1e-5, rtol=0)
        reference = reference_box_features(backbone, images[row], boxes[row], 32)
        torch.testing.assert_close(feats, reference, atol=1e-5, rtol=0)


def test_plan_chunks_bounds_the_images_held_at_once() -> None:
    knn = [[1, 2], [2, 3], [3, 0], [0, 1], [5, 0], [4, 1]]
    assert plan_chunks([0, 1, 2, 3], knn, 2, 10) == [([0, 1, 2, 3], [0, 1, 2, 3])]
    assert plan_chunks([0, 4, 5], knn, 2, 4) == [([0], [0, 1, 2]), ([4, 5], [4, 5, 0, 1])]
    assert plan_chunks([0, 1], knn, 1, 1) == [([0], [0, 1]), ([1], [1, 2])]


# --------------------------------------------------------------------------- shards and files


def _stage2_inputs(tmp_path: Path, count: int = 7) -> tuple[Path, list[str], Path, Path]:
    """Manifest, file names, a knn file (reference layout) and proposals for ``count`` images."""
    manifest, names = write_test_manifest(tmp_path, count)
    rng = np.random.default_rng(1)
    knn_rows = [
        [int(j) for j in rng.permutation([j for j in range(count) if j != i])[:3]] for i in range(count)
    ]
    knn = tmp_path / "knn.json"
    reference_knn_file(knn, names, knn_rows)
    bbox = []
    for _ in range(count):
        xy = rng.integers(0, 20, (12, 2))
        wh = rng.integers(4, 30, (12, 2))
        bbox.append(np.concatenate([xy, wh], axis=1).tolist())
    proposals = tmp_path / "proposals.json"
    write_json(proposals, {"bbox": bbox}, indent=None)
    return manifest, names, knn, proposals


def _run_shard(tmp_path: Path, inputs, shard: str, cache_gb: float = 1.0) -> Path:  # type: ignore[no-untyped-def]
    manifest, _, knn, proposals = inputs
    out = tmp_path / "correspondence" / f"{shard}.json"
    correspondence_shard(
        tmp_path / "final.pth",
        "orl.yaml",
        manifest,
        knn,
        proposals,
        shard,
        out,
        workers=0,
        cache_gb=cache_gb,
        ctx=DistContext(),
    )
    return out


@pytest.fixture
def orl_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # the shard (orl-correspondence) and the merge read the config each in its own module
    for module in ("sslzoo.orl.correspondence", "sslzoo.orl.correspondence_files"):
        monkeypatch.setattr(f"{module}.load_model_config", lambda path: copy.deepcopy(ORL_CONFIG))


def test_sharded_then_merged_equals_unsharded(tmp_path: Path, orl_config: None) -> None:
    inputs = _stage2_inputs(tmp_path)
    manifest, names, knn, _ = inputs
    write_checkpoint(tmp_path / "final.pth")
    whole = merge_correspondence("orl.yaml", knn, [_run_shard(tmp_path, inputs, "1-of-1")])
    parts = [_run_shard(tmp_path, inputs, f"{i}-of-2", cache_gb=1e-9) for i in (2, 1)]  # one image cached
    assert json.loads(parts[1].read_text())["indices"] == [0, 2, 4, 6]
    assert merge_correspondence("orl.yaml", knn, parts) == whole

    pseudo = whole["pseudo_annotations"]
    assert whole["info"] == {
        "bbox_min_size": 6,
        "bbox_max_aspect_ratio": 3.0,
        "bbox_max_iou": 0.5,
        "intra_bbox_num": 4,
        "knn_image_num": 2,
        "knn_bbox_pair_ratio": 0.5,
    }
    assert whole["images"]["file_name"] == names and pseudo["image_id"][1] == 100007
    assert len(pseudo["bbox"]) == 7 and all(1 <= len(boxes) <= 4 for boxes in pseudo["bbox"])
    for i in range(7):
        assert len(pseudo["knn_image_id"][i]) == 2 and len(pseudo["knn_bbox_pair"][i]) == 2
        for slot, j in enumerate(pseudo["knn_image_id"][i]):
            pairs = pseudo["knn_bbox_pair"][i][slot]
            assert len(pairs) == max(int(0.5 * len(pseudo["bbox"][i])), 1)
            assert all(p[:4] in pseudo["bbox"][i] and p[4:] in pseudo["bbox"][j] for p in pairs)
    write_json(tmp_path / "correspondence.json", whole, indent=None)
    assert read_correspondence(tmp_path / "correspondence.json", manifest) == whole


def test_shard_pairs_follow_the_features_of_the_kept_boxes(tmp_path: Path) -> None:
    manifest, _, knn, proposals = _stage2_inputs(tmp_path, 4)
    knn_rows = json.loads(knn.read_text())["pseudo_annotations"]["knn_image_id"]
    bbox = json.loads(proposals.read_text())["bbox"]
    root = tmp_path / "train2017"
    paths = [root / name for name in sorted(p.name for p in root.iterdir())]
    backbone = tiny_byol().backbone
    protocol = CorrespondenceProtocol(min_size=6, max_boxes=4, crop=32, pair_ratio=0.5, batch_size=3)
    results = compute_correspondence(backbone, paths, bbox, knn_rows, [0, 3], protocol, 2, progress=False)
    kept = {row: filter_boxes(bbox[row], 6, 3.0, 0.5, 4) for row in range(4)}
    feats = {row: reference_box_features(backbone, load_rgb(paths[row]), kept[row], 32) for row in range(4)}
    assert sorted(results) == [0, 3]
    for i in (0, 3):
        assert results[i][0] == kept[i]
        for slot, j in enumerate(knn_rows[i][:2]):
            assert results[i][1][slot] == brute_force_pairs(feats[i], feats[j], kept[i], kept[j], 0.5)


def _sharded_worker(rank: int, world_size: int, port: int, tmp: str) -> None:
    import pickle

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank, device=torch.device("cpu"))
    args = pickle.loads((Path(tmp) / "args.pkl").read_bytes())
    results = compute_correspondence(tiny_byol().backbone, *args, progress=False, ctx=ctx, gather_every=2)
    if rank == 0:
        (Path(tmp) / "sharded.pkl").write_bytes(pickle.dumps(results))
    else:
        assert results == {}
    dist.destroy_process_group()


def test_two_processes_give_the_single_process_pairs(tmp_path: Path) -> None:
    import pickle

    import torch.multiprocessing as mp

    from tests.orl.test_knn import _free_port

    _, names, knn, proposals = _stage2_inputs(tmp_path, 6)
    knn_rows = json.loads(knn.read_text())["pseudo_annotations"]["knn_image_id"]
    bbox = json.loads(proposals.read_text())["bbox"]
    paths = [tmp_path / "train2017" / name for name in names]
    protocol = CorrespondenceProtocol(min_size=6, max_boxes=4, crop=32, pair_ratio=0.5, batch_size=3)
    # 5 queries, at most 4 images cached: several chunks, each split over the two processes
    args = (paths, bbox, knn_rows, [5, 0, 2, 3, 1], protocol, 3, "cpu", 0, 4)
    single = compute_correspondence(tiny_byol().backbone, *args, progress=False)
    (tmp_path / "args.pkl").write_bytes(pickle.dumps(args))
    mp.start_processes(
        _sharded_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    assert pickle.loads((tmp_path / "sharded.pkl").read_bytes()) == single
    assert len(plan_chunks(args[3], knn_rows, 3, 4)) > 1


def test_merge_names_missing_duplicate_and_foreign_shards(tmp_path: Path, orl_config: None) -> None:
    inputs = _stage2_inputs(tmp_path, 5)
    knn = inputs[2]
    write_checkpoint(tmp_path / "final.pth")
    first = _run_shard(tmp_path, inputs, "1-of-2")
    with pytest.raises(SslzooError, match="shard 2-of-2 is missing"):
        merge_correspondence("orl.yaml", knn, [first])
    with pytest.raises(SslzooError, match=rf"shard 1-of-2 is given twice \(also {first}\)"):
        merge_correspondence("orl.yaml", knn, [first, first])
    foreign = tmp_path / "foreign.json"
    doc = json.loads(first.read_text())
    write_json(foreign, {**doc, "indices": [0, 1, 2]})
    with pytest.raises(SslzooError, match=rf"{foreign}: shard 1-of-2 does not hold the rows"):
        merge_correspondence("orl.yaml", knn, [foreign])
    write_json(foreign, {**doc, "info": {**doc["info"], "bbox_min_size": 96}})
    with pytest.raises(SslzooError, match=rf"{foreign}: made with stage-2 settings"):
        merge_correspondence("orl.yaml", knn, [foreign])


def reference_correspondence_file(path: Path, names: list[str], n_boxes: int = 2) -> dict:
    """A correspondence file as ORL publishes it: COCO ids, ints, info as its generator writes it."""
    ids = [int(Path(name).stem) for name in names]
    n = len(names)
    box = [[10, 20, 120, 100], [200, 40, 96, 130]][:n_boxes]
    doc = {
        "info": {
            "bbox_min_size": 96,
            "bbox_max_aspect_ratio": 3,
            "bbox_max_iou": 0.5,
            "intra_bbox_num": 100,
            "knn_image_num": 2,
            "knn_bbox_pair_ratio": 0.1,
        },
        "images": {"file_name": names, "id": ids},
        "pseudo_annotations": {
            "image_id": ids,
            "bbox": [box for _ in range(n)],
            "knn_image_id": [[(i + 1) % n, (i + 2) % n] for i in range(n)],
            "knn_bbox_pair": [[[box[0] + box[1]], [box[1] + box[0]]] for _ in range(n)],
        },
    }
    write_json(path, doc, indent=None)
    return doc


def test_read_correspondence_accepts_the_reference_layout(tmp_path: Path) -> None:
    manifest, names = write_test_manifest(tmp_path, 4)
    doc = reference_correspondence_file(tmp_path / "train2017_correspondence.json", names)
    assert read_correspondence(tmp_path / "train2017_correspondence.json", manifest) == doc
    from sslzoo.data.manifest import read_manifest

    assert read_correspondence(tmp_path / "train2017_correspondence.json", read_manifest(manifest)) == doc


def test_read_correspondence_refuses_a_mismatch(tmp_path: Path) -> None:
    manifest, names = write_test_manifest(tmp_path, 4)
    path = tmp_path / "correspondence.json"
    reference_correspondence_file(path, names[:3])
    with pytest.raises(SslzooError, match=rf"{path}: 3 images but the manifest {manifest} has 4"):
        read_correspondence(path, manifest)
    doc = reference_correspondence_file(path, names)
    doc["pseudo_annotations"]["knn_bbox_pair"][2] = [[[1, 2, 3, 4]], []]
    write_json(path, doc)
    with pytest.raises(
        SslzooError, match=r"knn_bbox_pair\[2\]\[0\] = \[\[1, 2, 3, 4\]\] is not a non-empty list"
    ):
        read_correspondence(path, manifest)
    doc["pseudo_annotations"]["knn_bbox_pair"].pop()
    write_json(path, doc)
    with pytest.raises(SslzooError, match="they must be one per image"):
        read_correspondence(path, manifest)


def test_correspondence_protocol_checks_values() -> None:
    assert correspondence_protocol(ORL_CONFIG).max_boxes == 4
    assert correspondence_protocol({}) == CorrespondenceProtocol()
    with pytest.raises(SslzooError, match="pair_ratio"):
        correspondence_protocol({"stage2": {"correspondence": {"pair_ratio": 0}}})
