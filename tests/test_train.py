"""The fast training loop against a textbook one (the same updates, computed independently), one whole
seeded training run, and the 2 x 2 of train-split accuracies that isolates a negative gap.

`train_epoch` uses the fused optimizer kernels and gathers batches with `index_select`. Here
the reference gathers with plain indexing and applies the Adam / SGD-with-momentum update
rules written out by hand, so the fast path must agree with the published algorithm, not just
with another PyTorch optimizer.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import SMALL_MODELS as SMALL
from conftest import learnable_split
from landscape.probes.evaluation import evaluate
from landscape.study.data import Dataset, Split, batch_indices
from landscape.study.models import MLP, build_model
from landscape.study.params import ModelConfig, TrainParams
from landscape.study.serialize import to_json
from landscape.study.train import (
    loss_slope,
    make_optimizer,
    make_schedule,
    train_epoch,
    train_model,
    train_split_accuracy_modes,
    training_summary,
)

N_IMAGES, BATCH = 100, 32  # 4 batches, the last one short (4 images)
EVAL_BATCH = 64
CPU = torch.device("cpu")


def train_cfg(optimizer: str, lr: float, weight_decay: float) -> TrainParams:
    return TrainParams(
        epochs=1,
        batch_size=BATCH,
        optimizer=optimizer,
        lr=lr,
        momentum=0.9,
        weight_decay=weight_decay,
        schedule="constant",
        target_acc=0.5,
        stop_loss=0.0,
        stop_window=3,
    )


def dataset() -> Split:
    g = torch.Generator().manual_seed(1)
    return Split(torch.randn(N_IMAGES, 1, 28, 28, generator=g), torch.randint(0, 10, (N_IMAGES,), generator=g))


def fresh(name: str) -> nn.Module:
    """A seeded model. A conv bias right before batch norm is frozen: BN subtracts the batch mean,
    so its true gradient is 0 and the computed one is rounding noise, which Adam rescales into
    full-size steps that differ between any two implementations (and never change the output)."""
    torch.manual_seed(0)
    model = build_model(SMALL[name])
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


# --- one training run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset() -> Dataset:
    return Dataset(learnable_split(160, 1), learnable_split(60, 2), learnable_split(40, 3), 0.0, 1.0)


def run_training(name: str, data: Dataset, seed: int, epochs: int = 2):
    cfg = dataclasses.replace(train_cfg("sgd", 0.05, 0.0), epochs=epochs, target_acc=0.5)
    subset = data.train.subset(50, 0)
    return train_model(name, SMALL[name], cfg, seed, data, subset, CPU, EVAL_BATCH, progress=False)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_train_model_returns_the_seeded_initial_weights_and_is_reproducible(tiny_dataset, name):
    run = run_training(name, tiny_dataset, seed=3)
    model, initial, history = run.model, run.initial, run.history
    assert run.diverged is None and run.first_epoch_slope is not None
    torch.manual_seed(3)
    fresh_init = build_model(SMALL[name]).state_dict()
    assert initial.keys() == fresh_init.keys()
    for key, value in fresh_init.items():
        assert torch.equal(initial[key], value), key  # theta_0 of the path probe is the real initialization
    assert any(not torch.equal(model.state_dict()[k], initial[k]) for k in initial if initial[k].is_floating_point())
    assert [r.epoch for r in history] == [1, 2]
    assert not model.training
    again = run_training(name, tiny_dataset, seed=3)
    assert again.history == history
    assert all(torch.equal(again.model.state_dict()[k], v) for k, v in model.state_dict().items())
    assert run_training(name, tiny_dataset, seed=4).history != history


def test_training_summary_measures_gaps_and_epochs_to_target(tiny_dataset):
    data = tiny_dataset
    train_eval = data.train.subset(50, 0)
    cfg = dataclasses.replace(train_cfg("sgd", 0.05, 0.0), epochs=2, target_acc=0.5)
    run = train_model("cnn", SMALL["cnn"], cfg, 0, data, train_eval, CPU, EVAL_BATCH, progress=False)
    model, history = run.model, run.history
    s = training_summary("cnn", SMALL["cnn"], cfg, 0, run, data, train_eval, CPU, EVAL_BATCH, [], None)
    assert (s.variant, s.seed, s.family, s.epochs, s.device) == ("cnn", 0, "cnn", 2, "cpu")
    assert (s.lr, s.batch_size, s.momentum, s.diverged) == (cfg.lr, cfg.batch_size, cfg.momentum, None)
    assert (s.steps, s.stop_loss, s.reached_loss) == (2 * math.ceil(len(data.train) / BATCH), 0.0, None)
    assert s.n_parameters == sum(p.numel() for p in model.parameters())
    for split in ("train", "val", "test"):
        score = evaluate(model, getattr(data, split), EVAL_BATCH)
        assert (getattr(s, split).loss, getattr(s, split).acc) == (score.loss, score.acc)
    assert s.gap == s.train.acc - s.val.acc
    assert s.gap_running == history[-1].train_acc_running - s.val.acc
    assert s.train_acc_running == history[-1].train_acc_running
    assert s.train_acc_modes["dropout_off_bn_running"] == evaluate(model, train_eval, EVAL_BATCH).acc
    val_accs = [r.val_acc for r in history]
    reached = [i + 1 for i, a in enumerate(val_accs) if a >= 0.5]
    expected = (float(reached[0]), False) if reached else (2.0, True)
    assert (s.epochs_to_target.value, s.epochs_to_target.censored) == expected


@pytest.mark.parametrize("window", [1, 2])
def test_a_run_stops_at_the_first_epoch_whose_windowed_train_loss_reaches_stop_loss(tiny_dataset, window):
    """Matched fit: with stop_loss > 0 a run ends after the first epoch whose mean eval-mode train-subset loss over
    the last ``window`` epochs is <= stop_loss, and is the same run as one capped at that epoch."""
    free = run_training("mlp", tiny_dataset, seed=0, epochs=8)
    losses = [r.train_loss for r in free.history]
    means = [sum(losses[e + 1 - window : e + 1]) / window for e in range(window - 1, len(losses))]
    target = sorted(means)[len(means) // 2]  # reached part-way through the 8 epochs
    stop = next(e + window for e, m in enumerate(means) if m <= target)  # 1-based epoch
    cfg = dataclasses.replace(train_cfg("sgd", 0.05, 0.0), epochs=8, stop_loss=target, stop_window=window)
    subset = tiny_dataset.train.subset(50, 0)
    run = train_model("mlp", SMALL["mlp"], cfg, 0, tiny_dataset, subset, CPU, EVAL_BATCH, progress=False)
    assert run.history == free.history[:stop] and run.reached_loss is True
    assert run.steps == stop * math.ceil(len(tiny_dataset.train) / BATCH)
    capped = dataclasses.replace(cfg, stop_loss=min(losses) / 10)  # never reached: trains to the cap, censored
    never = train_model("mlp", SMALL["mlp"], capped, 0, tiny_dataset, subset, CPU, EVAL_BATCH, progress=False)
    assert never.history == free.history and never.reached_loss is False
    assert free.reached_loss is None  # stop_loss 0: no target
    for r, c, epochs, reached in ((run, cfg, stop, True), (never, capped, 8, False)):
        for target_acc in (c.target_acc, 0.999):  # 0.999: never reached, so censored
            c = dataclasses.replace(c, target_acc=target_acc)
            s = training_summary("mlp", SMALL["mlp"], c, 0, r, tiny_dataset, subset, CPU, EVAL_BATCH, [], None)
            assert (s.epochs, s.steps, s.stop_loss, s.reached_loss) == (epochs, r.steps, c.stop_loss, reached)
            # epochs to the accuracy target: censored where the run stopped (at stop_loss or the cap)
            hits = [e.epoch for e in r.history if e.val_acc >= target_acc]
            expected = (float(hits[0]), False) if hits else (float(epochs), True)
            assert (s.epochs_to_target.value, s.epochs_to_target.censored) == expected


def test_a_diverging_run_ends_cleanly_with_the_last_finite_weights(tiny_dataset):
    """lr 1e8 makes the loss NaN within epoch 1: the run stops there, says where, and hands back the initial
    weights (the last finite ones) with an empty history; its summary holds no NaN and a censored target."""
    cfg = dataclasses.replace(train_cfg("sgd", 1e8, 0.0), epochs=3)
    run = train_model("mlp", SMALL["mlp"], cfg, 0, tiny_dataset, tiny_dataset.train, CPU, EVAL_BATCH, progress=False)
    assert run.diverged is not None and run.diverged.epoch == 1 and run.diverged.batch >= 1
    assert run.diverged.loss in ("nan", "inf", "-inf")
    assert run.history == [] and run.first_epoch_slope is None
    assert all(torch.equal(run.model.state_dict()[k], v) for k, v in run.initial.items())
    s = training_summary("mlp", SMALL["mlp"], cfg, 0, run, tiny_dataset, tiny_dataset.train, CPU, EVAL_BATCH, [], None)
    assert (s.epochs_to_target.value, s.epochs_to_target.censored) == (3.0, True)
    assert s.gap_running is None and s.train_acc_running is None
    assert "NaN" not in json.dumps(to_json(s)) and "Infinity" not in json.dumps(to_json(s))


def test_a_run_diverging_later_keeps_the_last_finite_epoch(tiny_dataset):
    """Diverging in epoch 2 (huge lr from epoch 2 on) keeps epoch 1's weights and history."""
    cfg = dataclasses.replace(train_cfg("sgd", 0.05, 0.0), epochs=3)
    epoch1 = {}

    def boost(epoch: int, model: nn.Module, lr: float) -> None:
        if epoch == 1:
            epoch1.update({k: v.clone() for k, v in model.state_dict().items()})
            for group in optimizer_of[0].param_groups:
                group["lr"] = 1e12

    optimizer_of = []
    original = torch.optim.SGD.__init__

    def capture(self, *args, **kwargs):
        original(self, *args, **kwargs)
        optimizer_of.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.SGD, "__init__", capture)
        run = train_model(
            "mlp",
            SMALL["mlp"],
            cfg,
            0,
            tiny_dataset,
            tiny_dataset.train,
            CPU,
            EVAL_BATCH,
            progress=False,
            observe=boost,
        )
    assert run.diverged is not None and run.diverged.epoch == 2
    assert [r.epoch for r in run.history] == [1]
    assert all(torch.equal(run.model.state_dict()[k], v) for k, v in epoch1.items())


