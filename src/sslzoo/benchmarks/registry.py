"""The benchmarks of the zoo, one entry each: the one place a benchmark is registered.

An entry says which rule runs the benchmark (its ``kind``), which configured datasets it reads,
and how its numbers are shown: its table section (heading, description and columns, the column
names of the MMSelfSup model-zoo pages, which are also the keys of its ``metrics.json`` and of a
model config's ``reported``), or the benchmark whose table holds its columns, and the y label
when its columns are ``k=N`` and are plotted against k.

Read by the workflow (``workflow/rules/common.smk``: datasets to check, the wildcard values of
each rule, the table and plot jobs), by :mod:`sslzoo.tables` (sections, in this order on a page)
and by :mod:`sslzoo.plots`. The protocol values live in the protocol file that config
``benchmarks:`` names; the benchmark's code in its module. Standard library only: the Snakefile
imports it before any job runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sslzoo.errors import SslzooError

# the rule (workflow/rules/bench_*.smk) and step that run a benchmark of each kind
KINDS: tuple[str, ...] = ("knn", "svm", "lowshot", "linear", "semi", "det", "seg")


@dataclass(frozen=True)
class Section:
    """One benchmark's table: where it goes on the page, what it says, which columns it has."""

    heading: str
    description: str
    columns: tuple[str, ...]
    group: str = "Classification"


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark.

    Args:
        kind: which rule runs it (one of :data:`KINDS`).
        datasets: the config ``datasets:`` it reads; the first holds its train/val manifests.
        section: its table section; ``None`` when its numbers are columns of ``table``'s.
        table: for ``section=None``, the benchmark whose table holds its columns.
        k_label: the y label of its plot against k, for a benchmark whose columns are ``k=N``.
        every_model: True for the zoo's common protocols, run for every model, external
            checkpoint and the ``random`` baseline; False for a paper's own protocol, run only for
            the pretrained models whose config lists it under ``extra_benchmarks:`` (the rows
            whose reported numbers it produced).
    """

    kind: str
    datasets: tuple[str, ...]
    section: Section | None = None
    table: str | None = None
    k_label: str | None = None
    every_model: bool = True


_FEATURES = ("Feature1", "Feature2", "Feature3", "Feature4", "Feature5", "AvgPool")
_LINEAR = (
    "A linear classifier on frozen features. Feature1 - Feature5 are the stem and the four ResNet "
    "stages average-pooled to a fixed grid (no global pooling), then BN and a linear layer; AvgPool "
    "is the globally pooled last stage. Top-1 (%)."
)
_OWN_LINEAR = (
    "A paper's own linear protocol, run only for the models that report with it: a linear layer on "
    "the globally pooled last stage of the frozen backbone (AvgPool), trained {how} ({ref}). Top-1 (%)."
)
_LOWSHOT_K = ("k=1", "k=2", "k=4", "k=8", "k=16", "k=32", "k=64", "k=96")
_SEMI = (
    "The whole network fine-tuned with a linear head on {share} of the ImageNet training labels; "
    "the best setting of the learning-rate grid."
)

# benchmark name (config `benchmarks:`, results/benchmarks/{benchmark}/...) -> its entry; the
# sections appear on a page in this order
BENCHMARKS: dict[str, Benchmark] = {
    "svm_voc07": Benchmark(
        "svm",
        ("voc07",),
        Section(
            "VOC SVM",
            "Linear SVMs on frozen, pooled features of VOC07 trainval, tested on VOC07 test (mAP %). "
            "The **Best Layer** is the stage whose features score best (feature1 is the stem, "
            "feature2 - feature5 the four ResNet stages); **SVM** is its mAP.",
            ("Best Layer", "SVM"),
        ),
    ),
    "lowshot_voc07": Benchmark(
        "lowshot",
        ("voc07",),
        Section(
            "VOC Low-shot SVM",
            "The same SVMs trained with k = 1 to 96 positive images per class, on the features of each "
            "stage (mAP %, mean over 5 samples); the **Best Layer** is the stage with the best mean over k.",
            ("Best Layer", *_LOWSHOT_K),
        ),
        k_label="mAP (%)",
    ),
    "linear_imagenet": Benchmark(
        "linear", ("imagenet",), Section("ImageNet Linear Evaluation", _LINEAR, _FEATURES)
    ),
    "linear_avgpool_imagenet": Benchmark("linear", ("imagenet",), table="linear_imagenet"),
    "linear_avgpool_lars_imagenet": Benchmark(
        "linear",
        ("imagenet",),
        Section(
            "ImageNet Linear Evaluation, LARS (BYOL's protocol)",
            _OWN_LINEAR.format(
                how="with LARS and a cosine schedule at a large batch",
                ref="mmselfsup's resnet50_linear-8xb512-coslr-90e_in1k.py, which produced BYOL's reported AvgPool",
            ),
            ("AvgPool",),
        ),
        every_model=False,
    ),
    "linear_triplet_less_imagenet": Benchmark(
        "linear",
        ("imagenet",),
        Section(
            "ImageNet Linear Evaluation, Triplet's protocol for shorter pretraining",
            _OWN_LINEAR.format(
                how="with SGD and a cosine schedule after a linear warm-up",
                ref="Triplet's r50_last_cos_for_LessSslEpoch.py, the protocol of its 200-epoch number",
            ),
            ("AvgPool",),
        ),
        every_model=False,
    ),
    "linear_triplet_more_imagenet": Benchmark(
        "linear",
        ("imagenet",),
        Section(
            "ImageNet Linear Evaluation, Triplet's protocol for longer pretraining",
            _OWN_LINEAR.format(
                how="with SGD and a cosine schedule after a linear warm-up (a lower lr than for shorter pretraining)",
                ref="Triplet's r50_last_cos_for_MoreSslEpoch.py, the protocol of its 700-900-epoch number",
            ),
            ("AvgPool",),
        ),
        every_model=False,
    ),
    "linear_places205": Benchmark(
        "linear", ("places205",), Section("Places205 Linear Evaluation", _LINEAR, _FEATURES)
    ),
    "linear_inat18": Benchmark(
        "linear", ("inat18",), Section("iNaturalist2018 Linear Evaluation", _LINEAR, _FEATURES)
    ),
    "knn_imagenet": Benchmark(
        "knn",
        ("imagenet",),
        Section(
            "ImageNet Nearest-Neighbor Classification",
            "Weighted kNN on the features after global average pooling; k=10 to k=200 is the number "
            "of nearest neighbours. Top-1 (%).",
            ("k=10", "k=20", "k=100", "k=200"),
        ),
        k_label="top-1 (%)",
    ),
    "semi_in1k_1pct": Benchmark(
        "semi",
        ("imagenet",),
        Section(
            "ImageNet Semi-Supervised Classification (1% labels)",
            _SEMI.format(share="1%"),
            ("Top-1 (%)", "Top-5 (%)"),
        ),
    ),
    "semi_in1k_10pct": Benchmark(
        "semi",
        ("imagenet",),
        Section(
            "ImageNet Semi-Supervised Classification (10% labels)",
            _SEMI.format(share="10%"),
            ("Top-1 (%)", "Top-5 (%)"),
        ),
    ),
    "det_voc0712": Benchmark(
        "det",
        ("voc07", "voc12"),
        Section(
            "Pascal VOC 2007 + 2012",
            "Faster R-CNN R50-C4 fine-tuned on VOC07+12 trainval and tested on VOC07 test, as the model "
            "zoo ran it (MMDetection, faster_rcnn_r50_c4_mstrain_24k_voc0712.py): MoCo's hyperparameters "
            "with the difficult boxes left out of training, L1 box losses and no precise BN.",
            ("AP50", "AP", "AP75"),
            group="Detection",
        ),
    ),
    "det_voc0712_moco": Benchmark(
        "det",
        ("voc07", "voc12"),
        Section(
            "Pascal VOC 2007 + 2012 (MoCo protocol)",
            "Faster R-CNN R50-C4 fine-tuned on VOC07+12 trainval and tested on VOC07 test by MoCo's "
            "detectron2 protocol (pascal_voc_R_50_C4_24k_moco.yaml: difficult boxes trained on, precise "
            "BN), run for the models that report it.",
            ("AP50", "AP", "AP75"),
            group="Detection",
        ),
        every_model=False,
    ),
    "det_coco": Benchmark(
        "det",
        ("coco",),
        Section(
            "COCO2017",
            "Mask R-CNN R50-FPN, 1x schedule (12 epochs), trained on COCO train2017 and tested on val2017, "
            "as the model zoo ran it (MMDetection, mask_rcnn_r50_fpn_mstrain_1x_coco.py): a 4-conv + 1-FC "
            "box head and SyncBN in the FPN and the heads.",
            ("mAP(Box)", "AP50(Box)", "AP75(Box)", "mAP(Mask)", "AP50(Mask)", "AP75(Mask)"),
            group="Detection",
        ),
    ),
    "det_coco_c4_moco": Benchmark(
        "det",
        ("coco",),
        Section(
            "COCO2017 (MoCo protocol, R50-C4 2x)",
            "Mask R-CNN R50-C4, 2x schedule, trained on COCO train2017 and tested on val2017 by MoCo's "
            "detectron2 protocol (coco_R_50_C4_2x_moco.yaml), run for the models that report it.",
            ("mAP(Box)", "AP50(Box)", "AP75(Box)", "mAP(Mask)", "AP50(Mask)", "AP75(Mask)"),
            group="Detection",
        ),
        every_model=False,
    ),
    "seg_voc12aug": Benchmark(
        "seg",
        ("voc12",),
        Section(
            "Pascal VOC 2012 + Aug",
            "FCN R50-D8 fine-tuned on VOC12 train with the SBD augmented set, mIoU on VOC12 val (MMSegmentation protocol).",
            ("mIOU",),
            group="Segmentation",
        ),
    ),
    "seg_cityscapes": Benchmark(
        "seg",
        ("cityscapes",),
        Section(
            "Cityscapes",
            "FCN R50-D8 fine-tuned on Cityscapes train (769x769 crops), mIoU on val (MMSegmentation protocol).",
            ("mIOU",),
            group="Segmentation",
        ),
    ),
}

# benchmark -> its table section (page order); benchmark -> the benchmark whose table shows it
SECTIONS: dict[str, Section] = {name: b.section for name, b in BENCHMARKS.items() if b.section is not None}
SECTION_OF: dict[str, str] = {name: b.table for name, b in BENCHMARKS.items() if b.table is not None}


def benchmark(name: str, source: str = "config benchmarks") -> Benchmark:
    """The entry of ``name``; an unknown name raises SslzooError naming ``source`` and the known ones."""
    if name not in BENCHMARKS:
        raise SslzooError(
            f"{source}: '{name}' is not a benchmark of sslzoo; the benchmarks are {list(BENCHMARKS)} "
            "(sslzoo/benchmarks/registry.py)"
        )
    return BENCHMARKS[name]


def table_of(name: str) -> str:
    """The benchmark whose table shows ``name``'s numbers (``name`` itself unless it has none)."""
    return benchmark(name).table or name


