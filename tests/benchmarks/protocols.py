"""What a protocol file says about its reference run, read from the text the file cites."""

from __future__ import annotations

import re
from pathlib import Path


def reference_gpus_and_batch(path: Path) -> tuple[int, int]:
    """The reference's process count and per-GPU batch, as the comments of a protocol file state
    them: the ``NxbM`` of the reference config named in the header (``...-8xb32-...py``), else
    the ``N GPUs x M`` of a comment (``8 GPUs x 2 images``, ``4 GPUs x samples_per_gpu 4``)."""
    comments = [line.strip() for line in path.read_text().splitlines() if line.strip().startswith("#")]
    match = re.search(r"[_-](\d+)xb(\d+)-", "".join(comments)) or re.search(
        r"(\d+) GPUs x (?:samples_per_gpu )?(\d+)", "\n".join(comments)
    )
    assert match, f"{path}: no comment names the reference's GPUs and per-GPU batch"
    return int(match.group(1)), int(match.group(2))
