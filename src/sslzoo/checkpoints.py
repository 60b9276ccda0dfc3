"""Backbone extraction and checkpoint format conversion.

Every downstream benchmark reads one format: a plain torchvision ResNet state dict that loads
into ``torchvision.models.resnet{depth}()`` with ``strict=True`` (``fc.*`` present, zeros).
This module produces it from the checkpoints people have:

- our ``results/pretrain/{model}/final.pth``: ``{"state_dict": method.state_dict(), "meta": ...}``;
- MMSelfSup / OpenSelfSup full checkpoints: ``{"state_dict": {"backbone.*", "neck.*", ...}}``
  (or ``{"model": ...}``), possibly saved from DDP with a ``module.`` prefix;
- backbone-only checkpoints (MMSelfSup ``tools/model_converters/extract_backbone_weights.py``
  output ``{"state_dict": {"conv1.weight", ...}}``) and plain torchvision state dicts.

The reverse direction writes MMSelfSup's layout (``backbone.`` prefix) and detectron2's
(the MoCo ``convert-pretrain-to-detectron2.py`` key mapping, PROTOCOLS.md "Detection").
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from sslzoo.errors import SslzooError
from sslzoo.io import atomic_write_bytes
from sslzoo.models.backbone import depth_from_state_dict

StateDict = dict[str, torch.Tensor]

BACKBONE_PREFIX = "backbone."
# the top-level keys of a torchvision ResNet state dict (fc excluded)
RESNET_TOP_LEVEL = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
NUM_CLASSES = 1000
DETECTRON2_AUTHOR = "sslzoo"


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` on CPU with ``weights_only=True``; a missing or unreadable file raises SslzooError."""
    path = Path(path)
    if not path.is_file():
        raise SslzooError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise SslzooError(
            f"{path}: cannot be read as a tensors-only checkpoint ({type(err).__name__}: {err}); "
            "checkpoints are loaded with weights_only=True; if you trust the file, re-save its weights as "
            "plain tensors: torch.save({'state_dict': torch.load(PATH, weights_only=False)['state_dict']}, NEW_PATH)"
        ) from err


def _key_prefixes(keys: list[str]) -> list[str]:
    """The distinct first components of ``keys`` (``"neck.fc.weight"`` -> ``"neck."``), sorted."""
    return sorted({key.split(".", 1)[0] + ("." if "." in key else "") for key in keys})


