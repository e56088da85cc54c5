"""Stage train_<family>@<variant>-<seed>: train one run of the study matrix; write its model, initial
weights, summary and per-epoch history."""

from landscape.study.atomic import write_csv, write_json
from landscape.study.inputs import study_inputs
from landscape.study.models import save_checkpoint, training_record
from landscape.study.serialize import to_json
from landscape.study.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study.train import HISTORY_COLUMNS, history_rows, train_model, training_summary


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    cfg = params.train
    model_cfg = params.model_config(variant)
    train_eval = data.train.subset(params.data.train_eval_size, params.data.split_seed)
    timer = Timer()
    batch = params.runtime.eval_batch_size
    model, initial, history = train_model(variant, model_cfg, cfg, run.seed, data, train_eval, device, batch)
    summary = training_summary(variant, model_cfg, cfg, run.seed, model, history, data, train_eval, device, batch)
    write_csv(run.plot("history"), history_rows(history), HISTORY_COLUMNS)
    write_json(run.metrics("train"), to_json(summary))
    training = training_record(cfg, run.seed)
    save_checkpoint(run.model, variant, model_cfg, model, training)
    model.load_state_dict(initial)
    save_checkpoint(run.initial, variant, model_cfg, model, training)
    timer.write(run.timing("train"))
    print(f"{variant} seed {run.seed}: val acc {summary.val.acc:.4f}, gap {summary.gap:+.4f}")


if __name__ == "__main__":
    run_stage(main)
