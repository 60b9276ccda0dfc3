"""ORL stage 3: the three-branch loss, the shared networks, the dataset hook and one training run
through the pretrain step (aug_bbox and the RoI dataset: tests/data/)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.models import resnet18

from sslzoo.checkpoints import extract_backbone
from sslzoo.config import load_model_config
from sslzoo.errors import SslzooError
from sslzoo.methods.byol import BYOL
from sslzoo.methods.orl import ORL
from sslzoo.tables import load_model_entry
from tests.data.orl_files import PLAIN_VIEWS, write_data

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
SMALL_MLP = {"hidden": 32, "out": 8}
STAGE2 = {"knn": {}, "correspondence": {}}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one thread beats two on a shared machine (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_orl(**kwargs: Any) -> ORL:
    torch.manual_seed(0)
    return ORL(depth=18, projector=SMALL_MLP, predictor=SMALL_MLP, **kwargs)


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine written out."""
    return (a * b).sum(1) / (a.pow(2).sum(1).sqrt() * b.pow(2).sum(1).sqrt())


# --------------------------------------------------------------------------- model


def random_batch(size: int = 16, roi: int = 16, n: int = 3) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(1)
    return {
        "global": (torch.randn(n, 3, size, size), torch.randn(n, 3, size, size)),
        "intra": (torch.randn(n, 3, roi, roi), torch.randn(n, 3, roi, roi)),
        "inter": (torch.randn(n, 3, roi, roi), torch.randn(n, 3, roi, roi)),
    }


def test_loss_is_the_weighted_sum_of_three_byol_losses_by_hand() -> None:
    model = tiny_orl(global_loss_weight=1.0, local_intra_loss_weight=0.5, local_inter_loss_weight=2.0)
    batch = random_batch()
    out = model(batch)
    expected = {}
    with torch.no_grad():  # train-mode BN: the same inputs give the same outputs
        for name, head in (
            ("global", model.predictor),
            ("intra", model.intra_predictor),
            ("inter", model.inter_predictor),
        ):
            x1, x2 = batch[name]
            o1, o2 = head(model.online_projection(x1)), head(model.online_projection(x2))
            t1, t2 = model.target_projection(x1), model.target_projection(x2)
            expected[name] = 2 * (-cos(o1, t2).mean() - cos(o2, t1).mean())
    assert out["loss_global"].item() == pytest.approx(expected["global"].item(), abs=1e-5)
    assert out["loss_local_intra"].item() == pytest.approx(0.5 * expected["intra"].item(), abs=1e-5)
    assert out["loss_local_inter"].item() == pytest.approx(2.0 * expected["inter"].item(), abs=1e-5)
    total = expected["global"] + 0.5 * expected["intra"] + 2.0 * expected["inter"]
    assert out["loss"].item() == pytest.approx(total.item(), abs=1e-5)
    assert out["momentum"].item() == pytest.approx(0.99)
    # the global branch alone is BYOL's loss on the two views
    byol = BYOL(depth=18, projector=SMALL_MLP, predictor=SMALL_MLP)
    byol.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith(("intra_", "inter_"))}
    )
    assert byol(batch["global"])["loss"].item() == pytest.approx(expected["global"].item(), abs=1e-5)


def test_three_heads_share_one_online_and_one_target_network() -> None:
    model = tiny_orl()
    prefixes = {key.split(".")[0] for key in model.state_dict()}
    assert prefixes == {
        "backbone",
        "projector",
        "predictor",
        "intra_predictor",
        "inter_predictor",
        "target_backbone",
        "target_projector",
    }
    heads = [model.predictor, model.intra_predictor, model.inter_predictor]
    assert len({id(h) for h in heads}) == 3
    assert not torch.equal(heads[0][0].weight, heads[1][0].weight)  # each head has its own init
    # the reference's fc0_bias=True, with_bias=False: a bias on the hidden fc only
    assert heads[0][0].bias is not None and heads[0][3].bias is None
    # only the intra-RoI branch: the gradient reaches the shared networks and its own head only
    batch = random_batch()
    model.branch_loss(model.intra_predictor, *batch["intra"]).backward()
    for module in (model.backbone, model.projector, model.intra_predictor):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    for module in (model.predictor, model.inter_predictor):
        assert all(p.grad is None for p in module.parameters())
    for param in [*model.target_backbone.parameters(), *model.target_projector.parameters()]:
        assert not param.requires_grad and param.grad is None
    # the EMA reads the one online network and leaves the heads alone
    with torch.no_grad():
        for param in model.online_parameters():
            param.add_(1.0)
    online = [p.detach().clone() for p in model.online_parameters()]
    target = [p.detach().clone() for p in model.target_parameters()]
    heads_before = [p.detach().clone() for h in heads for p in h.parameters()]
    model.after_step(0.0)
    for t_new, t_old, o in zip(model.target_parameters(), target, online, strict=True):
        assert torch.allclose(t_new, 0.99 * t_old + 0.01 * o, atol=1e-6)
    for p_new, p_old in zip([p for h in heads for p in h.parameters()], heads_before, strict=True):
        assert torch.equal(p_new, p_old)


