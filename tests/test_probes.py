"""Directions, noise, summary scalars and the two probes, checked against closed forms and independent computations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from landscape.data import Split
from landscape.directions import filter_normalized_direction, gaussian_like, noise_delta
from landscape.evaluate import evaluate
from landscape.models import CNN, MLP
from landscape.perturb import recalibrate_batch_norm, restored
from landscape.probes import ProbeData, alpha_grid, robustness_probe, slice_probe, trial_seed
from landscape.summary import basin_width, fit_quadratic, largest_sigma_within, mean_std

MODES = ["absolute", "relative", "filter"]


# --- tiny models and data -------------------------------------------------------------------


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=generator(seed))


def random_split(n: int, seed: int) -> Split:
    return Split(images(n, seed), torch.randint(0, 10, (n,), generator=generator(seed + 100)))


def trained_like(model: nn.Module, seed: int) -> nn.Module:
    """Move every parameter off its init (so BN beta is nonzero) and give BN non-default running stats."""
    g = generator(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        model.train()(images(32, seed + 1))
    return model.eval()


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return trained_like(MLP([16, 12]), seed=1)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return trained_like(CNN([3, 4], fc=8, dropout_conv=0.25, dropout_fc=0.5), seed=2)


MODELS = {"mlp": tiny_mlp, "cnn": tiny_cnn}


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """These tensors are tiny: intra-op threads only add overhead, badly so on a busy 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> ProbeData:
    return ProbeData(
        splits={"train": random_split(32, seed=1), "val": random_split(24, seed=2)},
        bn_data=random_split(40, seed=3),
        batch_size=16,
    )


def unperturbed(model: nn.Module, data: ProbeData) -> dict:
    return {name: evaluate(model, split, data.batch_size) for name, split in data.splits.items()}


def run_robustness(model: nn.Module, data: ProbeData, seed: int = 0, bn_modes=("frozen", "recalibrated")):
    return robustness_probe(
        model,
        data,
        sigmas=[0.0, 0.05, 0.5],
        trials=2,
        seed=seed,
        modes=MODES,
        bn_modes=list(bn_modes),
        drops=[0.05],
        bisect_steps=2,
    )


def run_slice(model: nn.Module, data: ProbeData, seed: int = 0, bn: str = "frozen"):
    return slice_probe(
        model,
        data,
        directions=2,
        points=5,
        span=1.0,
        normalization="filter",
        ignore="biasbn",
        seed=seed,
        bn=bn,
        fit_fraction=0.5,
        taus=[0.1],
    )


PROBES = {
    "robustness": run_robustness,
    "slice": run_slice,
    "slice-recalibrated": lambda model, data, seed=0: run_slice(model, data, seed, bn="recalibrated"),
}


def rows_at_origin(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("sigma", r.get("alpha")) == 0.0]


# --- directions -----------------------------------------------------------------------------


def row_norms(t: torch.Tensor) -> torch.Tensor:
    """Norm of each output unit (row along dim 0) of a weight tensor."""
    return t.detach().reshape(t.shape[0], -1).norm(dim=1)


@pytest.mark.parametrize("name", MODELS)
def test_filter_normalized_rows_match_weight_rows(name):
    model = MODELS[name]()
    direction = filter_normalized_direction(model, seed=3)
    params = list(model.parameters())
    assert [d.shape for d in direction] == [p.shape for p in params]
    for p, d in zip(params, direction, strict=True):
        if p.dim() > 1:
            torch.testing.assert_close(row_norms(d), row_norms(p), rtol=1e-5, atol=0)
        else:
            assert torch.count_nonzero(d) == 0  # biases and BN gamma/beta


