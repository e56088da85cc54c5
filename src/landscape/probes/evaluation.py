"""The one evaluation function: mean loss, and accuracy for a classifier, of a model on data.

Every probe and the training loop call ``evaluate``; none writes its own loop. A loss is any
``loss_fn(output, target)`` that returns the batch's MEAN loss; each batch is weighted by its size, so
the result is the mean over all samples however the data is batched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from landscape.probes.data import BATCH_SIZE, Data, batches, model_device
from landscape.probes.perturb import kept_modes
from landscape.probes.settings import Score

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of class logits (N, C) against integer labels (N,): the default ``loss_fn``."""
    return F.cross_entropy(output, target)


def summed_loss(loss_fn: LossFn, output: Any, target: torch.Tensor) -> torch.Tensor:
    """The batch's per-sample losses summed: ``loss_fn``'s mean times the batch size. The default
    cross-entropy is summed by ``F.cross_entropy(reduction="sum")`` itself (no mean-times-n rounding)."""
    if loss_fn is cross_entropy or loss_fn is F.cross_entropy:
        return F.cross_entropy(output, target, reduction="sum")
    loss = loss_fn(output, target)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError("loss_fn(output, target) must return the batch's mean loss as a scalar tensor")
    return loss * target.shape[0]


def is_classification(output: Any, target: torch.Tensor) -> bool:
    """Class logits (N, C) against integer labels (N,): the case where accuracy means something."""
    integer = not (target.is_floating_point() or target.is_complex() or target.dtype == torch.bool)
    return isinstance(output, torch.Tensor) and output.dim() == 2 and target.dim() == 1 and integer


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: Data,
    batch_size: int = BATCH_SIZE,
    keep_modes: bool = False,
    *,
    loss_fn: LossFn = cross_entropy,
) -> Score:
    """Mean loss and accuracy over ``data`` in eval mode (BN running stats, no dropout), batch by batch in
    order (tensors in batches of ``batch_size``). For a regression (outputs not class logits) ``acc`` is NaN.

    With ``keep_modes`` each module keeps its own train/eval flag (to measure with dropout or BN batch
    statistics on). Every module's train/eval flag is restored afterwards.
    """
    device = model_device(model)
    loss_sum = correct = None
    n, classify = 0, True
    with kept_modes(model):
        if not keep_modes:
            model.eval()
        for x, y in batches(data, batch_size, device):
            output = model(x)
            if loss_sum is None:
                loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
                correct = torch.zeros((), dtype=torch.int64, device=y.device)
            loss_sum += summed_loss(loss_fn, output, y).double()
            classify = classify and is_classification(output, y)
            if classify:
                correct += (output.argmax(dim=1) == y).sum()
            n += len(y)
    if n == 0:
        raise ValueError("evaluate: the data holds no samples")
    return Score(loss=loss_sum.item() / n, acc=correct.item() / n if classify else math.nan)
