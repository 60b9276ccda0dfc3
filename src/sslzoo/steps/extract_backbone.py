"""Extract the ResNet backbone of a pretrained checkpoint (torchvision, MMSelfSup or detectron2 layout).

Reads our results/pretrain/{model}/final.pth, an MMSelfSup/OpenSelfSup full checkpoint
("backbone." keys), a backbone-only checkpoint or a plain torchvision state dict, keeps the
backbone and writes it as a torchvision ResNet state dict that loads with strict=True (zero fc),
or with --format mmselfsup / detectron2 in those layouts (PROTOCOLS.md "Backbone extraction",
"Detection key conversion")."""

from __future__ import annotations

import argparse

FORMATS = ("torchvision", "mmselfsup", "detectron2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="pretrained checkpoint (.pth)")
    parser.add_argument("--out", required=True, help="backbone file to write")
    parser.add_argument(
        "--format",
        default="torchvision",
        choices=FORMATS,
        help="layout of the written file (default torchvision)",
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.checkpoints import extract_backbone

    extract_backbone(args.checkpoint, args.out, fmt=args.format)