@pytest.mark.parametrize("name", MODELS)
def test_filter_normalization_without_ignore_scales_biases_as_one_unit(name):
    model = MODELS[name]()
    for p, d in zip(model.parameters(), filter_normalized_direction(model, 3, ignore="none"), strict=True):
        if p.dim() <= 1:
            assert torch.count_nonzero(d) == d.numel()
            torch.testing.assert_close(d.norm(), p.detach().norm(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_layer_normalization_matches_tensor_norms(name, ignore):
    model = MODELS[name]()
    for p, d in zip(model.parameters(), filter_normalized_direction(model, 3, "layer", ignore), strict=True):
        if p.dim() <= 1 and ignore == "biasbn":
            assert torch.count_nonzero(d) == 0
        else:
            torch.testing.assert_close(d.norm(), p.detach().norm(), rtol=1e-5, atol=0)


def test_unnormalized_direction_is_the_seeded_gaussian():
    model = tiny_cnn()
    g = generator(5)
    expected = [torch.randn(p.shape, generator=g) for p in model.parameters()]
    for d, e in zip(filter_normalized_direction(model, 5, "none", "none"), expected, strict=True):
        assert torch.equal(d, e)


def test_directions_are_seeded():
    model = tiny_cnn()
    a, b, c = (filter_normalized_direction(model, s) for s in (1, 1, 2))
    weights = [i for i, p in enumerate(model.parameters()) if p.dim() > 1]
    assert all(torch.equal(a[i], b[i]) for i in weights)
    assert not any(torch.equal(a[i], c[i]) for i in weights)


@pytest.fixture
def params_and_noise() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = [p.detach() for p in tiny_cnn().parameters()]
    return params, gaussian_like(params, seed=4)


def test_absolute_noise_is_xi(params_and_noise):
    params, xi = params_and_noise
    for d, x in zip(noise_delta(params, xi, "absolute"), xi, strict=True):
        assert torch.equal(d, x)


def test_relative_noise_is_theta_times_xi(params_and_noise):
    params, xi = params_and_noise
    for d, p, x in zip(noise_delta(params, xi, "relative"), params, xi, strict=True):
        assert torch.equal(d, p * x)


def test_filter_noise_is_scaled_to_each_unit_rms(params_and_noise):
    params, xi = params_and_noise
    for d, p, x in zip(noise_delta(params, xi, "filter"), params, xi, strict=True):
        rows = p.reshape(p.shape[0], -1) if p.dim() > 1 else p.reshape(1, -1)
        scale = rows.norm(dim=1, keepdim=True) / math.sqrt(rows.shape[1])
        torch.testing.assert_close(d, (x.reshape(rows.shape) * scale).reshape(p.shape), rtol=1e-6, atol=0)


def test_unknown_noise_mode_is_refused(params_and_noise):
    with pytest.raises(ValueError, match="gaussian"):
        noise_delta(*params_and_noise, "gaussian")


# --- summary scalars on closed forms --------------------------------------------------------


def least_squares(at_optimum: bool, n: int = 64, dim: int = 5) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """Linear regression y ~ X w, with w either the least-squares solution or an arbitrary point."""
    g = generator(11)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = x @ torch.randn(dim, generator=g, dtype=torch.float64) + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1) if at_optimum else torch.randn(dim, generator=g)
    model = nn.Linear(dim, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w.view(1, dim))
    return model, x, y


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return ((model(x).squeeze(1) - y) ** 2).mean().item()


def slice_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction, alphas: list[float]) -> list[float]:
    losses = []
    with restored(model) as handle:
        for alpha in alphas:
            handle.set(direction, alpha)
            losses.append(mse(model, x, y))
    return losses


def closed_form(model: nn.Linear, x: torch.Tensor, y: torch.Tensor, direction) -> tuple[float, float, float]:
    """L(alpha) = ||X(w + alpha d) - y||^2 / n = c + b alpha + a alpha^2."""
    n = len(y)
    residual, xd = model(x).squeeze(1).detach() - y, x @ direction[0].view(-1)
    return (xd @ xd).item() / n, 2 * (residual @ xd).item() / n, (residual @ residual).item() / n


SPAN = 1.0
ALPHAS = alpha_grid(41, SPAN)


