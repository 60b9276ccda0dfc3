"""Model configs: schema errors name the file and the key, defaults are filled, and every
config/models/*.yaml validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sslzoo.config import load_model_config, snapshot_epochs, snapshot_name, training_config
from sslzoo.errors import SslzooError

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted((REPO / "config" / "models").glob("*.yaml"))

MINIMAL = {
    "method": "rotation_pred",
    "title": "Rotation-Pred",
    "dataset": "imagenet",
    "gpus": 1,
    "backbone": {"depth": 18},
    "train": {
        "epochs": 2,
        "batch_size": 4,
        "optimizer": {"name": "sgd", "lr": 0.1},
        "schedule": {"name": "cosine"},
    },
}


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def edited(**changes: object) -> dict:
    """MINIMAL with ``a.b.c=value`` style changes (keys joined by "__")."""
    cfg = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = cfg
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return cfg


def test_defaults_are_filled(tmp_path: Path) -> None:
    cfg = load_model_config(write(tmp_path, MINIMAL))
    train = cfg["train"]
    assert (train["accumulate"], train["amp"], train["channels_last"], train["workers"]) == (
        1,
        False,
        False,
        2,
    )
    assert train["schedule"]["warmup_epochs"] == 0 and train["schedule"]["by_epoch"] is True
    assert train["optimizer"]["weight_decay"] == 0.0 and train["optimizer"]["exclude_bn_bias"] is False
    assert cfg["backbone"]["sync_bn"] is False and cfg["backbone"]["conv_init"] == "fan_out"
    assert cfg["views"] == {} and cfg["method_args"] == {} and cfg["reported"] == {}
    assert cfg["extra_benchmarks"] == [] and cfg["snapshots"] == []


def test_a_snapshot_gets_its_own_empty_benchmarks_and_numbers(tmp_path: Path) -> None:
    cfg = load_model_config(
        write(tmp_path, {**MINIMAL, "extra_benchmarks": ["linear_own"], "snapshots": [{"epoch": 1}]})
    )
    # not the model's: a snapshot lists its own
    assert cfg["snapshots"] == [{"epoch": 1, "extra_benchmarks": [], "reported": {}}]
    assert snapshot_epochs(cfg) == [1]
    assert snapshot_name("triplet_r50", 940) == "triplet_r50_ep940"


def test_a_snapshot_epoch_beyond_the_training_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, {**MINIMAL, "snapshots": [{"epoch": 2}, {"epoch": 3}]})  # train.epochs 2
    with pytest.raises(SslzooError) as error:
        load_model_config(path)
    assert str(error.value) == (
        f"{path}: snapshots[1].epoch: 3 is beyond train.epochs (2); the run never reaches it: list an "
        "epoch from 1 to 2, or remove the entry"
    )


def test_a_snapshot_epoch_listed_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, {**MINIMAL, "snapshots": [{"epoch": 1}, {"epoch": 2}, {"epoch": 1}]})
    with pytest.raises(SslzooError, match=r"snapshots\[2\]\.epoch: epoch 1 is listed twice; merge"):
        load_model_config(path)


def test_display_keys_are_not_training_keys() -> None:
    cfg = {**MINIMAL, "reported": {"knn": {}}, "extra_benchmarks": ["x"], "snapshots": [{"epoch": 1}]}
    assert training_config(cfg) == {key: value for key, value in MINIMAL.items() if key != "title"}


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({"train__optimizer__name": "adam"}, "train.optimizer.name", "is not one of"),
        ({"train__optimizer__lr": -0.1}, "train.optimizer.lr", "less than or equal to the minimum"),
        ({"train__schedule__name": "poly"}, "train.schedule.name", "is not one of"),
        ({"train__batch_size": "sixteen"}, "train.batch_size", "is not of type 'integer'"),
        ({"backbone__depth": 42}, "backbone.depth", "is not one of"),
        ({"backbone__conv_init": "fan_avg"}, "backbone.conv_init", "is not one of"),
        ({"train__epochs": None}, "train", "'epochs' is a required property"),
        ({"train__schedule": {"name": "step"}}, "train.schedule", "'steps' is a required property"),
        ({"train__optimizer__momentun": 0.9}, "train.optimizer", "'momentun' was unexpected"),
        ({"train__schedule": {"name": "step", "steps": [50, 30]}}, "train.schedule.steps", "increasing"),
        ({"snapshots": [{"epoch": 0}]}, "snapshots.0.epoch", "less than the minimum of 1"),
        ({"snapshots": [{"epoch": 1, "reportd": {}}]}, "snapshots.0", "'reportd' was unexpected"),
        ({"snapshots": [{"reported": {}}]}, "snapshots.0", "'epoch' is a required property"),
        (
            {"snapshots": [{"epoch": 1, "extra_benchmarks": "det"}]},
            "snapshots.0.extra_benchmarks",
            "not of type",
        ),
        ({"snapshots": [{"epoch": 1, "reported": {"knn": 3}}]}, "snapshots.0.reported.knn", "not of type"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, changes: dict, key: str, expected: str) -> None:
    path = write(tmp_path, edited(**changes))
    with pytest.raises(SslzooError) as error:
        load_model_config(path)
    message = str(error.value)
    assert f"{path}: {key}: " in message
    assert expected in message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SslzooError, match="list.yaml"):
        load_model_config(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SslzooError, match="nothing.yaml"):
        load_model_config(tmp_path / "nothing.yaml")


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=[p.stem for p in MODEL_CONFIGS])
def test_every_model_config_validates(path: Path) -> None:
    from sslzoo.methods import METHODS

    cfg = load_model_config(path)
    assert cfg["method"] in METHODS
    assert cfg["train"]["epochs"] >= 1
    total = cfg["gpus"] * cfg["train"]["batch_size"] * cfg["train"]["accumulate"]
    assert total >= 1


# Conv init of each method's reference ResNet, by the config file's name up to the first "_":
# MMSelfSup 0.x builds the mmcls ResNet with init_cfg Kaiming (mmselfsup/models/backbones/resnet.py,
# mmcv KaimingInit's default mode fan_out); ORL and Triplet use OpenSelfSup's ResNet, whose
# init_weights calls kaiming_init(m, mode='fan_in', nonlinearity='relu')
# (Jiahao000/ORL and wanggrun/triplet openselfsup/models/backbones/resnet.py).
REFERENCE_CONV_INIT = {
    "relative-loc": "fan_out",
    "rotation-pred": "fan_out",
    "byol": "fan_out",
    "orl-stage1": "fan_in",
    "orl": "fan_in",
    "triplet": "fan_in",
    "npid": "fan_out",  # MMSelfSup 0.x, as above
    "supervised": "fan_out",  # mmcls 0.x mmcls/models/backbones/resnet.py, init_cfg Kaiming
    "simclr": "fan_out",
    "mocov1": "fan_out",
    "mocov2": "fan_out",
    "simsiam": "fan_out",
    "swav": "fan_out",
    "deepcluster": "fan_out",  # MMSelfSup 0.x, as above (the schema's default)
    "deepcluster-sobel": "fan_out",
    "odc": "fan_out",
}


FULL_SCALE_CONFIGS = [p for p in MODEL_CONFIGS if not p.stem.endswith("_mini")]
MINI_CONFIGS = [p for p in MODEL_CONFIGS if p.stem.endswith("_mini")]


@pytest.mark.parametrize("path", FULL_SCALE_CONFIGS, ids=[p.stem for p in FULL_SCALE_CONFIGS])
def test_conv_init_is_the_references(path: Path) -> None:
    family = path.stem.split("_")[0]
    assert family in REFERENCE_CONV_INIT, f"{path.name}: add its reference's conv init to REFERENCE_CONV_INIT"
    assert load_model_config(path)["backbone"]["conv_init"] == REFERENCE_CONV_INIT[family]


@pytest.mark.parametrize("path", MINI_CONFIGS, ids=[p.stem for p in MINI_CONFIGS])
def test_mini_configs_init_like_the_random_row(path: Path) -> None:
    """The mini zoo keeps torchvision's fan_out init (its config headers say why): the init of the
    random-init row that every method must beat."""
    assert load_model_config(path)["backbone"]["conv_init"] == "fan_out"


# Configs that run another config's recipe at another length (or, SwAV's, with other crops):
# name -> (the config it extends, every training value it changes). Each changed value names its
# source; nothing else may differ, so a value edited in one file but not the other is caught.
DERIVED = {
    # mmselfsup 0.x configs/selfsup/byol/byol_resnet50_8xb32-accum16-coslr-300e_in1k.py: max_epochs=300
    "byol_resnet50_8xb32-accum16-coslr-300e_in1k": ("byol_resnet50_8xb32-accum16-coslr-200e_in1k", {"train.epochs": 300}),
    # no reference config: BYOL paper (Grill et al. 2020) Sec. 3.3, 1000 epochs
    "byol_resnet50_8xb32-accum16-coslr-1000e_in1k": ("byol_resnet50_8xb32-accum16-coslr-200e_in1k", {"train.epochs": 1000}),
    # no reference config: SimCLR paper (Chen et al. 2020) Sec. 6, 1000 epochs
    "simclr_resnet50_8xb32-coslr-1000e_in1k": ("simclr_resnet50_8xb32-coslr-200e_in1k", {"train.epochs": 1000}),
    # facebookresearch/moco README.md "Models": MoCo v2 800 epochs (main_moco.py --epochs 800)
    "mocov2_resnet50_8xb32-coslr-800e_in1k": ("mocov2_resnet50_8xb32-coslr-200e_in1k", {"train.epochs": 800}),
    # no reference config: SimSiam paper (Chen & He 2021) Table 4, 400 and 800 epochs
    "simsiam_resnet50_8xb32-coslr-400e_in1k": ("simsiam_resnet50_8xb32-coslr-200e_in1k", {"train.epochs": 400}),
    "simsiam_resnet50_8xb32-coslr-800e_in1k": ("simsiam_resnet50_8xb32-coslr-200e_in1k", {"train.epochs": 800}),
    # facebookresearch/swav scripts/swav_400ep_2x224_pretrain.sh: --nmb_crops 2 --size_crops 224
    # --min_scale_crops 0.08 --max_scale_crops 1.
    "swav_resnet50_8xb32-coslr-200e_in1k-224": (
        "swav_resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96",
        {"views.crops": [{"count": 2, "image_size": 224, "scale": [0.08, 1.0]}]},
    ),
}  # fmt: skip


def _flat(node: object, prefix: str = "") -> dict[str, object]:
    """Nested mappings as ``a.b.c`` -> value (lists are values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, object] = {}
    for key, value in node.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_a_derived_config_changes_only_its_listed_values(name: str) -> None:
    base_name, changes = DERIVED[name]
    derived = load_model_config(REPO / "config" / "models" / f"{name}.yaml")
    base = load_model_config(REPO / "config" / "models" / f"{base_name}.yaml")
    ours, theirs = _flat(training_config(derived)), _flat(training_config(base))
    differing = {key for key in ours.keys() | theirs.keys() if ours.get(key, "-") != theirs.get(key, "-")}
    assert differing == set(changes)
    assert {key: ours[key] for key in changes} == changes
    # the same papers' protocols, and its own numbers only (none of the base config's)
    assert derived["extra_benchmarks"] == base["extra_benchmarks"]
    assert all(derived["reported"].get(bench) != numbers for bench, numbers in base["reported"].items())


