"""ORL stage 2: merge the correspondence shards into ORL's correspondence file.

Checks that every shard 1..n of one run is given once, holds exactly its rows of the knn file's
images and was made with the config's stage2 settings, then writes ORL's layout: info (the
filter and pair settings), images and knn_image_id from the knn file, per-image kept boxes
(bbox) and KNN box pairs (knn_bbox_pair)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="ORL (stage 3) model config with the stage2 section")
    parser.add_argument("--knn", required=True, help="the knn file the shards were made from")
    parser.add_argument(
        "--out", required=True, help="correspondence file to write (results/orl/{model}/correspondence.json)"
    )
    parser.add_argument("shards", nargs="+", help="every shard file (correspondence/{i}-of-{n}.json)")


def main(args: argparse.Namespace) -> None:
    from sslzoo.io import write_json
    from sslzoo.orl.correspondence_files import merge_correspondence

    doc = merge_correspondence(args.config, args.knn, args.shards)
    write_json(args.out, doc, indent=None)
    print(f"{args.out}: {len(args.shards)} shards, {len(doc['pseudo_annotations']['bbox'])} images")
