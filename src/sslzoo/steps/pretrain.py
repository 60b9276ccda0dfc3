"""Pretrain one model of the zoo on a train manifest (resumes from --work-dir when possible).

Reads the model config (config/models/<name>.yaml) and the image manifest, trains the config's
method with its protocol (optimizer, lr schedule with warm-up, epochs, batch per process), and
writes the final checkpoint {"state_dict", "meta": {method, config, epoch, git_rev, run}} to --out,
a copy of the run's train log to --train-log-out and the run record (processes x batch x
accumulate, seed, versions, device, wall time, beside the protocol's gpus x batch x accumulate;
the "run" of the checkpoint's meta) to --run-out.
The work dir keeps latest.pth (written at the end of every epoch; a rerun resumes from it) and
train_log.jsonl (one JSON line per iteration). ORL stage 3 (method orl) also reads the stage-2
correspondence file (--correspondence). Run as one process, or under
`torchrun --standalone --nproc-per-node N -m sslzoo pretrain ...` for DDP (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="model config, config/models/<name>.yaml")
    parser.add_argument(
        "--manifest", required=True, help="train manifest, resources/manifests/<dataset>_train.json"
    )
    parser.add_argument(
        "--work-dir", required=True, help="resume state and train log, results/pretrain/<name>/work"
    )
    parser.add_argument("--out", required=True, help="final checkpoint, results/pretrain/<name>/final.pth")
    parser.add_argument(
        "--train-log-out",
        default=None,
        help="copy of the finished run's train log (one JSON line per iteration), "
        "results/pretrain/<name>/train_log.jsonl",
    )
    parser.add_argument(
        "--run-out",
        default=None,
        help="the run record (how this run trained, beside the protocol), results/pretrain/<name>/run.json",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds initialisation, data order and augmentation"
    )
    parser.add_argument(
        "--correspondence",
        default=None,
        help="ORL stage 3 (method orl) needs it: the merged stage-2 file, results/orl/<model>/correspondence.json",
    )


def main(args: argparse.Namespace) -> None:
    from sslzoo.engine.trainer import pretrain_from_files

    pretrain_from_files(
        args.config,
        args.manifest,
        args.work_dir,
        args.out,
        seed=args.seed,
        correspondence=args.correspondence,
        train_log_out=args.train_log_out,
        run_out=args.run_out,
    )
