"""Stage curvature@<variant>-<seed>: Hessian eigenvalues, trace, relative flatness and per-layer curvature."""

from landscape.atomic import write_json
from landscape.curvature_probe import curvature_probe
from landscape.directions import stream_seed
from landscape.serialize import to_json
from landscape.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study import probe_data, study_inputs, trained_model


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.curvature
    model = trained_model(run, params, device)
    split = probe_data("curvature", p.samples, params, data).splits["train"]
    timer = Timer()
    seeds = {s: stream_seed(f"curvature/{s}", variant, run.seed, 0) for s in ("lanczos", "hutchinson", "flatness")}
    layer_seeds = [stream_seed("curvature/layer", variant, run.seed, k) for k in range(p.layer_directions)]
    summary = curvature_probe(
        model, split, params.train.eval_batch_size, p, params.probes.parameters, seeds, layer_seeds, variant, run.seed
    )
    write_json(run.metrics("curvature"), to_json(summary))
    top = summary.eigenvalues[0] if summary.eigenvalues else float("nan")
    print(
        f"curvature {variant} seed {run.seed}: lambda_max {top:.4g}, trace {summary.trace:.4g} "
        f"in {timer.write(run.timing('curvature'))['wall_s']} s"
    )


if __name__ == "__main__":
    run_stage(main)
