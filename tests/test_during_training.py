"""What the train stage records while it trains (questions 1 and 4): lambda_max per epoch, the epoch-1 signals,
and the regime overrides that reach the optimizer. In-process, tiny models and synthetic images."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import yaml

from conftest import REPO, TINY_PARAMS, learnable_split
from landscape.study.data import Dataset
from landscape.study.inputs import probe_data
from landscape.study.params import parse_params
from landscape.study.results import SharpnessPoint, stability_ratio
from landscape.study.summaries.curvature import curvature_probe
from landscape.study.summaries.during_training import TrainingObserver, sharpness_rows
from landscape.study.train import train_model

CPU = torch.device("cpu")


def tiny_raw(**during: object) -> dict:
    """The repo's params with TINY_PARAMS' training and probe sizes (no file IO) and ``during`` merged into
    during_training; its regime variants are the repo's, on the small MLP and CNN."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in copy.deepcopy(TINY_PARAMS).items():
        raw[section].update(values)
    raw["during_training"].update(during)
    raw["data"]["val_size"] = 100
    return raw


def tiny(**during: object) -> object:
    return parse_params(tiny_raw(**during))


@pytest.fixture(scope="module")
def data() -> Dataset:
    return Dataset(learnable_split(400, 1), learnable_split(100, 2), learnable_split(40, 3), 0.0, 1.0)


def observed_training(params, variant: str, data: Dataset, seed: int = 0):
    cfg = params.train_for(variant)
    observer = TrainingObserver(params, variant, seed, data, cfg)
    train_eval = data.train.subset(50, 0)
    run = train_model(
        variant, params.model_config(variant), cfg, seed, data, train_eval, CPU, 64, progress=False, observe=observer
    )
    return run, observer


@pytest.mark.parametrize("variant", ["mlp", "cnn"])
def test_the_last_epochs_lambda_max_is_the_curvature_probes(data, variant):
    """Same subset (hessian_samples = curvature.samples.train) and iterations: the train stage's lambda_max at
    the final weights is the curvature probe's top eigenvalue on the same weights, to float64 rounding (the
    same Lanczos in the same order; tolerance 1e-9 relative)."""
    base = tiny()
    params = tiny(
        hessian_samples=base.curvature.samples.train,
        cold_iterations=base.curvature.lanczos_iterations,
        warm_start=False,
    )
    run, observer = observed_training(params, variant, data)
    assert [q.epoch for q in observer.sharpness] == [0, 1, 2]
    split = probe_data(params.curvature.samples, params, data).splits["train"]
    probe = curvature_probe(
        run.model, split, 64, params.curvature, params.probes, variant, 0, draws=params.draw_family(variant)
    )
    assert observer.sharpness[-1].lambda_max == pytest.approx(probe.eigenvalues[0], rel=1e-9)
    assert observer.sharpness[0].lambda_max != pytest.approx(probe.eigenvalues[0], rel=1e-3)  # it moved


def test_warm_started_lambda_max_converges_to_the_curvature_probes(data):
    """With the warm start (each epoch from the previous top Ritz vector) and enough iterations for the top pair
    to converge, the last epoch's lambda_max is the seeded curvature probe's to 1e-6 relative."""
    params = tiny(hessian_samples=50, lanczos_iterations=40, cold_iterations=4, warm_start=True)
    probe_params = dataclasses.replace(params.curvature, lanczos_iterations=40)
    run, observer = observed_training(params, "mlp", data)
    split = probe_data(params.curvature.samples, params, data).splits["train"]
    probe = curvature_probe(run.model, split, 64, probe_params, params.probes, "mlp", 0, draws="mlp")
    assert observer.sharpness[-1].lambda_max == pytest.approx(probe.eigenvalues[0], rel=1e-6)
    assert observer.vector is not None and observer.vector.dtype == torch.float64


def test_lanczos_from_the_top_ritz_vector_gives_lambda_max_in_one_step(data):
    """Started on a converged top Ritz vector (Lanczos over the whole dimension of a small float64 net), one
    iteration returns its eigenvalue (the Rayleigh quotient of an eigenvector); a start of the wrong length is
    refused."""
    from landscape.probes.hessian import MeanLoss

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2), torch.nn.Tanh(), torch.nn.Linear(2, 10))
    model = model.double()
    split = data.train.subset(40, 0)
    split = type(split)(split.x.double(), split.y)
    f = MeanLoss.of(model, split, None, 64, torch.nn.functional.cross_entropy)
    dim = sum(p.numel() for p in model.parameters())
    full = f.lanczos(1, dim, 0)
    one = f.lanczos(1, 1, 0, start=full.vector)
    assert one.iterations == 1 and one.values[0] == pytest.approx(full.values[0], rel=1e-8)
    with pytest.raises(ValueError, match="start vector must be finite, non-zero and of length"):
        f.lanczos(1, 1, 0, start=torch.ones(3))


