"""The ``lightly`` package's training loops for the methods sslzoo also implements: the peers of
``bench/pretrain_throughput.py``.

Each function takes the sslzoo method's bench config (``bench_config`` of the driver), the
dataset of precomputed views the sslzoo side trains on, the number of warm-up iterations and
the device, and returns lightly's images/s. The model and loop are written as lightly's
documentation and examples write them (lightly-ai/lightly ``examples/pytorch/{byol,simclr,moco,
simsiam,swav}.py``: ``lightly.models.modules`` heads, ``lightly.loss`` losses,
``lightly.models.utils`` momentum helpers), on the trunk of the examples (a torchvision ResNet
without its fc, ``flatten`` after the average pool), with the config's depth, head sizes,
temperature, queue length and number of prototypes, the same batch and views (the same
DataLoader over the same precomputed tensors, no workers), plain SGD with the config's lr,
momentum and weight decay over one parameter group, and the config's memory format.

Timing is the engine's: from one iteration's end to the next (batch loading, the move to the
device, forward, backward, optimizer step, ``loss.item()`` -- the engine logs the loss every
iteration), the median after ``warmup`` iterations.

What is not matched, per method (both sides do the same arithmetic otherwise):

- all: sslzoo's lr follows its cosine schedule per iteration and its optimizer may put some
  parameters in other groups (e.g. no weight decay); lightly's examples use one fixed-lr group.
  sslzoo's trunk is its own ``ResNetBackbone`` (the same layers as torchvision's ResNet).
- SimCLR: lightly's example passes the two views through the backbone one at a time (BN
  statistics per view); sslzoo concatenates them into one ``2B`` batch, as MMSelfSup does.
- MoCo v2: lightly's example has no shuffling BN; sslzoo's is a no-op in one process. The key
  encoder's momentum is the config's fixed value on both sides.
- SimSiam: sslzoo keeps the predictor's lr fixed (a second parameter group, ``fix_pred_lr``).
- SwAV: lightly's example runs the backbone once per crop (``2 + 4`` passes); sslzoo once per
  run of equal-size crops (2 passes). lightly's prototypes carry a bias (``nn.Linear`` default),
  sslzoo's do not. The bench config has no queue and no frozen prototypes on either side.
- BYOL: lightly's momentum follows ``cosine_schedule`` per step; sslzoo's EMA runs after the
  optimizer step (``after_step``), lightly's before the forward, as its example does.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def _trunk(depth: int) -> tuple[nn.Module, int]:
    """The examples' backbone: torchvision ResNet minus its fc -> ``[N, C, 1, 1]``, and ``C``."""
    import torchvision

    resnet = getattr(torchvision.models, f"resnet{depth}")()
    return nn.Sequential(*list(resnet.children())[:-1]), resnet.fc.in_features


def _sgd(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    opt = cfg["train"]["optimizer"]
    return torch.optim.SGD(
        model.parameters(), lr=opt["lr"], momentum=opt["momentum"], weight_decay=opt["weight_decay"]
    )


def _timed_loop(
    model: nn.Module,
    loss_fn: Callable[[int, int, list[torch.Tensor]], torch.Tensor],
    cfg: dict[str, Any],
    dataset: Dataset,
    warmup: int,
    device: torch.device,
) -> float:
    """Images/s of ``loss_fn(step, steps, views)`` + backward + SGD step over ``dataset``."""
    model.to(device)
    channels_last = bool(cfg["train"].get("channels_last", False))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    amp = bool(cfg["train"]["amp"]) and device.type == "cuda"
    optimizer = _sgd(model, cfg)
    batch_size = int(cfg["train"]["batch_size"])
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, drop_last=True)
    steps = len(loader)
    times = []
    tick = time.perf_counter()
    for step, (views, _) in enumerate(loader):
        views = [v.to(device, non_blocking=True, memory_format=memory) for v in views]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(step, steps, views)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss.item()  # the engine logs the loss every iteration: the same synchronisation
        now = time.perf_counter()
        times.append(now - tick)
        tick = now
    return batch_size / statistics.median(times[warmup:])


