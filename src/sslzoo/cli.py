"""`python -m sslzoo <step> ...`: the commands the Snakemake rules call.

Each step is one module in :mod:`sslzoo.steps` with ``add_arguments(parser)`` and
``main(args) -> None``. Step modules import the heavy libraries (torch, faiss, OpenCV) inside
``main`` so that ``python -m sslzoo <step> --help`` answers at once. Every step can be run by
hand with the arguments the rule shows in its log: that is how one job is debugged.

``python -m sslzoo --nproc-per-node N <step> ...`` is how the rules start the steps that use
GPUs: with N = 1 the step runs in this process (no torchrun agent, one torch import); with
N > 1 this process is replaced by ``torchrun --standalone --nproc-per-node N -m sslzoo <step>``,
whose N workers join one process group (:mod:`sslzoo.runtime.dist`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from types import ModuleType

from sslzoo.errors import SslzooError
from sslzoo.steps import (
    average_runs,
    coco_manifest,
    compare_results,
    comparison_page,
    detection_benchmark,
    extract_backbone,
    extract_features,
    extract_snapshot,
    inat_manifest,
    knn_benchmark,
    learning_margins,
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
    "extract-snapshot": extract_snapshot,
    "random-backbone": random_backbone,
    "extract-features": extract_features,
    "knn": knn_benchmark,
    "linear": linear_benchmark,
    "semi": semi_benchmark,
    "semi-select": semi_select,
    "svm": svm_benchmark,
    "lowshot": lowshot_benchmark,
    "detection": detection_benchmark,
    "average-runs": average_runs,
    "segmentation": segmentation_benchmark,
    "tables": tables,
    "learning-margins": learning_margins,
    "comparison": comparison_page,
    "plot-loss": plot_loss,
    "plot-k": plot_k,
    "compare-results": compare_results,
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
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="processes (one per GPU) to run the step with: 1 runs it here, N > 1 under "
        "`torchrun --standalone --nproc-per-node N` (default 1)",
    )
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


def torchrun_command(nproc: int, step_argv: list[str]) -> list[str]:
    """The command that runs ``python -m sslzoo <step_argv>`` as ``nproc`` torchrun workers."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "sslzoo",
        *step_argv,
    ]


def _step_argv(argv: list[str], step: str) -> list[str]:
    """``argv`` from the step name on (what follows the launcher's own options)."""
    return argv[argv.index(step) :]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.nproc_per_node < 1:
        print(f"sslzoo: error: --nproc-per-node must be >= 1, got {args.nproc_per_node}", file=sys.stderr)
        return 2
    if args.nproc_per_node > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        command = torchrun_command(args.nproc_per_node, _step_argv(argv, args.step))
        shown = ["torchrun", *command[3:]]  # python -m torch.distributed.run is torchrun
        print(f"sslzoo: launching {shlex.join(shown)}", file=sys.stderr, flush=True)
        os.execv(command[0], command)
    try:
        args._step.main(args)
    except SslzooError as err:
        # A known failure: the message names the file or key and the fix; no traceback.
        print(f"sslzoo {args.step}: error: {error_message(err)}", file=sys.stderr)
        return 2
    return 0