def of_kind(names: list[str], kind: str) -> list[str]:
    """The benchmarks among ``names`` that the ``kind`` rule runs, in the order given."""
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; the kinds are {KINDS}")
    return [name for name in names if benchmark(name).kind == kind]


def check_model_benchmarks(extra: list[str], reported: list[str], source: str) -> None:
    """A model config's ``extra_benchmarks`` and ``reported`` keys, checked against the registry.

    ``extra`` may name only a paper's own protocols (``every_model=False``); a ``reported`` key
    of such a protocol needs it in ``extra``, so that a reported number always sits under our
    row of the protocol that produced it. Raises :class:`SslzooError` naming ``source`` (the
    model config) and the fix.
    """
    for name in extra:
        if benchmark(name, f"{source}: extra_benchmarks").every_model:
            raise SslzooError(
                f"{source}: extra_benchmarks names '{name}', which runs for every model; remove it there"
            )
    for name in reported:
        entry = BENCHMARKS.get(name)
        if entry is not None and not entry.every_model and name not in extra:
            raise SslzooError(
                f"{source}: reported.{name} holds numbers of a paper's own protocol, which runs only for "
                f"the models that list it; add '{name}' to the model's extra_benchmarks"
            )


def _check() -> None:
    """Every entry is well formed (run at import: a bad entry fails every command at once)."""
    for name, entry in BENCHMARKS.items():
        if entry.kind not in KINDS or not entry.datasets:
            raise ValueError(f"benchmark {name}: kind {entry.kind!r} / datasets {entry.datasets!r}")
        if (entry.section is None) == (entry.table is None):
            raise ValueError(f"benchmark {name}: give a section or the table that holds it, not both")
        if entry.table is not None and entry.table not in SECTIONS:
            raise ValueError(f"benchmark {name}: table {entry.table!r} has no section")
        if entry.table is not None and entry.every_model != BENCHMARKS[entry.table].every_model:
            raise ValueError(f"benchmark {name}: runs for other models than table {entry.table!r}")


_check()
