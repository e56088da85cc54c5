"""Stage train_<family>@<variant>-<seed>: train one run of the study matrix; write its model, initial
weights, summary and per-epoch history."""

from landscape.atomic import write_csv, write_json
from landscape.models import save_checkpoint
from landscape.serialize import to_json
from landscape.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study import study_inputs
from landscape.train import HISTORY_COLUMNS, history_rows, train_model, training_summary


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    cfg = params.train
    model_cfg = params.model_config(variant)
    train_eval = data.train.subset(params.data.train_eval_size, params.data.split_seed)
    timer = Timer()
    model, initial, history = train_model(variant, model_cfg, cfg, run.seed, data, train_eval, device)
    summary = training_summary(variant, model_cfg, cfg, run.seed, model, history, data, train_eval, device)
    write_csv(run.plot("history"), history_rows(history), HISTORY_COLUMNS)
    write_json(run.metrics("train"), to_json(summary))
    extra = {"seed": run.seed}
    save_checkpoint(run.model, variant, model_cfg, model, extra)
    model.load_state_dict(initial)
    save_checkpoint(run.initial, variant, model_cfg, model, extra)
    timer.write(run.timing("train"))
    print(f"{variant} seed {run.seed}: val acc {summary.val.acc:.4f}, gap {summary.gap:+.4f}")


if __name__ == "__main__":
    run_stage(main)
