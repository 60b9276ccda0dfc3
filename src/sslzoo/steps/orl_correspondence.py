"""ORL stage 2: kept selective-search boxes and matching box pairs with the KNN images, one shard.

For every image of shard --shard (rows i-1, i-1+n, ... of the manifest): its selective-search
boxes are filtered (stage2.correspondence min_size, max_aspect_ratio, max_iou, max_boxes of the
ORL config), each kept box is cropped, resized and embedded by the stage-1 online backbone
(res5, average pooled, L2-normalised; many boxes per forward pass), and for each of its
stage2.knn.k KNN images the top pair_ratio * B box pairs by cosine similarity are kept as
[x, y, w, h, x', y', w', h']. Merge the shards with orl-merge-correspondence. Runs as one process
or under torchrun (each rank embeds a strided part of the images; rank 0 picks the pairs and
writes). Each image's box features are computed once per shard while --cache-gb holds them."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="stage-1 BYOL model (results/pretrain/{stage1}/final.pth)"
    )
    parser.add_argument("--config", required=True, help="ORL (stage 3) model config with the stage2 section")
    parser.add_argument(
        "--manifest", required=True, help="image manifest (resources/manifests/coco_train.json)"
    )
    parser.add_argument("--knn", required=True, help="knn file (results/orl/{model}/knn.json or ORL's)")
    parser.add_argument(
        "--proposals", required=True, help="merged proposals (results/orl/{dataset}/proposals.json or ORL's)"
    )
    parser.add_argument("--shard", required=True, help="which shard, 'i-of-n' (e.g. 3-of-8)")
    parser.add_argument(
        "--out",
        required=True,
        help="shard file to write (results/orl/{model}/correspondence/{i}-of-{n}.json)",
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="crop-cutting worker processes per process (default 4)"
    )
    parser.add_argument(
        "--cache-gb",
        type=float,
        default=4.0,
        help="memory for cached box features per process, GiB (default 4); more means fewer recomputed images",
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.orl.correspondence import correspondence_shard
    from sslzoo.runtime.dist import cleanup, init_distributed

    ctx = init_distributed()
    try:
        doc = correspondence_shard(
            args.checkpoint,
            args.config,
            args.manifest,
            args.knn,
            args.proposals,
            args.shard,
            args.out,
            workers=args.workers,
            cache_gb=args.cache_gb,
            ctx=ctx,
        )
        if doc is not None:
            boxes = sum(len(b) for b in doc["bbox"])
            pairs = sum(len(slot) for image in doc["knn_bbox_pair"] for slot in image)
            print(f"{args.out}: {len(doc['indices'])} images, {boxes} kept boxes, {pairs} box pairs")
    finally:
        cleanup()
