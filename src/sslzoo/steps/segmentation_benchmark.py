"""Semantic segmentation fine-tuning (FCN-R50-D8 on VOC12aug or Cityscapes), mIoU.

Builds the dilated FCN of the protocol file (--config, config/benchmarks/seg_*.yaml) on a
backbone, fine-tunes it for the protocol's iterations (MMSegmentation protocol) and writes
metrics.json: {"mIOU": %, "meta": {... per-class IoU ...}}. The dataset flag depends on the
protocol's dataset:

  voc12aug:   --voc12 VOCdevkit/VOC2012 (ImageSets/Segmentation/trainaug.txt with
              SegmentationClassAug for training, val.txt with SegmentationClass for evaluation)
  cityscapes: --cityscapes DIR (leftImg8bit/ and gtFine/ with train and val; labelIds are
              mapped to the 19 trainIds)

Runs as one process or under torchrun (DDP, SyncBN on GPUs); resumes from --work-dir after a kill."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="backbone file (results/backbones/{model}.pth)")
    parser.add_argument("--config", required=True, help="protocol (config/benchmarks/seg_*.yaml)")
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (seg_voc12aug, seg_cityscapes)",
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
    parser.add_argument("--voc12", help="VOCdevkit/VOC2012 with SegmentationClassAug (dataset: voc12aug)")
    parser.add_argument(
        "--cityscapes", help="Cityscapes root with leftImg8bit/ and gtFine/ (dataset: cityscapes)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, checked before the heavy imports

    from sslzoo.benchmarks.segmentation import segmentation_benchmark
    from sslzoo.runtime.dist import cleanup
    from sslzoo.runtime.run_dir import discard_resume_state

    try:
        segmentation_benchmark(
            args.backbone,
            args.config,
            args.work_dir,
            args.out,
            benchmark_name=args.benchmark,
            model_name=args.model,
            voc12=args.voc12,
            cityscapes=args.cityscapes,
            seed=args.seed,
        )
        discard_resume_state(args.work_dir)  # the output is written: the run is complete
    finally:
        cleanup()
