"""Stage aggregate: every run's summaries -> metrics/study.json (means, CIs over seeds, paired differences,
factorial effects, claims) and the per-variant curves of plots/study/ that `dvc plots` draws."""

from pathlib import Path

import pandas as pd

from landscape.aggregate import curve_table, study_json
from landscape.atomic import replace_dir, write_json, write_text
from landscape.params import load_params
from landscape.runs_io import load_run, long_rows
from landscape.stage import METRICS_DIR, PLOTS_DIR, RunPaths, run_stage


def curves(variants: list[str], seeds: list[int]) -> dict[str, pd.DataFrame]:
    """plots/study/<name>.csv: per variant, one row per epoch, sigma, alpha or t (long format, a ``variant``
    column), the mean over that variant's runs."""
    runs = {v: [RunPaths(v, s) for s in seeds] for v in variants}
    out = {}
    history = {v: long_rows(r, "history") for v, r in runs.items()}
    out["val_acc"] = curve_table(history, "epoch", "val_acc")
    out["gap"] = curve_table(history, "epoch", "gap")
    noise = {v: long_rows(r, "robustness") for v, r in runs.items()}
    for mode in sorted(set.union(*(set(f["mode"]) for f in noise.values()))):
        for bn in ("frozen", "recalibrated"):
            frames = {}
            for v, f in noise.items():
                f = f[(f["mode"] == mode) & (f["bn"] == bn) & (f["split"] == "val")]
                if len(f):
                    base = f[f["sigma"] == 0].set_index(["seed", "trial"])["acc"]
                    drop = 100 * (base.reindex(list(zip(f["seed"], f["trial"], strict=True))).to_numpy() - f["acc"])
                    frames[v] = f.assign(drop=drop)
            if frames:
                out[f"drop_{mode}_{bn}"] = curve_table(frames, "sigma", "drop")
    for bn in ("frozen", "recalibrated"):
        frames = {}
        for v, r in runs.items():
            f = long_rows(r, "slice", split="val", bn=bn)
            if len(f):
                zero = f[f["alpha"] == 0].set_index(["seed", "direction"])["loss"]
                base = zero.reindex(list(zip(f["seed"], f["direction"], strict=True))).to_numpy()
                frames[v] = f.assign(rise=f["loss"] - base)
        if frames:
            out[f"slice_val_{bn}"] = curve_table(frames, "alpha", "rise")
    for split in ("train", "val"):
        paths = {v: long_rows(r, "path", split=split) for v, r in runs.items()}
        out[f"path_{split}"] = curve_table(paths, "t", "loss")
    return out


def main() -> None:
    params = load_params()
    variants, seeds = params.study.variants, params.study.seeds
    runs = {(v, s): load_run(RunPaths(v, s)) for v in variants for s in seeds}
    factorial = {v: params.variant(v) for v in variants}
    drop = min(params.robustness.drops)
    study = study_json(
        runs, variants, seeds, factorial, params.robustness.moderate_sigma, drop, params.robustness.modes
    )
    tables = curves(variants, seeds)

    def fill(tmp: Path) -> None:
        for name, table in tables.items():
            write_text(tmp / f"{name}.csv", table.to_csv(index=False))

    replace_dir(PLOTS_DIR / "study", fill)
    write_json(METRICS_DIR / "study.json", study)
    print(f"aggregated {len(runs)} runs ({len(variants)} variants x {len(seeds)} seeds) into {METRICS_DIR}/study.json")


if __name__ == "__main__":
    run_stage(main)
