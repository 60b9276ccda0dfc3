"""ORL stage 3: aug_bbox, the three-branch loss, the shared networks, the RoI dataset and one
training run through the pretrain step."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.models import resnet18
from torchvision.transforms import functional as TF

from sslzoo.checkpoints import extract_backbone
from sslzoo.config import load_model_config
from sslzoo.data.constants import IMAGENET_MEAN, IMAGENET_STD
from sslzoo.errors import SslzooError
from sslzoo.methods.byol import BYOL
from sslzoo.methods.orl import ORL, ORLDataset, aug_bbox, box_iou, patch_pipeline, roi_crop
from sslzoo.tables import load_model_entry

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


def pixel_iou(a: list[float], b: list[float], size: int = 300) -> float:
    """IoU of two integer [x, y, w, h] boxes by counting pixels."""
    masks = []
    for x, y, w, h in (a, b):
        mask = np.zeros((size, size), dtype=bool)
        mask[int(y) : int(y + h), int(x) : int(x + w)] = True
        masks.append(mask)
    return float((masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum())


# --------------------------------------------------------------------------- boxes


def test_box_iou_matches_pixel_counting() -> None:
    cases = [
        ([0, 0, 10, 10], [5, 5, 10, 10]),
        ([3, 4, 20, 7], [3, 4, 20, 7]),
        ([0, 0, 10, 10], [10, 0, 10, 10]),
        ([2, 8, 30, 12], [10, 0, 5, 40]),
    ]
    for a, b in cases:
        assert box_iou(a, b) == pytest.approx(pixel_iou(a, b), abs=1e-12)
    assert box_iou([0, 0, 10, 10], [5, 5, 10, 10]) == pytest.approx(25 / 175)


def test_aug_bbox_is_the_reference_formula_on_fixed_draws() -> None:
    class Midpoints:
        """Every uniform draw is the middle of its range."""

        def uniform(self, lo: float, hi: float) -> float:
            return (lo + hi) / 2

    # area 1.25 * 40 * 30 = 1500, aspect exp(0) = 1 -> 39 x 39; centre (30, 35) unshifted;
    # x = round(10.5) = 10, y = round(15.5) = 16 (Python's round, as the reference); IoU 1170 / 1551
    box = aug_bbox([10, 20, 40, 30], (200, 200), rng=Midpoints())  # type: ignore[arg-type]
    assert box == [10, 16, 39, 39]
    assert box_iou(box, [10, 20, 40, 30]) == pytest.approx(1170 / 1551)


def test_aug_bbox_constraints_over_many_seeds() -> None:
    moved = 0
    for seed in range(300):
        rng = random.Random(seed)
        img_w, img_h = rng.randint(60, 300), rng.randint(60, 300)
        w, h = rng.randint(20, img_w), rng.randint(20, img_h)
        x, y = rng.randint(0, img_w - w), rng.randint(0, img_h - h)
        box = [x, y, w, h]
        new = aug_bbox(box, (img_w, img_h), rng=rng)
        assert all(float(v).is_integer() for v in new)
        nx, ny, nw, nh = new
        assert nx >= 0 and ny >= 0 and nx + nw <= img_w and ny + nh <= img_h
        if new == box:
            continue
        moved += 1
        assert pixel_iou(new, box) > 0.5
        # the draws are rounded to whole pixels: allow half a pixel on each side
        area_lo = (math.sqrt(0.5 * w * h) - 0.5 * math.sqrt(2)) ** 2
        assert area_lo <= nw * nh <= 2 * w * h + (nw + nh) + 1
        assert (nw - 0.5) / (nh + 0.5) <= 2.0 and (nw + 0.5) / (nh - 0.5) >= 0.5
        assert abs((nx + nw / 2) - (x + w / 2)) <= 0.5 * w + 1.0
        assert abs((ny + nh / 2) - (y + h / 2)) <= 0.5 * h + 1.0
    assert moved > 200  # the fallback is rare (boxes here may fill their image)


class CountingRandom(random.Random):
    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws = 0

    def uniform(self, a: float, b: float) -> float:
        self.draws += 1
        return super().uniform(a, b)


@pytest.mark.parametrize("attempts", [200, 7])
def test_aug_bbox_falls_back_to_the_box_after_all_attempts(attempts: int) -> None:
    # a box larger than its image: every candidate (at least half its area) falls outside
    rng = CountingRandom(0)
    box = [0, 0, 40, 40]
    assert aug_bbox(box, (20, 20), attempts=attempts, rng=rng) == box
    assert rng.draws == 4 * attempts
    # an IoU nothing can exceed: the same
    rng = CountingRandom(1)
    assert aug_bbox([10, 10, 20, 20], (100, 100), min_iou=1.0, attempts=attempts, rng=rng) == [10, 10, 20, 20]
    assert rng.draws == 4 * attempts


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


# --------------------------------------------------------------------------- data

# every random step off: the crops can be compared pixel for pixel
PLAIN_VIEWS = {
    "image_size": 16,
    "scale": [1.0, 1.0],
    "flip_p": 0.0,
    "color_jitter_p": 0.0,
    "grayscale_p": 0.0,
    "blur_p": 0.0,
    "solarize_p": 0.0,
    "roi_size": 8,
    "knn_images": 1,
}


def normalised(img: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Image.Image]:
    """Distinct random images (w, h) as PNG (lossless), named img{i}.png."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i, (w, h) in enumerate(sizes):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        img.save(folder / f"img{i}.png")
        images.append(img)
    return images