def test_observing_does_not_change_the_training(data):
    """lambda_max and the noise probe draw from their own generators, and the global one is forked around
    them: dropout masks, and so the weights, are those of an unobserved run."""
    params = tiny()
    run, _ = observed_training(params, "mlp_dropout", data)
    cfg = params.train_for("mlp_dropout")
    plain = train_model(
        "mlp_dropout", params.model_config("mlp_dropout"), cfg, 0, data, data.train.subset(50, 0), CPU, 64,
        progress=False,
    )  # fmt: skip
    for k, v in plain.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[k], v), k


def test_early_signals_come_from_epoch_1(data):
    params = tiny()
    run, observer = observed_training(params, "mlp", data)
    early = observer.early_signals(run.history[0], run.first_epoch_slope)
    first = run.history[0]
    assert (early.val_acc, early.val_loss, early.gap) == (first.val_acc, first.val_loss, first.gap)
    assert early.lambda_max == observer.sharpness[1].lambda_max
    cfg = params.train_for("mlp")
    assert early.lambda_max_scaled == pytest.approx(early.lambda_max * cfg.lr / (2 * (1 + cfg.momentum)))
    assert early.noise_sigma == params.during_training.noise_sigma and -1 <= early.noise_drop <= 1
    assert observer.epoch1 is not None and not all(
        torch.equal(observer.epoch1[k], v) for k, v in run.model.state_dict().items()
    )  # the epoch-1 weights, not the final ones
    assert observer.early_signals(None, None) is None


def test_sharpness_rows_give_the_heavy_ball_threshold():
    """2 (1 + beta) / lr is where heavy-ball SGD turns unstable along an eigenvector of a quadratic: check it on
    the quadratic itself, x_{t+1} = x_t - lr * lam * x_t + beta (x_t - x_{t-1})."""
    lr, beta = 0.05, 0.9

    def grows(lam: float) -> bool:
        x_prev, x = 1.0, 1.0
        for _ in range(4000):
            x_prev, x = x, x - lr * lam * x + beta * (x - x_prev)
        return abs(x) > 1

    threshold = 2 * (1 + beta) / lr
    assert not grows(0.99 * threshold) and grows(1.01 * threshold)
    assert stability_ratio(threshold, lr, beta) == pytest.approx(1.0)
    params = tiny()
    cfg = params.train_for("mlp")
    (row,) = sharpness_rows([SharpnessPoint(3, 10.0, 0.025)], cfg)
    assert row["threshold"] == pytest.approx(2 * (1 + cfg.momentum) / cfg.lr)
    assert row["ratio"] == pytest.approx(10.0 * 0.025 / (2 * (1 + cfg.momentum)))


def test_a_regime_override_reaches_the_optimizer_and_the_batches(data, monkeypatch):
    """fit_b512_x1 (lr 0.2, batch 512, constant lr; its 100-epoch cap cut to the tiny section's 2 epochs here)
    trains with that lr and that batch: its epochs are cut into batches of 512 (all 400 images in one), mlp's into
    batches of 64 (the tiny train section); the lr is the optimizer's at the initial weights."""
    import landscape.study.train as train

    raw = tiny_raw()
    cell = "fit_b512_x1"
    raw["variants"][cell]["train"]["epochs"] = raw["train"]["epochs"]
    params = parse_params(raw)
    regime = params.train_for(cell)
    assert (regime.lr, regime.batch_size, regime.schedule) == (0.2, 512, "constant")
    assert params.train_for("mlp") == params.train and params.train.batch_size == 64
    cuts = []
    original = train.batch_indices

    def recording(n, batch_size, generator, device):
        cuts.append(batch_size)
        return original(n, batch_size, generator, device)

    monkeypatch.setattr(train, "batch_indices", recording)
    for variant, batch, lr in ((cell, 512, 0.2), ("mlp", 64, params.train.lr)):
        cuts.clear()
        run, observer = observed_training(params, variant, data)
        assert cuts == [batch] * len(run.history) and run.history, variant
        assert observer.sharpness[0].lr == lr, variant
        assert run.steps == len(run.history) * -(-400 // batch), variant  # ceil(400 / batch) steps an epoch
    assert params.model_config(cell) == params.model_config("mlp")
