"""ORL stage 2: the k most similar images of every image under the stage-1 BYOL model (knn.json).

Every manifest image is resized and centre-cropped (stage2.knn resize, crop of the ORL config),
embedded by the stage-1 online backbone + projector (L2-normalised), and its stage2.knn.k nearest
images by cosine similarity, itself excluded, are written as manifest row indices in ORL's
train2017_10nn_instance.json layout. The search is exact: faiss IndexFlatIP (on the GPU when
faiss has GPU support), or torch matmul + topk on the GPU when faiss is a CPU build. Runs as one
process or under torchrun (each rank embeds a strided part of the images; rank 0 searches and
writes)."""

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
    parser.add_argument("--out", required=True, help="knn file to write (results/orl/{model}/knn.json)")
    parser.add_argument(
        "--workers", type=int, default=4, help="data-loading worker processes per process (default 4)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.orl.knn import build_knn
    from sslzoo.runtime.dist import cleanup, init_distributed

    ctx = init_distributed()
    try:
        doc = build_knn(args.checkpoint, args.config, args.manifest, args.out, workers=args.workers, ctx=ctx)
        if doc is not None:
            rows = doc["pseudo_annotations"]["knn_image_id"]
            print(f"{args.out}: {len(rows)} images, {doc['info']['knn_image_num']} neighbours each")
    finally:
        cleanup()
