"""Linear evaluation: head sizes from the real pooling table, frozen backbone, training and resume,
top-k against a naive count, PCA lighting by hand, process-count invariance, the step's metrics."""

from __future__ import annotations

import argparse
import copy
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from sslzoo.benchmarks.classifier_loop import (
    Accuracy,
    evaluate_classifier,
    fit_classifier,
    norm_param_groups,
    topk_hits,
)
from sslzoo.benchmarks.classifier_transforms import Lighting
from sslzoo.benchmarks.heads import PooledLinearHead, build_linear_classifier
from sslzoo.benchmarks.linear_protocol import TrainSettings, load_linear_config, read_pooling_table
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import ResNetBackbone
from sslzoo.runtime.dist import DistContext
from sslzoo.runtime.run_dir import LATEST, TRAIN_LOG
from tests.benchmarks.protocols import reference_gpus_and_batch

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "benchmarks"
FEATURES = ("feature1", "feature2", "feature3", "feature4", "feature5")
# AvgPool2d tables for a ResNet-18 at 32 px (maps 16, 8, 4, 2, 1 px)
TINY_POOLING = {
    "feature1": (4, 4, 0),
    "feature2": (4, 4, 0),
    "feature3": (2, 2, 0),
    "feature4": (1, 1, 0),
    "feature5": (1, 1, 0),
}


class Killed(Exception):
    """Stands in for a job killed mid-epoch."""


class TensorImages(Dataset):
    """Fixed random 32 px 'images' with labels ``i % classes``; optionally dies at a given read."""

    def __init__(self, size: int, classes: int = 3, kill_at: int | None = None) -> None:
        generator = torch.Generator().manual_seed(5)
        self.images = torch.randn(size, 3, 32, 32, generator=generator)
        self.labels = [i % classes for i in range(size)]
        self.kill_at, self.reads = kill_at, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.reads += 1
        if self.reads == self.kill_at:
            raise Killed
        return self.images[index], self.labels[index]


def _tiny_classifier(seed: int = 0, layers=FEATURES):
    torch.manual_seed(seed)
    return build_linear_classifier(ResNetBackbone(18), layers, TINY_POOLING, num_classes=3, crop=32)


