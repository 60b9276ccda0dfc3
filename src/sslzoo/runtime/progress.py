"""What a training job shows on the console: messages and progress bars, from rank 0 only."""

from __future__ import annotations

import sys

from tqdm import tqdm

from sslzoo.runtime.dist import DistContext


def say(ctx: DistContext, message: str) -> None:
    """Write ``message`` to stderr on rank 0 (above any progress bar)."""
    if ctx.is_main:
        tqdm.write(message, file=sys.stderr)


def progress_bar(ctx: DistContext, total: int, desc: str, initial: int = 0, leave: bool = True) -> tqdm:
    """A bar on stderr, shown on rank 0 only; few redraws when stderr is a log file."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        file=sys.stderr,
        disable=not ctx.is_main,
        dynamic_ncols=True,
        leave=leave,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
    )
