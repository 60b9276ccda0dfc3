"""Linear evaluation on a frozen backbone (multi-head Feature1..Feature5, or AvgPool).

Trains linear classifiers on the pooled stage features of a frozen backbone (eval mode, no
gradients) on a training manifest and reports top-1 (%) per head on the validation manifest
(mmselfsup mhead / linear protocols; the config picks layers, pooling, schedule, augmentation).
Writes metrics.json ({"Feature1": .., ..., "meta"} or {"AvgPool": .., "meta"}); resumes from
--work-dir after a kill. Runs as one process or under torchrun (DDP)."""

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
    parser.add_argument("--config", required=True, help="protocol (config/benchmarks/linear_*.yaml)")
    parser.add_argument(
        "--benchmark",
        required=True,
        help="the benchmark, recorded in meta: one of sslzoo/benchmarks/registry.py (linear_imagenet, ...)",
    )
    parser.add_argument(
        "--model", required=True, help="the model, recorded in meta (config/models/{model}.yaml)"
    )
    parser.add_argument(
        "--work-dir", required=True, help="resume state (removed once --out is written) and train_log.jsonl"
    )
    parser.add_argument(
        "--out", required=True, help="metrics.json (results/benchmarks/{benchmark}/{model}/metrics.json)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="data order, augmentation and head init (default 0)"
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.benchmarks.registry import benchmark

    benchmark(args.benchmark, "--benchmark")  # a registered name, checked before the heavy imports

    from sslzoo.benchmarks.linear import linear_benchmark
    from sslzoo.runtime.dist import cleanup, init_distributed
    from sslzoo.runtime.run_dir import discard_resume_state

    ctx = init_distributed()
    try:
        linear_benchmark(
            args.backbone,
            args.train_manifest,
            args.val_manifest,
            args.config,
            args.work_dir,
            args.out,
            seed=args.seed,
            ctx=ctx,
            benchmark_name=args.benchmark,
            model_name=args.model,
        )
        discard_resume_state(args.work_dir)  # the output is written: the run is complete
    finally:
        cleanup()
