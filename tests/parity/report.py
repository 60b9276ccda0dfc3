"""Print the numbers of the parity tests as the markdown tables of docs/PARITY.md.

Usage (from the repository root, after ``make parity-env``)::

    .venv/bin/python tests/parity/report.py              # runs tests/parity, prints its tables
    .venv/bin/python tests/parity/report.py --all-layers # also: every layer of the mini VOC07
                                                         # against the reference scripts and
                                                         # LIBLINEAR at tol 1e-10 (~15 min)

The first part runs ``pytest tests/parity`` with ``SSLZOO_PARITY_RECORD`` set, so that each test
records what it compared (tests/parity/reference.py ``Recorder``), and fails when a test fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cost(value: float) -> str:
    """An SVM cost: 100, 0.0625, 3.05e-05."""
    return f"{value:.3g}"


def fmt(value: Any, digits: int = 2) -> str:
    """A number as the tables show it."""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list):
        return " / ".join(fmt(v, digits) for v in value)
    return str(value)


def table(header: list[str], rows: list[list[Any]], digits: int = 2) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_tests() -> tuple[dict[str, list[dict[str, Any]]], float]:
    """``pytest tests/parity`` with the recorder on; the rows per table and the wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "record.jsonl"
        env = dict(os.environ, SSLZOO_PARITY_RECORD=str(record))
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/parity", "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"pytest tests/parity failed (exit {done.returncode})")
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in record.read_text().splitlines():
            row = json.loads(line)
            rows[row.pop("table")].append(row)
    return rows, seconds


def print_tests(rows: dict[str, list[dict[str, Any]]]) -> None:
    """The tables of the recorded rows."""
    svm = rows["svm_mini"][0]
    print(f"### VOC07 SVM, mini VOC07, best layer ({svm['layer']})\n")
    print(table(["", "reference scripts", "ours, --solver sklearn", "ours, fast"],
                [["mAP", svm["reference"], svm["sklearn"], svm["fast"]]], 4))  # fmt: skip
    print(f"\nfast solver, every layer: {', '.join(f'{k} {v:.2f}' for k, v in svm['fast_layers'].items())}\n")
    print(table(
        ["class", "reference AP", "sklearn AP", "fast AP", "reference cost", "sklearn cost", "fast cost",
         "reference iterations"],
        [[r["cls"], r["reference"], r["sklearn"], r["fast"], cost(r["reference_cost"]), cost(r["sklearn_cost"]),
          cost(r["fast_cost"]), r["reference_n_iter"]] for r in rows["svm_mini_classes"]], 4,
    ))  # fmt: skip
    syn = rows["svm_synthetic"][0]
    print("\n### VOC07 SVM, VOC07-size synthetic set\n")
    print(table(
        ["class", "reference AP", "sklearn AP", "fast AP", "reference cost", "sklearn cost", "fast cost",
         "reference iterations"],
        [[r["cls"], r["reference"], r["sklearn"], r["fast"], cost(r["reference_cost"]), cost(r["sklearn_cost"]),
          cost(r["fast_cost"]), r["reference_n_iter"]] for r in rows["svm_synthetic_classes"]]
        + [["mAP", syn["reference"], syn["sklearn"], syn["fast"], "", "", "", ""]], 4,
    ))  # fmt: skip
    print("\n### Low-shot SVM (mean / min / max / std over 5 samples at the reference's cost choice)\n")
    print(table(
        ["k", "solver", "cost", "ours", "reference (printed)", "reference (unrounded)", "largest difference, any cost"],
        [[r["k"], r["solver"], cost(r["cost"]), r["ours"], r["reference"], r["reference_unrounded"],
          f"{r['max_abs_diff_per_cost']:.1e}"] for r in rows["lowshot"]], 4,
    ))  # fmt: skip
    print("\n### kNN (mini ImageNet, avgpool)\n")
    print(table(["k", "ours top-1", "reference top-1", "ours top-5", "reference top-5"],
                [[r["k"], r["ours_top1"], r["reference_top1"], r["ours_top5"], r["reference_top5"]]
                 for r in rows["knn"]], 4))  # fmt: skip
    print("\n### BYOL and LARS against lightly\n")
    loss = rows["byol_loss"][0]
    print(table(["quantity", "ours", "lightly"], [["BYOL loss", loss["ours"], loss["lightly"]]]
                + [[f"momentum after iteration {r['k']} of 5", r["ours"], r["lightly"]] for r in rows["byol_momentum"]],
                10))  # fmt: skip
    print()
    print(table(["LARS steps", "parameter", "last update (max abs)", "ours - lightly (max abs)"],
                [[r["steps"], r["parameter"], f"{r['update']:.3g}", f"{r['max_abs_difference']:.1e}"]
                 for r in rows["lars"]]))  # fmt: skip
    print("\n### SimCLR and MoCo against lightly\n")
    nt_xent = rows["nt_xent"]
    print(table(["quantity", "ours", "lightly"],
                [[f"NT-Xent, 1 process, temperature {r['temperature']}", r["ours"], r["lightly"]]
                 for r in nt_xent if r["processes"] == 1]
                + [[f"NT-Xent, 2 processes, rank {r['rank']}", r["ours"], r["lightly"]]
                   for r in nt_xent if r["processes"] == 2]
                + [[f"MoCo loss against the queue, step {r['step'] + 1} of 5", r["ours"], r["lightly"]]
                   for r in rows["moco_queue"]], 10))  # fmt: skip
    difference = rows["moco_momentum"][0]["max_abs_difference"]
    print(f"\nMoCo key encoder update, ours - lightly (max abs): {difference:.1e}")
    print("\n### Detection and segmentation metrics\n")
    print(table(["metric", "ours", "independent"],
                [[f"COCO {r['metric']}", r["ours"], r["pycocotools"]] for r in rows["coco"]]
                + [[f"VOC07 {r['metric']}", r["ours"], r["independent"]] for r in rows["voc07_detection"]]
                + [["mIoU", r["ours"], r["torchmetrics"]] for r in rows["miou"]], 6))  # fmt: skip
    print("\n### 1 and 3 processes\n")
    print(table(["what", "1 process", "3 processes"],
                [[f"SVM mAP {r['layer']}", r["one"], r["three"]] for r in rows["processes_svm"]]
                + [[f"kNN top-1 k={r['k']}", r["one"], r["three"]] for r in rows["processes_knn"]]
                + [[f"{r['detector']} {r['metric']}", r["one"], r["three"]] for r in rows["processes_detection"]],
                4))  # fmt: skip


