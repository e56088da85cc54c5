"""One training run: a seeded model, shared training conditions, a per-epoch history.

Read top to bottom: seed, build, optimizer and schedule, then for each epoch a
shuffled pass over the in-memory training split followed by eval-mode
measurements on a fixed training subset and on validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from landscape.errors import StudyError
from landscape.probes.evaluation import evaluate
from landscape.probes.perturb import restored
from landscape.study.data import Dataset, Split, batch_indices
from landscape.study.device import prepare_for_device
from landscape.study.models import build_model, count_parameters
from landscape.study.params import ModelConfig, TrainParams
from landscape.study.results import Censored, Divergence, EarlySignals, SharpnessPoint, TrainSummary

GPU_CHECK_EVERY = 50  # batches between divergence checks on a GPU, where a check syncs the device

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "train_loss_running",
    "train_acc_running",
    "batch_loss_max",
    "val_loss",
    "val_acc",
    "gap",
]

Observer = Callable[[int, nn.Module, float], None]  # (epoch, model in eval mode, current lr); epoch 0 = initial


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float  # eval mode, fixed training subset
    train_acc: float
    train_loss_running: float  # average while training (dropout on, weights moving)
    train_acc_running: float
    batch_loss_max: float  # the largest single-batch training loss of the epoch (a spike shows here first)
    val_loss: float
    val_acc: float
    gap: float  # train_acc - val_acc, both in eval mode


def make_optimizer(model: nn.Module, cfg: TrainParams) -> torch.optim.Optimizer:
    """SGD or Adam with the fused kernel: one pass over all parameters per step instead of a
    Python loop over tensors, the optimizer's main cost for the small MLP."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainParams, steps: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


class Diverged(StudyError):
    """The training loss stopped being finite at ``batch`` (1-based) of an epoch."""

    def __init__(self, message: str, batch: int, loss: float):
        super().__init__(message)
        self.batch = batch
        self.loss = loss


