"""ORL stage 2 speed: selective search, correspondence and KNN retrieval against their peers.

Three measurements, each with its peer in the same run on the same input:

(a) selective search, images/s of one proposals job (decode + search): OpenCV's fast mode (the
    reference's and our default backend) vs the pure-Python ``selectivesearch`` PyPI package
    (skipped with a message when it is not installed: ``.venv/bin/pip install selectivesearch``).
(b) correspondence, images/s over the same images, boxes and KNN graph:
    - ``sslzoo``: :func:`sslzoo.orl.correspondence.compute_correspondence`, crops cut in
      ``--workers`` DataLoader workers, ``--batch-size`` crops of many images per forward pass,
      each image's box features computed once and reused for every image it is a neighbour of;
    - ``reference``: ORL's way (``CorrespondenceDataset`` + ``Correspondence.forward_test``,
      ``imgs_per_gpu=1, workers_per_gpu=0``): per image, one forward pass over its boxes and one
      over each neighbour's boxes, neighbours recomputed every time;
    - ``one box/pass``: as ``reference`` but one crop per forward pass.
    The pairs of ``sslzoo`` and ``reference`` are compared (they must be the same).
(c) KNN retrieval on ``--n`` random L2-normalised 256-d features: faiss ``IndexFlatIP`` vs torch
    matmul + topk (both exact; the neighbour rows are compared).

Each time is the best of ``--repeat`` runs (default 2; the machine may be shared).
Images: ``--images DIR`` (jpg/png files), else mini COCO scenes from :mod:`sslzoo.data.mini`
upscaled ``--upscale`` times (default 4: about 640 x 450 px, COCO's size; synthetic scenes give
fewer selective-search boxes than photos). Per-image costs are printed with a projection to COCO
train2017 (118287 images) on ``--jobs`` CPU jobs of this machine's thread count.

    .venv/bin/python bench/orl_stage2.py                   # small default run, about 2 minutes on 2 cores
    .venv/bin/python bench/orl_stage2.py --images DIR --count 20 --n 118287 --depth 50
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: no progress bars in the table

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from sslzoo.data.images import load_rgb  # noqa: E402
from sslzoo.models.backbone import ResNetBackbone  # noqa: E402
from sslzoo.orl.correspondence import (  # noqa: E402
    CPU_CHUNK,
    box_features,
    compute_correspondence,
    crop_boxes,
    select_pairs,
)
from sslzoo.orl.correspondence_files import CorrespondenceProtocol, protocol_filter  # noqa: E402
from sslzoo.orl.knn import knn_faiss, knn_torch  # noqa: E402
from sslzoo.orl.proposals import proposals_per_second, selective_search  # noqa: E402

COCO_TRAIN = 118287


def make_images(out: Path, count: int, upscale: int, seed: int = 0) -> list[Path]:
    """``count`` mini COCO scenes upscaled ``upscale`` times (bicubic), saved as JPEG in ``out``."""
    from sslzoo.data.mini import render_coco_image

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = Image.fromarray(render_coco_image(seed, "train2017", index).image)
        image = image.resize((image.width * upscale, image.height * upscale), Image.BICUBIC)
        path = out / f"{index:012d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def timed(fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    """``(fn(), the shortest of repeat timings in seconds)``: others' load only ever adds time."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def reference_correspondence(
    backbone: torch.nn.Module,
    paths: list[Path],
    proposals: list[list[list[int]]],
    knn_rows: list[list[int]],
    rows: list[int],
    protocol: CorrespondenceProtocol,
    k: int,
    device: torch.device,
    boxes_per_pass: int | None,
) -> dict[int, tuple[list, list]]:
    """ORL's per-image loop: decode, filter and crop the image and its neighbours, forward each
    image's boxes (``boxes_per_pass`` None: all in one pass; 1: one box per pass), pick the pairs."""

    def feats_of(image: Image.Image, boxes: list) -> torch.Tensor:
        crops = crop_boxes(image, boxes, protocol.crop)
        step = boxes_per_pass or len(crops)
        return torch.cat(
            [box_features(backbone, crops[s : s + step], device) for s in range(0, len(crops), step)]
        )

    out = {}
    for i in rows:
        boxes = protocol_filter(proposals[i], protocol)
        feats = feats_of(load_rgb(paths[i]), boxes)
        pairs = []
        for j in knn_rows[i][:k]:
            knn_boxes = protocol_filter(proposals[j], protocol)
            knn_feats = feats_of(load_rgb(paths[j]), knn_boxes)
            pairs.append(select_pairs(feats, knn_feats, boxes, knn_boxes, protocol.pair_ratio))
        out[i] = (boxes, pairs)
    return out


