"""Model A (plain MLP) and Model B (small CNN with batch norm and dropout), and their checkpoints.

A checkpoint is ``{"name", "config", "training", "state_dict"}``: the config says how the
network is built, so a saved model can be rebuilt without params.yaml, and ``training`` how its
weights were made (the ``train`` section and the training seed, see ``training_record``). Loading
uses ``weights_only=True``: a checkpoint can hold tensors and plain containers only.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import torch
from torch import nn

from landscape.errors import StudyError
from landscape.study.atomic import write_via
from landscape.study.params import ModelConfig, TrainParams

IMAGE_SIDE = 28
N_CLASSES = 10


class MLP(nn.Module):
    """784 -> hidden... -> 10 with ReLU. Model A has neither BN nor dropout; the factorial's MLP variants put
    BN after each hidden linear layer (before ReLU) and dropout as Model B does: ``dropout[0]`` after the
    first hidden layer, ``dropout[1]`` after the last one."""

    def __init__(self, hidden: list[int], bn: bool = False, dropout: tuple[float, float] = (0.0, 0.0)):
        super().__init__()
        widths = [IMAGE_SIDE * IMAGE_SIDE, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (w_in, w_out) in enumerate(zip(widths, widths[1:], strict=False)):
            layers += [nn.Linear(w_in, w_out), *([nn.BatchNorm1d(w_out)] if bn else []), nn.ReLU()]
            rate = dropout[1] if i == len(hidden) - 1 else dropout[0] if i == 0 else 0.0
            if rate > 0:
                layers.append(nn.Dropout(rate))
        layers.append(nn.Linear(widths[-1], N_CLASSES))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Conv blocks (conv3x3 [+ BN] + ReLU + max-pool 2), dropout, fc hidden layer, dropout, 10 outputs.

    Rewrites make it cheaper without changing the function: each block pools before its ReLU
    (max commutes with the monotone ReLU, so the output is bit-identical, from a quarter of the
    elements); without autograd, pooling takes strided maxima (`max_pool_2x2`, also exact); and a
    batch-norm layer in eval mode is folded into its convolution (`conv_bn`): the same affine map
    up to float rounding, one pass fewer over the activations. Without BN the block holds an
    ``nn.Identity`` in BN's place.
    """

    BLOCK = 4  # modules per conv block in ``features``: conv, BN (or Identity), max-pool, ReLU

    def __init__(self, channels: list[int], fc: int, bn: bool = True, dropout: tuple[float, float] = (0.25, 0.5)):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            blocks += [
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
                nn.BatchNorm2d(c_out) if bn else nn.Identity(),
                nn.MaxPool2d(2),
                nn.ReLU(),
            ]
            c_in = c_out
        side = IMAGE_SIDE // 2 ** len(channels)
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout[0]),
            nn.Flatten(),
            nn.Linear(c_in * side * side, fc),
            nn.ReLU(),
            nn.Dropout(dropout[1]),
            nn.Linear(fc, N_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self.features)
        for i in range(0, len(layers), self.BLOCK):
            conv, bn, pool, relu = layers[i : i + self.BLOCK]
            y = conv_bn(conv, bn, x)
            x = relu(pool(y) if torch.is_grad_enabled() else max_pool_2x2(y))
        return self.classifier(x)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``MaxPool2d(2)`` where no backward pass follows: two elementwise maxima of strided views.

    Exact (a maximum involves no rounding; NaN propagates as in ``max_pool2d``), and it skips the
    argmax indices that ``max_pool2d`` computes for a backward pass. An odd last row or column is
    dropped, as ``MaxPool2d(2)`` does.
    """
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    x = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(x[..., 0::2], x[..., 1::2])


def conv_bn(conv: nn.Conv2d, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``. With BN in eval mode, one convolution whose weights and bias have BN's
    running statistics and affine parameters folded in: equal up to float rounding. In train mode
    (training, or recalibrating BN statistics) BN runs as usual on the batch statistics.
    """
    if not isinstance(bn, nn.BatchNorm2d) or bn.training:
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1), (bias - bn.running_mean) * scale + bn.bias)


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialized network (uses the global torch RNG: seed before calling)."""
    if cfg.family not in ("mlp", "cnn"):
        raise StudyError(f"unknown model family '{cfg.family}'; the families are 'mlp' and 'cnn'.")
    rates = (cfg.dropout[0], cfg.dropout[1])
    if cfg.family == "cnn":
        return CNN(list(cfg.widths), cfg.fc, cfg.bn, rates)
    return MLP(list(cfg.widths), cfg.bn, rates)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_record(train: TrainParams, seed: int) -> dict:
    """The training conditions a checkpoint records beside its config: the ``train`` section and the seed."""
    return {"train": dataclasses.asdict(train), "seed": seed}


def save_checkpoint(path: str | Path, name: str, cfg: ModelConfig, model: nn.Module, training: dict) -> Path:
    """Write model weights, its config and its ``training`` conditions (plain values, ``training_record``)
    atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"name": name, "config": dataclasses.asdict(cfg), "training": training, "state_dict": state}

    def save(p: Path) -> None:
        # Through a file object: torch.save names the zip's inner folder after a *path's* stem, which here is
        # the random temp name, so equal checkpoints would differ in bytes (and in their DVC hash).
        with open(p, "wb") as f:
            torch.save(payload, f)

    return write_via(path, save)


def load_checkpoint(path: str | Path, expected: ModelConfig | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model stored at ``path`` and return it with its training conditions (``{}`` if it
    records none); refuse anything but tensors and plain containers.

    If ``expected`` is given, the stored config must equal it.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"checkpoint {path} does not exist. Train it first: dvc repro")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # torch names the refused class as "GLOBAL module.name"
            found = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), "a pickled object")
            raise StudyError(
                f"refusing to load {path}: it holds objects other than tensors and plain containers "
                f"({found}). Only load checkpoints this pipeline wrote."
            ) from None
        raise StudyError(f"cannot read checkpoint {path}: it is truncated or not a checkpoint. Retrain it.") from None
    except Exception as e:  # torch.load raises many types for garbage input (KeyError, RuntimeError, ...)
        raise StudyError(
            f"cannot read checkpoint {path} ({type(e).__name__}); it is truncated or not a checkpoint. Retrain it."
        ) from None
    if not isinstance(payload, dict) or not {"name", "config", "state_dict"} <= payload.keys():
        raise StudyError(f"{path} is not a checkpoint written by this pipeline (missing name/config/state_dict).")
    name = payload["name"]
    try:
        cfg = ModelConfig(**payload["config"])
    except TypeError as e:
        raise StudyError(f"{path}: stored config {payload['config']} does not fit model '{name}' ({e}).") from None
    if expected is not None and cfg != expected:
        raise StudyError(
            f"{path} was trained with {name} config {dataclasses.asdict(cfg)}, "
            f"but params.yaml asks for {dataclasses.asdict(expected)}. Retrain it: "
            f"dvc repro pipeline/train/dvc.yaml:train_{cfg.family}"
        )
    try:
        model = build_model(cfg)
    except (StudyError, TypeError, ValueError, IndexError) as e:
        raise StudyError(f"{path}: stored config {payload['config']} does not build a model ({e}).") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise StudyError(f"{path}: weights do not fit config {dataclasses.asdict(cfg)}: {e}") from None
    return model, payload.get("training", {})