@dataclass
class TrainingRun:
    """One training run's result. After a divergence, ``model`` holds the weights at the end of the last
    finite epoch (the initial weights if it diverged in epoch 1) and ``history`` stops there."""

    model: nn.Module
    initial: dict[str, torch.Tensor]
    history: list[EpochRecord]
    diverged: Divergence | None
    first_epoch_slope: float | None  # least-squares slope of the per-batch loss over epoch 1, per epoch
    steps: int  # optimizer steps of the finished epochs
    reached_loss: bool | None  # with cfg.stop_loss > 0: whether the run stopped at it before the cap; else None


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    split: Split,
    batches: list[torch.Tensor],
    where: str,
    progress: bool = True,
    batch_losses: list[torch.Tensor] | None = None,
) -> tuple[float, float]:
    """One pass over ``batches`` (index tensors on ``split``'s device); returns the running mean loss and accuracy,
    and appends the per-batch losses (one tensor) to ``batch_losses`` when given.

    Raises ``Diverged`` naming ``where`` and the first bad batch when the loss is not finite:
    after that batch on the CPU, within ``GPU_CHECK_EVERY`` batches on a GPU (where each check
    is a device sync).
    """
    model.train()
    device = split.y.device
    check_every = 1 if device.type == "cpu" else GPU_CHECK_EVERY
    losses = torch.empty(len(batches), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    checked = 0
    bar = tqdm(batches, leave=False, unit="batch", disable=not progress, mininterval=0.5)
    for step, idx in enumerate(bar):
        x, y = split.x.index_select(0, idx), split.y.index_select(0, idx)  # a plain gather, cheaper than x[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        losses[step] = loss.detach()
        if step + 1 - checked >= check_every or step + 1 == len(batches):
            stop_if_diverged(losses[checked : step + 1], checked, optimizer, where)
            checked = step + 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        correct += (logits.detach().argmax(dim=1) == y).sum()
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    if batch_losses is not None:
        batch_losses.append(losses.detach().cpu())
    sizes = [len(b) for b in batches]
    seen = sum(sizes)
    weights = torch.tensor(sizes, dtype=torch.float64, device=device)
    return (losses.double() @ weights).item() / seen, correct.item() / seen


def stop_if_diverged(losses: torch.Tensor, offset: int, optimizer: torch.optim.Optimizer, where: str) -> None:
    """Raise if any of these per-batch losses (batch ``offset`` onwards) is NaN or infinite."""
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return
    bad = int((~finite).nonzero()[0])
    lr = optimizer.param_groups[0]["lr"]
    loss = losses[bad].item()
    raise Diverged(
        f"training {where}, batch {offset + bad + 1} diverged: the loss is {loss} (lr = {lr:g})", offset + bad + 1, loss
    )


def loss_slope(losses: torch.Tensor) -> float:
    """Least-squares slope of per-batch losses against the fraction of the epoch done (loss per epoch)."""
    n = len(losses)
    if n < 2:
        return 0.0
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    y = losses.double()
    tc = t - t.mean()
    return float((tc @ (y - y.mean())) / (tc @ tc))


def train_model(
    name: str,
    model_cfg: ModelConfig,
    cfg: TrainParams,
    seed: int,
    data: Dataset,
    train_eval: Split,
    device: torch.device,
    eval_batch_size: int,
    *,
    progress: bool = True,
    observe: Observer | None = None,
) -> TrainingRun:
    """Train variant ``name`` under ``cfg`` with training seed ``seed``, evaluating after each epoch in batches
    of ``eval_batch_size``. ``observe(epoch, model, lr)`` is called at the initial weights (epoch 0) and after
    each epoch's evaluation, with the model in eval mode; its time is not training time.

    A non-finite training loss (or end-of-epoch evaluation) ends the run cleanly: the weights go back to
    the end of the last finite epoch and ``TrainingRun.diverged`` says where it happened."""
    torch.manual_seed(seed)  # weight init and dropout masks
    order = torch.Generator().manual_seed(seed)  # batch order, independent of the model's draws
    model = prepare_for_device(build_model(model_cfg), device)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    optimizer = make_optimizer(model, cfg)
    schedule = make_schedule(optimizer, cfg, cfg.epochs * steps_per_epoch)
    history: list[EpochRecord] = []
    diverged: Divergence | None = None
    slope: float | None = None
    last_good = initial

    def observed(epoch: int) -> None:
        """``observe`` without touching the training's random streams (dropout masks come from torch's global
        generator: an observation that drew from it would change the run)."""
        if observe is not None:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                observe(epoch, model.eval(), optimizer.param_groups[0]["lr"])

    observed(0)

    epochs = tqdm(range(1, cfg.epochs + 1), desc=f"train {name}", unit="epoch", disable=not progress)
    for epoch in epochs:
        batches = batch_indices(len(data.train), cfg.batch_size, order, device)
        batch_losses: list[torch.Tensor] = []
        where = f"{name} (seed {seed}) at epoch {epoch}"
        try:
            running_loss, running_acc = train_epoch(
                model, optimizer, schedule, data.train, batches, where, progress, batch_losses
            )
        except Diverged as d:
            diverged = Divergence(epoch, d.batch, str(d.loss))
            break
        train_score = evaluate(model, train_eval, eval_batch_size)
        val_score = evaluate(model, data.val, eval_batch_size)
        if not all(math.isfinite(v) for v in (train_score.loss, val_score.loss)):
            diverged = Divergence(
                epoch, 0, str(train_score.loss if not math.isfinite(train_score.loss) else val_score.loss)
            )
            break
        if epoch == 1:
            slope = loss_slope(batch_losses[0])
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_score.loss,
            train_acc=train_score.acc,
            train_loss_running=running_loss,
            train_acc_running=running_acc,
            batch_loss_max=float(batch_losses[0].max()),
            val_loss=val_score.loss,
            val_acc=val_score.acc,
            gap=train_score.acc - val_score.acc,
        )
        history.append(record)
        last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
        observed(epoch)
        epochs.set_postfix(val_acc=f"{val_score.acc:.4f}", gap=f"{record.gap:+.4f}")
        if reached_stop_loss(history, cfg):
            break
    if diverged is not None:
        model.load_state_dict(last_good)
        print(f"training {name} (seed {seed}) diverged at epoch {diverged.epoch}, batch {diverged.batch} "
              f"(loss {diverged.loss}); kept the weights of epoch {len(history)}")  # fmt: skip
    reached = reached_stop_loss(history, cfg) if cfg.stop_loss > 0 else None
    return TrainingRun(model.eval(), initial, history, diverged, slope, len(history) * steps_per_epoch, reached)


