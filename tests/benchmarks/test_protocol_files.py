"""Protocol files: validated by their kind's JSON-Schema, every default taken from the schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import sslzoo.config
from sslzoo.benchmarks.detection.models import ARCHITECTURES, NORMS
from sslzoo.benchmarks.detection.train import load_detection_config
from sslzoo.benchmarks.feature_files import FEATURE_LAYERS
from sslzoo.benchmarks.features import LAYER_NAMES, load_feature_protocol
from sslzoo.benchmarks.knn import load_knn_config
from sslzoo.benchmarks.linear_protocol import load_linear_config
from sslzoo.benchmarks.protocol_files import SCHEMAS, read_protocol, schema_default, schema_path
from sslzoo.benchmarks.registry import BENCHMARKS, KINDS
from sslzoo.benchmarks.segmentation import load_segmentation_config
from sslzoo.benchmarks.semi import load_semi_config
from sslzoo.benchmarks.svm_protocol import load_lowshot_config, load_svm_config
from sslzoo.config import SCHEMA_DIR, resolve_ref
from sslzoo.errors import SslzooError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
FEATURES_MINI = CONFIG_DIR / "features_mini.yaml"

# the smallest valid file of each kind: only the keys without a default
MINIMAL = {
    "knn": "",
    "svm": "",
    "lowshot": "",
    "features": "resize: 8\ncrop: 8\ndatasets:\n  voc07: {center_crop: false, layers: [avgpool]}\n",
    "linear": (
        f"layers: [feature5]\npooling_from: {FEATURES_MINI}\nepochs: 3\nbatch_size: 4\n"
        "optimizer: {lr: 0.5, weight_decay: 0.25}\nschedule: {steps: [2]}\n"
        "train_transform: {size: 32}\neval_transform: {resize: 37, crop: 32}\n"
    ),
    "semi": (
        "fraction: 0.5\nlrs: [0.1]\nhead_mults: [1]\nepochs: 3\nbatch_size: 4\n"
        "optimizer: {weight_decay: 0.001}\nschedule: {steps: [2]}\n"
        "train_transform: {size: 32}\neval_transform: {resize: 37, crop: 32}\n"
    ),
    "det": "dataset: coco\nmodel: {arch: mask_rcnn_fpn}\nsolver: {max_iter: 10, steps: [5, 8]}\n",
    "seg": (
        "dataset: voc12aug\ntrain: {max_iter: 10, batch_size: 2}\n"
        "pipeline: {img_scale: [20, 10], ratio_range: [0.5, 2.0], crop_size: [8, 8]}\n"
    ),
}
# kind -> (a required key of its minimal file, its line) for the missing-key check
REQUIRED = {
    "features": ("crop", "crop: 8\n"),
    "linear": ("epochs", "epochs: 3\n"),
    "semi": ("fraction", "fraction: 0.5\n"),
    "det": ("dataset", "dataset: coco\n"),
    "seg": ("dataset", "dataset: voc12aug\n"),
}


def _write(tmp_path: Path, kind: str, text: str) -> Path:
    path = tmp_path / f"{kind}_protocol.yaml"
    path.write_text(text)
    return path


def test_every_registered_kind_and_the_features_config_have_a_schema() -> None:
    assert set(KINDS) | {"features"} == set(SCHEMAS)
    for kind in SCHEMAS:
        assert schema_path(kind).is_file(), kind
    for name, entry in BENCHMARKS.items():
        assert entry.kind in SCHEMAS, name


def test_repository_protocol_files_are_valid() -> None:
    kinds = {"det_": "det", "seg_": "seg", "knn": "knn", "linear_": "linear", "semi_": "semi"}
    kinds |= {"svm_": "svm", "lowshot_": "lowshot", "features": "features"}
    checked = 0
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        (kind,) = [kind for prefix, kind in kinds.items() if path.name.startswith(prefix)]
        raw, filled = read_protocol(path, kind)
        # the file's own values are kept as written; the defaults are only added
        assert all(filled[key] == value for key, value in raw.items() if not isinstance(value, dict)), path
        checked += 1
    assert checked == 38


def test_minimal_knn_svm_lowshot_files_get_the_schema_defaults(tmp_path: Path) -> None:
    knn, raw = load_knn_config(_write(tmp_path, "knn", MINIMAL["knn"]))
    assert (knn.layer, knn.ks, knn.temperature, knn.chunk_size) == ("avgpool", (10, 20, 100, 200), 0.07, 256)
    assert raw == {"layer": "avgpool", "ks": [10, 20, 100, 200], "temperature": 0.07, "chunk_size": 256}
    svm, raw = load_svm_config(_write(tmp_path, "svm", MINIMAL["svm"]))
    assert raw == {} and svm.layers is None
    settings = svm.svm
    assert settings.costs[:4] == (1.0, 10.0, 100.0, 0.0625) and settings.costs[-1] == 0.5**19
    assert len(settings.costs) == 19
    assert (settings.positive_weight, settings.negative_weight, settings.intercept_scaling) == (2.0, 1.0, 1.0)
    assert (settings.folds, settings.tol, settings.max_iter, settings.fast_tol) == (3, 1e-4, 2000, 1e-6)
    lowshot, _ = load_lowshot_config(_write(tmp_path, "lowshot", MINIMAL["lowshot"]))
    assert (lowshot.layers, lowshot.ks, lowshot.samples) == (FEATURE_LAYERS, (1, 2, 4, 8, 16, 32, 64, 96), 5)
    assert lowshot.cross_validate is True and lowshot.negatives_per_positive is None
    assert lowshot.svm == settings


def test_minimal_training_protocols_get_the_schema_defaults(tmp_path: Path) -> None:
    linear, raw = load_linear_config(_write(tmp_path, "linear", MINIMAL["linear"]))
    assert "gpus" not in raw and linear.gpus == 1
    assert (linear.train.workers, linear.train.gamma, linear.bn_momentum) == (4, 0.1, 0.1)
    assert (linear.momentum, linear.nesterov) == (0.9, False)
    assert (linear.optimizer, linear.eta) == ("sgd", 0.001)  # SGD unless a file says lars
    train = linear.train  # the step schedule of the shared definition, no warm-up
    assert (train.schedule, train.steps, train.min_lr, train.by_epoch) == ("step", (2,), 0.0, True)
    assert (train.warmup_epochs, train.warmup_ratio) == (0.0, 0.1)
    assert linear.norm_weight_decay == linear.weight_decay == 0.25  # the default that is another key
    transform = linear.train_transform
    assert (transform.crop, transform.resize, transform.flip) == ("random_resized", 32, True)
    assert (transform.color_jitter, transform.lighting_std) == (None, 0.0)
    semi, _ = load_semi_config(_write(tmp_path, "semi", MINIMAL["semi"]))
    assert (semi.split_file, semi.sync_bn, semi.momentum, semi.nesterov, semi.gpus) == (
        None,
        True,
        0.9,
        False,
        1,
    )
    assert semi.head_mults == (1.0,) and isinstance(semi.head_mults[0], float)
    # semi-supervised files name no schedule: the step schedule, as before the cosine one existed
    assert (semi.train.schedule, semi.train.steps, semi.train.warmup_epochs) == ("step", (2,), 0.0)
    det, _ = load_detection_config(_write(tmp_path, "det", MINIMAL["det"]))
    assert (det.engine, det.workers, det.gpus) == ("torchvision", 4, 1)
    assert (det.solver.batch_size, det.solver.base_lr, det.solver.warmup_iters, det.solver.warmup_factor) == (
        16,
        0.02,
        100,
        0.001,
    )
    assert (det.model.norm, det.model.fpn_channels, det.input.min_size_test, det.test.precise_bn_iters) == (
        "SyncBN",
        256,
        800,
        200,
    )
    assert det.input.pixel_mean == (123.675, 116.28, 103.53)
    seg, _ = load_segmentation_config(_write(tmp_path, "seg", MINIMAL["seg"]))
    assert (seg.model.channels, seg.model.aux_weight, seg.model.dilations) == (512, 0.4, (1, 1, 2, 4))
    assert (seg.train.lr, seg.train.weight_decay, seg.train.checkpoint_period) == (0.01, 5e-4, 2000)
    assert (seg.test.mode, seg.test.stride, seg.pipeline.cat_max_ratio) == ("whole", (513, 513), 0.75)
    features = load_feature_protocol(_write(tmp_path, "features", MINIMAL["features"]), "voc07")
    assert (features.batch_size, features.workers, features.pooling) == (64, 4, {})


def _patched_schema(monkeypatch: pytest.MonkeyPatch, name: str, edit: Any) -> None:
    """Make sslzoo read schema ``name`` with ``edit(schema)`` applied."""
    original = sslzoo.config._schema

    def patched(path: Path) -> dict[str, Any]:
        schema = original(path)
        if path.name != name:
            return schema
        schema = copy.deepcopy(schema)
        edit(schema)
        return schema

    monkeypatch.setattr(sslzoo.config, "_schema", patched)


def test_a_default_comes_from_the_schema_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    knn_path = _write(tmp_path, "knn", MINIMAL["knn"])
    linear_path = _write(tmp_path, "linear", MINIMAL["linear"])
    assert load_knn_config(knn_path)[0].temperature == 0.07
    _patched_schema(
        monkeypatch, "knn.schema.yaml", lambda schema: schema["properties"]["temperature"].update(default=0.5)
    )
    assert load_knn_config(knn_path)[0].temperature == 0.5
    # a shared definition (protocol_common.schema.yaml) reached through $ref
    assert load_linear_config(linear_path)[0].gpus == 1
    _patched_schema(
        monkeypatch, "protocol_common.schema.yaml", lambda schema: schema["$defs"]["gpus"].update(default=2)
    )
    assert load_linear_config(linear_path)[0].gpus == 2


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_a_missing_required_key_names_file_and_key(tmp_path: Path, kind: str) -> None:
    key, line = REQUIRED[kind]
    assert line in MINIMAL[kind]
    path = _write(tmp_path, kind, MINIMAL[kind].replace(line, ""))
    with pytest.raises(SslzooError, match=rf"{path.name}: \(top level\): '{key}' is a required property"):
        read_protocol(path, kind)


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("knn", "temperature: warm\n", "temperature: 'warm' is not of type 'number'"),
        ("knn", "ks: [10.0]\n", r"ks.0: 10.0 is not of type 'integer'"),  # 10.0 is no k
        ("svm", "folds: 1\n", "folds: 1 is less than the minimum of 2"),
        ("lowshot", "cross_validate: 1\n", "cross_validate: 1 is not of type 'boolean'"),
        (
            "linear",
            MINIMAL["linear"].replace("epochs: 3", "epochs: 3.0"),
            "epochs: 3.0 is not of type 'integer'",
        ),
        (
            "linear",
            MINIMAL["linear"].replace("{size: 32}", "{size: 32, flip: 1}"),
            "train_transform.flip: 1 is not",
        ),
        (
            "semi",
            MINIMAL["semi"].replace("fraction: 0.5", "fraction: 2"),
            "fraction: 2 is greater than the maximum",
        ),
        (
            "det",
            MINIMAL["det"].replace("steps: [5, 8]", "steps: 5"),
            "solver.steps: 5 is not of type 'array'",
        ),
        (
            "seg",
            MINIMAL["seg"].replace("max_iter: 10", "max_iter: ten"),
            "train.max_iter: 'ten' is not of type",
        ),
        (
            "features",
            MINIMAL["features"].replace("[avgpool]", "[pool5]"),
            r"datasets.voc07.layers.0: 'pool5' is not",
        ),
    ],
)
def test_a_wrong_value_names_file_and_key(tmp_path: Path, kind: str, text: str, message: str) -> None:
    path = _write(tmp_path, kind, text)
    with pytest.raises(SslzooError, match=f"{path.name}: {message}"):
        read_protocol(path, kind)


def test_checks_the_schema_cannot_express_stay_in_the_loaders(tmp_path: Path) -> None:
    bad = MINIMAL["linear"].replace("{size: 32}", "{size: 32, crop: center_random, resize: 16}")
    with pytest.raises(SslzooError, match=r"train_transform.resize: \(16\) must be at least size \(32\)"):
        load_linear_config(_write(tmp_path, "linear", bad))
    bad = MINIMAL["det"].replace("steps: [5, 8]", "steps: [8, 5]")
    with pytest.raises(SslzooError, match=r"solver.steps: must be increasing, got \[8, 5\]"):
        load_detection_config(_write(tmp_path, "det", bad))
    with pytest.raises(SslzooError, match=r"class_weight: must be \{1: <positive weight>"):
        load_svm_config(_write(tmp_path, "svm", "class_weight: {1: 2.0, 0: 1.0}\n"))


def test_schema_enums_are_the_codes_names() -> None:
    assert resolve_ref("protocol_common.schema.yaml#/$defs/feature_layer")["enum"] == list(LAYER_NAMES)
    assert resolve_ref("protocol_common.schema.yaml#/$defs/stage_layer")["enum"] == list(FEATURE_LAYERS)
    detection = resolve_ref("detection.schema.yaml#/properties/model/properties")
    assert detection["arch"]["enum"] == list(ARCHITECTURES)
    assert sorted(detection["norm"]["enum"]) == sorted(NORMS)
    assert schema_default("det", "model", "norm") == "SyncBN"


def _properties(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """(key path, schema) of every property declared anywhere below ``node``."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            found.append((f"{where}.{name}", sub))
        for key, sub in node.items():
            if key not in ("if", "not"):  # conditions on properties declared elsewhere
                found += _properties(sub, f"{where}.{key}" if key != "properties" else where)
    elif isinstance(node, list):
        for sub in node:
            found += _properties(sub, where)
    return found


def test_every_protocol_property_is_described() -> None:
    names = [*SCHEMAS.values(), "protocol_common.schema.yaml"]
    undocumented = []
    for name in names:
        for where, sub in _properties(sslzoo.config._schema(SCHEMA_DIR / name), name):
            target = resolve_ref(sub["$ref"]) if "$ref" in sub and "description" not in sub else sub
            if not target.get("description"):
                undocumented.append(where)
    assert undocumented == []
