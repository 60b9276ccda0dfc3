"""The detectron2 engine of the detection benchmark: MoCo's own tool chain, when detectron2 is installed.

What MoCo's ``detection/`` folder does by hand, as one job (facebookresearch/moco
``detection/README.md``, ``convert-pretrain-to-detectron2.py``, ``train_net.py``,
``configs/pascal_voc_R_50_C4_24k_moco.yaml`` on ``Base-RCNN-C4-BN.yaml``, and
mmselfsup 0.x ``benchmarks/detection/configs/coco_R_50_FPN_1x_moco.yaml``):

1. the backbone file is converted with :func:`sslzoo.checkpoints.save_detectron2` (the
   ``stem.`` / ``res{N+1}`` / ``convK.norm`` / ``shortcut`` key mapping, pickled with
   ``matching_heuristics: True``) to ``work_dir/backbone_detectron2.pkl``;
2. a complete detectron2 YAML (:func:`detectron2_config`, no ``_BASE_`` chain, every value from
   our protocol file) is written to ``work_dir/detectron2_config.yaml``;
3. training runs with detectron2's ``DefaultTrainer`` (with MoCo's ``Res5ROIHeadsExtraNorm``
   registered), resuming from ``work_dir/detectron2/last_checkpoint``; under torchrun every
   process joins detectron2's process group (one process per GPU), run plainly it uses
   ``detectron2.engine.launch`` over the visible GPUs;
4. the final evaluation (``PascalVOCDetectionEvaluator`` for ``voc_2007_test``, ``COCOEvaluator``
   with masks for COCO) is read back into the table's columns.

Datasets are registered under our own names from the paths given to the step
(``sslzoo_voc_2007_trainval``, ``sslzoo_voc_2012_trainval``, ``sslzoo_voc_2007_test``,
``sslzoo_coco_2017_train``, ``sslzoo_coco_2017_val``). A changed YAML (protocol, backbone or seed)
moves the old ``work_dir/detectron2`` aside to ``superseded-<time>/`` instead of resuming it.

detectron2's Res5ROIHeads builds bottleneck blocks, so the C4 model needs ResNet-50 or deeper;
the FPN model takes any depth (``RES2_OUT_CHANNELS: 64`` for 18/34).

Of MMDetection's options (MMSelfSup's ``configs/benchmarks/mmdetection/`` protocols) detectron2
expresses the 4conv1fc box head (``ROI_BOX_HEAD.NUM_CONV 4, NUM_FC 1, CONV_DIM, NORM``), the
head norms (``ROI_BOX_HEAD.NORM``, ``ROI_MASK_HEAD.NORM``) and the L1 box loss (its default,
``SMOOTH_L1_BETA 0``, which it uses whatever ``box_loss`` says); ``input.ignore_difficult`` and
``solver.max_epochs`` it does not, and such a file is refused with a message naming the key.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from sslzoo.benchmarks.detection.train import DetectionConfig
from sslzoo.checkpoints import load_backbone, save_detectron2
from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes
from sslzoo.models.backbone import depth_from_state_dict

CONFIG_NAME = "detectron2_config.yaml"
WEIGHTS_NAME = "backbone_detectron2.pkl"
OUTPUT_NAME = "detectron2"
RESULTS_NAME = "detectron2_results.json"

VOC_TRAIN = ("sslzoo_voc_2007_trainval", "sslzoo_voc_2012_trainval")
VOC_TEST = ("sslzoo_voc_2007_test",)
COCO_TRAIN = ("sslzoo_coco_2017_train",)
COCO_TEST = ("sslzoo_coco_2017_val",)
# how long the other ranks wait for rank 0 to convert the backbone and write the detectron2 config
RANK0_TIMEOUT_S = 900.0


def detectron2_available() -> bool:
    """Whether ``import detectron2`` can work here."""
    return importlib.util.find_spec("detectron2") is not None


def require_detectron2(config_path: str | os.PathLike[str]) -> None:
    """Raise SslzooError unless detectron2 is importable (``engine: detectron2`` needs it)."""
    if not detectron2_available():
        raise SslzooError(
            f"{config_path}: engine: detectron2, but detectron2 is not installed in this environment; "
            "install it (https://detectron2.readthedocs.io/en/latest/tutorials/install.html) or set "
            "engine: torchvision in the protocol file"
        )


def detectron2_config(
    cfg: DetectionConfig,
    depth: int,
    weights: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    seed: int = 0,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The detectron2 config (nested dict, detectron2 key names) of a protocol file.

    Args:
        cfg: the validated protocol (its model, input, solver and test sections).
        depth: ResNet depth of the backbone.
        weights: the converted ``.pkl`` (``MODEL.WEIGHTS``).
        output_dir: ``OUTPUT_DIR`` (checkpoints, logs, evaluation).
        num_classes: object classes (default 20 for VOC, 80 for COCO).
    """
    m, inp, sol = cfg.model, cfg.input, cfg.solver
    c4 = m.arch in ("faster_rcnn_c4", "mask_rcnn_c4")
    if inp.ignore_difficult:
        raise SslzooError(
            "engine detectron2: input.ignore_difficult is MMDetection's; detectron2 trains on the difficult "
            "boxes. Use engine: torchvision, or remove input.ignore_difficult from the protocol file"
        )
    if sol.max_iter is None:
        raise SslzooError(
            "engine detectron2: solver.max_epochs is MMDetection's; give solver.max_iter (and steps in "
            "iterations) in the protocol file, or use engine: torchvision"
        )
    if c4 and depth < 50:
        raise SslzooError(
            f"engine detectron2: the R-C4 model needs a ResNet-50 or deeper backbone (detectron2's Res5ROIHeads "
            f"builds bottleneck blocks), got ResNet-{depth}; use engine: torchvision"
        )
    if num_classes is None:
        num_classes = 20 if cfg.dataset == "voc0712" else 80
    model: dict[str, Any] = {
        "META_ARCHITECTURE": "GeneralizedRCNN",
        "WEIGHTS": str(weights),
        "MASK_ON": m.arch.startswith("mask_rcnn"),
        "PIXEL_MEAN": list(inp.pixel_mean),
        "PIXEL_STD": list(inp.pixel_std),
        "BACKBONE": {"NAME": "build_resnet_backbone" if c4 else "build_resnet_fpn_backbone", "FREEZE_AT": 0},
        "RESNETS": {
            "DEPTH": depth,
            "NORM": m.norm,
            "STRIDE_IN_1X1": False,
            "RES2_OUT_CHANNELS": 256 if depth >= 50 else 64,
            "OUT_FEATURES": ["res4"] if c4 else ["res2", "res3", "res4", "res5"],
        },
        "RPN": {
            "PRE_NMS_TOPK_TRAIN": m.rpn_pre_nms_topk_train,
            "PRE_NMS_TOPK_TEST": m.rpn_pre_nms_topk_test,
            "POST_NMS_TOPK_TRAIN": m.rpn_post_nms_topk_train,
            "POST_NMS_TOPK_TEST": m.rpn_post_nms_topk_test,
            "BATCH_SIZE_PER_IMAGE": m.rpn_batch_size_per_image,
        },
        "ROI_HEADS": {
            "NUM_CLASSES": num_classes,
            "BATCH_SIZE_PER_IMAGE": m.roi_batch_size_per_image,
            "SCORE_THRESH_TEST": m.score_thresh_test,
            "NMS_THRESH_TEST": m.nms_thresh_test,
        },
    }
    if c4:
        model["ANCHOR_GENERATOR"] = {
            "SIZES": [list(m.anchor_sizes)],
            "ASPECT_RATIOS": [list(m.aspect_ratios)],
        }
        model["RPN"]["IN_FEATURES"] = ["res4"]
        model["ROI_HEADS"].update(
            NAME="Res5ROIHeadsExtraNorm" if m.extra_norm else "Res5ROIHeads", IN_FEATURES=["res4"]
        )
        model["ROI_BOX_HEAD"] = {
            "POOLER_RESOLUTION": m.pooler_resolution,
            "POOLER_TYPE": "ROIAlignV2",
            "POOLER_SAMPLING_RATIO": 0,
        }
        if model["MASK_ON"]:  # Res5ROIHeads' mask head on the res5 features: a deconv, no convs
            model["ROI_MASK_HEAD"] = {
                "NAME": "MaskRCNNConvUpsampleHead",
                "NUM_CONV": 0,
                "CONV_DIM": m.mask_head_channels,
            }
    else:
        model["FPN"] = {
            "IN_FEATURES": ["res2", "res3", "res4", "res5"],
            "NORM": m.norm,
            "OUT_CHANNELS": m.fpn_channels,
        }
        model["ANCHOR_GENERATOR"] = {
            "SIZES": [[s] for s in m.anchor_sizes],
            "ASPECT_RATIOS": [list(m.aspect_ratios)],
        }
        model["RPN"]["IN_FEATURES"] = ["p2", "p3", "p4", "p5", "p6"]
        model["ROI_HEADS"].update(NAME="StandardROIHeads", IN_FEATURES=["p2", "p3", "p4", "p5"])
        head_norm = m.norm if m.head_norm else ""
        four_conv = m.box_head == "4conv1fc"
        model["ROI_BOX_HEAD"] = {
            "NAME": "FastRCNNConvFCHead",
            "NUM_CONV": 4 if four_conv else 0,
            "CONV_DIM": m.box_conv_dim,
            "NUM_FC": 1 if four_conv else 2,
            "FC_DIM": m.box_fc_dim,
            "NORM": head_norm if four_conv else "",
            "POOLER_RESOLUTION": m.box_pooler_resolution,
            "POOLER_TYPE": "ROIAlignV2",
            "POOLER_SAMPLING_RATIO": 0,
        }
        model["ROI_MASK_HEAD"] = {
            "NAME": "MaskRCNNConvUpsampleHead",
            "NUM_CONV": 4,
            "CONV_DIM": m.mask_head_channels,
            "NORM": head_norm,
            "POOLER_RESOLUTION": m.mask_pooler_resolution,
            "POOLER_TYPE": "ROIAlignV2",
            "POOLER_SAMPLING_RATIO": 0,
        }
    train, test = (VOC_TRAIN, VOC_TEST) if cfg.dataset == "voc0712" else (COCO_TRAIN, COCO_TEST)
    return {
        "MODEL": model,
        "INPUT": {
            "FORMAT": "RGB",
            "MIN_SIZE_TRAIN": list(inp.min_size_train),
            "MIN_SIZE_TRAIN_SAMPLING": "choice",
            "MAX_SIZE_TRAIN": inp.max_size_train,
            "MIN_SIZE_TEST": inp.min_size_test,
            "MAX_SIZE_TEST": inp.max_size_test,
        },
        "DATASETS": {"TRAIN": list(train), "TEST": list(test)},
        "DATALOADER": {"NUM_WORKERS": cfg.workers, "FILTER_EMPTY_ANNOTATIONS": True},
        "SOLVER": {
            "IMS_PER_BATCH": sol.batch_size,
            "BASE_LR": sol.base_lr,
            "MOMENTUM": sol.momentum,
            "WEIGHT_DECAY": sol.weight_decay,
            "WEIGHT_DECAY_NORM": sol.weight_decay_norm,
            "STEPS": list(sol.steps),
            "MAX_ITER": sol.max_iter,
            "GAMMA": sol.gamma,
            "WARMUP_ITERS": sol.warmup_iters,
            "WARMUP_FACTOR": sol.warmup_factor,
            "WARMUP_METHOD": "linear",
            "CHECKPOINT_PERIOD": sol.checkpoint_period,
        },
        "TEST": {
            "PRECISE_BN": {
                "ENABLED": cfg.test.precise_bn_iters > 0,
                "NUM_ITER": max(cfg.test.precise_bn_iters, 1),
            },
            "DETECTIONS_PER_IMAGE": m.detections_per_image,
            "EVAL_PERIOD": 0,
        },
        "OUTPUT_DIR": str(output_dir),
        "SEED": seed,
        "VERSION": 2,
    }


