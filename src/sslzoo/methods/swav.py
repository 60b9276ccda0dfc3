"""SwAV: predict the cluster assignment (code) of one view from the other views.

Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", NeurIPS 2020, as configured by MMSelfSup 0.x
``swav_resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96`` (mmselfsup/models/algorithms/swav.py,
mmselfsup/models/necks/swav_neck.py, mmselfsup/models/heads/swav_head.py,
mmselfsup/utils/distributed_sinkhorn.py, mmselfsup/core/hooks/swav_hook.py, the
``frozen_layers_cfg`` of mmselfsup/core/hooks/optimizer_hook.py ``DistOptimizerHook``,
configs/selfsup/_base_/models/swav.py, configs/selfsup/_base_/datasets/imagenet_swav_mcrop-2-6.py):

- ``V`` multi-crop views (:mod:`sslzoo.data.multicrop`; 2 x 224 + 6 x 96 px), one backbone pass
  per run of equal resolution -> global avgpool -> projector ``C -> 2048 (BN, ReLU) -> 128``
  (biases on both fcs) -> L2-normalised ``z [V B, 128]``;
- prototypes: a bias-free linear layer ``128 -> K`` (3000) whose rows are L2-normalised at every
  forward (in place, no gradient), so the scores ``s = z W^T [V B, K]`` are cosines;
- codes: for each view ``i`` of ``crops_for_assign`` (0 and 1), ``q_i`` = :func:`sinkhorn` of
  its detached scores (3 iterations, epsilon 0.05), preceded by the scores of the queue of
  past ``z`` of that view when the queue is full, of which the batch's rows are kept;
- loss ``1/|A| sum_i 1/(V-1) sum_{v != i} -mean_b sum_k q_i log softmax(s_v / T)`` (T 0.1);
- queue (``queue_length`` rows per assigned view, ``queue_start_epoch``): from that epoch on
  each step pushes the batch's ``z`` of the assigned views, newest first; the queue's scores join
  the Sinkhorn input once every row holds an embedding (the reference's check that its last row
  is non-zero). Before that epoch it stays empty and unused;
- the prototypes' gradient is dropped for the first ``freeze_prototypes_iters`` optimiser steps
  (:meth:`SwAV.before_step`): they move neither by the loss nor by weight decay or momentum.

State: the queue, the number of its filled rows and the current epoch are buffers, so a resumed
run carries on with the same queue. Several processes: each keeps a queue of
``queue_length / processes`` rows of its own embeddings, as the reference does; the buffer holds
every process's block (``[A, processes, rows, D]`` flattened to ``[A, queue_length, D]``), each
step gathering the new embeddings of all processes, so that the buffer is the same everywhere
(DDP broadcasts rank 0's buffers) and rank 0's checkpoint resumes every process. The Sinkhorn
runs on each process's own scores: mmselfsup 0.x all-reduces only the total sum (and the row
sums only when one is zero), which cancels out of the normalisations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sslzoo.config import section_with_defaults
from sslzoo.data.multicrop import MultiCrop, crop_groups, multicrop_views, resolution_groups
from sslzoo.errors import SslzooError
from sslzoo.models.backbone import DEFAULT_CONV_INIT, ResNetBackbone, backbone_args
from sslzoo.models.mlp import MLP

# method_args keys -> the reference's values (configs/selfsup/_base_/models/swav.py and the
# SwAVHook / frozen_layers_cfg of swav_resnet50_8xb32-mcrop-2-6-coslr-200e_in1k-224-96.py)
METHOD_KEYS: dict[str, Any] = {
    "projector": {},
    "prototypes": 3000,
    "temperature": 0.1,
    "epsilon": 0.05,
    "sinkhorn_iterations": 3,
    "crops_for_assign": [0, 1],
    "queue_length": 3840,
    "queue_start_epoch": 15,
    "freeze_prototypes_iters": 5005,
}
PROJECTOR_KEYS: dict[str, Any] = {"hidden": 2048, "out": 128}


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, iterations: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """Soft assignments of ``N`` samples to ``K`` prototypes with equal shares of the prototypes.

    SwAV's Sinkhorn-Knopp (Caron et al. 2020, eq. 3; mmselfsup 0.x
    mmselfsup/utils/distributed_sinkhorn.py, one process): ``Q = exp(scores / epsilon)^T`` [K, N]
    scaled to sum 1, then ``iterations`` times: every row to sum ``1/K`` (a tiny constant is
    added first if a row sums to zero), every column to ``1/N``; finally ``N Q``.

    Args:
        scores: ``[N, K]`` sample-prototype cosines (computed in float32).
        iterations: Sinkhorn iterations.
        epsilon: the entropy regularisation (a temperature on the scores).

    Returns:
        ``[N, K]`` codes, float32; each row sums to 1.
    """
    q = torch.exp(scores.float() / epsilon).t()  # [K, N]
    q /= q.sum()
    k, n = q.shape
    for _ in range(iterations):
        rows = q.sum(dim=1, keepdim=True)
        if bool((rows == 0).any()):
            q += 1e-12
            rows = q.sum(dim=1, keepdim=True)
        q /= rows
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    return (q * n).t()


def swapped_prediction_loss(
    scores: torch.Tensor, codes: Sequence[torch.Tensor], assign: Sequence[int], views: int, temperature: float
) -> torch.Tensor:
    """SwAV's loss: each assigned view's codes predicted from every other view's scores.

    Args:
        scores: ``[V B, K]`` prototype scores, view ``v``'s batch in rows ``v B .. (v + 1) B``.
        codes: ``q_i [B, K]`` per assigned view (no gradient).
        assign: the assigned views (``crops_for_assign``), one per code.
        views: ``V``.
        temperature: ``T`` of the softmax.

    Returns:
        ``1/|A| sum_i 1/(V-1) sum_{v != i} -mean_b sum_k q_i[b, k] log softmax(s_v[b] / T)_k``
        (mmselfsup 0.x mmselfsup/models/heads/swav_head.py ``SwAVHead.forward``), float32.
    """
    batch = scores.shape[0] // views
    log_p = F.log_softmax(scores.float().view(views, batch, -1) / temperature, dim=2)  # [V, B, K]
    loss = scores.new_zeros((), dtype=torch.float32)
    for q, crop in zip(codes, assign, strict=True):
        others = [v for v in range(views) if v != crop]
        loss = loss - (q.unsqueeze(0) * log_p[others]).sum(dim=2).mean(dim=1).sum() / (views - 1)
    return loss / len(assign)


def _world() -> tuple[int, int]:
    """``(rank, processes)`` of the running process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class SwAV(nn.Module):
    """Backbone + projector + prototypes, the Sinkhorn codes, the queue and the frozen start.

    Args:
        depth: ResNet depth.
        zero_init_residual: torchvision's option for the backbone (True in the reference).
        conv_init: the backbone's conv init mode (``backbone.conv_init``).
        views: views per sample (``V``, the sum of the multi-crop counts).
        batch_size: samples per process and forward (``train.batch_size``): the queue's unit.
        epochs: ``train.epochs``, to tell the epoch from :meth:`after_step`'s progress.
        projector: ``hidden`` and ``out`` of the projector ``C -> hidden -> out``.
        prototypes: ``K``.
        temperature, epsilon, sinkhorn_iterations: of the loss and of :func:`sinkhorn`.
        crops_for_assign: the views whose codes are predicted (the high-resolution ones).
        queue_length: queue rows per assigned view over all processes (0: no queue); a
            multiple of ``batch_size`` x processes.
        queue_start_epoch: the 0-based epoch from which the queue is filled (the reference's
            ``epoch_queue_starts``: ``runner.epoch >= 15``, the 16th epoch).
        freeze_prototypes_iters: optimiser steps at the start without prototype updates.
    """

    def __init__(
        self,
        depth: int = 50,
        zero_init_residual: bool = True,
        conv_init: str = DEFAULT_CONV_INIT,
        *,
        views: int = 8,
        batch_size: int = 32,
        epochs: int = 200,
        projector: Mapping[str, Any] | None = None,
        prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        crops_for_assign: Sequence[int] = (0, 1),
        queue_length: int = 3840,
        queue_start_epoch: int = 15,
        freeze_prototypes_iters: int = 5005,
    ) -> None:
        super().__init__()
        projector = section_with_defaults(projector, PROJECTOR_KEYS, "method_args.projector")
        assign = [int(v) for v in crops_for_assign]
        if (
            views < 2
            or not assign
            or len(set(assign)) != len(assign)
            or not all(0 <= v < views for v in assign)
        ):
            raise SslzooError(
                f"model config method_args.crops_for_assign {list(crops_for_assign)}: distinct views "
                f"among the {views} views of views.crops (at least two views)"
            )
        if prototypes < 1 or temperature <= 0 or epsilon <= 0 or sinkhorn_iterations < 1:
            raise SslzooError(
                "model config method_args: prototypes and sinkhorn_iterations must be at least 1, "
                "temperature and epsilon positive"
            )
        _, processes = _world()
        if queue_length < 0 or queue_length % (batch_size * processes):
            raise SslzooError(
                f"model config method_args.queue_length {queue_length}: must be a multiple of "
                f"train.batch_size x processes = {batch_size} x {processes} (or 0 for no queue)"
            )
        self.backbone = ResNetBackbone(depth, zero_init_residual=zero_init_residual, conv_init=conv_init)
        out = int(projector["out"])
        self.projector = MLP(
            self.backbone.out_channels, hidden=int(projector["hidden"]), out=out, last_bias=True
        )
        self.prototypes = nn.Linear(out, int(prototypes), bias=False)
        self.num_views, self.epochs = int(views), int(epochs)
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.crops_for_assign = assign
        self.queue_start_epoch = int(queue_start_epoch)
        self.freeze_prototypes_iters = int(freeze_prototypes_iters)
        self.register_buffer("queue", torch.zeros(len(assign), int(queue_length), out))
        self.register_buffer("queue_rows", torch.zeros((), dtype=torch.int64))  # filled rows per process
        self.register_buffer("epoch", torch.zeros((), dtype=torch.int64))  # the epoch being trained

    @classmethod
    def from_config(cls, cfg: dict) -> SwAV:
        """Build from a model config: ``backbone``, ``method_args`` (:data:`METHOD_KEYS`), the
        view count of ``views.crops``, ``train.batch_size`` and ``train.epochs``."""
        args = section_with_defaults(cfg.get("method_args"), METHOD_KEYS, "method_args")
        train = cfg.get("train", {})
        groups, _ = crop_groups(cfg.get("views"))
        return cls(
            **backbone_args(cfg),
            views=sum(int(g["count"]) for g in groups),
            batch_size=int(train.get("batch_size", 32)),
            epochs=int(train.get("epochs", 200)),
            **args,
        )

    @staticmethod
    def views(cfg: dict) -> MultiCrop:
        """The multi-crop views of ``cfg["views"]`` (:data:`~sslzoo.data.multicrop.MULTICROP_KEYS`)."""
        return multicrop_views(cfg.get("views"))

    # ---- queue

    def queue_block(self) -> torch.Tensor:
        """This process's queue ``[A, rows, D]`` (a view into the buffer; newest row first)."""
        rank, processes = _world()
        blocks = self.queue.view(self.queue.shape[0], processes, -1, self.queue.shape[2])
        return blocks[:, rank]

    def queue_in_use(self) -> bool:
        """The queue joins the Sinkhorn input: its epoch has come and every row is filled."""
        rows = self.queue.shape[1] // _world()[1]
        return rows > 0 and int(self.epoch) >= self.queue_start_epoch and int(self.queue_rows) >= rows

    @torch.no_grad()
    def push(self, embeddings: torch.Tensor) -> None:
        """Put ``embeddings [A, B, D]`` (this process's batch of each assigned view) at the front
        of every process's queue block, gathered from all processes; the oldest rows drop out."""
        _, processes = _world()
        if processes > 1:
            gathered = [torch.empty_like(embeddings) for _ in range(processes)]
            dist.all_gather(gathered, embeddings.contiguous())
            new = torch.stack(gathered, dim=1)  # [A, P, B, D]
        else:
            new = embeddings.unsqueeze(1)
        blocks = self.queue.view(self.queue.shape[0], processes, -1, self.queue.shape[2])
        batch, rows = new.shape[2], blocks.shape[2]
        if batch >= rows:
            blocks.copy_(new[:, :, :rows].to(blocks.dtype))
        else:
            blocks[:, :, batch:] = blocks[:, :, :-batch].clone()
            blocks[:, :, :batch] = new.to(blocks.dtype)
        self.queue_rows.fill_(min(int(self.queue_rows) + batch, rows))

    # ---- training

    def forward(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The swapped-prediction loss of one multi-crop batch.

        Args:
            batch: ``V`` views ``[B, 3, S_v, S_v]``, the collated :class:`MultiCrop`.

        Returns:
            ``loss`` (:func:`swapped_prediction_loss`) and ``queue_used`` (1 when the queue
            joined the codes of this batch, else 0).
        """
        crops = list(batch)
        if len(crops) != self.num_views:
            raise SslzooError(
                f"SwAV: the batch has {len(crops)} views, the model was built for {self.num_views}"
            )
        size = crops[0].shape[0]
        pooled = [self.backbone(run)[0].mean(dim=(2, 3)) for run in resolution_groups(crops)]
        z = F.normalize(self.projector(torch.cat(pooled)), dim=1)  # [V B, D]
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        scores = self.prototypes(z)  # [V B, K]

        use_queue = self.queue_in_use()
        codes = []
        with torch.no_grad():
            weight = self.prototypes.weight.float()
            for i, crop in enumerate(self.crops_for_assign):
                out = scores[crop * size : (crop + 1) * size].detach().float()
                if use_queue:
                    out = torch.cat([self.queue_block()[i] @ weight.t(), out])
                codes.append(sinkhorn(out, self.sinkhorn_iterations, self.epsilon)[-size:])
            if self.queue.shape[1] > 0 and int(self.epoch) >= self.queue_start_epoch:
                assigned = torch.stack([z[c * size : (c + 1) * size] for c in self.crops_for_assign])
                self.push(assigned.detach().float())
        loss = swapped_prediction_loss(scores, codes, self.crops_for_assign, self.num_views, self.temperature)
        return {"loss": loss, "queue_used": torch.tensor(float(use_queue), device=loss.device)}

    def before_step(self, iteration: int) -> None:
        """Drop the prototypes' gradient while ``iteration`` (steps already taken) is below
        ``freeze_prototypes_iters``: the optimiser then skips them (the reference's
        ``frozen_layers_cfg=dict(prototypes=...)``, which sets ``p.grad = None``)."""
        if iteration < self.freeze_prototypes_iters:
            self.prototypes.weight.grad = None

    def after_step(self, progress: float) -> None:
        """Record the epoch of the next step (``progress`` = finished / total iterations)."""
        self.epoch.fill_(min(math.floor(progress * self.epochs + 1e-9), self.epochs))
