"""Stage robustness@<variant>-<seed>: accuracy under random parameter noise."""

from landscape.study.atomic import write_csv, write_json
from landscape.study.inputs import probe_data, study_inputs, trained_model
from landscape.study.serialize import to_json
from landscape.study.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study.summaries.robustness import ROBUSTNESS_COLUMNS, robustness_probe


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    p = params.robustness
    model = trained_model(run, params, device)
    probe = probe_data(p.samples, params, data)
    timer = Timer()
    rows, summary = robustness_probe(
        model, probe, p, params.probes, variant, run.seed, draws=params.draw_family(variant)
    )
    write_csv(run.plot("robustness"), rows, ROBUSTNESS_COLUMNS)
    write_json(run.metrics("robustness"), to_json(summary))
    print(
        f"robustness {variant} seed {run.seed}: {len(rows)} rows in {timer.write(run.timing('robustness'))['wall_s']} s"
    )


if __name__ == "__main__":
    run_stage(main)