def write_data(tmp_path: Path, n: int = 4, **changes: Any) -> tuple[Path, Path, dict[str, Any]]:
    """A manifest of n small images and a hand-written correspondence file (ORL's layout): image
    i has boxes [[1, 2, 12, 10], [0, 0, 20, 16]], neighbours (i+1, i+2) mod n, one pair per neighbour."""
    write_images(tmp_path / "images", [(24 + 2 * i, 20 + i) for i in range(n)])
    names = [f"img{i}.png" for i in range(n)]
    manifest = {
        "dataset": "coco",
        "split": "train",
        "root": str(tmp_path / "images"),
        "classes": [],
        "samples": [[name, -1] for name in names],
    }
    knn = [[(i + 1) % n, (i + 2) % n] for i in range(n)]
    data = {
        "info": {
            "bbox_min_size": 8,
            "bbox_max_aspect_ratio": 3,
            "bbox_max_iou": 0.5,
            "intra_bbox_num": 100,
            "knn_image_num": 2,
            "knn_bbox_pair_ratio": 0.1,
        },
        "images": {"file_name": names, "id": [1000 + i for i in range(n)]},
        "pseudo_annotations": {
            "image_id": [1000 + i for i in range(n)],
            "bbox": [[[1, 2, 12, 10], [0, 0, 20, 16]] for _ in range(n)],
            "knn_image_id": knn,
            "knn_bbox_pair": [[[[2, 3, 10, 9, 4, 5, 11, 8 + k]] for k in range(2)] for _ in range(n)],
        },
    }
    for key, value in changes.items():
        if key == "images":
            data["images"] = value
        else:
            data["pseudo_annotations"][key] = value
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "corr.json").write_text(json.dumps(data))
    return tmp_path / "manifest.json", tmp_path / "corr.json", data


def test_patch_pipeline_is_the_view_pipeline_without_the_crop() -> None:
    views = {k: v for k, v in PLAIN_VIEWS.items() if k not in ("roi_size", "knn_images")}
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    for index in (0, 1):
        assert torch.allclose(patch_pipeline(views, index)(img), normalised(img))
    reference = [type(t).__name__ for t in patch_pipeline({}, 1).transforms]
    assert reference[0] == "RandomHorizontalFlip" and "RandomResizedCrop" not in reference
    blur1, blur2 = (patch_pipeline({}, i).transforms[3] for i in (0, 1))
    assert (blur1.p, blur2.p) == (1.0, 0.1)
    solarize1, solarize2 = (patch_pipeline({}, i).transforms[4] for i in (0, 1))
    assert (solarize1.p, solarize2.p) == (0.0, 0.2)