def write_detectron2_config(config: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``config`` as YAML (what ``cfg.merge_from_file`` reads; lists stand for tuples)."""
    atomic_write_bytes(path, yaml.safe_dump(config, sort_keys=False).encode())


def metrics_from_detectron2(results: dict[str, Any], dataset: str) -> dict[str, float]:
    """detectron2's evaluation results (already in %) -> the table's columns."""
    try:
        if dataset == "voc0712":
            box = results["bbox"]
            return {"AP50": float(box["AP50"]), "AP": float(box["AP"]), "AP75": float(box["AP75"])}
        out = {}
        for key, suffix in (("bbox", "Box"), ("segm", "Mask")):
            values = results[key]
            out.update(
                {
                    f"mAP({suffix})": float(values["AP"]),
                    f"AP50({suffix})": float(values["AP50"]),
                    f"AP75({suffix})": float(values["AP75"]),
                }
            )
        return out
    except (KeyError, TypeError) as err:
        raise SslzooError(f"detectron2 returned no {err} results: {str(results)[:300]}") from err


def _register_datasets(dataset: str, paths: dict[str, str]) -> None:
    """Register our dataset names with detectron2 (once per process)."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances
    from detectron2.data.datasets.pascal_voc import register_pascal_voc

    known = set(DatasetCatalog.list())
    if dataset == "voc0712":
        entries = [
            (VOC_TRAIN[0], paths["voc07"], "trainval", 2007),
            (VOC_TRAIN[1], paths["voc12"], "trainval", 2012),
            (VOC_TEST[0], paths["voc07"], "test", 2007),
        ]
        for name, dirname, split, year in entries:
            if name not in known:
                register_pascal_voc(name, dirname, split, year)
    else:
        for name, ann, images in (
            (COCO_TRAIN[0], paths["coco_ann_train"], paths["coco_images_train"]),
            (COCO_TEST[0], paths["coco_ann_val"], paths["coco_images_val"]),
        ):
            if name not in known:
                register_coco_instances(name, {}, ann, images)


def _train_and_test(config_path: str, dataset: str, paths: dict[str, str], results_path: str) -> None:
    """detectron2 side: MoCo's ``train_net.py`` main with resume; rank 0 writes the results JSON."""
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultTrainer, default_setup
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
    from detectron2.layers import get_norm
    from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads
    from detectron2.utils import comm

    if "Res5ROIHeadsExtraNorm" not in ROI_HEADS_REGISTRY:

        class Res5ROIHeadsExtraNorm(Res5ROIHeads):  # MoCo train_net.py: a norm layer after res5
            def __init__(self, cfg: Any, input_shape: Any) -> None:
                super().__init__(cfg, input_shape)
                self.res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, self.res5[-1].out_channels))

        ROI_HEADS_REGISTRY.register(Res5ROIHeadsExtraNorm)

    class Trainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg: Any, dataset_name: str, output_folder: str | None = None) -> Any:
            if "coco" in dataset_name:
                return COCOEvaluator(
                    dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
                )
            return PascalVOCDetectionEvaluator(dataset_name)

    _register_datasets(dataset, paths)
    cfg = get_cfg()
    cfg.merge_from_file(config_path)
    cfg.freeze()
    default_setup(cfg, None)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    results = trainer.train() or Trainer.test(cfg, trainer.model)
    if comm.is_main_process():
        plain = json.loads(json.dumps(results, default=float))
        Path(results_path).write_text(json.dumps(plain, indent=2) + "\n")
    comm.synchronize()


