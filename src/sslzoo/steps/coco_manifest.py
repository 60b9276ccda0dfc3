"""Write the manifest of the images of a COCO instances JSON, in the JSON's image order.

Reads the "images" list of --annotations (instances_train2017.json), checks that every file_name
exists under --images, and writes {"dataset": "coco", "split", "root", "classes": [], "samples":
[[file_name, -1], ...], "ids": [COCO image id, ...]} (sslzoo.data.coco). Rows keep the JSON's
order because ORL's proposals, kNN and correspondence files address images by that row index."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="image folder (data/coco/train2017)")
    parser.add_argument(
        "--annotations",
        required=True,
        help="COCO instances JSON (data/coco/annotations/instances_train2017.json)",
    )
    parser.add_argument("--split", required=True, help="split name stored in the manifest (train)")
    parser.add_argument(
        "--out", required=True, help="manifest to write (resources/manifests/coco_train.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.data.coco import coco_manifest
    from sslzoo.data.manifest import write_manifest

    manifest = coco_manifest(args.images, args.annotations, args.split)
    write_manifest(manifest, args.out)
    print(f"{args.out}: {len(manifest['samples'])} images")
