"""Merge the proposals shards of orl-proposals into one file in manifest row order (ORL stage 2a).

Checks that every shard 1..n of one run is given exactly once and holds that shard's rows of
--manifest, then writes {"bbox": [[[x, y, w, h], ...] per row], "images": {"file_name", "id"}},
the layout of ORL's train2017_selective_search_proposal.json plus the image list, one image per
line (sslzoo.orl.proposals)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest", required=True, help="image manifest (resources/manifests/coco_train.json)"
    )
    parser.add_argument("--out", required=True, help="merged file to write (results/orl/coco/proposals.json)")
    parser.add_argument("shards", nargs="+", metavar="SHARD.json", help="every shard file i-of-n, i = 1..n")


def main(args: argparse.Namespace) -> None:
    from sslzoo.orl.proposals import write_merged_proposals

    n_boxes = write_merged_proposals(args.manifest, args.shards, args.out)
    print(f"{args.out}: {len(args.shards)} shards, {n_boxes} boxes")