def test_dataset_crops_the_boxes_of_the_image_and_of_its_neighbour(tmp_path: Path) -> None:
    manifest, corr, data = write_data(tmp_path)
    dataset = ORLDataset(manifest, corr, {"views": PLAIN_VIEWS})
    assert len(dataset) == 4
    for index in range(4):
        images = [Image.open(tmp_path / "images" / f"img{i}.png").convert("RGB") for i in range(4)]
        random.seed(index)
        neighbour, ibox1, ibox2, kbox1, kbox2 = dataset.rois(index, images[index])
        assert neighbour == (index + 1) % 4  # knn_images 1: the first stored neighbour
        assert ibox1 in data["pseudo_annotations"]["bbox"][index]
        assert (kbox1, kbox2) == ([2, 3, 10, 9], [4, 5, 11, 8])
        random.seed(index)  # the same draws again inside __getitem__
        views, label = dataset[index]
        assert label == -1
        assert views["global"][0].shape == views["global"][1].shape == (3, 16, 16)
        expected = {
            "intra": (roi_crop(images[index], ibox1, 8), roi_crop(images[index], ibox2, 8)),
            "inter": (roi_crop(images[index], kbox1, 8), roi_crop(images[neighbour], kbox2, 8)),
        }
        for name, (crop1, crop2) in expected.items():
            assert torch.allclose(views[name][0], normalised(crop1)), name
            assert torch.allclose(views[name][1], normalised(crop2)), name
        assert not torch.allclose(views["inter"][1], normalised(roi_crop(images[index], kbox2, 8)))


def test_dataset_samples_every_neighbour_box_and_pair(tmp_path: Path) -> None:
    manifest, corr, _ = write_data(tmp_path)
    dataset = ORLDataset(manifest, corr, {"views": {**PLAIN_VIEWS, "knn_images": 2}})
    img = Image.open(tmp_path / "images" / "img0.png").convert("RGB")
    random.seed(0)
    draws = [dataset.rois(0, img) for _ in range(60)]
    assert {d[0] for d in draws} == {1, 2}
    assert {tuple(d[1]) for d in draws} == {(1, 2, 12, 10), (0, 0, 20, 16)}
    for neighbour, *_, kbox2 in draws:  # the pair stored for the drawn neighbour
        assert kbox2 == [4, 5, 11, 8 + (neighbour - 1)]


PAIR = [2, 3, 10, 9, 4, 5, 11, 8]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "bbox": [[[1, 2, 12, 10]]] * 3,
                "knn_image_id": [[1, 2]] * 3,
                "knn_bbox_pair": [[[PAIR], [PAIR]]] * 3,
            },
            "3 images",
        ),
        ({"images": {"file_name": ["img1.png", "img0.png", "img2.png", "img3.png"]}}, "'img1.png'"),
        ({"knn_image_id": [[1, 2], [2, 3], [3, 4], [0, 1]]}, r"knn_image_id\[2\]"),
        ({"bbox": [[[1, 2, 12, 10]], [], [[1, 2, 12, 10]], [[1, 2, 12, 10]]]}, r"bbox\[1\]"),
        ({"knn_bbox_pair": [[[PAIR], []]] * 4}, r"knn_bbox_pair\[0\]\[1\]"),
        ({"knn_bbox_pair": [[[PAIR[:4]], [PAIR]]] * 4}, r"knn_bbox_pair\[0\]\[0\]"),
        # the shared reader looks at the first pair of each list; the arrays see every one
        ({"knn_bbox_pair": [[[PAIR, PAIR[:4]], [PAIR]]] * 4}, "rows of 8 numbers"),
        ({"bbox": [[[1, 2, 12, 10], [1, 2, 3]]] * 4}, "rows of 4 numbers"),
    ],
)
def test_dataset_refuses_a_correspondence_that_does_not_fit(
    tmp_path: Path, changes: dict, message: str
) -> None:
    manifest, corr, _ = write_data(tmp_path, **changes)
    with pytest.raises(SslzooError, match=message) as error:
        ORLDataset(manifest, corr, {"views": PLAIN_VIEWS})
    assert "corr.json" in str(error.value)


def test_dataset_refuses_more_neighbours_than_stored(tmp_path: Path) -> None:
    manifest, corr, _ = write_data(tmp_path)
    with pytest.raises(SslzooError, match="views.knn_images = 3"):
        ORLDataset(manifest, corr, {"views": {**PLAIN_VIEWS, "knn_images": 3}})


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
        assert cfg["backbone"] == {"depth": 50, "sync_bn": True, "zero_init_residual": False}
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
