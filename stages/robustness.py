"""Stage robustness@<variant>-<seed>: accuracy under random parameter noise."""

from landscape.atomic import write_csv, write_json
from landscape.directions import stream_seed
from landscape.probes import ROBUSTNESS_COLUMNS, robustness_probe
from landscape.serialize import to_json
from landscape.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study import probe_data, study_inputs, trained_model


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.robustness
    model = trained_model(run, params, device)
    probe = probe_data("robustness", p.samples, params, data)
    timer = Timer()
    seeds = [stream_seed("robustness", variant, run.seed, k) for k in range(p.trials)]
    rows, summary = robustness_probe(
        model, probe, p, params.probes.parameters, params.probes.bn, seeds, variant, run.seed
    )
    write_csv(run.plot("robustness"), rows, ROBUSTNESS_COLUMNS)
    write_json(run.metrics("robustness"), to_json(summary))
    print(
        f"robustness {variant} seed {run.seed}: {len(rows)} rows in {timer.write(run.timing('robustness'))['wall_s']} s"
    )


if __name__ == "__main__":
    run_stage(main)