@pytest.mark.parametrize("at_optimum", [True, False])
def test_quadratic_fit_recovers_least_squares_curvature(at_optimum):
    model, x, y = least_squares(at_optimum)
    direction = filter_normalized_direction(model, seed=0)
    a, b, c = closed_form(model, x, y, direction)
    losses = slice_curve(model, x, y, direction, ALPHAS)
    assert losses[len(ALPHAS) // 2] == mse(model, x, y)  # the model is back at w
    fit = fit_quadratic(ALPHAS, losses, half_width=0.25 * SPAN)
    assert fit.curvature == pytest.approx(2 * a, rel=0.01)
    assert fit.b == pytest.approx(b, rel=0.01, abs=1e-9 * a)
    assert fit.c == pytest.approx(c, rel=0.01)
    assert fit.r2 > 1 - 1e-9
    if at_optimum:
        assert abs(b) < 1e-9 * a  # the gradient vanishes at the least-squares solution


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_basin_width_of_least_squares_parabola(fraction):
    model, x, y = least_squares(at_optimum=True)
    direction = filter_normalized_direction(model, seed=0)
    a, _, _ = closed_form(model, x, y, direction)
    tau = fraction * a * SPAN**2  # reached inside the grid, between grid points
    width = basin_width(ALPHAS, slice_curve(model, x, y, direction, ALPHAS), tau)
    assert not width.censored
    assert width.width == pytest.approx(2 * math.sqrt(tau / a), rel=0.01)
    assert width.left == pytest.approx(-width.right, rel=0.01)


def test_basin_width_is_censored_when_tau_is_not_reached():
    model, x, y = least_squares(at_optimum=True)
    direction = filter_normalized_direction(model, seed=0)
    a, _, _ = closed_form(model, x, y, direction)
    width = basin_width(ALPHAS, slice_curve(model, x, y, direction, ALPHAS), tau=2 * a * SPAN**2)
    assert width.censored
    assert width.width == 2 * SPAN  # a lower bound: the whole grid


def test_summary_inputs_are_checked():
    with pytest.raises(ValueError, match="need 3"):
        fit_quadratic([-1.0, 0.0, 1.0], [1.0, 0.0, 1.0], half_width=0.5)
    with pytest.raises(ValueError, match="contain 0"):
        basin_width([-1.0, 1.0], [1.0, 1.0], tau=0.1)


@pytest.mark.parametrize(("points", "span"), [(3, 1.0), (41, 1.0), (21, 0.5)])
def test_alpha_grid_is_symmetric_and_contains_zero(points, span):
    grid = alpha_grid(points, span)
    assert len(grid) == points
    assert grid[points // 2] == 0.0
    assert grid[0] == -span and grid[-1] == span
    assert grid == sorted(grid)
    assert all(a == -b for a, b in zip(grid, reversed(grid), strict=True))


SIGMA_GRID = [0.0, 0.01, 0.1, 1.0]


@pytest.mark.parametrize("steps", [0, 1, 4, 8])
def test_largest_sigma_within_brackets_analytic_threshold(steps):
    def drop(sigma: float) -> float:
        return sigma**2

    level = 0.05**2  # sigma* = 0.05, between the grid points 0.01 and 0.1
    t = largest_sigma_within(drop, SIGMA_GRID, [drop(s) for s in SIGMA_GRID], level, steps)
    assert not t.censored
    assert 0.01 <= t.low <= 0.05 <= t.high <= 0.1
    assert drop(t.low) <= level < drop(t.high)
    assert t.high / t.low == pytest.approx(10 ** (1 / 2**steps), rel=1e-9)  # halved in log sigma each step


def test_largest_sigma_within_is_censored_when_never_exceeded():
    t = largest_sigma_within(lambda s: s**2, SIGMA_GRID, [s**2 for s in SIGMA_GRID], level=2.0, steps=4)
    assert t.censored and t.low == 1.0 and t.high == math.inf


def test_largest_sigma_within_below_the_first_grid_point():
    def must_not_be_called(sigma: float) -> float:
        raise AssertionError("no bisection below the smallest positive sigma")

    t = largest_sigma_within(must_not_be_called, SIGMA_GRID, [s**2 for s in SIGMA_GRID], level=1e-5, steps=4)
    assert (t.low, t.high, t.censored) == (0.0, 0.01, False)


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == {"mean": 2.5, "std": pytest.approx(math.sqrt(5 / 3))}
    assert mean_std([7.0]) == {"mean": 7.0, "std": 0.0}


def test_trial_seeds_are_distinct():
    pairs = [(seed, trial) for seed in range(200) for trial in range(50)]
    assert len({trial_seed(seed, trial) for seed, trial in pairs}) == len(pairs)


# --- the probes -----------------------------------------------------------------------------


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "params": [id(p) for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "momentum": [bn.momentum for bn in batch_norms(model)],
    }


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("probe", PROBES)
def test_probe_leaves_model_exactly_as_found(data, probe, name, training):
    model = MODELS[name]().train(training)
    next(model.parameters()).requires_grad_(False)
    before = snapshot(model)
    PROBES[probe](model, data)
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    assert {k: v for k, v in after.items() if k != "state"} == {k: v for k, v in before.items() if k != "state"}


@pytest.mark.parametrize("name", MODELS)
def test_robustness_at_sigma_zero_is_the_unperturbed_score(data, name):
    model = MODELS[name]()
    base = unperturbed(model, data)
    rows, summary = run_robustness(model, data)
    frozen = [r for r in rows_at_origin(rows) if r["bn"] == "frozen"]
    assert len(frozen) == len(MODES) * 2 * len(data.splits)
    for row in frozen:
        assert (row["loss"], row["acc"]) == (base[row["split"]].loss, base[row["split"]].acc)
    for mode in MODES:
        assert summary[mode]["frozen"]["acc"]["sigma=0"] == {"mean": base["val"].acc, "std": 0.0}


@pytest.mark.parametrize("name", MODELS)
def test_slice_at_alpha_zero_is_the_unperturbed_loss(data, name):
    model = MODELS[name]()
    base = unperturbed(model, data)
    rows, summary = run_slice(model, data)
    at_zero = rows_at_origin(rows)
    assert len(at_zero) == 2 * len(data.splits)
    for row in at_zero:
        assert (row["loss"], row["acc"]) == (base[row["split"]].loss, base[row["split"]].acc)
    for split in data.splits:
        assert summary[split]["loss_at_0"] == base[split].loss


def test_recalibrated_probe_at_zero_matches_recalibrated_model(data):
    model = tiny_cnn()
    reference = copy.deepcopy(model)
    recalibrate_batch_norm(reference, data.bn_data, data.batch_size)
    expected = unperturbed(reference, data)
    rows, _ = run_robustness(model, data, bn_modes=["recalibrated"])
    for row in rows_at_origin(rows):
        assert row["loss"] == pytest.approx(expected[row["split"]].loss, abs=1e-12)
        assert row["acc"] == expected[row["split"]].acc


def test_model_without_batch_norm_is_probed_frozen_only(data):
    rows, summary = run_robustness(tiny_mlp(), data, bn_modes=["frozen", "recalibrated"])
    assert {r["bn"] for r in rows} == {"frozen"}
    assert all(set(summary[mode]) == {"frozen"} for mode in MODES)


def perturbed_copy(model: nn.Module, delta: list[torch.Tensor], scale: float) -> nn.Module:
    """theta + scale * delta, built independently of the probes' in-place machinery."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p, d in zip(other.parameters(), delta, strict=True):
            p.add_(scale * d)
    return other


def independent_noise(params: list[torch.Tensor], xi: list[torch.Tensor], mode: str) -> list[torch.Tensor]:
    """The noise definitions of DESIGN.md, per unit sigma."""
    if mode == "absolute":
        return xi
    if mode == "relative":
        return [p * x for p, x in zip(params, xi, strict=True)]
    out = []
    for p, x in zip(params, xi, strict=True):
        rows = p.reshape(p.shape[0], -1) if p.dim() > 1 else p.reshape(1, -1)
        out.append((x.reshape(rows.shape) * rows.norm(dim=1, keepdim=True) / rows.shape[1] ** 0.5).reshape(p.shape))
    return out


NOISE_SEED = 7


@pytest.fixture(scope="module")
def frozen_robustness_rows(data) -> dict[str, list[dict]]:
    """One frozen robustness run per model, shared by the per-mode checks below."""
    return {
        name: run_robustness(make(), data, seed=NOISE_SEED, bn_modes=["frozen"])[0] for name, make in MODELS.items()
    }


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", MODES)
def test_robustness_rows_score_the_documented_perturbation(data, frozen_robustness_rows, name, mode):
    model = MODELS[name]()
    sigma, trial = 0.05, 1
    params = [p.detach().clone() for p in model.parameters()]
    g = generator(trial_seed(NOISE_SEED, trial))
    xi = [torch.randn(p.shape, generator=g) for p in params]
    expected = unperturbed(perturbed_copy(model, independent_noise(params, xi, mode), sigma), data)
    rows = frozen_robustness_rows[name]
    picked = [r for r in rows if (r["mode"], r["sigma"], r["trial"]) == (mode, sigma, trial)]
    assert len(picked) == len(data.splits)
    for row in picked:
        assert row["loss"] == pytest.approx(expected[row["split"]].loss, rel=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_slice_rows_score_the_documented_direction(data, name):
    model = MODELS[name]()
    seed, direction_k, alpha = 3, 1, 1.0
    d = filter_normalized_direction(model, trial_seed(seed, direction_k))
    expected = unperturbed(perturbed_copy(model, d, alpha), data)
    rows, _ = run_slice(model, data, seed=seed)
    picked = [r for r in rows if (r["direction"], r["alpha"]) == (direction_k, alpha)]
    assert len(picked) == len(data.splits)
    for row in picked:
        assert row["loss"] == pytest.approx(expected[row["split"]].loss, rel=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("probe", PROBES)
def test_probe_is_seeded(data, probe, name):
    model = MODELS[name]()
    first, again, other = (PROBES[probe](model, data, seed=s) for s in (0, 0, 1))
    assert first[0] == again[0]
    assert first[1] == again[1]
    assert first[1]["seeds"] != other[1]["seeds"]
    origin = rows_at_origin(first[0])
    assert rows_at_origin(other[0]) == origin
    moved = [(a["loss"], b["loss"]) for a, b in zip(first[0], other[0], strict=True) if a not in origin]
    assert moved and all(a != b for a, b in moved)


def state_checker(model: nn.Module) -> tuple[list[bool], list]:
    """A pre-forward hook on the model recording, at every forward call, whether all BN running stats still
    equal the originals (on the model: in eval mode BN is folded into its convolution, so BN's own hooks never run)."""
    seen: list[bool] = []
    originals = [(bn, bn.running_mean.clone(), bn.running_var.clone()) for bn in batch_norms(model)]

    def check(_module, _inputs):
        seen.append(all(torch.equal(bn.running_mean, m) and torch.equal(bn.running_var, v) for bn, m, v in originals))

    return seen, [model.register_forward_pre_hook(check)]


@pytest.mark.parametrize("probe", ["robustness", "slice"])
def test_frozen_probe_never_touches_running_stats(data, probe):
    model = tiny_cnn()
    seen, handles = state_checker(model)
    if probe == "robustness":
        run_robustness(model, data, bn_modes=["frozen"])
    else:
        run_slice(model, data, bn="frozen")
    for h in handles:
        h.remove()
    assert seen and all(seen)


# --- batch-norm recalibration ---------------------------------------------------------------


def recalibrate_and_capture(model: nn.Module, split: Split, batch_size: int) -> dict[nn.Module, list[torch.Tensor]]:
    """Run recalibrate_batch_norm, recording the input each BN layer sees in every batch."""
    captured: dict[nn.Module, list[torch.Tensor]] = {bn: [] for bn in batch_norms(model)}
    handles = [
        bn.register_forward_pre_hook(lambda m, inputs: captured[m].append(inputs[0].detach().clone()))
        for bn in captured
    ]
    try:
        recalibrate_batch_norm(model, split, batch_size)
    finally:
        for h in handles:
            h.remove()
    return captured


def channels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (C, B*H*W)."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def perturbed_cnn() -> nn.Module:
    model = tiny_cnn()
    g = generator(21)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("batch_size", [10, 20, 40, 64])
def test_recalibration_recomputes_running_stats_from_the_data(data, batch_size):
    model = perturbed_cnn()
    split = data.bn_data  # 40 images: every batch size here splits it into equal batches, or one
    before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in batch_norms(model)]
    momenta = [bn.momentum for bn in batch_norms(model)]
    captured = recalibrate_and_capture(model, split, batch_size)
    n_batches = math.ceil(len(split) / batch_size)
    for (bn, inputs), (mean_before, var_before) in zip(captured.items(), before, strict=True):
        assert len(inputs) == n_batches
        expected_mean = channels(torch.cat(inputs)).double().mean(dim=1)
        expected_var = torch.stack([channels(x).double().var(dim=1) for x in inputs]).mean(dim=0)
        torch.testing.assert_close(bn.running_mean.double(), expected_mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), expected_var, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(bn.running_mean, mean_before)
        assert not torch.allclose(bn.running_var, var_before)
        assert bn.num_batches_tracked.item() == n_batches
    assert [bn.momentum for bn in batch_norms(model)] == momenta
    assert not any(m.training for m in model.modules())


def test_first_recalibrated_layer_matches_the_convolution_output(data):
    model = perturbed_cnn()
    recalibrate_batch_norm(model, data.bn_data, batch_size=len(data.bn_data))
    conv, bn = model.features[0], model.features[1]
    with torch.no_grad():
        out = channels(conv(data.bn_data.x)).double()
    torch.testing.assert_close(bn.running_mean.double(), out.mean(dim=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), out.var(dim=1), rtol=1e-5, atol=1e-5)


def test_recalibration_mean_is_exact_with_a_short_last_batch(data):
    model = perturbed_cnn()
    captured = recalibrate_and_capture(model, data.bn_data, batch_size=16)  # batches of 16, 16, 8
    for bn, inputs in captured.items():
        expected = channels(torch.cat(inputs)).double().mean(dim=1)
        torch.testing.assert_close(bn.running_mean.double(), expected, rtol=1e-5, atol=1e-5)