def byol_rate(cfg: dict[str, Any], dataset: Dataset, warmup: int, device: torch.device) -> float:
    """lightly's BYOL (``BYOLProjectionHead``, ``BYOLPredictionHead``,
    ``NegativeCosineSimilarity``, ``update_momentum`` with ``cosine_schedule``), the projector's
    and predictor's ``hidden`` / ``out`` of ``method_args.projector``."""
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    class BYOL(nn.Module):
        def __init__(self, depth: int, hidden: int, out: int) -> None:
            super().__init__()
            self.backbone, dim = _trunk(depth)
            self.projection_head = BYOLProjectionHead(dim, hidden, out)
            self.prediction_head = BYOLPredictionHead(out, hidden, out)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))

        def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    torch.manual_seed(0)
    mlp = cfg["method_args"]["projector"]
    model = BYOL(cfg["backbone"]["depth"], mlp["hidden"], mlp["out"])
    criterion = NegativeCosineSimilarity()

    def loss_fn(step: int, steps: int, views: list[torch.Tensor]) -> torch.Tensor:
        x0, x1 = views
        momentum = cosine_schedule(step, steps, 0.99, 1)
        update_momentum(model.backbone, model.backbone_momentum, m=momentum)
        update_momentum(model.projection_head, model.projection_head_momentum, m=momentum)
        p0, p1 = model(x0), model(x1)
        z0, z1 = model.forward_momentum(x0), model.forward_momentum(x1)
        return 0.5 * (criterion(p0, z1) + criterion(p1, z0))

    return _timed_loop(model, loss_fn, cfg, dataset, warmup, device)


def simclr_rate(cfg: dict[str, Any], dataset: Dataset, warmup: int, device: torch.device) -> float:
    """lightly's SimCLR (``SimCLRProjectionHead`` with BN, 2 layers; ``NTXentLoss``), the
    ``method_args.neck`` sizes and ``temperature``."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    class SimCLR(nn.Module):
        def __init__(self, depth: int, hidden: int, out: int) -> None:
            super().__init__()
            self.backbone, dim = _trunk(depth)
            self.projection_head = SimCLRProjectionHead(dim, hidden, out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    torch.manual_seed(0)
    args = cfg["method_args"]
    model = SimCLR(cfg["backbone"]["depth"], args["neck"]["hidden"], args["neck"]["out"])
    criterion = NTXentLoss(temperature=args["temperature"])

    def loss_fn(step: int, steps: int, views: list[torch.Tensor]) -> torch.Tensor:
        x0, x1 = views
        return criterion(model(x0), model(x1))

    return _timed_loop(model, loss_fn, cfg, dataset, warmup, device)


def mocov2_rate(cfg: dict[str, Any], dataset: Dataset, warmup: int, device: torch.device) -> float:
    """lightly's MoCo v2 (``MoCoProjectionHead``, 2 layers without BN; momentum copies with
    ``deactivate_requires_grad`` / ``update_momentum``; ``NTXentLoss`` with
    ``memory_bank_size=(queue_len, out)``), the ``method_args`` neck sizes, ``temperature``,
    ``queue_len`` and ``momentum``. One direction, query view 1 against key view 2, as sslzoo."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import MoCoProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    class MoCo(nn.Module):
        def __init__(self, depth: int, hidden: int, out: int) -> None:
            super().__init__()
            self.backbone, dim = _trunk(depth)
            self.projection_head = MoCoProjectionHead(dim, hidden, out)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

        def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

    torch.manual_seed(0)
    args = cfg["method_args"]
    hidden, out = args["neck"]["hidden"], args["neck"]["out"]
    model = MoCo(cfg["backbone"]["depth"], hidden, out)
    criterion = NTXentLoss(temperature=args["temperature"], memory_bank_size=(int(args["queue_len"]), out))
    momentum = float(args["momentum"])

    def loss_fn(step: int, steps: int, views: list[torch.Tensor]) -> torch.Tensor:
        x_query, x_key = views
        update_momentum(model.backbone, model.backbone_momentum, m=momentum)
        update_momentum(model.projection_head, model.projection_head_momentum, m=momentum)
        return criterion(model(x_query), model.forward_momentum(x_key))

    return _timed_loop(model, loss_fn, cfg, dataset, warmup, device)