def stem_batch_stats(model: ORL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of the online stem conv's output over (N, H, W)."""
    with torch.no_grad():
        maps = torch.nn.functional.conv2d(images, model.backbone.conv1.weight, stride=2, padding=3)
    flat = maps.transpose(0, 1).reshape(maps.shape[1], -1)
    return flat.mean(1), flat.var(1, unbiased=True)


@pytest.mark.parametrize("roi_running_stats", [True, False])
def test_roi_running_stats_decides_which_views_move_the_bn_running_statistics(
    roi_running_stats: bool,
) -> None:
    model = tiny_orl(roi_running_stats=roi_running_stats)
    batch = random_batch()
    bn = model.backbone.bn1
    bn.running_mean.fill_(0.5)
    bn.running_var.fill_(2.0)
    # the online stem's BN sees, in order, global x1, x2, then (when they count) intra x1, x2, inter x1, x2
    views = [*batch["global"]] + ([*batch["intra"], *batch["inter"]] if roi_running_stats else [])
    mean, var = torch.full_like(bn.running_mean, 0.5), torch.full_like(bn.running_var, 2.0)
    for images in views:
        m, v = stem_batch_stats(model, images)
        mean, var = 0.9 * mean + 0.1 * m, 0.9 * var + 0.1 * v
    out = model(batch)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5) and torch.allclose(bn.running_var, var, atol=1e-4)
    assert bn.momentum == 0.1
    # frozen statistics change nothing in the loss: the RoI passes still normalise with their batch
    reference = tiny_orl(roi_running_stats=True)(batch)
    assert out["loss"].item() == pytest.approx(reference["loss"].item(), abs=1e-6)


def test_roi_running_stats_must_be_a_bool() -> None:
    with pytest.raises(SslzooError, match="roi_running_stats"):
        tiny_orl(roi_running_stats="no")


def test_from_config_refuses_a_config_without_the_stage_keys() -> None:
    cfg = {"backbone": {"depth": 18}, "method_args": {"projector": SMALL_MLP, "predictor": SMALL_MLP}}
    with pytest.raises(SslzooError, match="stage1, stage2"):
        ORL.from_config(cfg)
    with pytest.raises(SslzooError, match="stage2"):
        ORL.from_config({**cfg, "stage1": "x"})
    with pytest.raises(SslzooError, match="roi_sise"):
        ORL.from_config({**cfg, "stage1": "x", "stage2": STAGE2, "views": {"roi_sise": 3}})
    with pytest.raises(SslzooError, match="views.aug_bbox"):
        ORL.from_config({**cfg, "stage1": "x", "stage2": STAGE2, "views": {"aug_bbox": {"iou": 0.3}}})
    model = ORL.from_config({**cfg, "stage1": "x", "stage2": STAGE2})
    assert model.loss_weights == {"global": 1.0, "intra": 1.0, "inter": 1.0}


# --------------------------------------------------------------------------- data (tests/data/test_orl_dataset.py)


def test_build_dataset_needs_the_correspondence_option(tmp_path: Path) -> None:
    manifest, corr, _ = write_data(tmp_path)
    with pytest.raises(SslzooError, match="--correspondence"):
        ORL.build_dataset({"views": PLAIN_VIEWS}, manifest)
    assert len(ORL.build_dataset({"views": PLAIN_VIEWS}, manifest, corr)) == 4


# --------------------------------------------------------------------------- end to end