def _unwrap_state_dict(obj: Any, source: str) -> StateDict:
    """The tensor dict inside a checkpoint: ``obj["state_dict"]``, ``obj["model"]`` or ``obj`` itself."""
    if not isinstance(obj, dict):
        raise SslzooError(f"{source}: expected a dict checkpoint, found {type(obj).__name__}")
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    tensors = {key: value for key, value in obj.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise SslzooError(
            f"{source}: no tensors found; top-level keys {sorted(map(str, obj))[:20]}; expected a "
            "'state_dict' or 'model' entry holding the weights, or a plain state dict"
        )
    if all(key.startswith("module.") for key in tensors):  # saved from a DDP wrapper
        tensors = {key[len("module.") :]: value for key, value in tensors.items()}
    return tensors


def backbone_state_dict(obj: Any, source: str = "checkpoint") -> StateDict:
    """The ResNet backbone weights (torchvision names, no ``fc.*``) of a loaded checkpoint.

    Keys starting ``backbone.`` are kept with the prefix stripped (MMSelfSup, OpenSelfSup and
    sslzoo full checkpoints). Without such keys the checkpoint must already be a torchvision
    ResNet (backbone-only or plain torchvision); anything else fails naming the key prefixes found.
    ``source`` names the file in error messages.
    """
    tensors = _unwrap_state_dict(obj, source)
    if any(key.startswith(BACKBONE_PREFIX) for key in tensors):
        backbone = {
            key[len(BACKBONE_PREFIX) :]: value
            for key, value in tensors.items()
            if key.startswith(BACKBONE_PREFIX)
        }
    elif "conv1.weight" in tensors and all(
        key.split(".", 1)[0] in (*RESNET_TOP_LEVEL, "fc") for key in tensors
    ):
        backbone = dict(tensors)
    else:
        raise SslzooError(
            f"{source}: no backbone weights found. Key prefixes found: {_key_prefixes(list(tensors))}; "
            f"expected keys starting '{BACKBONE_PREFIX}' (a full MMSelfSup/sslzoo checkpoint) or a "
            f"torchvision ResNet state dict ({', '.join(p + '.*' for p in RESNET_TOP_LEVEL)}). "
            "If the backbone lives under another prefix, re-save it with that prefix renamed to 'backbone.'"
        )
    return {key: value for key, value in backbone.items() if not key.startswith("fc.")}


def _fill_num_batches_tracked(backbone: StateDict) -> None:
    """Add ``num_batches_tracked`` (0) for BN layers saved without it (checkpoints from torch < 1.0)."""
    for key in [k for k in backbone if k.endswith(".running_mean")]:
        tracked = key[: -len("running_mean")] + "num_batches_tracked"
        backbone.setdefault(tracked, torch.tensor(0, dtype=torch.long))


def to_torchvision(backbone: StateDict, source: str = "checkpoint") -> StateDict:
    """Check ``backbone`` against torchvision's ResNet and return it with zero ``fc.*`` added.

    The result loads into ``torchvision.models.resnet{depth}()`` with ``strict=True``; the depth
    is inferred from the blocks per stage. Floating tensors become float32, contiguous copies.

    Raises:
        SslzooError: the keys are not a ResNet, or some are missing/unexpected or have wrong shapes.
    """
    backbone = {key: value for key, value in backbone.items() if not key.startswith("fc.")}
    _fill_num_batches_tracked(backbone)
    try:
        depth = depth_from_state_dict(backbone)
    except ValueError as err:
        raise SslzooError(f"{source}: {err}; expected a ResNet-18/34/50/101/152 backbone") from err
    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=NUM_CLASSES)
    expected = {key: value for key, value in model.state_dict().items() if not key.startswith("fc.")}
    missing = sorted(set(expected) - set(backbone))
    unexpected = sorted(set(backbone) - set(expected))
    if missing or unexpected:
        raise SslzooError(
            f"{source}: does not match torchvision resnet{depth}: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    wrong_shape = [
        f"{key} {tuple(backbone[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if backbone[key].shape != value.shape
    ]
    if wrong_shape:
        raise SslzooError(f"{source}: does not match torchvision resnet{depth}: wrong shapes {wrong_shape}")
    out: StateDict = OrderedDict()
    for key, reference in model.state_dict().items():
        if key.startswith("fc."):
            out[key] = torch.zeros_like(reference)
            continue
        value = backbone[key].detach()
        out[key] = (
            (value.float() if value.is_floating_point() else value.to(reference.dtype)).clone().contiguous()
        )
    model.load_state_dict(out, strict=True)  # the contract: must load strictly
    return out


