"""Stage curvature@<variant>, for every seed of study.seeds: Hessian eigenvalues, adaptive sharpness, trace,
relative flatness and per-layer curvature."""

from landscape.study.atomic import write_json
from landscape.study.inputs import probe_data
from landscape.study.probe_stage import SeedRun, run_probe_stage
from landscape.study.serialize import to_json
from landscape.study.stage import run_stage
from landscape.study.summaries.curvature import curvature_probe


def probe(s: SeedRun) -> str:
    run, params = s.run, s.params
    p = params.curvature
    split = probe_data(p.samples, params, s.data).splits["train"]
    batch_size = params.runtime.eval_batch_size
    draws = params.draw_family(run.variant)
    summary = curvature_probe(s.model, split, batch_size, p, params.probes, run.variant, run.seed, draws=draws)
    write_json(run.metrics("curvature"), to_json(summary))
    top = summary.eigenvalues[0] if summary.eigenvalues else float("nan")
    return (
        f"lambda_max {top:.4g}, adaptive sharpness {summary.adaptive_sharpness:.4g}, "
        f"||theta|| {summary.theta_norm:.4g}, trace {summary.trace:.4g}"
    )


def main(variant: str) -> None:
    run_probe_stage("curvature", variant, probe)


if __name__ == "__main__":
    run_stage(main)
