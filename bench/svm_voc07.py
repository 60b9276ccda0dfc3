"""Performance of the VOC07 SVM and low-shot SVM benchmarks: the batched solver vs. LIBLINEAR.

Builds synthetic features of VOC07 size (5,011 trainval / 4,952 test images, 9,216 dimensions,
the 20 classes with VOC07's per-class image counts, difficult-only images included) that a
linear SVM can partly learn: each image mixes the latent directions of the classes it shows
(difficult ones weakly) with nuisance factors, the latent code is mapped to feature space with a
decaying spectrum, plus noise, then ReLU - non-negative and correlated like average-pooled
ResNet features. Both sides then run the same protocols (``sslzoo.benchmarks.svm_voc07``,
``sslzoo.benchmarks.svm_lowshot``) on the same features:

- ours: ``full_svm_fast`` / ``lowshot_fast`` (one kernel matrix, all classes, folds and costs
  batched, torch threads as configured);
- reference: ``full_svm_sklearn`` / ``lowshot_sklearn``, scikit-learn ``LinearSVC`` (LIBLINEAR)
  with one fit per (class, cost, fold) plus a refit per (class, cost) - what mmselfsup's
  ``train_svm_kfold_parallel.py`` does - spread over ``--sklearn-jobs`` processes like its pool.

It prints the time and mAP of both and the speed ratio. LIBLINEAR on the whole protocol takes
about 1.5 hours on two cores (20 min full SVM, 55 min low-shot; docs/PERFORMANCE.md), so ``--classes``, ``--costs``, ``--lowshot-samples`` and ``--lowshot-ks``
restrict the scikit-learn side; its time is then extrapolated linearly to the whole protocol
(labelled as such), while our side always runs the whole protocol too (and the subset, for the
mAP comparison). One run is one feature layer; the full benchmark evaluates five (times 5).

    .venv/bin/python bench/svm_voc07.py --threads 1          # whole protocol on both sides (~1.5 h)
    .venv/bin/python bench/svm_voc07.py --threads 1 --classes 4 --lowshot-classes 4 --lowshot-samples 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace

import numpy as np
import torch

from sslzoo.benchmarks.svm_lowshot import lowshot_fast, summarize_lowshot
from sslzoo.benchmarks.svm_protocol import LowshotConfig, SvmSettings, VocSplit
from sslzoo.benchmarks.svm_sklearn import full_svm_sklearn, lowshot_sklearn
from sslzoo.benchmarks.svm_voc07 import full_svm_fast

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
# VOC2007 images per class (trainval, test)
VOC07_IMAGES = {
    "trainval": (
        238,
        243,
        330,
        181,
        244,
        186,
        713,
        337,
        445,
        141,
        200,
        421,
        287,
        245,
        2008,
        245,
        97,
        229,
        261,
        256,
    ),
    "test": (
        204,
        239,
        282,
        172,
        212,
        174,
        721,
        322,
        417,
        127,
        190,
        418,
        274,
        222,
        2007,
        224,
        97,
        223,
        259,
        229,
    ),
}
VOC07_SIZE = {"trainval": 5011, "test": 4952}


def synthetic_split(
    split: str, rng: np.random.Generator, mixing: np.ndarray, classes: np.ndarray
) -> VocSplit:
    """Features ``[N, D]`` (float32, >= 0) and 1/-1/0 targets of one synthetic VOC07 split."""
    n = VOC07_SIZE[split]
    targets = -np.ones((n, len(VOC_CLASSES)), dtype=np.int8)
    for c, count in enumerate(VOC07_IMAGES[split]):
        targets[rng.choice(n, count, replace=False), c] = 1
        absent = np.flatnonzero(targets[:, c] == -1)
        targets[rng.choice(absent, max(1, count // 20), replace=False), c] = 0  # difficult only
    strength = np.where(targets == 1, 1.0, np.where(targets == 0, 0.4, 0.0)) * rng.uniform(
        0.3, 1.7, targets.shape
    )
    latent = (0.25 * strength @ classes + rng.standard_normal((n, classes.shape[1]))).astype(np.float32)
    features = latent @ mixing
    features += rng.standard_normal(features.shape, dtype=np.float32)
    np.maximum(features + 0.5, 0, out=features)
    return VocSplit(features=features, targets=targets, classes=list(VOC_CLASSES))


def synthetic_voc07(dim: int = 9216, latent: int = 256, seed: int = 0) -> tuple[VocSplit, VocSplit]:
    """Trainval and test splits sharing the class directions and the feature map."""
    rng = np.random.default_rng(seed)
    classes = rng.standard_normal((len(VOC_CLASSES), latent)).astype(np.float32)
    scales = (1.0 / np.sqrt(np.arange(1, latent + 1))).astype(np.float32)
    mixing = rng.standard_normal((latent, dim)).astype(np.float32) * scales[:, None]
    return synthetic_split("trainval", rng, mixing, classes), synthetic_split("test", rng, mixing, classes)


def subset(split: VocSplit, classes: int) -> VocSplit:
    """The first ``classes`` classes of a split."""
    return VocSplit(split.features, split.targets[:, :classes], split.classes[:classes])


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def lowshot_table(runs, costs) -> dict[str, float]:
    return {f"k={run.k}": summarize_lowshot(run, costs)["reference"]["mean"] for run in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("full", "lowshot", "both"), default="both")
    parser.add_argument("--classes", type=int, default=20, help="classes on the scikit-learn side (full SVM)")
    parser.add_argument(
        "--costs", default="all", help="comma-separated costs for both sides, or 'all' (the 19)"
    )
    parser.add_argument(
        "--lowshot-classes", type=int, default=20, help="classes on the scikit-learn side (low-shot)"
    )
    parser.add_argument(
        "--lowshot-samples", type=int, default=5, help="samples on the scikit-learn side (low-shot)"
    )
    parser.add_argument("--lowshot-ks", default="1,2,4,8,16,32,64,96", help="k values for both sides")
    parser.add_argument("--dim", type=int, default=9216, help="feature dimensions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--sklearn-jobs", type=int, default=os.cpu_count() or 1, help="LIBLINEAR processes")
    parser.add_argument("--skip-sklearn", action="store_true", help="time our side only")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = SvmSettings()
    if args.costs != "all":
        settings = replace(settings, costs=tuple(float(c) for c in args.costs.split(",")))
    ks = tuple(int(k) for k in args.lowshot_ks.split(","))
    # low-shot without the CV choice on both sides: the reference's work (its aggregation picks on test)
    lowshot = LowshotConfig(svm=settings, ks=ks, samples=5, cross_validate=False, negatives_per_positive=19)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; scikit-learn jobs {args.sklearn_jobs}"
    )
    (train, test), seconds = timed(synthetic_voc07, args.dim, seed=args.seed)
    print(f"synthetic VOC07: trainval {train.features.shape}, test {test.features.shape} ({seconds:.1f} s)")
    report: dict[str, dict] = {}
    whole = len(VOC_CLASSES) * len(settings.costs)

    if args.protocol in ("full", "both"):
        ours, ours_s = timed(full_svm_fast, train, test, settings)
        line = {"ours_s": ours_s, "ours_mAP": ours.mean_ap}
        print(f"\nfull SVM, one layer, 20 classes x {len(settings.costs)} costs x 3 folds")
        print(f"  ours       {ours_s:9.1f} s   mAP {ours.mean_ap:.2f}")
        if not args.skip_sklearn:
            sub_train, sub_test = subset(train, args.classes), subset(test, args.classes)
            ref, ref_s = timed(full_svm_sklearn, sub_train, sub_test, settings, args.sklearn_jobs)
            mine, mine_s = timed(full_svm_fast, sub_train, sub_test, settings)
            scale = whole / (args.classes * len(settings.costs))
            line.update(
                sklearn_s=ref_s,
                sklearn_mAP=ref.mean_ap,
                ours_subset_s=mine_s,
                ours_subset_mAP=mine.mean_ap,
                sklearn_whole_s=ref_s * scale,
                extrapolated=scale != 1,
                same_costs=sum(a == b for a, b in zip(ref.cost, mine.cost, strict=True)),
            )
            label = f"{args.classes} classes"
            print(f"  on {label}: sklearn {ref_s:.1f} s mAP {ref.mean_ap:.2f} | ours {mine_s:.1f} s mAP {mine.mean_ap:.2f}"
                  f" | |diff| {abs(ref.mean_ap - mine.mean_ap):.3f} | same chosen cost {line['same_costs']}/{args.classes}")  # fmt: skip
            tag = "extrapolated from " + label if scale != 1 else "measured"
            print(f"  sklearn    {ref_s * scale:9.1f} s   ({tag})")
            print(f"  speed-up   {ref_s * scale / ours_s:9.1f} x")
        report["full"] = line

    if args.protocol in ("lowshot", "both"):
        ours, ours_s = timed(lowshot_fast, train, test, lowshot, args.seed)
        line = {"ours_s": ours_s, "ours_mAP": lowshot_table(ours, settings.costs)}
        print(
            f"\nlow-shot SVM, one layer, k = {list(ks)}, 5 samples x 20 classes x {len(settings.costs)} costs"
        )
        print(
            f"  ours       {ours_s:9.1f} s   mAP {json.dumps({k: round(v, 2) for k, v in line['ours_mAP'].items()})}"
        )
        if not args.skip_sklearn:
            sub_train, sub_test = subset(train, args.lowshot_classes), subset(test, args.lowshot_classes)
            part = replace(lowshot, samples=args.lowshot_samples)
            ref, ref_s = timed(lowshot_sklearn, sub_train, sub_test, part, args.seed, args.sklearn_jobs)
            mine, mine_s = timed(lowshot_fast, sub_train, sub_test, part, args.seed)
            ref_map, mine_map = lowshot_table(ref, settings.costs), lowshot_table(mine, settings.costs)
            diff = max(abs(ref_map[k] - mine_map[k]) for k in ref_map)
            scale = (len(VOC_CLASSES) * 5) / (args.lowshot_classes * args.lowshot_samples)
            line.update(
                sklearn_s=ref_s,
                sklearn_mAP=ref_map,
                ours_subset_s=mine_s,
                ours_subset_mAP=mine_map,
                sklearn_whole_s=ref_s * scale,
                extrapolated=scale != 1,
                max_abs_diff=diff,
            )
            label = f"{args.lowshot_classes} classes x {args.lowshot_samples} samples"
            print(
                f"  on {label}: sklearn {ref_s:.1f} s | ours {mine_s:.1f} s | max |mAP diff| over k {diff:.3f}"
            )
            print(f"    sklearn mAP {json.dumps({k: round(v, 2) for k, v in ref_map.items()})}")
            print(f"    ours    mAP {json.dumps({k: round(v, 2) for k, v in mine_map.items()})}")
            tag = "extrapolated from " + label if scale != 1 else "measured"
            print(f"  sklearn    {ref_s * scale:9.1f} s   ({tag})")
            print(f"  speed-up   {ref_s * scale / ours_s:9.1f} x")
        report["lowshot"] = line

    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), **report}, handle, indent=2)


if __name__ == "__main__":
    main()
