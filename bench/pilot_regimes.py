"""One-seed pilot that SIZES the next design of question 1 ("question 1 at matched fit", issue 26).

This is a sizing tool, not a result: one training seed (0; ``hard2`` adds seeds 1 and 2 of one cell), one
machine, one thread. Its numbers say how long runs take, which cells train at all, and where a common train-loss
target and epoch cap could sit; they are not evidence for or against any claim of the study, and nothing in the
pipeline reads them.

It reuses the study's own code rather than a training loop of its own: ``landscape.study.train.train_model``
(seeding, optimizer, schedule, batch order, divergence handling), the data split and the fixed train-eval subset
as ``stages/train.py`` builds them, ``params.yaml`` through ``landscape.study.params`` (read only), lambda_max per
epoch through the train stage's own ``TrainingObserver`` (during_training settings: 500 images, warm-started
Lanczos) and, at the end, a cold 15-iteration Lanczos lambda_max (``landscape.probes.layers.top_eigenvalues``, the
curvature probe's settings), the scale-invariant adaptive sharpness (``landscape.probes.adaptive``) and ||theta||
over the weights (tensors of dim > 1).

Groups (run in this order; each appends one JSON line per cell to ``bench/pilots/<group>.jsonl`` and skips cells
already there unless ``--force``):

- ``hard``: MLP cells at the default lr 0.05, cosine, 10 epochs: the default itself (reference), no momentum,
  a deep plain MLP, and the initial weights scaled x3 and x0.3. PILOT-ONLY HACK: the init scale multiplies every
  weight tensor of dim > 1 right after ``build_model`` by swapping ``landscape.study.train.build_model`` for a
  wrapper during that cell; the study has no such knob.
- ``hard2``: more MLP cells at the default lr 0.05, momentum 0.9, cosine, 10 epochs, looking for cells hard for a
  reason other than the learning rate (``hard`` found none): the default again (same-session reference), init
  x0.2 / x0.15 / x0.1 / x0.05 (the same hack), bottlenecks [256, 8, 128] and [256, 4, 128], weight decay 2e-3,
  5e-3 and 1e-2, deep plain MLPs of 8, 10, 11, 12, 14 and 16 hidden layers ([256] + 128s, no BN), deep10 with
  init x0.3, batch 32 at the same lr (4x the steps and the noise scale lr / batch), and deep10 again at seeds 1
  and 2 (the only cells not at seed 0).
- ``constant``: Model A under a constant learning rate up to an epoch cap, stopped early once the eval-mode loss
  on the train-eval subset is <= ``--stop-loss`` (0.03). Each epoch records eval-mode train loss and accuracy,
  val loss and accuracy, the gap, lambda_max and wall time; the end adds the measures above.
- ``width``: Model B width candidates (cnn variant: BN and dropout) under the default ``train`` section.
- ``report``: rewrite the tables of ``bench/pilots/README.md`` from the jsonl files (text below the end marker
  is kept).

Usage, from the repository root (one core: torch uses 1 thread; run it niced):

    nice -n 5 env PYTHONPATH=src .venv/bin/python bench/pilot_regimes.py hard
    nice -n 5 env PYTHONPATH=src .venv/bin/python bench/pilot_regimes.py hard2
    nice -n 5 env PYTHONPATH=src .venv/bin/python bench/pilot_regimes.py constant [--cells b128_lr0.05 ...]
    nice -n 5 env PYTHONPATH=src .venv/bin/python bench/pilot_regimes.py width [--with-reference]
    PYTHONPATH=src .venv/bin/python bench/pilot_regimes.py report

The data come from ``data/raw`` when a ``dvc repro download`` made it, else they are fetched and verified from
``data.mirror`` (the study's own ``fetch.download``) into a temporary directory, so the pilot writes nothing
outside ``bench/pilots``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

import landscape.study.train as study_train
from landscape.probes.adaptive import adaptive_sharpness
from landscape.probes.directions import parameters_of, perturbed_mask
from landscape.probes.evaluation import evaluate
from landscape.probes.layers import top_eigenvalues
from landscape.study.data import load_dataset
from landscape.study.fetch import download
from landscape.study.models import count_parameters
from landscape.study.params import ModelConfig, Params, TrainParams, load_params
from landscape.study.results import stability_ratio
from landscape.study.stage import RAW_DIR
from landscape.study.summaries.during_training import TrainingObserver
from landscape.study.train import train_model

SEED = 0
OUT = Path("bench/pilots")
README = OUT / "README.md"
END_MARKER = "<!-- end of generated tables: text below this line is kept by `pilot_regimes.py report` -->"
STOP_LOSS = 0.03
TARGETS = (0.1, 0.05)
LN10 = math.log(10)
DEFAULT_LR, DEFAULT_BATCH = 0.05, 128  # the default noise scale lr / batch is 1x

# (name, batch, lr, epoch cap) of the constant-lr arm, Model A.
CONSTANT_CELLS = [
    ("b128_lr0.00625", 128, 0.00625, 60),
    ("b128_lr0.0125", 128, 0.0125, 60),
    ("b128_lr0.025", 128, 0.025, 60),
    ("b128_lr0.05", 128, 0.05, 60),
    ("b128_lr0.1", 128, 0.1, 60),
    ("b512_lr0.05", 512, 0.05, 60),
    ("b512_lr0.2", 512, 0.2, 60),
    ("b4096_lr0.2", 4096, 0.2, 150),
]


# ---------------------------------------------------------------- set-up


def inputs() -> tuple[Params, torch.device, object, object]:
    """params.yaml (validated), the CPU with one thread, the dataset and the fixed train-eval subset, as the
    train stage builds them."""
    torch.set_num_threads(1)
    params = load_params()
    device = torch.device("cpu")
    root: Path = RAW_DIR
    if not (RAW_DIR / "FashionMNIST" / "raw").is_dir():
        root = Path(tempfile.mkdtemp(prefix="pilot-raw-")) / "raw"
        download(root, params.data.mirror, params.data.urls, params.data.sha256)
    data = load_dataset(root, params.data.val_size, params.data.split_seed, device)
    train_eval = data.train.subset(params.data.train_eval_size, params.data.split_seed)
    return params, device, data, train_eval


@contextlib.contextmanager
def init_scale(factor: float) -> Iterator[None]:
    """PILOT-ONLY HACK: while active, ``train_model`` builds models whose weight tensors (dim > 1) are multiplied
    by ``factor`` right after the seeded initialization."""
    original = study_train.build_model
    if factor == 1.0:
        yield
        return

    def scaled(cfg: ModelConfig) -> nn.Module:
        model = original(cfg)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.mul_(factor)
        return model

    study_train.build_model = scaled
    try:
        yield
    finally:
        study_train.build_model = original


class StopEarly(Exception):
    """Raised by the observer once the eval-mode training loss reaches the stop level."""


class PilotObserver:
    """Wraps the train stage's ``TrainingObserver`` (lambda_max per epoch, warm-started) and times the epochs.

    With ``evaluate_each_epoch`` it also evaluates the train-eval subset and validation after each epoch (the
    numbers ``train_model``'s history holds; needed here because an early stop raises out of ``train_model``) and
    raises ``StopEarly`` once the train loss is <= ``stop_loss``."""

    def __init__(self, stage: TrainingObserver, data, train_eval, batch: int, evaluate_each_epoch: bool,
                 stop_loss: float | None):  # fmt: skip
        self.stage = stage
        self.data, self.train_eval, self.batch = data, train_eval, batch
        self.evaluate_each_epoch = evaluate_each_epoch
        self.stop_loss = stop_loss
        self.rows: list[dict] = []
        self.model: nn.Module | None = None
        self.last = time.perf_counter()
        self.start = self.last
        self.observe_s = 0.0
        self.stopped = False

    def __call__(self, epoch: int, model: nn.Module, lr: float) -> None:
        begin = time.perf_counter()
        epoch_s = begin - self.last
        self.model = model
        self.stage(epoch, model, lr)
        row = {"epoch": epoch, "lr": lr, "lambda_max": self.stage.sharpness[-1].lambda_max}
        row["ratio"] = stability_ratio(row["lambda_max"], lr, self.stage.cfg.momentum)
        if self.evaluate_each_epoch or epoch == 0:  # epoch 0: the initial weights, always
            tr = evaluate(model, self.train_eval, self.batch)
            va = evaluate(model, self.data.val, self.batch)
            row |= {"train_loss": tr.loss, "train_acc": tr.acc, "val_loss": va.loss, "val_acc": va.acc,
                    "gap": tr.acc - va.acc}  # fmt: skip
        if epoch > 0:
            row["epoch_s"] = epoch_s  # training pass + train_model's end-of-epoch evaluation, no observer time
        self.rows.append(row)
        end = time.perf_counter()
        self.observe_s += end - begin
        self.last = end
        row["wall_s"] = end - self.start
        if self.stop_loss is not None and epoch > 0 and row.get("train_loss", math.inf) <= self.stop_loss:
            self.stopped = True
            raise StopEarly


def weight_norm(model: nn.Module) -> float:
    return math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters() if p.dim() > 1))


def end_measures(model: nn.Module, stage: TrainingObserver, batch: int) -> dict:
    """Cold 15-iteration lambda_max (the curvature probe's settings), adaptive sharpness and ||theta|| (weights)."""
    t0 = time.perf_counter()
    cold = dataclasses.replace(stage.cold, lanczos_iterations=15)
    lam = top_eigenvalues(model, stage.hessian, cold, batch_size=batch).values[0]
    params = [p for p, keep in zip(parameters_of(model), perturbed_mask(model, cold.parameters), strict=True) if keep]
    adaptive = adaptive_sharpness(
        model, stage.hessian, k=1, iterations=15, seed=cold.lanczos_seed, params=params, batch_size=batch
    ).values[0]
    return {"lambda_max_end": lam, "adaptive_sharpness": adaptive, "weight_norm": weight_norm(model),
            "end_probe_s": time.perf_counter() - t0}  # fmt: skip


def run_cell(name: str, params: Params, data, train_eval, model_cfg: ModelConfig, cfg: TrainParams, *,
             draws: str, scale: float = 1.0, evaluate_each_epoch: bool = False,
             stop_loss: float | None = None, seed: int = SEED) -> dict:  # fmt: skip
    """Train one cell with the study's ``train_model`` and the train stage's observer; one JSON-able record."""
    batch = params.runtime.eval_batch_size
    stage = TrainingObserver(params, draws, seed, data, cfg)
    obs = PilotObserver(stage, data, train_eval, batch, evaluate_each_epoch, stop_loss)
    t0 = time.perf_counter()
    history, diverged = None, None
    with init_scale(scale):
        try:
            run = train_model(name, model_cfg, cfg, seed, data, train_eval, torch.device("cpu"), batch,
                              progress=False, observe=obs)  # fmt: skip
            model, history, diverged = run.model, run.history, run.diverged
        except StopEarly:
            model = obs.model
    wall = time.perf_counter() - t0
    rows = obs.rows
    if history is not None:  # merge train_model's own per-epoch history (the stage's numbers)
        by_epoch = {r.epoch: dataclasses.asdict(r) for r in history}
        for row in rows:
            for k, v in by_epoch.get(row["epoch"], {}).items():
                row.setdefault(k, v)
    model.eval()
    final_train = evaluate(model, train_eval, batch)
    final_val = evaluate(model, data.val, batch)
    record = {
        "cell": name,
        "seed": seed,
        "model": dataclasses.asdict(model_cfg),
        "train": dataclasses.asdict(cfg),
        "init_scale": scale,
        "n_parameters": count_parameters(model),
        "steps_per_epoch": math.ceil(len(data.train) / cfg.batch_size),
        "noise_scale": (cfg.lr / cfg.batch_size) / (DEFAULT_LR / DEFAULT_BATCH),
        "epochs_run": rows[-1]["epoch"],
        "stopped_early": obs.stopped,
        "stop_loss": stop_loss,
        "diverged": None if diverged is None else dataclasses.asdict(diverged),
        "final": {
            "train_loss": final_train.loss,
            "train_acc": final_train.acc,
            "val_loss": final_val.loss,
            "val_acc": final_val.acc,
            "gap": final_train.acc - final_val.acc,
        },  # fmt: skip
        "wall_s": wall,
        "observer_s": obs.observe_s,
        "train_s": wall - obs.observe_s,
        "history": rows,
        "threads": torch.get_num_threads(),
    }
    record["final"] |= end_measures(model, stage, batch)
    record["dead"] = final_val.acc < 0.2 or (math.isfinite(final_train.loss) and abs(final_train.loss - LN10) < 0.01)
    return record


# ---------------------------------------------------------------- groups


def done_cells(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["cell"] for line in path.read_text().splitlines() if line.strip()}


def append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def mlp_config(params: Params, hidden: list[int] | None = None) -> ModelConfig:
    cfg = params.model_config("mlp")
    return cfg if hidden is None else dataclasses.replace(cfg, widths=list(hidden))


def group_cells(group: str, params: Params, args) -> list[tuple[str, dict]]:
    base = params.train
    if group == "hard":
        return [
            ("default", {"model_cfg": mlp_config(params), "cfg": base}),
            ("no_momentum", {"model_cfg": mlp_config(params), "cfg": dataclasses.replace(base, momentum=0.0)}),
            ("deep6", {"model_cfg": mlp_config(params, [256, 128, 128, 128, 128, 128]), "cfg": base}),
            ("init_x3", {"model_cfg": mlp_config(params), "cfg": base, "scale": 3.0}),
            ("init_x0.3", {"model_cfg": mlp_config(params), "cfg": base, "scale": 0.3}),
        ]
    if group == "hard2":
        a = mlp_config(params)
        deep10 = mlp_config(params, [256] + [128] * 9)
        return [  # cheapest first
            ("default", {"model_cfg": a, "cfg": base}),
            ("init_x0.2", {"model_cfg": a, "cfg": base, "scale": 0.2}),
            ("init_x0.15", {"model_cfg": a, "cfg": base, "scale": 0.15}),
            ("init_x0.1", {"model_cfg": a, "cfg": base, "scale": 0.1}),
            ("init_x0.05", {"model_cfg": a, "cfg": base, "scale": 0.05}),
            ("bottleneck8", {"model_cfg": mlp_config(params, [256, 8, 128]), "cfg": base}),
            ("bottleneck4", {"model_cfg": mlp_config(params, [256, 4, 128]), "cfg": base}),
            ("wd2e-3", {"model_cfg": a, "cfg": dataclasses.replace(base, weight_decay=2e-3)}),
            ("wd5e-3", {"model_cfg": a, "cfg": dataclasses.replace(base, weight_decay=5e-3)}),
            ("wd1e-2", {"model_cfg": a, "cfg": dataclasses.replace(base, weight_decay=1e-2)}),
            ("deep8", {"model_cfg": mlp_config(params, [256] + [128] * 7), "cfg": base}),
            ("deep10", {"model_cfg": deep10, "cfg": base}),
            ("deep11", {"model_cfg": mlp_config(params, [256] + [128] * 10), "cfg": base}),
            ("deep12", {"model_cfg": mlp_config(params, [256] + [128] * 11), "cfg": base}),
            ("deep14", {"model_cfg": mlp_config(params, [256] + [128] * 13), "cfg": base}),
            ("deep10_init_x0.3", {"model_cfg": deep10, "cfg": base, "scale": 0.3}),
            ("deep16", {"model_cfg": mlp_config(params, [256] + [128] * 15), "cfg": base}),
            ("batch32", {"model_cfg": a, "cfg": dataclasses.replace(base, batch_size=32)}),
            # deep10 sits next to the depth at which seed 0 stops training: is it seed 0's luck?
            ("deep10_seed1", {"model_cfg": deep10, "cfg": base, "seed": 1}),
            ("deep10_seed2", {"model_cfg": deep10, "cfg": base, "seed": 2}),
        ]
    if group == "constant":
        out = []
        for name, batch, lr, cap in CONSTANT_CELLS:
            cap = args.cap if args.cap is not None else cap
            if name.startswith("b4096") and args.cap_4096 is not None:
                cap = args.cap_4096
            cfg = dataclasses.replace(base, schedule="constant", lr=lr, batch_size=batch, epochs=cap)
            out.append((name, {"model_cfg": mlp_config(params), "cfg": cfg, "evaluate_each_epoch": True,
                               "stop_loss": args.stop_loss}))  # fmt: skip
        return out
    if group == "width":
        b = params.model_config("cnn")
        cells = [
            ("cnn_16_32_fc144", {"model_cfg": dataclasses.replace(b, widths=[16, 32], fc=144), "cfg": base}),
            ("cnn_24_48_fc96", {"model_cfg": dataclasses.replace(b, widths=[24, 48], fc=96), "cfg": base}),
        ]
        if args.with_reference:
            cells.append(("cnn_32_64_fc128", {"model_cfg": b, "cfg": base}))
        return cells
    raise SystemExit(f"unknown group {group}")


def run_group(group: str, args) -> None:
    params, _, data, train_eval = inputs()
    path = OUT / f"{group}.jsonl"
    done = set() if args.force else done_cells(path)
    t_group = time.perf_counter()
    for name, kw in group_cells(group, params, args):
        if args.cells and name not in args.cells:
            continue
        if name in done:
            print(f"{group}/{name}: already in {path}, skipped (--force reruns)")
            continue
        draws = kw["model_cfg"].family
        rec = run_cell(name, params, data, train_eval, draws=draws, **kw)
        rec["group"] = group
        rec["command"] = " ".join(["bench/pilot_regimes.py", *sys.argv[1:]])
        append(path, rec)
        f = rec["final"]
        per_epoch = rec["train_s"] / max(rec["epochs_run"], 1)
        print(f"{group}/{name}: {rec['epochs_run']} epochs{' (stopped early)' if rec['stopped_early'] else ''}, "
              f"train loss {f['train_loss']:.4f}, val acc {f['val_acc']:.4f}, gap {f['gap']:+.4f}, "
              f"lambda_max {f['lambda_max_end']:.2f}, wall {rec['wall_s']:.1f} s "
              f"({per_epoch:.2f} s/epoch training, {rec['observer_s']:.1f} s observer)", flush=True)  # fmt: skip
    print(f"{group}: {time.perf_counter() - t_group:.1f} s")


# ---------------------------------------------------------------- report


def load(group: str) -> list[dict]:
    path = OUT / f"{group}.jsonl"
    if not path.exists():
        return []
    recs = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            recs[r["cell"]] = r  # the last line of a cell wins (a --force rerun)
    return list(recs.values())


def crossing(history: list[dict], target: float) -> dict | None:
    """The first crossing of train_loss <= target, interpolated linearly in the epoch between the bracketing
    epochs (epoch 0: the initial weights); the gap, val acc and lambda_max interpolated the same way."""
    for prev, cur in zip(history, history[1:], strict=False):
        if cur["train_loss"] <= target < prev["train_loss"]:
            w = (prev["train_loss"] - target) / (prev["train_loss"] - cur["train_loss"])
            at = {k: prev[k] + w * (cur[k] - prev[k]) for k in ("gap", "val_acc", "lambda_max")}
            at["epoch"] = prev["epoch"] + w
            return at
    return None


def smoothed_crossing(history: list[dict], target: float, window: int = 3) -> int | None:
    """The first epoch whose trailing mean train loss over ``window`` epochs is <= target (not interpolated): a
    crossing less sensitive to the epoch-to-epoch jitter of a constant-lr iterate."""
    losses = [h["train_loss"] for h in history if h["epoch"] > 0]
    for i in range(window - 1, len(losses)):
        if sum(losses[i - window + 1 : i + 1]) / window <= target:
            return i + 1
    return None


def wall_to(history: list[dict], epoch: float) -> float:
    """Training seconds to a fractional ``epoch``: the epochs' ``epoch_s`` (no observer time), the last pro rata."""
    total = 0.0
    for h in history:
        if 0 < h["epoch"] <= math.ceil(epoch):
            total += h["epoch_s"] * min(1.0, epoch - (h["epoch"] - 1))
    return total


def fmt(v, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def per_epoch_s(r: dict) -> float:
    rows = [h["epoch_s"] for h in r["history"] if "epoch_s" in h]
    return sorted(rows)[len(rows) // 2] if rows else math.nan  # median


HARD_HEADER = ["cell", "params", "train loss init", "λ_max init", "train loss ep 1", "λ_max ep 1",
               "final train loss", "× default", "val acc %", "gap pp", "final λ_max", "state", "wall s"]  # fmt: skip


def hard_row(r: dict, ref: dict | None) -> list[str]:
    """One row of a hard-cell table (``HARD_HEADER``); ``ref``: the default cell, for the ratio."""
    h1 = next((h for h in r["history"] if h["epoch"] == 1), {})
    f = r["final"]
    ratio = f["train_loss"] / ref["final"]["train_loss"] if ref else math.nan
    state = "diverged" if r["diverged"] else "dead" if r["dead"] else "trains"
    h0 = r["history"][0]
    return [r["cell"], f"{r['n_parameters']:,}", fmt(h0["train_loss"], ".3f"), fmt(h0["lambda_max"], ".2f"),
            fmt(h1.get("train_loss"), ".4f"), fmt(h1.get("lambda_max"), ".2f"), fmt(f["train_loss"], ".4f"),
            fmt(ratio, ".2f"), fmt(100 * f["val_acc"], ".2f"), fmt(100 * f["gap"], "+.2f"),
            fmt(f["lambda_max_end"], ".2f"), state, fmt(r["wall_s"], ".0f")]  # fmt: skip


def setting(r: dict, ref: dict | None) -> str:
    """What a cell changes from the default cell: hidden widths, init scale, train keys."""
    if ref is None:
        return "—"
    out = []
    if r["model"]["widths"] != ref["model"]["widths"]:
        w = r["model"]["widths"]
        out.append(f"hidden [{w[0]}] + [{w[1]}] x {len(w) - 1}" if len(w) > 3 and len(set(w[1:])) == 1 else
                   f"hidden {w}")  # fmt: skip
    if r["seed"] != ref["seed"]:
        out.append(f"seed {r['seed']}")
    if r["init_scale"] != 1.0:
        out.append(f"init x{r['init_scale']:g}")
    out += [f"{k} {v:g}" for k, v in r["train"].items() if v != ref["train"][k] and isinstance(v, int | float)]
    return ", ".join(out) or "default"


def report() -> None:
    lines = ["# Pilot for issue 26 (question 1 at matched fit): sizing only, not a result", "",
             "One training seed (0) and Model A unless named, one torch thread on the 2-core AMD EPYC dev machine "
             "(shared with other work, so times are upper-ish). Every number below is read from "
             "`bench/pilots/<group>.jsonl` by `PYTHONPATH=src .venv/bin/python bench/pilot_regimes.py report`; the "
             "cells were made by `nice -n 5 env PYTHONPATH=src .venv/bin/python bench/pilot_regimes.py <group>` "
             "(per-cell command in the jsonl's `command`). Script and method: `bench/pilot_regimes.py` (docstring).",
             ""]  # fmt: skip
    hard = load("hard")
    if hard:
        ref = next((r for r in hard if r["cell"] == "default"), None)
        rows = [hard_row(r, ref) for r in hard]
        lines += ["## Group 3 (`hard`): hard-to-train MLP cells, lr 0.05 cosine, 10 epochs", "",
                  "Train loss and accuracy are eval mode on the fixed 10k train-eval subset; λ_max on the 500-image "
                  "Hessian subset (epoch 0 and 1: the train stage's observer; final: cold 15-iteration Lanczos). "
                  "`× default`: final train loss over the default cell's.", ""]  # fmt: skip
        lines += table(HARD_HEADER, rows)
        lines.append("")
    hard2 = load("hard2")
    if hard2:
        ref = next((r for r in hard2 if r["cell"] == "default"), None)
        rows = [[*hard_row(r, ref)[:1], setting(r, ref), *hard_row(r, ref)[1:], fmt(per_epoch_s(r), ".2f")]
                for r in sorted(hard2, key=lambda r: r["final"]["train_loss"])]  # fmt: skip
        lines += ["## Group 4 (`hard2`): more hard-to-train MLP cells, lr 0.05 momentum 0.9 cosine, 10 epochs", "",
                  "Sorted by final train loss. Columns as in group 3 (`× default`: over this group's own `default` "
                  "cell); setting: what the cell changes from Model A's default (hidden widths, the pilot-only init "
                  "scale of the weight tensors, train keys). s/epoch: median wall time of one epoch's training pass "
                  "plus train_model's end-of-epoch evaluation (no λ_max), one thread.", ""]  # fmt: skip
        lines += table([HARD_HEADER[0], "setting", *HARD_HEADER[1:], "s/epoch"], rows)
        lines.append("")
    const = load("constant")
    if const:
        per_target: dict[float, list[list[str]]] = {target: [] for target in TARGETS}
        rows2 = []
        for r in const:
            t = r["train"]
            spe = r["steps_per_epoch"]
            last = r["history"][-1]
            for target in TARGETS:
                cells = [r["cell"], str(t["batch_size"]), f"{t['lr']:g}", fmt(r["noise_scale"], "g")]
                c = crossing(r["history"], target)
                settled = smoothed_crossing(r["history"], target)
                if c is None:
                    cells += [f"not by {last['epoch']}", "—", "—", "—", "—", "—", "—"]
                else:
                    lam = c["lambda_max"]
                    cells += [f"{c['epoch']:.1f}", f"{c['epoch'] * spe:,.0f}", fmt(100 * c["gap"], "+.2f"),
                              fmt(100 * c["val_acc"], ".2f"), fmt(lam, ".2f"),
                              fmt(stability_ratio(lam, t["lr"], t["momentum"]), ".3f"),
                              fmt(wall_to(r["history"], c["epoch"]), ".0f")]  # fmt: skip
                cells.append(str(settled) if settled is not None else f"not by {last['epoch']}")
                per_target[target].append(cells)
            f = r["final"]
            state = "diverged" if r["diverged"] else "dead" if r["dead"] else "trains"
            stop = f"stopped at {r['epochs_run']} (≤ {r['stop_loss']})" if r["stopped_early"] else (
                f"cap {r['epochs_run']}")  # fmt: skip
            rows2.append([r["cell"], stop, fmt(f["train_loss"], ".4f"), fmt(100 * f["val_acc"], ".2f"),
                          fmt(100 * f["gap"], "+.2f"), fmt(f["lambda_max_end"], ".2f"),
                          fmt(stability_ratio(f["lambda_max_end"], t["lr"], t["momentum"]), ".3f"),
                          fmt(f["adaptive_sharpness"], ".3g"), fmt(f["weight_norm"], ".2f"),
                          fmt(max(h.get("ratio", 0) for h in r["history"][1:]) if len(r["history"]) > 1 else None,
                              ".3f"),
                          fmt(per_epoch_s(r), ".2f"), str(spe), fmt(r["wall_s"], ".0f"), state])  # fmt: skip
        lines += ["## Group 1 (`constant`): Model A, constant lr, SGD momentum 0.9", "",
                  "Noise scale: lr/batch over the default's 0.05/128. A crossing of train loss ≤ target is "
                  "**interpolated linearly in the epoch** between the two bracketing epochs (epoch 0 = initial "
                  "weights), and so are the gap, val acc and λ_max given there (train loss, gap: eval mode on the "
                  "10k train-eval subset; λ_max: warm-started 5-iteration Lanczos on 500 images, every epoch). "
                  "Steps = epoch × steps per epoch. λ·lr/(2(1+β)) = λ_max·lr/3.8: 1 is the heavy-ball edge of "
                  "stability. train s: training seconds to that point (the epochs' wall time without λ_max, the last "
                  "epoch pro rata). The last column is a crossing less sensitive to the epoch-to-epoch jitter of "
                  "the constant-lr iterate: the first epoch whose mean train loss over it and the 2 before is ≤ "
                  "target (whole epochs, not interpolated).", ""]  # fmt: skip
        for target in TARGETS:
            hdr = ["cell", "batch", "lr", "noise ×", f"epochs to ≤ {target}", "steps", "gap pp", "val acc %",
                   "λ_max", "λ·lr/3.8", "train s", f"3-epoch mean ≤ {target} at epoch"]  # fmt: skip
            lines += [f"Train loss ≤ {target}:", ""] + table(hdr, per_target[target]) + [""]
        lines += ["End of each cell (after the early stop or at the cap). λ_max: cold 15-iteration Lanczos; adaptive "
                  "sharpness: top eigenvalue of diag|θ| H diag|θ| (15 iterations); ‖θ‖ over weight tensors; "
                  "max λ·lr/3.8 over the epochs; s/epoch: median wall time of one epoch's training pass plus "
                  "train_model's end-of-epoch evaluation (no λ_max), one thread.", ""]  # fmt: skip
        lines += table(["cell", "end", "train loss", "val acc %", "gap pp", "λ_max", "λ·lr/3.8", "adaptive sharp.",
                        "‖θ‖", "max λ·lr/3.8", "s/epoch", "steps/epoch", "wall s", "state"], rows2)  # fmt: skip
        lines.append("")
    width = load("width")
    if width:
        rows = []
        for r in width:
            f = r["final"]
            m = r["model"]
            rows.append([r["cell"], str(m["widths"]), str(m["fc"]), f"{r['n_parameters']:,}",
                         fmt(100 * f["val_acc"], ".2f"), fmt(100 * f["gap"], "+.2f"), fmt(f["train_loss"], ".4f"),
                         fmt(f["lambda_max_end"], ".2f"), fmt(per_epoch_s(r), ".1f"), fmt(r["train_s"], ".0f"),
                         fmt(r["wall_s"], ".0f")])  # fmt: skip
        lines += ["## Group 2 (`width`): Model B width candidates (cnn: BN + dropout), default training", "",
                  "lr 0.05 cosine, 10 epochs, batch 128. Model A has 235,146 parameters, today's B 421,834. Final "
                  "scores eval mode (train: the 10k train-eval subset). train s: wall time less the observer's "
                  "(λ_max per epoch, epoch-1 noise probe).", ""]  # fmt: skip
        lines += table(["cell", "channels", "fc", "params", "val acc %", "gap pp", "train loss", "final λ_max",
                        "s/epoch", "train s", "wall s"], rows)  # fmt: skip
        lines.append("")
    kept = ""
    if README.exists():
        text = README.read_text()
        if END_MARKER in text:
            kept = text.split(END_MARKER, 1)[1]
    README.write_text("\n".join(lines) + "\n" + END_MARKER + kept)
    print(f"wrote {README}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("group", choices=["hard", "hard2", "constant", "width", "report"])
    ap.add_argument("--cells", nargs="*", help="only these cells of the group")
    ap.add_argument("--force", action="store_true", help="rerun cells already in the jsonl")
    ap.add_argument("--cap", type=int, help="epoch cap of every constant-lr cell (default: 60, 150 at batch 4096)")
    ap.add_argument("--cap-4096", type=int, help="epoch cap of the batch-4096 cell alone")
    ap.add_argument("--stop-loss", type=float, default=STOP_LOSS, help="stop a constant-lr cell at this train loss")
    ap.add_argument("--with-reference", action="store_true", help="width: also today's B [32, 64] / 128")
    args = ap.parse_args()
    if args.group == "report":
        report()
    else:
        run_group(args.group, args)


if __name__ == "__main__":
    main()
