"""Stage robustness@<variant>: accuracy under random parameter noise, for every seed of study.seeds."""

from landscape.study.atomic import write_csv, write_json
from landscape.study.inputs import probe_data
from landscape.study.probe_stage import SeedRun, run_probe_stage
from landscape.study.serialize import to_json
from landscape.study.stage import run_stage
from landscape.study.summaries.robustness import ROBUSTNESS_COLUMNS, robustness_probe


def probe(s: SeedRun) -> str:
    run, params = s.run, s.params
    p = params.robustness
    data = probe_data(p.samples, params, s.data)
    draws = params.draw_family(run.variant)
    rows, summary = robustness_probe(s.model, data, p, params.probes, run.variant, run.seed, draws=draws)
    write_csv(run.plot("robustness"), rows, ROBUSTNESS_COLUMNS)
    write_json(run.metrics("robustness"), to_json(summary))
    return f"{len(rows)} rows"


def main(variant: str) -> None:
    run_probe_stage("robustness", variant, probe)


if __name__ == "__main__":
    run_stage(main)
