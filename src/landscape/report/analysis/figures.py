"""What the figures draw, computed once in the analysis pass: each curve's mean over training seeds with its 95 %
t-interval (the band), the slices' fitted parabolas, A's and B's 2-D surfaces and the per-layer curvature.

Every curve is over the seeds' own values (a run's mean over its directions or noise draws), so a band is the
seed-to-seed spread, as everywhere in the report.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from landscape.report.analysis.aggregate import rise_from_zero
from landscape.report.analysis.stats import finite_ci
from landscape.report.analysis.study_data import StudyData
from landscape.report.schema import MODEL_A, MODEL_B, Band, Figures, LayerBand, Surface


def band(x: np.ndarray, per_seed: np.ndarray, scale: float = 1.0) -> Band:
    """The mean and 95 % t-interval of each column of a (seeds x points) array, ignoring non-finite entries."""
    found = [finite_ci(scale * col) for col in np.asarray(per_seed, float).T]
    return Band([float(v) for v in x], [i.mean for i in found], [i.ci_low for i in found], [i.ci_high for i in found])


def per_seed(frame: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(sorted x values, a seeds x points array of ``y``), averaging every row (directions, ...) at one x."""
    table = frame.pivot_table(index="seed", columns=x, values=y, aggfunc="mean").sort_index(axis=1)
    return table.columns.to_numpy(float), table.to_numpy(float)


def learning(data: StudyData) -> dict[str, dict[str, Band]]:
    out = {}
    for v in data.variants:
        epochs, acc = per_seed(data.history[v], "epoch", "val_acc")
        _, gap = per_seed(data.history[v], "epoch", "gap")
        out[v] = {"val_acc": band(epochs, acc, 100.0), "gap": band(epochs, gap, 100.0)}
    return out


def drop_band(data: StudyData, variant: str, mode: str, bn: str) -> Band | None:
    """The accuracy drop (pp) at each sigma > 0 from each run's own sigma = 0; None where the variant lacks it."""
    rows = []
    for s in data.seeds:
        curve = data.runs[(variant, s)].robustness.curves.get(mode, {}).get(bn)
        if curve is None:
            return None
        rows.append({p.sigma: 100 * p.drop.mean for p in curve.points.values() if p.sigma > 0})
    table = pd.DataFrame(rows).sort_index(axis=1)
    return band(table.columns.to_numpy(float), table.to_numpy(float))


def noise(data: StudyData) -> dict[str, dict[str, dict[str, Band]]]:
    """mode -> BN handling (frozen first) -> variant -> drop band, for the modes and handlings of any run."""
    modes: dict[str, None] = {}
    bns: set[str] = set()
    for run in data.runs.values():
        modes.update(dict.fromkeys(run.robustness.curves))
        bns.update(b for by_bn in run.robustness.curves.values() for b in by_bn)
    out: dict[str, dict[str, dict[str, Band]]] = {}
    for mode in modes:
        for bn in sorted(bns, key=lambda b: (b != "frozen", b)):
            found = {v: b for v in data.variants if (b := drop_band(data, v, mode, bn)) is not None}
            out.setdefault(mode, {})[bn] = found
    return out


def drop_levels(data: StudyData) -> list[float]:
    """The accuracy drops (pp) that define sigma*, as stored in the noise curves."""
    return sorted(
        {
            100 * d
            for run in data.runs.values()
            for by_bn in run.robustness.curves.values()
            for curve in by_bn.values()
            for d in curve.drops.values()
        }
    )


def slices(data: StudyData, split: str) -> dict[str, Band]:
    out = {}
    for v in data.variants:
        f = data.slices[v]
        f = f[(f["bn"] == "frozen") & (f["split"] == split)]
        alphas, rise = per_seed(f.assign(rise=rise_from_zero(f, "alpha", "direction", "loss")), "alpha", "rise")
        out[v] = band(alphas, rise)
    return out


def surface(data: StudyData, variant: str) -> Surface:
    seed = data.seeds[0]
    f = data.surfaces[variant]
    split = "train" if (f["split"] == "train").any() else str(f["split"].iloc[0])
    table = f[f["split"] == split].pivot_table(index="b", columns="a", values="loss", aggfunc="mean")
    widths = data.runs[(variant, seed)].slice.curves["frozen"]
    taus = sorted({w.tau for w in widths.get(split, next(iter(widths.values()))).widths.values()})
    return Surface(
        seed,
        split,
        table.columns.to_numpy(float).tolist(),
        table.index.to_numpy(float).tolist(),
        table.to_numpy(float).tolist(),
        taus,
    )


def pair(variants: list[str]) -> list[str]:
    """Model A and Model B where the study has them, else its first two variants."""
    chosen = [v for v in (MODEL_A, MODEL_B) if v in variants]
    return chosen if len(chosen) == 2 else variants[:2]


def layers(data: StudyData, variant: str) -> list[LayerBand]:
    per_seed_ = [data.runs[(variant, s)].curvature.layers for s in data.seeds]
    return [
        LayerBand(ls[0].name, ls[0].fan_in, finite_ci(lay.trace for lay in ls),
                  finite_ci(lay.slice_curvature.mean for lay in ls))
        for ls in zip(*per_seed_, strict=True)
    ]  # fmt: skip


def figures(data: StudyData) -> Figures:
    """Every figure's numbers over the factorial runs."""
    split = "val" if all((f["split"] == "val").any() for f in data.slices.values()) else "train"
    fits = {
        v: float(np.mean([data.runs[(v, s)].slice.curves["frozen"][split].curvature_fit.mean for s in data.seeds]))
        for v in data.variants
    }
    path_splits = [s for s in ("train", "val") if any((f["split"] == s).any() for f in data.paths.values())]
    return Figures(
        learning=learning(data),
        noise=noise(data),
        drop_levels=drop_levels(data),
        slice_split=split,
        slices=slices(data, split),
        slice_fits={v: x if math.isfinite(x) else math.nan for v, x in fits.items()},
        paths={
            s: {v: band(*per_seed(f[f["split"] == s], "t", "loss")) for v, f in data.paths.items()} for s in path_splits
        },
        surfaces={v: surface(data, v) for v in pair(data.variants)},
        layers={v: layers(data, v) for v in data.variants},
    )