def reached_stop_loss(history: Sequence[EpochRecord], cfg: TrainParams) -> bool:
    """Whether the mean eval-mode train-subset loss of the last ``cfg.stop_window`` epochs is at most
    ``cfg.stop_loss`` (a window smooths the constant-rate iterate's epoch-to-epoch jitter); False when
    ``stop_loss`` is 0 or fewer epochs are done."""
    window = history[-cfg.stop_window :]
    return (
        cfg.stop_loss > 0
        and len(window) == cfg.stop_window
        and math.fsum(r.train_loss for r in window) / len(window) <= cfg.stop_loss
    )


def history_rows(history: list[EpochRecord]) -> list[dict]:
    return [asdict(r) for r in history]


def train_split_accuracy_modes(model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
    """Accuracy on ``split`` at fixed weights in the 2 x 2 of {dropout on, off} x {BN batch statistics,
    running statistics}, batches of ``batch_size`` in order (as in training). Keys ``dropout_<on|off>_bn_<batch|
    running>``; the model, its BN statistics and its train/eval flag are left as they were."""
    out = {}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    with restored(model):
        try:
            for bn in bns:
                bn.momentum = 0.0  # batch statistics are used but never stored
            for dropout_on in (True, False):
                for bn_batch in (True, False):
                    for m in model.modules():
                        if isinstance(m, nn.Dropout):
                            m.train(dropout_on)
                    for bn in bns:
                        bn.train(bn_batch)
                    key = f"dropout_{'on' if dropout_on else 'off'}_bn_{'batch' if bn_batch else 'running'}"
                    out[key] = evaluate(model, split, batch_size, keep_modes=True).acc
        finally:
            for bn, momentum in zip(bns, momenta, strict=True):
                bn.momentum = momentum
    return out


def training_summary(
    variant: str,
    model_cfg: ModelConfig,
    cfg: TrainParams,
    seed: int,
    run: TrainingRun,
    data: Dataset,
    train_eval: Split,
    device: torch.device,
    eval_batch_size: int,
    sharpness: list[SharpnessPoint],
    early: EarlySignals | None,
) -> TrainSummary:
    """Final scores over the whole train/val/test splits, both gaps, the 2 x 2 of train-mode accuracies on
    ``train_eval`` and the epochs to ``cfg.target_acc`` (censored at ``cfg.epochs`` when never reached, a
    diverged run included); ``sharpness`` and ``early`` as the stage's observer recorded them."""
    model, history = run.model, run.history
    scores = {s: evaluate(model, getattr(data, s), eval_batch_size) for s in ("train", "val", "test")}
    last = history[-1] if history else None
    epochs, censored = first_reaching([r.val_acc for r in history], cfg.target_acc)
    return TrainSummary(
        variant=variant,
        seed=seed,
        family=model_cfg.family,
        n_parameters=count_parameters(model),
        epochs=len(history),
        steps=run.steps,
        stop_loss=cfg.stop_loss,
        reached_loss=run.reached_loss,
        device=device.type,
        train=scores["train"],
        val=scores["val"],
        test=scores["test"],
        gap=scores["train"].acc - scores["val"].acc,
        gap_running=None if last is None else last.train_acc_running - scores["val"].acc,
        train_acc_modes=train_split_accuracy_modes(model, train_eval, cfg.batch_size),
        train_acc_running=None if last is None else last.train_acc_running,
        target_acc=cfg.target_acc,
        epochs_to_target=Censored(
            float(epochs if not censored else len(history) if run.reached_loss else cfg.epochs), censored
        ),  # a run stopped at stop_loss: censored where it stopped
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        momentum=cfg.momentum,
        diverged=run.diverged,
        sharpness=sharpness,
        early=early,
    )


def first_reaching(values: Sequence[float], threshold: float) -> tuple[int, bool]:
    """1-based index of the first value >= threshold and False; (len(values), True) if never reached."""
    for i, v in enumerate(values, start=1):
        if v >= threshold:
            return i, False
    return len(values), True
