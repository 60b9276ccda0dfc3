"""Selective-search box proposals for one shard of a manifest's images (ORL stage 2a).

Runs OpenCV's fast selective search (or the PyPI selectivesearch package) on every full-resolution
image of shard --shard i-of-n (rows i-1, i-1+n, ...) and writes {"shard", "indices", "bbox":
[[[x, y, w, h], ...] per row]} (sslzoo.orl.proposals). OpenCV uses OMP_NUM_THREADS threads (1 if
unset); orl-merge-proposals joins the shards."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest", required=True, help="image manifest (resources/manifests/coco_train.json)"
    )
    parser.add_argument("--shard", required=True, help="i-of-n: this job's shard, 1 <= i <= n (3-of-64)")
    parser.add_argument(
        "--backend",
        choices=("opencv", "selectivesearch"),
        default="opencv",
        help="opencv: ORL's cv2.ximgproc fast selective search (default); selectivesearch: the PyPI package",
    )
    parser.add_argument(
        "--out", required=True, help="shard file to write (results/orl/coco/proposals/3-of-64.json)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.io import write_json
    from sslzoo.orl.proposals import propose_shard

    shard = propose_shard(args.manifest, args.shard, args.backend)
    write_json(args.out, shard, indent=None)
    n_boxes = sum(len(boxes) for boxes in shard["bbox"])
    print(f"{args.out}: {len(shard['indices'])} images, {n_boxes} boxes")
