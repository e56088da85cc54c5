"""Stage path@<variant>-<seed>: loss and accuracy on the straight line from the initial to the trained weights."""

from landscape.atomic import write_csv, write_json
from landscape.serialize import to_json
from landscape.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study import initial_state, probe_data, study_inputs, trained_model
from landscape.surfaces import PATH_COLUMNS, path_grid, path_probe, path_summary


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.path
    model = trained_model(run, params, device)
    probe = probe_data("path", p.samples, params, data)
    timer = Timer()
    rows, curves, rel, bn = path_probe(model, initial_state(run, params), probe, p.points, p.margin)
    ts = path_grid(p.points, p.margin)
    accs = {r["split"]: r["acc"] for r in rows if abs(r["t"] - 1.0) < 1e-12}
    summary = path_summary(variant, run.seed, ts, curves, accs, rel, bn)
    write_csv(run.plot("path"), rows, PATH_COLUMNS)
    write_json(run.metrics("path"), to_json(summary))
    print(f"path {variant} seed {run.seed}: {len(rows)} rows in {timer.write(run.timing('path'))['wall_s']} s")


if __name__ == "__main__":
    run_stage(main)