def wait_for_file(
    path: Path, text: str, what: str, timeout_s: float = RANK0_TIMEOUT_S, poll_s: float = 1.0
) -> None:
    """Wait until ``path`` holds exactly ``text`` (another process writes it), at most ``timeout_s``.

    A barrier for processes that share a file system but no process group yet (detectron2 sets
    its group up later, in :func:`_launch`).

    Raises:
        SslzooError: ``timeout_s`` passed first; the message names ``what`` was awaited and the file.
    """
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text() == text):
        if time.monotonic() >= deadline:
            state = "does not exist" if not path.exists() else "holds other settings"
            raise SslzooError(
                f"waited {timeout_s:g} s for {what} in {path}, which still {state}; did rank 0 fail? "
                "(see its log)"
            )
        time.sleep(poll_s)


def _launch(config_path: Path, dataset: str, paths: dict[str, str], results_path: Path) -> None:
    """Run :func:`_train_and_test` on every GPU of the job (torchrun's processes, or spawned)."""
    from detectron2.utils import comm

    args = (str(config_path), dataset, paths, str(results_path))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # under torchrun: one process per GPU already
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group("nccl", init_method="env://")
        if hasattr(comm, "create_local_process_group"):
            comm.create_local_process_group(local_world)
        else:  # detectron2 < 0.6
            machine = int(os.environ.get("GROUP_RANK", "0"))
            for m in range(world // local_world):
                group = dist.new_group(list(range(m * local_world, (m + 1) * local_world)))
                if m == machine:
                    comm._LOCAL_PROCESS_GROUP = group
        _train_and_test(*args)
        return
    from detectron2.engine import launch

    launch(
        _train_and_test,
        max(torch.cuda.device_count(), 1),
        num_machines=1,
        machine_rank=0,
        dist_url="auto",
        args=args,
    )


def run_detectron2_benchmark(
    cfg: DetectionConfig,
    config_path: str | os.PathLike[str],
    backbone_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    paths: dict[str, str],
    seed: int = 0,
) -> dict[str, float] | None:
    """Convert, configure, train and evaluate with detectron2; the table's columns on rank 0.

    ``paths``: ``voc07``/``voc12`` or ``coco_images_train``/``coco_ann_train``/
    ``coco_images_val``/``coco_ann_val`` (absolute paths are written into the registrations).
    """
    require_detectron2(config_path)
    rank = int(os.environ.get("RANK", "0"))
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    state_dict = load_backbone(backbone_path)
    depth = depth_from_state_dict({k: v for k, v in state_dict.items() if not k.startswith("fc.")})
    weights, config_file = work_dir / WEIGHTS_NAME, work_dir / CONFIG_NAME
    output_dir, results_path = work_dir / OUTPUT_NAME, work_dir / RESULTS_NAME
    config = detectron2_config(cfg, depth, weights, output_dir, seed)
    text = yaml.safe_dump(config, sort_keys=False)
    if rank == 0:
        save_detectron2(state_dict, weights)
        old = config_file.read_text() if config_file.exists() else None
        if old is not None and old != text and output_dir.exists():
            aside = work_dir / time.strftime("superseded-%Y%m%d-%H%M%S")
            aside.mkdir(parents=True, exist_ok=True)
            output_dir.replace(aside / OUTPUT_NAME)
        write_detectron2_config(config, config_file)
        results_path.unlink(missing_ok=True)
    else:  # rank 0 writes the weights, then the config: the config's text says both are there
        wait_for_file(
            config_file, text, f"rank 0 (RANK={rank} waiting) to write the detectron2 config and weights"
        )
    resolved = {key: str(Path(value).resolve()) for key, value in paths.items() if value is not None}
    _launch(config_file, cfg.dataset, resolved, results_path)
    if rank != 0:
        return None
    return metrics_from_detectron2(json.loads(results_path.read_text()), cfg.dataset)
