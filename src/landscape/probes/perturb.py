"""Set a model's weights to theta0 + scale * delta in place, and put them back exactly.

No module is deep-copied: the original parameter and buffer values are cloned
once, each perturbation is computed from them (so errors never accumulate),
and ``restored`` writes them back bit for bit, even if the probe fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from landscape.probes.data import Data, batches, model_device


class Perturbation:
    """Handle yielded by ``restored``: moves ``model`` to points theta0 + scale * delta."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = list(model.parameters())
        self.origin = [p.detach().clone() for p in self.params]
        self.buffers = list(model.buffers())
        self.buffer_origin = [b.detach().clone() for b in self.buffers]

    @torch.no_grad()
    def set(self, delta: list[torch.Tensor], scale: float) -> None:
        """Weights <- theta0 + scale * delta; buffers (BN running statistics) <- their originals."""
        for p, p0, d in zip(self.params, self.origin, delta, strict=True):
            p.copy_(p0).add_(d, alpha=scale)
        for b, b0 in zip(self.buffers, self.buffer_origin, strict=True):
            b.copy_(b0)

    @torch.no_grad()
    def reset(self) -> None:
        for p, p0 in zip(self.params, self.origin, strict=True):
            p.copy_(p0)
        for b, b0 in zip(self.buffers, self.buffer_origin, strict=True):
            b.copy_(b0)


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Within the block modules may switch between train and eval; afterwards each has its own flag back."""
    modules = list(model.modules())
    flags = [m.training for m in modules]
    try:
        yield
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.training = flag


@contextmanager
def restored(model: nn.Module) -> Iterator[Perturbation]:
    """Within the block the weights, buffers and train/eval flags may change; afterwards they equal the
    originals exactly."""
    with kept_modes(model):
        handle = Perturbation(model)
        try:
            yield handle
        finally:
            handle.reset()


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, data: Data, batch_size: int) -> None:
    """Recompute BN running statistics over the inputs of ``data``, as swa_utils.update_bn does.

    Each batch's statistics are weighted by its size, so the running mean is the exact
    mean over ``data`` even when the last batch is short. Only BN layers run in train
    mode, so dropout does not touch the statistics. Leaves the model in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    model.eval()
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.train()
        seen = 0
        for x, y in batches(data, batch_size, model_device(model)):
            seen += len(y)
            for bn in bns:
                bn.momentum = len(y) / seen  # running <- running + (n_b / N) (batch - running)
            model(x)
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        model.eval()
