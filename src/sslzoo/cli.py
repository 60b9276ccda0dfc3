"""`python -m sslzoo <step> ...`: the commands the Snakemake rules call.

Each step is one module in :mod:`sslzoo.steps` with ``add_arguments(parser)`` and
``main(args) -> None``. Step modules import the heavy libraries (torch, faiss, OpenCV) inside
``main`` so that ``python -m sslzoo <step> --help`` answers at once. Every step can be run by
hand with the arguments the rule shows in its log: that is how one job is debugged.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from sslzoo.errors import SslzooError
from sslzoo.steps import (
    coco_manifest,
    detection_benchmark,
    extract_backbone,
    extract_features,
    inat_manifest,
    knn_benchmark,
    linear_benchmark,
    lowshot_benchmark,
    make_mini_data,
    manifest,
    orl_correspondence,
    orl_knn,
    orl_merge_correspondence,
    orl_merge_proposals,
    orl_proposals,
    plot_k,
    plot_loss,
    pretrain,
    random_backbone,
    segmentation_benchmark,
    semi_benchmark,
    semi_select,
    svm_benchmark,
    tables,
    voc_manifest,
)

STEPS: dict[str, ModuleType] = {
    "make-mini-data": make_mini_data,
    "manifest": manifest,
    "inat-manifest": inat_manifest,
    "voc-manifest": voc_manifest,
    "coco-manifest": coco_manifest,
    "orl-proposals": orl_proposals,
    "orl-merge-proposals": orl_merge_proposals,
    "orl-knn": orl_knn,
    "orl-correspondence": orl_correspondence,
    "orl-merge-correspondence": orl_merge_correspondence,
    "pretrain": pretrain,
    "extract-backbone": extract_backbone,
    "random-backbone": random_backbone,
    "extract-features": extract_features,
    "knn": knn_benchmark,
    "linear": linear_benchmark,
    "semi": semi_benchmark,
    "semi-select": semi_select,
    "svm": svm_benchmark,
    "lowshot": lowshot_benchmark,
    "detection": detection_benchmark,
    "segmentation": segmentation_benchmark,
    "tables": tables,
    "plot-loss": plot_loss,
    "plot-k": plot_k,
}


WORKER_ERROR = "SslzooError: "


def error_message(err: SslzooError) -> str:
    """The message of ``err``; for an error re-raised from a DataLoader worker (whose message is
    "Caught SslzooError in DataLoader worker process N" and the worker's traceback), the
    original message at the end of that traceback."""
    text = str(err)
    if text.startswith("Caught SslzooError") and WORKER_ERROR in text:
        return text[text.rindex(WORKER_ERROR) + len(WORKER_ERROR) :].strip()
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sslzoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True, metavar="<step>")
    for name, module in STEPS.items():
        doc = (module.__doc__ or "").strip()
        step_parser = sub.add_parser(
            name,
            help=doc.splitlines()[0].replace("%", "%%") if doc else None,  # argparse %-formats help
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(step_parser)
        step_parser.set_defaults(_step=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args._step.main(args)
    except SslzooError as err:
        # A known failure: the message names the file or key and the fix; no traceback.
        print(f"sslzoo {args.step}: error: {error_message(err)}", file=sys.stderr)
        return 2
    return 0