def row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [row(header, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + [row(r, widths) for r in rows])


def hours(seconds_per_image: float, jobs: int) -> str:
    return f"{COCO_TRAIN * seconds_per_image / jobs / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of images (default: generated mini COCO scenes)")
    parser.add_argument("--count", type=int, default=11, help="images to use (default 11)")
    parser.add_argument(
        "--upscale", type=int, default=4, help="upscale factor of generated scenes (default 4)"
    )
    parser.add_argument(
        "--ss-count",
        type=int,
        default=0,
        help="first images for the selectivesearch package (default 0: all)",
    )
    parser.add_argument("--depth", type=int, default=50, help="ResNet depth for (b) (default 50)")
    parser.add_argument("--crop", type=int, default=224, help="box crop size (default 224, ORL's)")
    parser.add_argument("--k", type=int, default=10, help="KNN images per image in (b) (default 10, ORL's)")
    parser.add_argument(
        "--boxes", type=int, default=4, help="most kept boxes per image in (b) (default 4; ORL: 100)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="crops per forward pass, sslzoo (default 64)"
    )
    parser.add_argument("--workers", type=int, default=1, help="crop workers, sslzoo (default 1)")
    parser.add_argument(
        "--n", type=int, default=20000, help=f"features for (c) (default 20000; COCO: {COCO_TRAIN})"
    )
    parser.add_argument("--jobs", type=int, default=64, help="CPU jobs for the COCO projection (default 64)")
    parser.add_argument(
        "--coco-boxes",
        type=int,
        default=50,
        help="kept boxes per COCO image assumed in the projection (default 50)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs per measurement, the fastest counts (default 2)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/OpenCV threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # proposals_per_second gives OpenCV the job's threads
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"# ORL stage 2 bench: {platform.processor() or platform.machine()}, {args.threads} threads, device {device}, "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            paths = paths[: args.count]
        else:
            paths = make_images(Path(tmp), args.count, args.upscale)
        if len(paths) <= args.k:
            raise SystemExit(f"need more than --k {args.k} images, have {len(paths)}")
        sizes = [Image.open(p).size for p in paths]
        print(
            f"# {len(paths)} images, mean size {np.mean([s[0] for s in sizes]):.0f} x {np.mean([s[1] for s in sizes]):.0f}"
        )

        # (a) selective search
        import cv2

        cv2.setNumThreads(args.threads)  # as proposals_per_second does for a job of this many threads
        proposals, cv_times = [], []
        for path in paths:
            boxes, seconds = timed(
                lambda path=path: selective_search(np.asarray(load_rgb(path)), "opencv"), args.repeat
            )
            proposals.append(boxes)
            cv_times.append(seconds)
        cv_rate = len(paths) / sum(cv_times)
        lines = [["opencv (fast)", f"{cv_rate:.3f}", f"{1 / cv_rate:.2f}", hours(1 / cv_rate, args.jobs)]]
        ratio_a = None
        same_images = paths[: args.ss_count or len(paths)]
        try:
            import selectivesearch  # noqa: F401

            ss_rate = max(proposals_per_second(same_images, "selectivesearch") for _ in range(args.repeat))
            lines.append(
                ["selectivesearch", f"{ss_rate:.3f}", f"{1 / ss_rate:.2f}", hours(1 / ss_rate, args.jobs)]
            )
            ratio_a = len(same_images) / sum(cv_times[: len(same_images)]) / ss_rate
        except ImportError:
            lines.append(["selectivesearch", "not installed", "-", "-"])
        print("\n## (a) selective search, one job")
        print(f"boxes per image (opencv): {np.mean([len(b) for b in proposals]):.0f}")
        print(table(["backend", "images/s", "s/image", f"COCO on {args.jobs} jobs"], lines))
        print(
            f"ratio opencv / selectivesearch on the same {len(same_images)} images: {ratio_a:.2f}x"
            if ratio_a
            else "ratio: skipped (pip install selectivesearch to measure it)"
        )

        # (b) correspondence
        protocol = CorrespondenceProtocol(max_boxes=args.boxes, crop=args.crop, batch_size=args.batch_size)
        rng = np.random.default_rng(0)
        n_img = len(paths)
        knn_rows = [
            [int(j) for j in rng.permutation([j for j in range(n_img) if j != i])[: args.k]]
            for i in range(n_img)
        ]
        kept = [len(protocol_filter(b, protocol)) for b in proposals]
        torch.manual_seed(0)
        backbone = ResNetBackbone(args.depth).to(device, memory_format=torch.channels_last).eval()
        rows = list(range(n_img))
        box_features(
            backbone, crop_boxes(load_rgb(paths[0]), [[0, 0, 100, 100]], args.crop), device
        )  # warm-up
        ours, t_ours = timed(
            lambda: compute_correspondence(
                backbone,
                paths,
                proposals,
                knn_rows,
                rows,
                protocol,
                args.k,
                device,
                args.workers,
                progress=False,
            ),
            args.repeat,
        )
        ref, t_ref = timed(
            lambda: reference_correspondence(
                backbone, paths, proposals, knn_rows, rows, protocol, args.k, device, None
            ),
            args.repeat,
        )
        one, t_one = timed(
            lambda: reference_correspondence(
                backbone, paths, proposals, knn_rows, rows, protocol, args.k, device, 1
            ),
            args.repeat,
        )
        chunking = f" in chunks of {CPU_CHUNK}" if device.type == "cpu" else ""
        same = all(ours[i][0] == ref[i][0] and ours[i][1] == ref[i][1] == one[i][1] for i in rows)
        forwards_ours = sum(kept)
        forwards_ref = sum(kept[i] + sum(kept[j] for j in knn_rows[i]) for i in rows)
        print(f"\n## (b) correspondence, ResNet-{args.depth}, {args.crop} px crops, k={args.k}")
        print(f"kept boxes per image: {np.mean(kept):.1f} (at most {args.boxes}); pairs identical: {same}")
        lines = []
        for name, seconds, crops in [
            (f"sslzoo (batch {args.batch_size}{chunking}, features cached)", t_ours, forwards_ours),
            ("reference (one image's boxes per pass)", t_ref, forwards_ref),
            ("one box per pass", t_one, forwards_ref),
        ]:
            lines.append(
                [
                    name,
                    f"{n_img / seconds:.3f}",
                    f"{seconds / n_img:.2f}",
                    f"{crops / n_img:.1f}",
                    f"{seconds / crops * 1000:.0f}",
                ]
            )
        print(table(["mode", "images/s", "s/image", "crops/image", "ms/crop"], lines))
        print(
            f"ratio sslzoo / one box per pass: {t_one / t_ours:.1f}x; sslzoo / reference: {t_ref / t_ours:.1f}x"
        )
        per_crop, per_crop_ref = t_ours / forwards_ours, t_ref / forwards_ref
        lines = []
        for shards in sorted({1, 8, args.jobs}):
            # an image is encoded in every shard holding it as a query or one of k=10 neighbours
            encodings = shards * (1 - (1 - 1 / shards) ** 11)
            lines.append(
                [
                    str(shards),
                    f"{encodings:.1f}",
                    hours(encodings * args.coco_boxes * per_crop, shards),
                    hours(11 * args.coco_boxes * per_crop_ref, shards),
                ]
            )
        print(
            f"\nCOCO train2017 projection, k=10, {args.coco_boxes} kept boxes per image (--coco-boxes), one job "
            f"of {args.threads} threads per shard, the measured s/crop (sslzoo {per_crop:.3f}, reference "
            f"{per_crop_ref:.3f}):"
        )
        print(table(["shards = jobs", "encodings/image", "sslzoo wall", "reference wall (11/image)"], lines))

        # (c) KNN retrieval
        feats = F.normalize(torch.randn(args.n, 256, generator=torch.Generator().manual_seed(0)), dim=1)
        by_faiss, t_faiss = timed(lambda: knn_faiss(feats.numpy(), 10), args.repeat)
        by_torch, t_torch = timed(lambda: knn_torch(feats, 10, device=device), args.repeat)
        scale = (COCO_TRAIN / args.n) ** 2
        print(f"\n## (c) KNN retrieval, {args.n} x 256 features, k=10 (self excluded)")
        print(
            table(
                ["backend", "seconds", f"projected to {COCO_TRAIN} (N^2)"],
                [
                    ["faiss IndexFlatIP", f"{t_faiss:.2f}", f"{t_faiss * scale:.0f} s"],
                    ["torch matmul+topk", f"{t_torch:.2f}", f"{t_torch * scale:.0f} s"],
                ],
            )
        )
        same_rows = (by_faiss == by_torch).all(axis=1)
        sims = feats.numpy()
        gap = max(
            (
                float(
                    np.abs(
                        np.sort(sims[i] @ sims[by_faiss[i]].T) - np.sort(sims[i] @ sims[by_torch[i]].T)
                    ).max()
                )
                for i in np.flatnonzero(~same_rows)
            ),
            default=0.0,
        )
        print(
            f"ratio torch / faiss: {t_torch / t_faiss:.2f}x; identical rows: {same_rows.mean():.2%} "
            f"(the others differ by near-ties: largest similarity difference {gap:.1e})"
        )


if __name__ == "__main__":
    main()