@pytest.mark.parametrize("path", FULL_SCALE_CONFIGS, ids=[p.stem for p in FULL_SCALE_CONFIGS])
def test_the_epochs_in_the_name_are_the_runs(path: Path) -> None:
    """MMSelfSup's names carry the schedule's length (``-coslr-800e_in1k``)."""
    named = re.search(r"-(\d+)e_", path.stem)
    assert named, f"{path.name}: no <epochs>e in the name"
    assert load_model_config(path)["train"]["epochs"] == int(named.group(1))


def test_model_configs_exist() -> None:
    assert any(p.stem == "rotation-pred_resnet50_8xb16-steplr-70e_in1k" for p in MODEL_CONFIGS)


ORL_MINIMAL = {**MINIMAL, "method": "orl", "title": "ORL", "stage1": "orl-stage1_resnet18_mini", "stage2": {}}


@pytest.mark.parametrize("missing", ["stage1", "stage2"])
def test_an_orl_config_needs_stage1_and_stage2(tmp_path: Path, missing: str) -> None:
    cfg = {key: value for key, value in ORL_MINIMAL.items() if key != missing}
    path = write(tmp_path, cfg)
    with pytest.raises(SslzooError) as error:
        load_model_config(path)
    assert f"{path}: (top level): '{missing}' is a required property" in str(error.value)