def test_loss_slope_is_the_least_squares_slope():
    t = (torch.arange(8, dtype=torch.float64) + 0.5) / 8
    assert loss_slope(3.0 - 2.0 * t) == pytest.approx(-2.0, abs=1e-12)
    assert loss_slope(torch.tensor([1.0])) == 0.0


# --- the train-split accuracy in the 2 x 2 of {dropout on, off} x {BN batch, running statistics} --


MODES = ("dropout_on_bn_batch", "dropout_on_bn_running", "dropout_off_bn_batch", "dropout_off_bn_running")


def trained_like(model: nn.Module, seed: int) -> nn.Module:
    """Weights off their init and BN running statistics away from their defaults, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        model.train()(learnable_split(64, seed).x)
    return model.eval()


def snapshot(model: nn.Module) -> tuple[dict, list[bool], list]:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)],
    )


def assert_unchanged(model: nn.Module, before) -> None:
    state, flags, momenta = snapshot(model)
    assert state.keys() == before[0].keys()
    for key, value in before[0].items():
        assert torch.equal(state[key], value), key  # BN running statistics and num_batches_tracked included
    assert (flags, momenta) == (before[1], before[2])


@pytest.mark.parametrize("training", [False, True])
def test_without_bn_or_dropout_all_four_cells_equal_eval_accuracy(tiny_dataset, training):
    torch.manual_seed(0)
    model = trained_like(MLP([16, 8]), 1).train(training)
    split = tiny_dataset.val
    before = snapshot(model)
    modes = train_split_accuracy_modes(model, split, batch_size=16)
    assert sorted(modes) == sorted(MODES)
    expected = evaluate(model, split, 64).acc
    assert 0 < expected < 1
    assert all(acc == expected for acc in modes.values()), modes
    assert_unchanged(model, before)


def batch_statistics_accuracy(model: nn.Module, split: Split, batch_size: int) -> float:
    """Dropout off, every BN layer normalizing with its batch's statistics: by hand on a copy, batches in order."""
    other = copy.deepcopy(model).eval()
    for m in other.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    hits = 0
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            x, y = split.x[start : start + batch_size], split.y[start : start + batch_size]
            hits += int((other(x).argmax(1) == y).sum())
    return hits / len(split)


