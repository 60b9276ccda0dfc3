"""Object detection benchmarks: VOC07+12 Faster R-CNN R50-C4, COCO Mask R-CNN R50-FPN 1x and R50-C4 2x.

The whole pretrained ResNet is fine-tuned inside a detector and the test-set AP is the metric.
The protocols (PROTOCOLS.md "Detection as the model zoo ran it", "Detection (MoCo protocol,
detectron2)"): MMSelfSup's MMDetection configs, which its model zoo reports (``det_voc0712``,
``det_coco``), and MoCo's detectron2 configs, which Triplet reports (``det_voc0712_moco``, ``det_coco_c4_moco``).
Two engines read the same protocol file (``config/benchmarks/det_*.yaml``):

- ``torchvision`` (default, runs everywhere, CPU included): the detectors of
  :mod:`.models` trained by :func:`.train.train_iterations` and scored by :mod:`.evaluate`;
- ``detectron2`` (:mod:`.detectron2_engine`): MoCo's own tool chain, when detectron2 is
  installed; a clear error otherwise.

:func:`detection_benchmark` is the ``detection`` step: it writes
``results/benchmarks/{benchmark}/{model}/metrics.json`` with the table's columns (in %):
``AP50``, ``AP``, ``AP75`` for VOC; ``mAP(Box)``, ``AP50(Box)``, ``AP75(Box)``,
``mAP(Mask)``, ``AP50(Mask)``, ``AP75(Mask)`` for COCO; and ``meta`` (with the run
record ``meta.run``, :mod:`sslzoo.run_record`). The metrics are those of the whole test split
unless the protocol sets ``test.max_images`` (the mini protocols): then of that many images
spread evenly over it (:func:`sslzoo.data.detection.spread_positions`); ``meta.num_test`` counts
the images evaluated, ``meta.num_test_split`` those of the split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sslzoo.benchmarks.classifier_loop import norm_param_groups, training_run_record
from sslzoo.benchmarks.detection.detectron2_engine import require_detectron2, run_detectron2_benchmark
from sslzoo.benchmarks.detection.evaluate import (
    coco_metrics,
    coco_results,
    predict,
    voc_detection_metrics,
)
from sslzoo.benchmarks.detection.models import build_detector, convert_sync_batchnorm
from sslzoo.benchmarks.detection.train import (
    IterationSettings,
    load_detection_config,
    precise_bn,
    train_iterations,
)
from sslzoo.checkpoints import load_backbone
from sslzoo.data.detection import CocoDetection, VocDetection, collate_detection, spread_positions
from sslzoo.errors import SslzooError
from sslzoo.io import file_digest, git_revision, write_json
from sslzoo.runtime.device import move_to_device
from sslzoo.runtime.dist import DistContext, broadcast_buffers, init_distributed


def _required(paths: dict[str, Any], names: tuple[str, ...], dataset: str, config_path: str) -> None:
    missing = [name for name in names if not paths.get(name)]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise SslzooError(f"{config_path}: dataset {dataset} needs {flags}")
    for name in names:
        if not Path(paths[name]).exists():
            raise SslzooError(f"--{name.replace('_', '-')} {paths[name]}: not found")


def detection_benchmark(
    backbone_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    benchmark_name: str,
    model_name: str,
    voc07: str | os.PathLike[str] | None = None,
    voc12: str | os.PathLike[str] | None = None,
    coco_images_train: str | os.PathLike[str] | None = None,
    coco_ann_train: str | os.PathLike[str] | None = None,
    coco_images_val: str | os.PathLike[str] | None = None,
    coco_ann_val: str | os.PathLike[str] | None = None,
    seed: int = 0,
    ctx: Any = None,
) -> dict[str, Any] | None:
    """Fine-tune a detector from ``backbone_path`` with protocol ``config_path``; write metrics.json.

    Args:
        backbone_path: ``results/backbones/{model}.pth`` (torchvision ResNet state dict).
        config_path: ``config/benchmarks/det_*.yaml``.
        work_dir: resume state and logs (kept between reruns).
        out_path: the metrics file (``results/benchmarks/{benchmark}/{model}/metrics.json``).
        benchmark_name: the benchmark ``meta`` records (a benchmark of
            :mod:`sslzoo.benchmarks.registry`).
        model_name: the model ``meta`` records.
        voc07, voc12: ``VOCdevkit/VOC2007`` and ``VOCdevkit/VOC2012`` (dataset ``voc0712``:
            trained on both ``trainval`` sets, tested on VOC2007 ``test``).
        coco_images_train, coco_ann_train, coco_images_val, coco_ann_val: COCO image folders and
            ``instances_*.json`` files (dataset ``coco``).
        seed: data order, augmentation and head initialisation.
        ctx: a :class:`~sslzoo.runtime.dist.DistContext` (default: from the torchrun environment).

    Returns:
        The metrics on rank 0, None on the other processes.
    """
    config_path = str(config_path)
    cfg, raw = load_detection_config(config_path)
    paths = {
        "voc07": voc07,
        "voc12": voc12,
        "coco_images_train": coco_images_train,
        "coco_ann_train": coco_ann_train,
        "coco_images_val": coco_images_val,
        "coco_ann_val": coco_ann_val,
    }
    if cfg.dataset == "voc0712":
        _required(paths, ("voc07", "voc12"), cfg.dataset, config_path)
    else:
        _required(
            paths,
            ("coco_images_train", "coco_ann_train", "coco_images_val", "coco_ann_val"),
            cfg.dataset,
            config_path,
        )
    out_path = Path(out_path)
    meta: dict[str, Any] = {
        "benchmark": benchmark_name,
        "model": model_name,
        "config": raw,
        "config_path": config_path,
        "engine": cfg.engine,
        "git_rev": git_revision(),
        "backbone": str(backbone_path),
        "datasets": {k: str(v) for k, v in paths.items() if v is not None},
        "seed": seed,
    }

    if cfg.engine == "detectron2":
        require_detectron2(config_path)
        meta["max_iter"] = cfg.solver.max_iter
        metrics = run_detectron2_benchmark(cfg, config_path, backbone_path, work_dir, paths, seed)
        if metrics is None:
            return None
        # detectron2's launcher runs one process per GPU of the job (torchrun's WORLD_SIZE)
        d2_ctx = DistContext(
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            device=torch.device("cuda" if torch.cuda.is_available() else "cpu"),
        )
        run = training_run_record(config_path, cfg.gpus, cfg.solver.batch_size, seed, d2_ctx)
        result = {**metrics, "meta": {**meta, "iterations": cfg.solver.max_iter, "run": run}}
        write_json(out_path, result)
        return result

    ctx = ctx or init_distributed()
    state_dict = load_backbone(backbone_path)
    flip = cfg.input.flip_prob
    if cfg.dataset == "voc0712":
        train_set: Any = VocDetection(
            [(voc07, "trainval"), (voc12, "trainval")],  # type: ignore[list-item]
            train=True,
            flip_prob=flip,
            ignore_difficult=cfg.input.ignore_difficult,
        )
        test_set: Any = VocDetection([(voc07, "test")])  # type: ignore[list-item]
        num_classes = len(test_set.classes)
    else:
        with_masks = cfg.model.arch.startswith("mask_rcnn")
        train_set = CocoDetection(
            coco_images_train, coco_ann_train, train=True, with_masks=with_masks, flip_prob=flip
        )  # type: ignore[arg-type]
        test_set = CocoDetection(coco_images_val, coco_ann_val, train=False, with_masks=False)  # type: ignore[arg-type]
        if train_set.category_ids != test_set.category_ids:
            raise SslzooError(f"{coco_ann_train} and {coco_ann_val}: different category lists")
        num_classes = len(test_set.category_ids)
    test_split_images = len(test_set)
    if cfg.test.max_images is not None:  # the mini protocols: a fixed subset of the test split
        test_set = test_set.select(spread_positions(test_split_images, cfg.test.max_images))

    torch.manual_seed(seed)
    model = build_detector(num_classes, cfg.model, cfg.input, state_dict).to(ctx.device)
    model = convert_sync_batchnorm(model, cfg.model.norm, ctx.distributed, ctx.device)
    sol = cfg.solver.in_iterations(len(train_set))  # max_epochs -> iterations
    meta["max_iter"] = sol.max_iter
    optimizer = torch.optim.SGD(
        norm_param_groups(model, sol.base_lr, sol.weight_decay, sol.weight_decay_norm),
        lr=sol.base_lr,
        momentum=sol.momentum,
    )
    schedule = sol.schedule()
    device = ctx.device

    def step_losses(runner: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, targets = move_to_device(batch, device)
        return runner(images, targets)

    settings = IterationSettings(sol.max_iter, sol.batch_size, cfg.workers, sol.checkpoint_period)
    fingerprint = {"config": raw, "seed": seed, "backbone": file_digest(backbone_path)}
    summary = train_iterations(
        model,
        optimizer,
        train_set,
        settings,
        schedule.lr,
        step_losses,
        work_dir,
        fingerprint,
        collate_fn=collate_detection,
        seed=seed,
        ctx=ctx,
    )
    precise_bn(
        model,
        train_set,
        step_losses,
        cfg.test.precise_bn_iters,
        summary["per_process_batch"],
        collate_fn=collate_detection,
        seed=seed,
        ctx=ctx,
        workers=cfg.workers,
    )
    broadcast_buffers(model, ctx)
    predictions = predict(model, test_set, ctx, batch_size=cfg.test.batch_size, workers=cfg.workers)
    if not ctx.is_main:
        return None
    if cfg.dataset == "voc0712":
        scores = voc_detection_metrics(
            predictions, test_set.annotations, test_set.classes, use_07_metric=True
        )
        metrics: dict[str, Any] = {k: scores[k] for k in ("AP50", "AP", "AP75")}
        extra = {"per_class_AP50": scores["per_class_AP50"], "AP_per_threshold": scores["AP_per_threshold"]}
    else:
        results = coco_results(predictions, test_set.image_ids, test_set.category_ids)
        iou_types = ("bbox", "segm") if cfg.model.arch.startswith("mask_rcnn") else ("bbox",)
        metrics = coco_metrics(test_set.coco, results, iou_types, test_set.image_ids)
        extra = {"detections": len(results)}
    result = {
        **metrics,
        "meta": {
            **meta,
            **summary,
            **extra,
            "world_size": ctx.world_size,
            "num_train": len(train_set),
            "num_test": len(test_set),
            "num_test_split": test_split_images,
            "num_classes": num_classes,
            "run": training_run_record(config_path, cfg.gpus, sol.batch_size, seed, ctx),
        },
    }
    write_json(out_path, result)
    return result