def all_layers() -> None:
    """Every layer of the mini VOC07: the reference scripts, our two solvers, LIBLINEAR at tol 1e-10."""
    import numpy as np
    import torch

    from sslzoo.benchmarks.svm_protocol import SvmSettings, load_voc_split
    from sslzoo.benchmarks.svm_sklearn import full_svm_sklearn
    from sslzoo.benchmarks.svm_voc07 import full_svm_fast
    from tests.parity.conftest import make_mini_inputs
    from tests.parity.test_svm import (
        COSTS_LIST,
        finish_reference,
        start_reference_training,
        write_reference_inputs,
    )

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mini = make_mini_inputs(Path(tmp) / "mini")
        for layer in ("feature1", "feature2", "feature3", "feature4", "feature5"):
            train = load_voc_split(mini.features["voc07_trainval"], layer)
            test = load_voc_split(mini.features["voc07_test"], layer)
            paths = write_reference_inputs(Path(tmp) / layer, train, test, layer)
            process = start_reference_training(paths, Path(tmp) / layer / "svm", COSTS_LIST)
            start = time.perf_counter()
            sklearn = full_svm_sklearn(train, test, SvmSettings(), jobs=1)
            sklearn_s = time.perf_counter() - start
            reference = finish_reference(process, paths, Path(tmp) / layer / "svm", COSTS_LIST)
            start = time.perf_counter()
            fast = full_svm_fast(train, test, SvmSettings(), "cpu")
            fast_s = time.perf_counter() - start
            start = time.perf_counter()
            tight = full_svm_sklearn(train, test, SvmSettings(tol=1e-10, max_iter=10_000_000), jobs=1)
            tight_s = time.perf_counter() - start
            reference_map = float(np.mean(reference["ap"]))
            rows.append([
                layer, reference_map, sklearn.mean_ap, fast.mean_ap, tight.mean_ap, fast.mean_ap - reference_map,
                float(np.max(np.abs(np.array(fast.ap) - reference["ap"]))), fast.mean_ap - tight.mean_ap,
                float(np.max(np.abs(np.array(fast.ap) - np.array(tight.ap)))),
                sum(n >= 2000 for n in reference["n_iter"]), f"{sklearn_s:.0f} / {fast_s:.1f} / {tight_s:.0f}",
            ])  # fmt: skip
            print(f"[all-layers] {rows[-1]}", file=sys.stderr)
    print("\n### VOC07 SVM, every layer of the mini VOC07\n")
    print(table(
        ["layer", "reference (tol 1e-4)", "sklearn (tol 1e-4)", "fast", "LIBLINEAR tol 1e-10",
         "fast - reference", "largest class difference", "fast - tol 1e-10", "largest class difference",
         "classes out of iterations", "seconds sklearn / fast / tol 1e-10"], rows, 4,
    ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-layers", action="store_true", help="also compare every layer (slow)")
    parser.add_argument("--skip-tests", action="store_true", help="only the --all-layers part")
    args = parser.parse_args()
    if not args.skip_tests:
        rows, seconds = run_tests()
        print(f"pytest tests/parity: {seconds:.0f} s\n")
        print_tests(rows)
    if args.all_layers:
        all_layers()


if __name__ == "__main__":
    main()
