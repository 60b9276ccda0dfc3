"""Plot one pretraining run's loss against iteration (SVG, for the report).

Reads results/pretrain/{model}/train_log.jsonl (one JSON line per optimizer step: iter, loss,
lr, ...) and writes the raw loss, its running mean and the learning rate to --out."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-log", required=True, help="results/pretrain/<model>/train_log.jsonl")
    parser.add_argument("--title", required=True, help="the figure's title (the model name)")
    parser.add_argument("--out", required=True, help="the SVG, e.g. results/plots/loss/<model>.svg")


def main(args: argparse.Namespace) -> None:
    from sslzoo.plots import plot_loss

    plot_loss(args.train_log, args.out, args.title)
