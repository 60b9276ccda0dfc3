"""Image files: open one fully as RGB. Free of torch, so the CPU-only steps (ORL's selective
search and its merges) read images without importing it; the torch readers of
:mod:`sslzoo.data.datasets` use it too."""

from __future__ import annotations

import os

from PIL import Image

from sslzoo.errors import SslzooError


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open ``path`` fully as an RGB PIL image; a missing, corrupt or truncated file raises SslzooError."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SslzooError(
            f"{path}: cannot read image ({type(err).__name__}: {err}); replace or delete the file and rebuild "
            "the manifest"
        ) from err
