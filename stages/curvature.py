"""Stage curvature@<variant>-<seed>: Hessian eigenvalues, trace, relative flatness and per-layer curvature."""

from landscape.study.atomic import write_json
from landscape.study.inputs import probe_data, study_inputs, trained_model
from landscape.study.serialize import to_json
from landscape.study.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study.summaries.curvature import curvature_probe


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.curvature
    model = trained_model(run, params, device)
    split = probe_data(p.samples, params, data).splits["train"]
    timer = Timer()
    summary = curvature_probe(
        model,
        split,
        params.runtime.eval_batch_size,
        p,
        params.probes,
        variant,
        run.seed,
        draws=params.draw_family(variant),
    )
    write_json(run.metrics("curvature"), to_json(summary))
    top = summary.eigenvalues[0] if summary.eigenvalues else float("nan")
    print(
        f"curvature {variant} seed {run.seed}: lambda_max {top:.4g}, trace {summary.trace:.4g} "
        f"in {timer.write(run.timing('curvature'))['wall_s']} s"
    )


if __name__ == "__main__":
    run_stage(main)