@pytest.mark.parametrize(
    "cfg",
    [SMALL["cnn"], ModelConfig("mlp", [16, 8], 0, True, [0.25, 0.5]), ModelConfig("cnn", [4, 8], 16, True, [0, 0])],
    ids=["cnn", "mlp_bn_dropout", "cnn_nodropout"],
)
@pytest.mark.parametrize("training", [False, True])
def test_with_bn_the_running_cell_is_evaluate_and_buffers_are_untouched(tiny_dataset, cfg, training):
    torch.manual_seed(0)
    model = trained_like(build_model(cfg), 2).train(training)
    split, batch = tiny_dataset.val, 16  # 60 images: batches of 16, 16, 16, 12
    before = snapshot(model)
    torch.manual_seed(5)
    modes = train_split_accuracy_modes(model, split, batch_size=batch)
    assert_unchanged(model, before)
    assert modes["dropout_off_bn_running"] == evaluate(model, split, 64).acc
    assert modes["dropout_off_bn_batch"] == batch_statistics_accuracy(model, split, batch)
    assert modes["dropout_off_bn_batch"] != modes["dropout_off_bn_running"]  # the BN factor is visible here
    if cfg.dropout == [0, 0]:
        assert modes["dropout_on_bn_batch"] == modes["dropout_off_bn_batch"]
        assert modes["dropout_on_bn_running"] == modes["dropout_off_bn_running"]
    torch.manual_seed(5)
    assert train_split_accuracy_modes(model, split, batch_size=batch) == modes  # dropout masks from the torch seed
