"""The fast training loop against a textbook one: the same updates, computed independently.

`train_epoch` uses the fused optimizer kernels and gathers batches with `index_select`. Here
the reference gathers with plain indexing and applies the Adam / SGD-with-momentum update
rules written out by hand, so the fast path must agree with the published algorithm, not just
with another PyTorch optimizer.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import SMALL_MODELS as SMALL
from landscape.data import Split, batch_indices
from landscape.models import build_model
from landscape.params import TrainParams
from landscape.train import make_optimizer, make_schedule, train_epoch

N_IMAGES, BATCH = 100, 32  # 4 batches, the last one short (4 images)


def train_cfg(optimizer: str, lr: float, weight_decay: float) -> TrainParams:
    return TrainParams(
        seed=0,
        epochs=1,
        batch_size=BATCH,
        optimizer=optimizer,
        lr=lr,
        momentum=0.9,
        weight_decay=weight_decay,
        schedule="constant",
        device="cpu",
        eval_batch_size=64,
    )


def dataset() -> Split:
    g = torch.Generator().manual_seed(1)
    return Split(torch.randn(N_IMAGES, 1, 28, 28, generator=g), torch.randint(0, 10, (N_IMAGES,), generator=g))


def fresh(name: str) -> nn.Module:
    """A seeded model. A conv bias right before batch norm is frozen: BN subtracts the batch mean,
    so its true gradient is 0 and the computed one is rounding noise, which Adam rescales into
    full-size steps that differ between any two implementations (and never change the output)."""
    torch.manual_seed(0)
    model = build_model(name, SMALL[name])
    for conv, bn in zip(model.modules(), list(model.modules())[1:], strict=False):
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            conv.bias.requires_grad_(False)
    return model


def textbook_epoch(model: nn.Module, cfg: TrainParams, split: Split, batches: list[torch.Tensor]):
    """Adam (Kingma & Ba, L2 weight decay added to the gradient) or heavy-ball SGD, by hand."""
    params = list(model.parameters())
    state = [{"m": torch.zeros_like(p), "v": torch.zeros_like(p), "buf": None} for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    losses, hits = [], 0
    model.train()
    for t, idx in enumerate(batches, start=1):
        x, y = split.x[idx], split.y[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        losses.append(loss.item() * len(idx))
        hits += int((logits.argmax(1) == y).sum())
        model.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p, s in zip(params, state, strict=True):
                if p.grad is None:  # frozen
                    continue
                g = p.grad + cfg.weight_decay * p
                if cfg.optimizer == "adam":
                    s["m"] = beta1 * s["m"] + (1 - beta1) * g
                    s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
                    m_hat = s["m"] / (1 - beta1**t)
                    v_hat = s["v"] / (1 - beta2**t)
                    p -= cfg.lr * m_hat / (v_hat.sqrt() + eps)
                else:
                    s["buf"] = g.clone() if s["buf"] is None else cfg.momentum * s["buf"] + g
                    p -= cfg.lr * s["buf"]
    seen = sum(len(b) for b in batches)
    return sum(losses) / seen, hits / seen


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize(
    ("optimizer", "lr", "weight_decay"), [("adam", 1e-3, 0.0), ("adam", 1e-3, 0.01), ("sgd", 0.05, 0.001)]
)
def test_train_epoch_matches_textbook_update(name, optimizer, lr, weight_decay):
    cfg = train_cfg(optimizer, lr, weight_decay)
    split = dataset()
    batches = batch_indices(N_IMAGES, BATCH, torch.Generator().manual_seed(2))
    assert [len(b) for b in batches] == [32, 32, 32, 4]

    ours = fresh(name)
    opt = make_optimizer(ours, cfg)
    torch.manual_seed(3)  # the same dropout masks in both loops
    loss, acc = train_epoch(ours, opt, make_schedule(opt, cfg, len(batches)), split, batches, "test", progress=False)

    reference = fresh(name)
    torch.manual_seed(3)
    ref_loss, ref_acc = textbook_epoch(reference, cfg, split, batches)

    moved = max((p - q).abs().max().item() for p, q in zip(ours.parameters(), fresh(name).parameters(), strict=True))
    assert moved > 1e-3  # far above the tolerance below: the comparison is not trivially true
    for (key, p), q in zip(ours.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
    for b, c in zip(ours.buffers(), reference.buffers(), strict=True):  # BN running statistics
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6)
    assert math.isclose(loss, ref_loss, rel_tol=1e-6)
    assert acc == ref_acc
