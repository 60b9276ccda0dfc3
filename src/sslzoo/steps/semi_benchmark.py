"""Semi-supervised fine-tuning at one point of the lr x head-multiplier grid (1% / 10% labels).

Fine-tunes the whole backbone with a linear head on the labelled subset of the training
manifest (the config's split file, else a seeded class-balanced fraction), the head's lr being
--lr times --head-mult, and writes top-1/top-5 (%) on the validation manifest to
results/benchmarks/{benchmark}/{model}/lr{X}_head{Y}/metrics.json; semi-select keeps the best.
Resumes from --work-dir after a kill. Runs as one process or under torchrun (DDP, SyncBN on GPU)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="backbone file (results/backbones/{model}.pth)")
    parser.add_argument(
        "--train-manifest", required=True, help="training manifest (resources/manifests/imagenet_train.json)"
    )
    parser.add_argument(
        "--val-manifest", required=True, help="validation manifest (resources/manifests/imagenet_val.json)"
    )
    parser.add_argument("--config", required=True, help="protocol (config/benchmarks/semi_in1k_*.yaml)")
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (semi_in1k_1pct, ...)",
    )
    parser.add_argument(
        "--model", required=True, help="the model, recorded in meta (config/models/{model}.yaml)"
    )
    parser.add_argument(
        "--grid-point", required=True, help="the grid point (lr{X}_head{Y} folder), recorded in meta"
    )
    parser.add_argument(
        "--lr", type=float, required=True, help="backbone learning rate (one of the config's lrs)"
    )
    parser.add_argument(
        "--head-mult", type=float, required=True, help="head lr multiplier (one of the config's head_mults)"
    )
    parser.add_argument(
        "--work-dir", required=True, help="resume state (removed once --out is written) and train_log.jsonl"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="metrics.json (results/benchmarks/{benchmark}/{model}/lr{X}_head{Y}/metrics.json)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="subset, data order, augmentation, head init (default 0)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, checked before the heavy imports

    from sslzoo.benchmarks.semi import semi_benchmark
    from sslzoo.runtime.dist import cleanup, init_distributed
    from sslzoo.runtime.run_dir import discard_resume_state

    ctx = init_distributed()
    try:
        semi_benchmark(
            args.backbone,
            args.train_manifest,
            args.val_manifest,
            args.config,
            args.lr,
            args.head_mult,
            args.work_dir,
            args.out,
            seed=args.seed,
            ctx=ctx,
            benchmark_name=args.benchmark,
            model_name=args.model,
            grid_point=args.grid_point,
        )
        discard_resume_state(args.work_dir)  # the output is written: the run is complete
    finally:
        cleanup()
