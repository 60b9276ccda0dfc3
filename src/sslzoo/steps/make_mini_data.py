"""Write the embedded mini datasets (ImageNet, VOC, COCO, Cityscapes layouts) for the CPU zoo.

Renders synthetic scenes - textured shapes, one look per class, on varied backgrounds - into
the real datasets' layouts under --out: imagenet/ (class folders + MMSelfSup meta lists),
voc/VOCdevkit/VOC2007 and VOC2012 (XML, class lists, SegmentationClass, SBD-style trainaug),
coco/ (train2017, val2017, instances JSON with polygons) and cityscapes/ (leftImg8bit, gtFine
labelIds). summary.json (counts and seed) is written last. The same seed gives byte-identical
files (sslzoo.data.mini)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write (e.g. resources/mini)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of every scene (default 0)")


def main(args: argparse.Namespace) -> None:
    from sslzoo.data.mini import make_mini_data

    summary = make_mini_data(args.out, seed=args.seed)
    voc = summary["voc"]
    print(
        f"{args.out}: imagenet {summary['imagenet']['images']}, "
        f"VOC2007 {voc['VOC2007']['images']}, VOC2012 {voc['VOC2012']['segmentation']}, "
        f"coco {summary['coco']['train2017']} / {summary['coco']['val2017']}, "
        f"cityscapes {summary['cityscapes']['train']['images']} / {summary['cityscapes']['val']['images']} "
        f"images in {summary['seconds']} s"
    )