def test_orl_stage2_defaults_are_the_reference_protocol(tmp_path: Path) -> None:
    cfg = load_model_config(write(tmp_path, {**ORL_MINIMAL, "stage2": {"knn": {"k": 5}}}))
    assert cfg["stage2"] == {
        "knn": {"k": 5, "resize": 256, "crop": 224, "batch_size": 256},
        "correspondence": {
            "min_size": 96,
            "max_aspect_ratio": 3.0,
            "max_iou": 0.5,
            "max_boxes": 100,
            "crop": 224,
            "pair_ratio": 0.1,
            "batch_size": 256,
        },
    }


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({"stage1": "byol_resnet18_mini"}, "method", "'orl' was expected"),
        ({"stage2": {}}, "method", "'orl' was expected"),
        ({"method": "orl", "stage1": "x", "stage2": {"knn": {"kk": 3}}}, "stage2.knn", "'kk' was unexpected"),
        (
            {"method": "orl", "stage1": "x", "stage2": {"correspondence": {"max_iou": 2}}},
            "stage2.correspondence.max_iou",
            "greater than the maximum",
        ),
    ],
)
def test_stage_keys_belong_to_orl(tmp_path: Path, changes: dict, key: str, expected: str) -> None:
    path = write(tmp_path, {**MINIMAL, **changes})
    with pytest.raises(SslzooError) as error:
        load_model_config(path)
    assert f"{path}: {key}: " in str(error.value) and expected in str(error.value)


def test_configs_without_stage_keys_get_none(tmp_path: Path) -> None:
    cfg = load_model_config(write(tmp_path, MINIMAL))
    assert "stage1" not in cfg and "stage2" not in cfg