def _sgd(model, lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD(norm_param_groups(model.heads, lr, 1e-4, 0.0), lr=lr, momentum=0.9, nesterov=True)


def _settings(epochs: int, batch_size: int) -> TrainSettings:
    return TrainSettings(
        epochs=epochs, batch_size=batch_size, workers=0, steps=(1,), gamma=0.1,
        schedule="step", min_lr=0.0, by_epoch=True, warmup_epochs=0.0, warmup_ratio=0.1,
    )  # fmt: skip


def test_heads_of_the_real_pooling_table_for_resnet50_at_224px() -> None:
    pooling = read_pooling_table(CONFIG_DIR / "features.yaml", FEATURES)
    torch.manual_seed(0)
    model = build_linear_classifier(ResNetBackbone(50), FEATURES, pooling, num_classes=7, crop=224)
    dims = [model.heads[layer].fc.in_features for layer in FEATURES]
    assert dims == [9216, 9216, 8192, 9216, 8192]
    model.eval()
    with torch.no_grad():
        maps = model.backbone(torch.randn(2, 3, 224, 224), [1, 2, 3, 4, 5])
        pooled = [
            torch.flatten(model.heads[layer].pool(m), 1).shape[1]
            for layer, m in zip(FEATURES, maps, strict=True)
        ]
        logits = [model.heads[layer](m) for layer, m in zip(FEATURES, maps, strict=True)]
    assert pooled == dims
    assert all(scores.shape == (2, 7) for scores in logits)
    for layer in FEATURES:
        head = model.heads[layer]
        assert isinstance(head, PooledLinearHead)
        assert isinstance(head.norm, nn.BatchNorm2d) and not head.norm.affine
        assert list(head.norm.parameters()) == []
        assert head.norm.num_features == maps[FEATURES.index(layer)].shape[1]
        assert torch.count_nonzero(head.fc.bias) == 0
        assert head.fc.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_mini_pooling_table_fits_resnet18_at_32px() -> None:
    pooling = read_pooling_table(CONFIG_DIR / "features_mini.yaml", FEATURES)
    model = build_linear_classifier(ResNetBackbone(18), FEATURES, pooling, num_classes=10, crop=32)
    # the dimensions features_mini.yaml states: 64x4x4, 64x4x4, 128x4x4, 256x2x2, 512x1x1
    assert [model.heads[layer].fc.in_features for layer in FEATURES] == [1024, 1024, 2048, 1024, 512]


def test_head_normalises_each_channel_of_the_pooled_map() -> None:
    head = PooledLinearHead(channels=2, pooling=(2, 2, 0), pooled_dim=8, num_classes=3).train()
    x = torch.randn(5, 2, 4, 4) * torch.tensor([3.0, 0.5]).view(1, 2, 1, 1) + 4.0
    pooled = nn.functional.avg_pool2d(x, 2, 2)
    mean = pooled.mean(dim=(0, 2, 3), keepdim=True)
    var = pooled.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = head.fc(torch.flatten((pooled - mean) / torch.sqrt(var + 1e-5), 1))
    torch.testing.assert_close(head(x), expected)


def test_training_changes_only_the_heads_and_keeps_the_backbone_in_eval_mode(tmp_path: Path) -> None:
    model = _tiny_classifier()
    backbone_before = copy.deepcopy(model.backbone.state_dict())
    heads_before = copy.deepcopy(model.heads.state_dict())
    modes: list[tuple[bool, bool]] = []
    model.backbone.register_forward_pre_hook(
        lambda module, args: modes.append((module.training, model.heads.training))
    )
    summary = fit_classifier(
        model,
        _sgd(model),
        TensorImages(4),
        _settings(1, 4),
        tmp_path,
        {"run": 1},
        seed=0,
        state_module=model.heads,
    )
    assert summary["iterations"] == 1 and modes == [(False, True)]
    after = model.backbone.state_dict()
    for key, value in backbone_before.items():  # weights and BN running statistics
        assert torch.equal(after[key], value), key
    assert all(not p.requires_grad and p.grad is None for p in model.backbone.parameters())
    for layer in FEATURES:
        key = f"{layer}.fc.weight"
        assert not torch.equal(model.heads.state_dict()[key], heads_before[key]), layer
    # the heads' BN statistics moved (train mode), the backbone's did not
    assert not torch.equal(
        model.heads.state_dict()["feature5.norm.running_mean"], heads_before["feature5.norm.running_mean"]
    )
    record = json.loads((tmp_path / TRAIN_LOG).read_text())
    assert record["iter"] == 1 and record["lr"] == 0.1 and "loss.feature3" in record
    assert record["loss"] == pytest.approx(sum(record[f"loss.{layer}"] for layer in FEATURES), rel=1e-5)
    assert set(torch.load(tmp_path / LATEST, weights_only=True)["state_dict"]) == set(
        model.heads.state_dict()
    )


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = _tiny_classifier()
    fit_classifier(
        straight, _sgd(straight), TensorImages(4), _settings(2, 2), tmp_path / "a", {"run": 1}, seed=3
    )

    killed = _tiny_classifier()
    with pytest.raises(Killed):  # dies in epoch 2 (4 reads per epoch)
        fit_classifier(
            killed,
            _sgd(killed),
            TensorImages(4, kill_at=7),
            _settings(2, 2),
            tmp_path / "b",
            {"run": 1},
            seed=3,
        )
    resumed = _tiny_classifier(seed=99)  # other initial heads: the checkpoint must overwrite them
    summary = fit_classifier(
        resumed, _sgd(resumed), TensorImages(4), _settings(2, 2), tmp_path / "b", {"run": 1}, seed=3
    )
    assert summary["resumed_from_epoch"] == 1
    for key, value in straight.heads.state_dict().items():
        assert torch.equal(resumed.heads.state_dict()[key], value), key
    lines = [json.loads(line) for line in (tmp_path / "b" / TRAIN_LOG).read_text().splitlines()]
    assert [line["iter"] for line in lines] == [1, 2, 3, 4]
    assert [line["lr"] for line in lines] == pytest.approx([0.1, 0.1, 0.01, 0.01])

    other = _tiny_classifier()
    summary = fit_classifier(
        other, _sgd(other), TensorImages(4), _settings(2, 2), tmp_path / "b", {"run": 2}, seed=3
    )
    assert summary["resumed_from_epoch"] == 0
    assert len(list((tmp_path / "b").glob("superseded-*/latest.pth"))) == 1


def _naive_topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    hits = 0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        order = sorted(range(len(row)), key=lambda c: -row[c])
        hits += label in order[:k]
    return hits


def test_topk_hits_and_evaluation_against_a_naive_count() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 8, generator=generator)
    labels = torch.randint(0, 8, (50,), generator=generator)
    assert topk_hits(logits, labels, (1, 5)) == [
        _naive_topk(logits, labels, 1),
        _naive_topk(logits, labels, 5),
    ]
    assert topk_hits(logits[:, :3], labels.clamp(max=2), (1, 5))[1] == 50  # k capped at the class count

    class Lookup(nn.Module):
        def forward(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": logits[index], "b": -logits[index]}

    class Rows(Dataset):
        def __len__(self) -> int:
            return 50

        def __getitem__(self, index: int) -> tuple[int, int]:
            return index, int(labels[index])

    accuracy = evaluate_classifier(Lookup(), Rows(), ["a", "b"], batch_size=7, workers=0)
    assert accuracy["a"] == Accuracy(
        top1=100.0 * _naive_topk(logits, labels, 1) / 50, top5=100.0 * _naive_topk(logits, labels, 5) / 50
    )
    assert accuracy["b"].top1 == 100.0 * _naive_topk(-logits, labels, 1) / 50


def test_lighting_against_a_hand_computation() -> None:
    image = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    out = Lighting(0.1)(image)
    torch.manual_seed(7)
    alpha = (torch.randn(3) * 0.1).tolist()
    eigval = [0.2175, 0.0188, 0.0045]
    eigvec = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
    for channel in range(3):
        offset = sum(eigvec[channel][j] * alpha[j] * eigval[j] for j in range(3))
        torch.testing.assert_close(
            out[channel] - image[channel], torch.full((4, 5), offset), atol=1e-6, rtol=0
        )
    assert torch.equal(Lighting(0.0)(image), image)


class _BnScorer(nn.Module):
    """Scores = BN(flattened image) @ W: the evaluation must use rank 0's running statistics."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.norm = nn.BatchNorm1d(12)
        self.fc = nn.Linear(12, 6)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"head": self.fc(self.norm(x.flatten(1)))}


class _Vectors(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(3)
        self.x = torch.randn(23, 3, 2, 2, generator=generator)
        self.y = torch.randint(0, 6, (23,), generator=generator)

    def __len__(self) -> int:
        return 23

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index], int(self.y[index])


def _evaluate_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model = _BnScorer()
    model.norm.running_mean.fill_(0.3 if rank == 0 else -5.0)  # rank 1's statistics must not count
    ctx = DistContext(rank=rank, world_size=2, local_rank=rank)
    accuracy = evaluate_classifier(model, _Vectors(), ["head"], batch_size=4, workers=0, ctx=ctx)["head"]
    Path(out, f"rank{rank}.json").write_text(json.dumps([accuracy.top1, accuracy.top5]))
    dist.destroy_process_group()


def test_evaluation_does_not_depend_on_the_process_count(tmp_path: Path) -> None:
    model = _BnScorer()
    model.norm.running_mean.fill_(0.3)
    single = evaluate_classifier(model, _Vectors(), ["head"], batch_size=5, workers=0)["head"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_evaluate_worker, args=(port, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == [single.top1, single.top5]


def test_protocol_gpus_are_the_reference_process_counts() -> None:
    for path in sorted(CONFIG_DIR.glob("linear_*.yaml")):
        config, raw = load_linear_config(path)
        if path.stem.endswith("_mini"):
            assert config.gpus == 1, path  # the mini zoo runs one process
            continue
        gpus, per_gpu = reference_gpus_and_batch(path)
        assert (config.gpus, config.train.batch_size) == (gpus, gpus * per_gpu), path
        assert raw["gpus"] == config.gpus


def test_repository_configs_load_and_bad_ones_are_named(tmp_path: Path) -> None:
    for path in sorted(CONFIG_DIR.glob("linear_*.yaml")):
        config, raw = load_linear_config(path)
        assert config.train.epochs >= 1 and raw["layers"] == list(config.layers), path
    mhead, _ = load_linear_config(CONFIG_DIR / "linear_imagenet.yaml")
    assert (mhead.lr, mhead.nesterov, mhead.train.steps, mhead.train.epochs) == (0.01, True, (30, 60, 90), 90)
    assert mhead.train_transform.lighting_std == 0.1 and mhead.pooling["feature3"] == (13, 5, 0)
    avgpool, _ = load_linear_config(CONFIG_DIR / "linear_avgpool_imagenet.yaml")
    assert (avgpool.lr, avgpool.weight_decay, avgpool.train.steps, avgpool.layers) == (
        30.0,
        0.0,
        (60, 80),
        ("avgpool",),
    )

    base = (
        (CONFIG_DIR / "linear_imagenet_mini.yaml")
        .read_text()
        .replace("features_mini.yaml", str(CONFIG_DIR / "features_mini.yaml"))
    )
    cases = {
        "typo": (base + "epochz: 3\n", r"typo.yaml: \(top level\): Additional properties .*'epochz' was unexpected"),
        "layer": (base.replace("feature5]", "feature6]"), r"layer.yaml: layers.4: 'feature6' is not one of"),
        "steps": (base.replace("steps: [2, 3]", "steps: [3, 2]"), "steps.yaml: schedule.steps: expected increasing epochs"),
        "jitter": (base.replace("[0.4, 0.4, 0.4, 0.0]", "[0.4]"), r"jitter.yaml: train_transform.color_jitter: \[0.4\] is too short"),
        "pooling": (base.replace(str(CONFIG_DIR / "features_mini.yaml"), str(tmp_path / "nothing.yaml")), "nothing.yaml: file not found"),
        "gpus_type": (base.replace("gpus: 1", "gpus: eight"), r"gpus_type.yaml: gpus: 'eight' is not of type 'integer'"),
        "gpus_bool": (base.replace("gpus: 1", "gpus: true"), r"gpus_bool.yaml: gpus: True is not of type 'integer'"),
        "gpus_zero": (base.replace("gpus: 1", "gpus: 0"), r"gpus_zero.yaml: gpus: 0 is less than the minimum of 1"),
        "gpus_split": (base.replace("gpus: 1", "gpus: 3"), r"gpus_split.yaml: batch_size: 32 .* does not divide by gpus 3"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        with pytest.raises(SslzooError, match=message):
            load_linear_config(path)


def _write_images(root: Path, count: int, classes: int) -> list[list]:
    rng = np.random.default_rng(0)
    samples = []
    for index in range(count):
        rel = f"c{index % classes}/img{index}.JPEG"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / rel, format="JPEG")
        samples.append([rel, index % classes])
    return samples


def _write_manifest(path: Path, root: Path, samples: list[list], classes: int, split: str) -> Path:
    manifest = {"dataset": "imagenet", "split": split, "root": str(root),
                "classes": [f"c{i}" for i in range(classes)], "samples": samples}  # fmt: skip
    path.write_text(json.dumps(manifest))
    return path


TINY_CONFIG = """\
layers: {layers}
pooling_from: pooling.yaml
epochs: 1
batch_size: 4
workers: 0
optimizer: {{lr: 0.01, momentum: 0.9, weight_decay: 1.0e-4, nesterov: true, norm_weight_decay: 0.0}}
schedule: {{steps: [1], gamma: 0.1}}
train_transform: {{crop: random_resized, size: 32, color_jitter: [0.4, 0.4, 0.4, 0.0], lighting_std: 0.1}}
eval_transform: {{resize: 36, crop: 32}}
"""


def _losses(log: Path) -> list[tuple[int, float]]:
    """(iteration, loss) of every line of a train_log.jsonl."""
    return [(row["iter"], row["loss"]) for row in map(json.loads, log.read_text().splitlines())]


def test_step_writes_the_metrics_of_both_protocols(tmp_path: Path) -> None:
    from sslzoo.checkpoints import random_backbone
    from sslzoo.steps import linear_benchmark as step

    random_backbone(18, 0, tmp_path / "backbone.pth")
    samples = _write_images(tmp_path / "images", 10, 2)
    train = _write_manifest(tmp_path / "train.json", tmp_path / "images", samples[:8], 2, "train")
    val = _write_manifest(tmp_path / "val.json", tmp_path / "images", samples[8:], 2, "val")
    (tmp_path / "pooling.yaml").write_text(  # a features config: its pooling table is what counts
        "resize: 37\ncrop: 32\ndatasets: {}\npooling:\n"
        + "".join(f"  {layer}: {list(p)}\n" for layer, p in TINY_POOLING.items())
    )
    parser = argparse.ArgumentParser()
    step.add_arguments(parser)
    results = {}
    for name, layers in (("linear_imagenet", list(FEATURES)), ("linear_avgpool_imagenet", ["avgpool"])):
        config = tmp_path / f"{name}.yaml"
        config.write_text(TINY_CONFIG.format(layers=json.dumps(layers)))
        out = tmp_path / "results" / name / "random" / "metrics.json"
        argv = ["--backbone", str(tmp_path / "backbone.pth"), "--train-manifest", str(train), "--val-manifest",
                str(val), "--config", str(config), "--benchmark", name, "--model", "random",
                "--work-dir", str(out.parent / "work"), "--out", str(out)]  # fmt: skip
        step.main(parser.parse_args(argv))
        results[name] = json.loads(out.read_text())
        # the output written, the resume state is removed and the log kept
        assert not (out.parent / "work" / LATEST).exists()
        first_log = _losses(out.parent / "work" / TRAIN_LOG)
        assert first_log
        step.main(parser.parse_args(argv))  # a rerun trains again, to the same numbers
        again = json.loads(out.read_text())
        assert {k: v for k, v in again.items() if k != "meta"} == {
            k: v for k, v in results[name].items() if k != "meta"
        }
        assert _losses(out.parent / "work" / TRAIN_LOG) == first_log
    mhead, avgpool = results["linear_imagenet"], results["linear_avgpool_imagenet"]
    assert sorted(k for k in mhead if k != "meta") == [
        "Feature1",
        "Feature2",
        "Feature3",
        "Feature4",
        "Feature5",
    ]
    assert sorted(k for k in avgpool if k != "meta") == ["AvgPool"]
    assert mhead["meta"]["benchmark"] == "linear_imagenet" and mhead["meta"]["model"] == "random"
    assert set(mhead["meta"]["top5"]) == {"Feature1", "Feature2", "Feature3", "Feature4", "Feature5"}
    assert mhead["meta"]["config"]["pooling"]["feature1"] == [4, 4, 0]
    assert all(value in (0.0, 50.0, 100.0) for value in avgpool.values() if isinstance(value, float))
    assert mhead["meta"]["top5"]["Feature2"] == 100.0  # 2 classes: always among the top 5
    # the run record: one process took the whole batch of 4, as the protocol (gpus: the default)
    for name, metrics in results.items():
        run = metrics["meta"]["run"]
        assert (run["world_size"], run["per_process_batch"], run["accumulate"], run["total_batch"]) == (
            1,
            4,
            1,
            4,
        )
        assert (run["seed"], run["torch"], run["cuda"]) == (0, torch.__version__, torch.version.cuda)
        assert run["protocol"] == {
            "config": str(tmp_path / f"{name}.yaml"),
            "gpus": 1,  # the schema's default: the files here give no gpus
            "per_process_batch": 4,
            "accumulate": 1,
            "total_batch": 4,
        }
