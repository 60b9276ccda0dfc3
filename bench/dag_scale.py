"""How long Snakemake takes to plan the full zoo: `snakemake -n` on config/config.yaml.

Copies the workflow into a scratch directory, creates empty placeholders for every dataset
folder and file config/config.yaml names (the dry run reads none of them), and times the dry
run for the configured ORL shard counts (64 selective-search and 8 correspondence jobs for
COCO train2017) and for larger ones (`--shards`). Printed: jobs planned, wall seconds, and the
ratio to the 10 s goal. The DAG does not grow with the number of images: each shard job reads
a strided share of the manifest when it runs.

    .venv/bin/python bench/dag_scale.py
    .venv/bin/python bench/dag_scale.py --shards 64 256 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 10.0
FOLDER_KEYS = ("images", "devkit", "root")
FILE_KEYS = ("list", "json", "annotations")


def placeholders(node: dict, workdir: Path) -> None:
    """Empty folders and files for every dataset path under ``node`` (config `datasets:`)."""
    for key, value in node.items():
        if isinstance(value, dict):
            placeholders(value, workdir)
        elif key in FOLDER_KEYS:
            (workdir / value).mkdir(parents=True, exist_ok=True)
        elif key in FILE_KEYS and value:
            (workdir / value).parent.mkdir(parents=True, exist_ok=True)
            (workdir / value).touch()


def dry_run(workdir: Path, config: Path) -> tuple[float, int]:
    """Seconds and planned jobs of one `snakemake -n` in ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1", "--configfile", str(config)]
    tick = time.perf_counter()
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE)
    if total is None:
        raise SystemExit(f"no job count in the dry run's output:\n{result.stdout[-3000:]}")
    return seconds, int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[64, 256], help="selective-search job counts")
    parser.add_argument("--repeats", type=int, default=3, help="dry runs per setting (the median counts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in ("Snakefile", "workflow", "config", "profiles", "src"):
            source = REPO / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
        cfg = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
        placeholders(cfg["datasets"], workdir)
        for protocol in cfg["benchmarks"].values():
            split_file = yaml.safe_load((workdir / protocol).read_text()).get("split_file")
            if split_file:
                placeholders({"list": split_file}, workdir)
        print(f"{'proposal jobs':>14} {'correspondence jobs':>20} {'jobs planned':>13} {'dry run (s)':>12} "
              f"{'vs 10 s goal':>13}")  # fmt: skip
        for shards in args.shards:
            cfg["orl"]["proposal_shards"] = shards
            cfg["orl"]["correspondence_shards"] = max(1, shards // 8)
            config = workdir / "config" / f"scale_{shards}.yaml"
            config.write_text(yaml.safe_dump(cfg))
            runs = [dry_run(workdir, config) for _ in range(args.repeats)]
            seconds = statistics.median(s for s, _ in runs)
            print(f"{shards:>14} {max(1, shards // 8):>20} {runs[0][1]:>13} {seconds:>12.2f} "
                  f"{seconds / GOAL_SECONDS:>12.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
