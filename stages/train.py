"""Stage train_<family>@<variant>-<seed>: train one run of the study matrix under the variant's training
conditions; write its model, initial and epoch-1 weights, summary, per-epoch history and lambda_max."""

from landscape.study.atomic import write_csv, write_json
from landscape.study.inputs import study_inputs
from landscape.study.models import save_checkpoint, training_record
from landscape.study.serialize import to_json
from landscape.study.stage import RunPaths, Timer, parse_seed, run_stage
from landscape.study.summaries.during_training import SHARPNESS_COLUMNS, TrainingObserver, sharpness_rows
from landscape.study.train import HISTORY_COLUMNS, history_rows, train_model, training_summary


def main(variant: str, seed: str) -> None:
    run = RunPaths(variant, parse_seed(seed))
    params, device, data = study_inputs(variant)
    cfg = params.train_for(variant)
    model_cfg = params.model_config(variant)
    train_eval = data.train.subset(params.data.train_eval_size, params.data.split_seed)
    timer = Timer()
    batch = params.runtime.eval_batch_size
    observer = TrainingObserver(params, variant, run.seed, data, cfg)
    result = train_model(variant, model_cfg, cfg, run.seed, data, train_eval, device, batch, observe=observer)
    train_s = timer.as_dict()["wall_s"] - observer.seconds
    early = observer.early_signals(result.history[0] if result.history else None, result.first_epoch_slope)
    summary = training_summary(
        variant, model_cfg, cfg, run.seed, result, data, train_eval, device, batch, observer.sharpness, early
    )
    write_csv(run.plot("history"), history_rows(result.history), HISTORY_COLUMNS)
    write_csv(run.plot("sharpness"), sharpness_rows(observer.sharpness, cfg), SHARPNESS_COLUMNS)
    write_json(run.metrics("train"), to_json(summary))
    training = training_record(cfg, run.seed)
    model = result.model
    save_checkpoint(run.model, variant, model_cfg, model, training)
    model.load_state_dict(observer.epoch1 if observer.epoch1 is not None else result.initial)
    save_checkpoint(run.epoch1, variant, model_cfg, model, training)
    model.load_state_dict(result.initial)
    save_checkpoint(run.initial, variant, model_cfg, model, training)
    timer.write(run.timing("train"), train_s=train_s, during_training_s=observer.seconds)
    state = f"diverged at epoch {result.diverged.epoch}" if result.diverged else f"val acc {summary.val.acc:.4f}"
    if result.reached_loss is not None:
        state += f", {'reached' if result.reached_loss else 'did not reach'} train loss {cfg.stop_loss:g} " + (
            f"at epoch {len(result.history)}" if result.reached_loss else f"by the cap of {cfg.epochs} epochs"
        )
    print(f"{variant} seed {run.seed}: {state}, gap {summary.gap:+.4f}; lambda_max per epoch took "
          f"{observer.seconds:.1f} s of {train_s + observer.seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
