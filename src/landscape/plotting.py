"""Matplotlib figures from the pipeline's CSV and JSON outputs (no model, no data needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from landscape.atomic import write_bytes  # noqa: E402
from landscape.report import noise_modes  # noqa: E402

COLORS = {"mlp": "tab:blue", "cnn": "tab:orange"}
LABELS = {"mlp": "MLP (A)", "cnn": "CNN (B)"}


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Render to PNG in memory (fixed metadata, so reruns give identical files), then write atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return write_bytes(path, buf.getvalue())


def learning_curves(history: dict[str, pd.DataFrame]) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, h in history.items():
        c = COLORS[name]
        for ax, metric in zip(axes, ("loss", "acc"), strict=True):
            ax.plot(h.epoch, h[f"train_{metric}"], color=c, marker="o", ms=3, label=f"{LABELS[name]} train (eval mode)")
            ax.plot(h.epoch, h[f"train_{metric}_running"], color=c, ls=":", label=f"{LABELS[name]} train (running)")
            ax.plot(h.epoch, h[f"val_{metric}"], color=c, ls="--", marker="s", ms=3, label=f"{LABELS[name]} validation")
    axes[0].set(title="Loss", xlabel="epoch", ylabel="cross-entropy (nats)")
    axes[1].set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Learning curves")
    return fig


def generalization_gap(history: dict[str, pd.DataFrame]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, h in history.items():
        c = COLORS[name]
        ax.plot(h.epoch, h.gap, color=c, marker="o", ms=3, label=f"{LABELS[name]}: train acc in eval mode - val acc")
        ax.plot(
            h.epoch,
            h.train_acc_running - h.val_acc,
            color=c,
            ls=":",
            label=f"{LABELS[name]}: running train acc - val acc",
        )
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(title="Generalization gap per epoch", xlabel="epoch", ylabel="train accuracy - validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def robustness_curves(robustness: dict[str, pd.DataFrame], split: str = "val") -> plt.Figure:
    modes = list(dict.fromkeys(m for df in robustness.values() for m in df["mode"]))
    fig, axes = plt.subplots(1, len(modes), figsize=(4.6 * len(modes), 4), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes, strict=True):
        for name, df in robustness.items():
            sub = df[(df["mode"] == mode) & (df.split == split)]
            for bn, group in sub.groupby("bn", sort=False):
                stats = group.groupby("sigma").acc.agg(["mean", "std"]).reset_index()
                ls = "-" if bn == "frozen" else "--"
                label = f"{LABELS[name]}, BN {bn}" if name == "cnn" else LABELS[name]
                ax.plot(stats["sigma"], stats["mean"], color=COLORS[name], ls=ls, marker="o", ms=3, label=label)
                ax.fill_between(
                    stats["sigma"],
                    stats["mean"] - stats["std"],
                    stats["mean"] + stats["std"],
                    color=COLORS[name],
                    alpha=0.2,
                )
        sigmas = sorted(robustness[next(iter(robustness))].sigma.unique())
        positive = [s for s in sigmas if s > 0]
        ax.set_xscale("symlog", linthresh=positive[0] if positive else 1.0, linscale=0.5)
        ax.set_xticks(sigmas, [f"{s:g}" for s in sigmas], rotation=45, fontsize=8)
        ax.minorticks_off()
        ax.set(title=f"noise mode: {mode}", xlabel="noise scale sigma (symlog axis)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{split} accuracy (mean +- 1 std over trials)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Accuracy under random parameter noise")
    return fig


def slice_curves(slices: dict[str, pd.DataFrame]) -> plt.Figure:
    splits = list(dict.fromkeys(s for df in slices.values() for s in df.split))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits, strict=True):
        for name, df in slices.items():
            stats = df[df.split == split].groupby("alpha").loss.agg(["mean", "min", "max"]).reset_index()
            ax.plot(stats.alpha, stats["mean"], color=COLORS[name], label=f"{LABELS[name]} mean over directions")
            ax.fill_between(
                stats.alpha,
                stats["min"],
                stats["max"],
                color=COLORS[name],
                alpha=0.2,
                label=f"{LABELS[name]} min-max over directions",
            )
        ax.set_yscale("log")
        ax.set(title=f"{split} subset", xlabel="alpha (step along filter-normalized d)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("loss L(theta + alpha d) (nats, log scale)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("1-D loss slices through the trained weights")
    return fig


def summary_figure(rows: list[tuple[str, dict[str, float], dict[str, float]]]) -> plt.Figure:
    """One small bar panel per (title, {model: value}, {model: error}) row."""
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 3.2))
    for ax, (title, values, errors) in zip(axes, rows, strict=True):
        names = list(values)
        bars = ax.bar(
            [LABELS[n] for n in names],
            [values[n] for n in names],
            yerr=[errors.get(n, 0.0) for n in names],
            color=[COLORS[n] for n in names],
            capsize=4,
        )
        ax.bar_label(bars, fmt="%.3g", fontsize=8, label_type="center")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Summary (error bars: +-1 std over trials or directions)")
    fig.tight_layout()
    return fig


def summary_rows(train: dict, robustness: dict, slices: dict) -> list[tuple[str, dict, dict]]:
    """The headline numbers per model: accuracy, gap, noise tolerance, curvature, basin width."""
    models = list(train)
    modes = noise_modes(robustness[models[0]])
    mode = "filter" if "filter" in modes else modes[0]
    star_key = next(iter(robustness[models[0]][mode]["frozen"]["sigma_star"]))
    tau_key = next(k for k in slices[models[0]]["val"] if k.startswith("width_tau="))
    return [
        ("val accuracy", {m: train[m]["val"]["acc"] for m in models}, {}),
        ("gap (eval mode)", {m: train[m]["gap"] for m in models}, {}),
        (
            f"sigma* ({mode} noise,\n{star_key.replace('=', ' ')}, lower bound)",
            {m: robustness[m][mode]["frozen"]["sigma_star"][star_key]["low"] for m in models},
            {},
        ),
        (
            "slice curvature 2a (val)",
            {m: slices[m]["val"]["curvature"]["mean"] for m in models},
            {m: slices[m]["val"]["curvature"]["std"] for m in models},
        ),
        (
            f"basin width W ({tau_key.replace('width_', '').replace('=', ' ')}, val)",
            {m: slices[m]["val"][tau_key]["mean"] for m in models},
            {m: slices[m]["val"][tau_key]["std"] for m in models},
        ),
    ]