def simsiam_rate(cfg: dict[str, Any], dataset: Dataset, warmup: int, device: torch.device) -> float:
    """lightly's SimSiam (``SimSiamProjectionHead``, ``SimSiamPredictionHead``,
    ``NegativeCosineSimilarity``), the ``method_args`` projector and predictor sizes."""
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

    class SimSiam(nn.Module):
        def __init__(self, depth: int, hidden: int, out: int, pred_hidden: int) -> None:
            super().__init__()
            self.backbone, dim = _trunk(depth)
            self.projection_head = SimSiamProjectionHead(dim, hidden, out)
            self.prediction_head = SimSiamPredictionHead(out, pred_hidden, out)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = self.projection_head(self.backbone(x).flatten(start_dim=1))
            return z.detach(), self.prediction_head(z)

    torch.manual_seed(0)
    args = cfg["method_args"]
    proj = args["projector"]
    model = SimSiam(cfg["backbone"]["depth"], proj["hidden"], proj["out"], args["predictor"]["hidden"])
    criterion = NegativeCosineSimilarity()

    def loss_fn(step: int, steps: int, views: list[torch.Tensor]) -> torch.Tensor:
        x0, x1 = views
        (z0, p0), (z1, p1) = model(x0), model(x1)
        return 0.5 * (criterion(z0, p1) + criterion(z1, p0))

    return _timed_loop(model, loss_fn, cfg, dataset, warmup, device)


def swav_rate(cfg: dict[str, Any], dataset: Dataset, warmup: int, device: torch.device) -> float:
    """lightly's SwAV (``SwaVProjectionHead``, ``SwaVPrototypes`` normalised every step,
    ``SwaVLoss`` over the 2 high- and the low-resolution crops), the ``method_args`` projector
    sizes, ``prototypes``, ``temperature``, ``epsilon`` and ``sinkhorn_iterations``."""
    from lightly.loss import SwaVLoss
    from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

    class SwaV(nn.Module):
        def __init__(self, depth: int, hidden: int, out: int, prototypes: int) -> None:
            super().__init__()
            self.backbone, dim = _trunk(depth)
            self.projection_head = SwaVProjectionHead(dim, hidden, out)
            self.prototypes = SwaVPrototypes(out, n_prototypes=prototypes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.projection_head(self.backbone(x).flatten(start_dim=1))
            return self.prototypes(nn.functional.normalize(x, dim=1, p=2))

    torch.manual_seed(0)
    args = cfg["method_args"]
    proj = args["projector"]
    if list(args["crops_for_assign"]) != [0, 1] or int(args.get("queue_length", 0)):
        raise ValueError("the lightly SwAV peer assigns codes to the first two crops, without a queue")
    model = SwaV(cfg["backbone"]["depth"], proj["hidden"], proj["out"], int(args["prototypes"]))
    criterion = SwaVLoss(
        temperature=args["temperature"], sinkhorn_iterations=args["sinkhorn_iterations"],
        sinkhorn_epsilon=args["epsilon"],
    )  # fmt: skip

    def loss_fn(step: int, steps: int, views: Sequence[torch.Tensor]) -> torch.Tensor:
        model.prototypes.normalize()
        features = [model(x) for x in views]
        return criterion(features[:2], features[2:])

    return _timed_loop(model, loss_fn, cfg, dataset, warmup, device)


PEERS: dict[str, Callable[[dict[str, Any], Dataset, int, torch.device], float]] = {
    "byol": byol_rate,
    "simclr": simclr_rate,
    "mocov2": mocov2_rate,
    "simsiam": simsiam_rate,
    "swav": swav_rate,
}
