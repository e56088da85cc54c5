"""Stage train_<model>: train one model under the shared conditions; write model, metrics, history."""

import time

from landscape.atomic import write_csv, write_json
from landscape.cli import METRICS_DIR, MODELS_DIR, PLOTS_DIR, run_stage, study_inputs, timing
from landscape.models import save_checkpoint
from landscape.train import HISTORY_COLUMNS, history_rows, train_model, training_metrics


def main(name: str) -> None:
    params, device, data = study_inputs(name)
    train_eval = data.train.subset(params.data.train_eval_size, params.data.split_seed)
    start = time.perf_counter()
    model, history = train_model(name, params.model(name), params.train, data, train_eval, device)
    metrics = training_metrics(name, model, history, data, params, device, timing=timing(start))
    write_csv(PLOTS_DIR / "history" / f"{name}.csv", history_rows(history), HISTORY_COLUMNS)
    write_json(METRICS_DIR / f"{name}.json", metrics)
    save_checkpoint(MODELS_DIR / f"{name}.pt", name, params.model(name), model, {"seed": params.train.seed})
    print(
        f"{name}: val acc {metrics['val']['acc']:.4f}, test acc {metrics['test']['acc']:.4f}, gap {metrics['gap']:+.4f}"
    )


if __name__ == "__main__":
    run_stage(main)
