"""Write the classification manifest of a Pascal VOC split: 20 targets 1/-1/0 per image.

Reads ImageSets/Main/<class>_<split>.txt of the 20 VOC classes under --devkit (a VOC year folder
such as VOCdevkit/VOC2007) and checks that every listed JPEGImages/<id>.jpg exists. Writes
{"dataset", "split", "root", "classes", "samples": [["JPEGImages/<id>.jpg", [20 targets]], ...]}
(sslzoo.data.voc), the input of feature extraction for the VOC07 SVM benchmarks."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devkit", required=True, help="VOC year folder (resources/mini/voc/VOCdevkit/VOC2007)"
    )
    parser.add_argument("--split", required=True, help="list-file split: trainval, test, train or val")
    parser.add_argument(
        "--out", required=True, help="manifest to write (resources/manifests/voc07_{split}.json)"
    )
    parser.add_argument(
        "--dataset", default=None, help="dataset name stored in the manifest (default voc07 for VOC2007)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.data.voc import voc_classification_manifest
    from sslzoo.io import write_json

    manifest = voc_classification_manifest(args.devkit, args.split, args.dataset)
    write_json(args.out, manifest, indent=None)
    print(f"{args.out}: {len(manifest['samples'])} images, {len(manifest['classes'])} classes")
