"""The same numbers with 1 and 3 processes on datasets whose sizes 3 does not divide.

mmselfsup's kNN gathered features with the padding of ``DistributedSampler`` (repeated rows: the
accuracy changed with the number of GPUs, its PR #634; PROTOCOLS.md "kNN classification"). Here
3 gloo processes (forked, CPU) run, as torchrun would:

- feature extraction (``extract_features``) of the mini VOC07 trainval (151 images) and test
  (149) and the mini ImageNet train (250) and val (130): the files must equal the single-process
  ones, and so must the SVM on them (the SVM itself is one process; it sees the rows the
  extraction wrote) and kNN;
- kNN with the test rows split over the processes (``knn_classify_distributed``);
- detection inference (``predict``, each process a share of the images, gathered) on the
  mini VOC07 test set (149 images, Faster R-CNN C4) and the mini COCO val2017 (16 images, Mask
  R-CNN FPN), with the VOC07 and COCO box and mask metrics of the gathered predictions. The
  detectors have random weights (their APs are about 0), so the metrics are also taken of a
  stand-in detector that returns jittered ground truth (tests/parity/predictions.py) with scores
  of one decimal: APs well above 0 and many tied scores, whose order the VOC AP depends on.
"""

from __future__ import annotations

import json
import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from sslzoo.benchmarks.detection.evaluate import coco_metrics, coco_results, predict, voc_detection_metrics
from sslzoo.benchmarks.detection.models import InputConfig, ModelConfig, build_detector
from sslzoo.benchmarks.features import extract_features
from sslzoo.benchmarks.knn import knn_classify
from sslzoo.benchmarks.svm_voc07 import svm_benchmark
from sslzoo.data.constants import VOC_CLASSES
from sslzoo.data.detection import CocoDetection, VocDetection
from sslzoo.runtime.dist import DistContext
from tests.benchmarks.knn_dist import knn_classify_distributed
from tests.parity.conftest import FEATURES_CONFIG
from tests.parity.predictions import OracleDetector, coco_predictions, voc_predictions
from tests.parity.reference import Recorder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs NumPy 2

WORLD = 3
KS = (10, 20, 100, 200)
KNN_CHUNK = 16  # 130 test rows: 9 blocks of 16 dealt to 3 processes, the last one short
# A detector of random weights that still puts out boxes: no score threshold, 20 per image.
DETECTOR = dict(
    pooler_resolution=4, anchor_sizes=(16, 32, 64), rpn_pre_nms_topk_test=100, rpn_post_nms_topk_test=20,
    fpn_channels=32, box_fc_dim=64, mask_head_channels=16, score_thresh_test=0.0, detections_per_image=20,
)  # fmt: skip
INPUT = InputConfig(min_size_test=96, max_size_test=160)


def _detector(arch: str, num_classes: int, backbone: Path) -> torch.nn.Module:
    """The same randomly initialised heads in every process (seeded), on the random ResNet-18."""
    extra = {"anchor_sizes": (8, 16, 32, 64, 128)} if arch == "mask_rcnn_fpn" else {}
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, norm="BN", **{**DETECTOR, **extra})
    return build_detector(num_classes, config, INPUT, torch.load(backbone, weights_only=True)).eval()


def _voc_test(root: Path) -> VocDetection:
    return VocDetection([(root / "voc" / "VOCdevkit" / "VOC2007", "test")])


def _coco_val(root: Path) -> CocoDetection:
    coco = root / "coco"
    return CocoDetection(coco / "val2017", coco / "annotations" / "instances_val2017.json", train=False)


def _oracles(mini: Any) -> dict[str, OracleDetector]:
    """Stand-in detectors of the VOC07 test and COCO val2017 images, scores rounded to 0.1 (ties)."""
    voc, coco = _voc_test(mini.root), _coco_val(mini.root)
    tables = {"voc": voc_predictions(voc, seed=2), "coco": coco_predictions(coco, seed=3)}
    for table in tables.values():
        for pred in table.values():
            pred["scores"] = np.round(pred["scores"], 1)
    return {"voc": OracleDetector(voc, tables["voc"]), "coco": OracleDetector(coco, tables["coco"])}


def _run(mini: Any, ctx: DistContext, out: Path, oracles: dict[str, OracleDetector]) -> dict[str, Any]:
    """Everything the test compares, for one process of ``ctx`` (``out``: where rank 0 writes features)."""
    for name, manifest in mini.manifests.items():
        extract_features(
            mini.backbone, manifest, FEATURES_CONFIG, name.split("_")[0], out / f"{name}.npz", ctx=ctx
        )
    with np.load(mini.features["imagenet_train"]) as train, np.load(mini.features["imagenet_val"]) as val:
        knn = knn_classify_distributed(
            torch.from_numpy(train["avgpool"]), torch.from_numpy(train["labels"]),
            torch.from_numpy(val["avgpool"]), torch.from_numpy(val["labels"]),
            KS, 0.07, num_classes=len(train["classes"]), chunk_size=KNN_CHUNK, ctx=ctx,
        )  # fmt: skip
    voc, coco = _voc_test(mini.root), _coco_val(mini.root)
    predictions = {
        "voc": predict(_detector("faster_rcnn_c4", 20, mini.backbone), voc, ctx, workers=0),
        "coco": predict(
            _detector("mask_rcnn_fpn", len(coco.category_ids), mini.backbone), coco, ctx, workers=0
        ),
        "voc_oracle": predict(oracles["voc"], voc, ctx, workers=0),
        "coco_oracle": predict(oracles["coco"], coco, ctx, workers=0),
    }
    metrics = {}
    for name, prediction in predictions.items():
        if name.startswith("voc"):
            metrics[name] = voc_detection_metrics(prediction, voc.annotations, VOC_CLASSES)
        else:
            results = coco_results(prediction, coco.image_ids, coco.category_ids)
            metrics[name] = coco_metrics(coco.coco, results, ("bbox", "segm"), coco.image_ids)
    return {"knn": [(r.k, r.top1, r.top5) for r in knn], "predictions": predictions, "metrics": metrics}


