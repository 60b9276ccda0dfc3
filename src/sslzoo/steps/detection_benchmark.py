"""Object detection fine-tuning (VOC07+12 Faster R-CNN R50-C4, COCO Mask R-CNN R50-FPN).

Initialises the detector of the protocol file (--config, config/benchmarks/det_*.yaml) from a
backbone, fine-tunes everything for the protocol's iterations (MoCo detection protocol) and
writes metrics.json with the table's columns in %: AP50, AP, AP75 (VOC07 test, 11-point AP) or
mAP/AP50/AP75 of boxes and masks (COCO val2017), plus "meta". The dataset flags needed depend on
the protocol's dataset:

  voc0712: --voc07 VOCdevkit/VOC2007 --voc12 VOCdevkit/VOC2012
           (trained on both trainval sets, tested on VOC2007 test)
  coco:    --coco-images-train coco/train2017 --coco-ann-train coco/annotations/instances_train2017.json
           --coco-images-val coco/val2017 --coco-ann-val coco/annotations/instances_val2017.json

engine: torchvision runs one process or under torchrun (DDP, SyncBN on GPUs) and resumes from
--work-dir after a kill; engine: detectron2 needs detectron2 installed and runs MoCo's tool chain."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="backbone file (results/backbones/{model}.pth)")
    parser.add_argument("--config", required=True, help="protocol (config/benchmarks/det_*.yaml)")
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (det_voc0712, det_voc0712_moco, det_coco)",
    )
    parser.add_argument(
        "--model", required=True, help="the model, recorded in meta (config/models/{model}.yaml)"
    )
    parser.add_argument(
        "--work-dir", required=True, help="resume state (removed once --out is written) and logs"
    )
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/{benchmark}/{model}/metrics.json)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="data order, augmentation and head init (default 0)"
    )
    voc = parser.add_argument_group("VOC (dataset: voc0712)")
    voc.add_argument("--voc07", help="VOCdevkit/VOC2007 (trainval for training, test for evaluation)")
    voc.add_argument("--voc12", help="VOCdevkit/VOC2012 (trainval for training)")
    coco = parser.add_argument_group("COCO (dataset: coco)")
    coco.add_argument("--coco-images-train", help="training images (coco/train2017)")
    coco.add_argument(
        "--coco-ann-train", help="training annotations (coco/annotations/instances_train2017.json)"
    )
    coco.add_argument("--coco-images-val", help="evaluation images (coco/val2017)")
    coco.add_argument(
        "--coco-ann-val", help="evaluation annotations (coco/annotations/instances_val2017.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, checked before the heavy imports

    from sslzoo.benchmarks.detection import detection_benchmark
    from sslzoo.runtime.dist import cleanup
    from sslzoo.runtime.run_dir import discard_resume_state

    try:
        detection_benchmark(
            args.backbone,
            args.config,
            args.work_dir,
            args.out,
            benchmark_name=args.benchmark,
            model_name=args.model,
            voc07=args.voc07,
            voc12=args.voc12,
            coco_images_train=args.coco_images_train,
            coco_ann_train=args.coco_ann_train,
            coco_images_val=args.coco_images_val,
            coco_ann_val=args.coco_ann_val,
            seed=args.seed,
        )
        discard_resume_state(args.work_dir)  # the output is written: the run is complete
    finally:
        cleanup()
