"""Write the classification manifest of an iNaturalist 2018 split from its annotation JSON.

Reads train2018.json or val2018.json (images with file_name, annotations with image_id and
category_id, categories), checks that every image exists under --images and has one category,
and writes {"dataset": "inat18", "split", "root", "classes" (category names in id order),
"samples": [[file_name, label], ...]} (sslzoo.data.inat), the layout every later job reads."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, help="annotation file (train2018.json or val2018.json)")
    parser.add_argument(
        "--images", required=True, help="folder the file names are relative to (holds train_val2018/)"
    )
    parser.add_argument("--split", required=True, help="split name stored in the manifest (train, val)")
    parser.add_argument(
        "--out", required=True, help="manifest to write (resources/manifests/inat18_{split}.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.data.inat import inat_manifest
    from sslzoo.data.manifest import write_manifest

    manifest = inat_manifest(args.json, args.images, args.split)
    write_manifest(manifest, args.out)
    print(f"{args.out}: {len(manifest['samples'])} images, {len(manifest['classes'])} classes")