def _worker(rank: int, port: int, mini: Any, out: str, oracles: dict[str, OracleDetector]) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        result = _run(mini, DistContext(rank=rank, world_size=WORLD, local_rank=rank), Path(out), oracles)
        with open(Path(out) / f"rank{rank}.pkl", "wb") as handle:
            pickle.dump(result, handle)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _same_predictions(one: dict[int, dict[str, Any]], other: dict[int, dict[str, Any]]) -> None:
    assert sorted(one) == sorted(other)  # every image once: no padding, no loss
    for index, pred in one.items():
        for key in ("boxes", "scores", "labels"):
            np.testing.assert_array_equal(pred[key], other[index][key], err_msg=f"image {index} {key}")
        assert pred.get("masks") == other[index].get("masks"), index


def test_one_and_three_processes_give_the_same_numbers(mini: Any, tmp_path: Path, record: Recorder) -> None:
    single_dir, multi_dir = tmp_path / "one", tmp_path / "three"
    single_dir.mkdir()
    multi_dir.mkdir()
    oracles = _oracles(mini)
    single = _run(mini, DistContext(), single_dir, oracles)
    # fork: the workers share the imported modules instead of importing torch again
    mp.start_processes(_worker, args=(_free_port(), mini, str(multi_dir), oracles), nprocs=WORLD, join=True,
                       start_method="fork")  # fmt: skip
    ranks = []
    for rank in range(WORLD):
        with open(multi_dir / f"rank{rank}.pkl", "rb") as handle:
            ranks.append(pickle.load(handle))
    sizes = {name: len(json.loads(path.read_text())["samples"]) for name, path in mini.manifests.items()}
    assert all(size % WORLD for size in sizes.values()), sizes
    assert len(_voc_test(mini.root)) % WORLD and len(_coco_val(mini.root)) % WORLD

    # features: the files of 3 processes are the single-process files
    for name in mini.manifests:
        with np.load(single_dir / f"{name}.npz") as one, np.load(multi_dir / f"{name}.npz") as three:
            assert set(one.files) == set(three.files)
            for key in one.files:
                np.testing.assert_array_equal(three[key], one[key], err_msg=f"{name} {key}")
    # the SVM and kNN on them
    config = tmp_path / "svm.yaml"
    config.write_text("{}\n")
    svm = {
        label: svm_benchmark(directory / "voc07_trainval.npz", directory / "voc07_test.npz", config,
                             tmp_path / label / "svm_voc07" / "random" / "metrics.json", device="cpu",
                             benchmark_name="svm_voc07", model_name="random")
        for label, directory in (("one", single_dir), ("three", multi_dir))
    }  # fmt: skip
    layers = svm["one"]["meta"]["layers"]
    for layer, result in layers.items():
        record.add(
            "processes_svm",
            layer=layer,
            one=result["mAP"],
            three=svm["three"]["meta"]["layers"][layer]["mAP"],
        )
        assert svm["three"]["meta"]["layers"][layer]["ap"] == result["ap"], layer
    knn_files = {}
    for label, directory in (("one", single_dir), ("three", multi_dir)):
        with (
            np.load(directory / "imagenet_train.npz") as train,
            np.load(directory / "imagenet_val.npz") as val,
        ):
            knn_files[label] = [
                (r.k, r.top1, r.top5)
                for r in knn_classify(
                    torch.from_numpy(train["avgpool"]), torch.from_numpy(train["labels"]),
                    torch.from_numpy(val["avgpool"]), torch.from_numpy(val["labels"]), KS, 0.07, chunk_size=256,
                )
            ]  # fmt: skip
    assert knn_files["three"] == knn_files["one"]
    # kNN split over processes, detection inference and its metrics: every rank, the same as one process
    for rank, result in enumerate(ranks):
        assert result["knn"] == single["knn"], rank
        for name, prediction in single["predictions"].items():
            _same_predictions(prediction, result["predictions"][name])
            # as JSON: NaN (a class without a box) equals NaN
            one, three = (json.dumps(r["metrics"][name], sort_keys=True) for r in (single, result))
            assert three == one, (rank, name)
    for k, top1, _ in single["knn"]:
        record.add("processes_knn", k=k, one=top1, three=ranks[0]["knn"][KS.index(k)][1])
    for name, metrics in single["metrics"].items():
        for key in ("AP50", "AP", "AP75") if name.startswith("voc") else metrics:
            record.add("processes_detection", detector=name, metric=key, one=metrics[key],
                       three=ranks[0]["metrics"][name][key])  # fmt: skip
    assert sum(len(p["boxes"]) for p in single["predictions"]["voc"].values()) > len(
        single["predictions"]["voc"]
    )
    assert (
        single["metrics"]["voc_oracle"]["AP50"] > 10 and single["metrics"]["coco_oracle"]["AP50(Mask)"] > 10
    )