def tiny_config(tmp_path: Path) -> Path:
    cfg = {
        "method": "orl",
        "title": "ORL",
        "dataset": "coco",
        "gpus": 1,
        "stage1": "orl-stage1_resnet18_mini",
        "stage2": {"knn": {"k": 2}},
        "backbone": {"depth": 18},
        "views": {"image_size": 32, "roi_size": 32, "blur_sigma": [0.1, 0.5], "knn_images": 2},
        "train": {
            "epochs": 1,
            "batch_size": 2,
            "workers": 0,
            "optimizer": {"name": "sgd", "lr": 0.01, "weight_decay": 1e-4},
            "schedule": {"name": "cosine", "warmup_epochs": 0.5, "warmup_ratio": 1e-4},
        },
        "method_args": {"projector": SMALL_MLP, "predictor": SMALL_MLP},
    }
    path = tmp_path / "orl_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pretrain_from_files_trains_on_the_correspondence_and_writes_a_backbone(tmp_path: Path) -> None:
    from sslzoo.engine.trainer import pretrain_from_files

    manifest, corr, _ = write_data(tmp_path)
    config = tiny_config(tmp_path)
    with pytest.raises(SslzooError, match="--correspondence"):
        pretrain_from_files(config, manifest, tmp_path / "work0", tmp_path / "none.pth")
    result = pretrain_from_files(
        config, manifest, tmp_path / "work", tmp_path / "final.pth", seed=0, correspondence=corr
    )
    assert (result["iterations"], result["iters_per_epoch"]) == (2, 2)
    log = [json.loads(line) for line in (tmp_path / "work" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2
    for record in log:
        parts = record["loss_global"] + record["loss_local_intra"] + record["loss_local_inter"]
        assert record["loss"] == pytest.approx(parts, abs=1e-5) and math.isfinite(record["loss"])
    final = torch.load(tmp_path / "final.pth", map_location="cpu", weights_only=True)
    assert (
        final["meta"]["method"] == "orl" and final["meta"]["config"]["stage1"] == "orl-stage1_resnet18_mini"
    )
    assert final["meta"]["config"]["stage2"]["correspondence"]["min_size"] == 96  # defaults filled
    backbone = extract_backbone(tmp_path / "final.pth", tmp_path / "backbone.pth")
    resnet18().load_state_dict(torch.load(tmp_path / "backbone.pth", weights_only=True), strict=True)
    assert torch.equal(backbone["conv1.weight"], final["state_dict"]["backbone.conv1.weight"])


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "name",
    [
        "orl-stage1_resnet50_8xb64-coslr-800e_coco",
        "orl-stage1_resnet18_mini",
        "orl_resnet50_8xb64-coslr-800e_coco",
        "orl_resnet18_mini",
    ],
)
def test_configs_load_and_follow_the_reference(name: str) -> None:
    path = CONFIG_DIR / f"{name}.yaml"
    cfg = load_model_config(path)
    entry = load_model_entry(path)  # reported numbers use the table columns
    stage3 = cfg["method"] == "orl"
    assert cfg["dataset"] == "coco" and cfg["method"] == ("orl" if name.startswith("orl_") else "byol")
    assert cfg["views"]["interpolation"] == "bilinear"
    assert (cfg["views"]["blur_p"], cfg["views"]["solarize_p"]) == ([1.0, 0.1], [0.0, 0.2])
    for mlp in ("projector", "predictor"):
        assert {k: cfg["method_args"][mlp][k] for k in ("bias", "last_bias", "init")} == {
            "bias": True,
            "last_bias": False,
            "init": "kaiming",
        }
    train = cfg["train"]
    assert train["optimizer"]["name"] == "sgd" and train["optimizer"]["weight_decay"] == 1e-4
    assert train["optimizer"]["momentum"] == 0.9 and train["schedule"]["name"] == "cosine"
    if "mini" not in name:
        assert cfg["gpus"] * train["batch_size"] * train["accumulate"] == 512
        assert train["epochs"] == 800 and train["optimizer"]["lr"] == 0.4
        assert train["schedule"]["warmup_epochs"] == 4 and train["amp"]
        assert cfg["backbone"] == {
            "depth": 50,
            "sync_bn": True,
            "zero_init_residual": False,
            "conv_init": "fan_in",
        }
        assert (entry.reported != {}) == stage3
    else:
        total = cfg["gpus"] * train["batch_size"] * train["accumulate"]
        assert train["optimizer"]["lr"] == pytest.approx(0.4 * total / 512)
    if stage3:
        assert (CONFIG_DIR / f"{cfg['stage1']}.yaml").is_file()
        stage1 = load_model_config(CONFIG_DIR / f"{cfg['stage1']}.yaml")
        assert (
            stage1["method"] == "byol" and stage1["train"] == train and stage1["backbone"] == cfg["backbone"]
        )
        assert {k: v for k, v in cfg["views"].items() if k in stage1["views"]} == stage1["views"]
        assert cfg["stage2"]["knn"]["k"] == cfg["views"]["knn_images"] == 10
        assert cfg["views"]["aug_bbox"] == {
            "shift": [-0.5, 0.5],
            "scale": [0.5, 2.0],
            "ratio": [0.5, 2.0],
            "min_iou": 0.5,
            "attempts": 200,
        }
        if "mini" in name:
            model = ORL.from_config(cfg)
            rng = np.random.default_rng(0)
            img = Image.fromarray(rng.integers(0, 256, (108, 160, 3), dtype=np.uint8))
            views = ORL.views(cfg)(img)
            roi = cfg["views"]["roi_size"]
            patches = torch.randn(2, 3, roi, roi)
            out = model(
                {
                    "global": tuple(v.unsqueeze(0).repeat(2, 1, 1, 1) for v in views),
                    "intra": (patches, patches.flip(0)),
                    "inter": (patches.flip(0), patches),
                }
            )
            assert torch.isfinite(out["loss"])