def save_state_dict(state_dict: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` through an atomic rename (a killed job leaves no truncated file)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def extract_backbone(
    checkpoint_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    fmt: str = "torchvision",
) -> StateDict:
    """Extract the ResNet backbone of any supported checkpoint and write it in format ``fmt``.

    ``fmt``: ``torchvision`` (the backbone contract: strict-loading state dict with zero fc),
    ``mmselfsup`` (``{"state_dict": {"backbone.*"}}``) or ``detectron2`` (pickle, see
    :func:`to_detectron2`). Returns the torchvision state dict.
    """
    source = str(checkpoint_path)
    state_dict = to_torchvision(backbone_state_dict(load_checkpoint(checkpoint_path), source), source)
    if fmt == "torchvision":
        save_state_dict(state_dict, out_path)
    elif fmt == "mmselfsup":
        save_state_dict(to_mmselfsup(state_dict), out_path)
    elif fmt == "detectron2":
        save_detectron2(state_dict, out_path)
    else:
        raise SslzooError(f"unknown backbone format {fmt!r}; use torchvision, mmselfsup or detectron2")
    return state_dict


def random_backbone(depth: int, seed: int, out_path: str | os.PathLike[str]) -> StateDict:
    """A randomly initialised torchvision ResNet (its default init, ``torch.manual_seed(seed)``), fc zeroed.

    This is the ``random`` baseline row of every table.
    """
    if depth not in (18, 34, 50, 101, 152):
        raise SslzooError(f"random backbone: depth {depth} is not one of 18, 34, 50, 101, 152")
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = getattr(torchvision.models, f"resnet{depth}")(num_classes=NUM_CLASSES)
    finally:
        torch.random.set_rng_state(generator_state)
    state_dict = to_torchvision(model.state_dict(), f"random resnet{depth}")
    save_state_dict(state_dict, out_path)
    return state_dict


def load_backbone(path: str | os.PathLike[str]) -> StateDict:
    """Read a backbone file written by :func:`extract_backbone` (torchvision layout)."""
    obj = load_checkpoint(path)
    return to_torchvision(backbone_state_dict(obj, str(path)), str(path))


def to_mmselfsup(backbone_sd: StateDict) -> dict[str, StateDict]:
    """MMSelfSup's backbone layout: ``{"state_dict": {"backbone." + key: tensor}}``, ``fc.*`` dropped."""
    return {
        "state_dict": OrderedDict(
            (BACKBONE_PREFIX + key, value) for key, value in backbone_sd.items() if not key.startswith("fc.")
        )
    }


def detectron2_key(key: str) -> str:
    """torchvision ResNet key -> detectron2 ResNet key (MoCo ``convert-pretrain-to-detectron2.py`` rules).

    Non-``layer`` keys get ``stem.``; ``layerN`` -> ``res{N+1}``; ``bnK`` -> ``convK.norm``;
    ``downsample.0`` / ``downsample.1`` -> ``shortcut`` / ``shortcut.norm``. E.g.
    ``layer1.0.downsample.1.weight`` -> ``res2.0.shortcut.norm.weight``.
    """
    if not key.startswith("layer"):
        key = "stem." + key
    key = re.sub(r"^layer([1-4])\.", lambda match: f"res{int(match.group(1)) + 1}.", key)
    key = re.sub(r"(^|\.)bn([1-3])\.", r"\1conv\2.norm.", key)
    key = key.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
    return key


def torchvision_key(key: str) -> str:
    """detectron2 ResNet key -> torchvision key; the inverse of :func:`detectron2_key`."""
    key = key.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.", ".downsample.0.")
    key = re.sub(r"(^|\.)conv([1-3])\.norm\.", r"\1bn\2.", key)
    key = re.sub(r"^res([2-5])\.", lambda match: f"layer{int(match.group(1)) - 1}.", key)
    if key.startswith("stem."):
        key = key[len("stem.") :]
    return key


def to_detectron2(backbone_sd: StateDict) -> dict[str, Any]:
    """detectron2's pickled checkpoint: ``{"model": {d2 key: numpy array}, "__author__", "matching_heuristics": True}``.

    ``fc.*`` is dropped (detection trains its own heads). PROTOCOLS.md "Detection key conversion".
    """
    model = OrderedDict(
        (detectron2_key(key), value.detach().cpu().numpy())
        for key, value in backbone_sd.items()
        if not key.startswith("fc.")
    )
    return {"model": model, "__author__": DETECTRON2_AUTHOR, "matching_heuristics": True}


def from_detectron2(checkpoint: dict[str, Any]) -> StateDict:
    """The torchvision backbone (no ``fc.*``) of a detectron2 checkpoint dict (or of its ``model`` dict)."""
    model = checkpoint.get("model", checkpoint)
    out: StateDict = OrderedDict()
    for key, value in model.items():
        out[torchvision_key(key)] = torch.as_tensor(np.asarray(value)).clone()
    return out


def save_detectron2(sd: StateDict, path: str | os.PathLike[str]) -> None:
    """Write :func:`to_detectron2` of ``sd`` as a pickle (what ``MODEL.WEIGHTS *.pkl`` expects)."""
    atomic_write_bytes(path, pickle.dumps(to_detectron2(sd), protocol=pickle.HIGHEST_PROTOCOL))
