"""The one evaluation function: mean loss and accuracy of a model on a split.

Every probe and the training loop call ``evaluate``; none writes its own loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from landscape.data import Split


@dataclass(frozen=True)
class Score:
    loss: float  # mean cross-entropy, nats
    acc: float  # fraction correct in [0, 1]


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, batch_size: int, keep_modes: bool = False) -> Score:
    """Mean cross-entropy and accuracy over ``split`` in eval mode (BN running stats, no dropout), in
    batches of ``batch_size`` taken in order.

    With ``keep_modes`` each module keeps its own train/eval flag (to measure with dropout or BN batch
    statistics on). The model's train/eval flag is restored afterwards.
    """
    was_training = model.training
    if not keep_modes:
        model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=split.y.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.y.device)
    for start in range(0, len(split), batch_size):
        x, y = split.x[start : start + batch_size], split.y[start : start + batch_size]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = len(split)
    return Score(loss=loss_sum.item() / n, acc=correct.item() / n)
