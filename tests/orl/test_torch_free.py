"""The CPU-only ORL steps (the merges) and the stage-2 file readers import no torch."""

from __future__ import annotations

import subprocess
import sys


def test_file_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import sslzoo.orl.proposals, sslzoo.orl.correspondence_files, sslzoo.orl.knn_files; "
        "print(sorted(name for name in ('torch', 'torchvision') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
