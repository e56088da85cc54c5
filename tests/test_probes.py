"""Directions, noise, summary scalars and the noise and slice probes, checked against closed forms and
independent computations."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import fitted, learnable_split, probe_data_from
from landscape.probes import sweeps as probes_module
from landscape.probes.directions import (
    filter_normalized_direction,
    gaussian_like,
    noise_delta,
    perturbed_mask,
    stream_seed,
    weight_names,
)
from landscape.probes.evaluation import evaluate
from landscape.probes.perturb import recalibrate_batch_norm, restored
from landscape.probes.summary import basin_width, fit_quadratic, interpolate_crossing
from landscape.probes.sweeps import alpha_grid
from landscape.study.data import ProbeData, Split
from landscape.study.models import CNN, MLP, build_model
from landscape.study.params import (
    CurvatureParams,
    ModelConfig,
    PathParams,
    ProbeParams,
    RobustnessParams,
    Samples,
    SliceParams,
)
from landscape.study.results import RobustnessSummary, SliceSummary, Spread, drop_key, number_key
from landscape.study.serialize import from_json, to_json
from landscape.study.summaries.curvature import curvature_probe
from landscape.study.summaries.path import path_probe
from landscape.study.summaries.robustness import noise_curve, robustness_probe
from landscape.study.summaries.slices import slice_probe, surface_probe

MODES = ["absolute", "relative", "filter"]
BN_MODES = ["frozen", "recalibrated"]
VARIANT = "tiny"
UNUSED = Samples(train=0, val=0, bn=1)  # the probes take their data directly; the subset sizes are the stage's
ROBUSTNESS = RobustnessParams(sigmas=[0.0, 0.05, 0.5], trials=2, modes=MODES, drops=[0.05], samples=UNUSED)
SLICE = SliceParams(
    directions=2,
    points=5,
    span=1.0,
    normalization="filter",
    fit_fraction=0.5,
    taus=[0.1],
    samples=UNUSED,
    surface_points=3,
    surface_span=1.0,
    surface_samples=UNUSED,
)
CURVATURE = CurvatureParams(
    top_k=2, lanczos_iterations=4, hutchinson_samples=2, flatness_samples=2, layer_directions=1, samples=UNUSED
)
PATH = PathParams(points=3, margin=0.5, samples=UNUSED, monotonic_tolerance=1e-3)

pytestmark = pytest.mark.usefixtures("single_thread")


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


def tiny_mlp_bn() -> nn.Module:
    torch.manual_seed(0)
    return trained_like(MLP([16, 12], bn=True, dropout=(0.25, 0.5)), seed=3)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return trained_like(CNN([3, 4], fc=8, bn=True, dropout=(0.25, 0.5)), seed=2)


MODELS = {"mlp": tiny_mlp, "mlp_bn": tiny_mlp_bn, "cnn": tiny_cnn}


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.fixture(scope="module")
def data() -> ProbeData:
    return probe_data_from(random_split, 32, 24, 40, batch_size=16)


@pytest.fixture(scope="module")
def learnable() -> ProbeData:
    return probe_data_from(learnable_split, 64, 64, 40, batch_size=32)


def unperturbed(model: nn.Module, data: ProbeData) -> dict:
    return {name: evaluate(model, split, data.batch_size) for name, split in data.splits.items()}


def run_robustness(
    model: nn.Module, data: ProbeData, train_seed: int = 0, bn_modes=BN_MODES, parameters="weights", settings=None
):
    probes = ProbeParams(parameters=parameters, bn=list(bn_modes))
    return robustness_probe(model, data, settings or ROBUSTNESS, probes, VARIANT, train_seed, draws=VARIANT)


def run_slice(
    model: nn.Module, data: ProbeData, train_seed: int = 0, bn_modes=("frozen",), parameters="weights", settings=None
):
    probes = ProbeParams(parameters=parameters, bn=list(bn_modes))
    return slice_probe(model, data, settings or SLICE, probes, VARIANT, train_seed, draws=VARIANT)


def run_surface(model: nn.Module, data: ProbeData, train_seed: int = 0):
    return surface_probe(
        model, data, SLICE, ProbeParams(parameters="weights", bn=["frozen"]), VARIANT, train_seed, draws=VARIANT
    )


def run_path(model: nn.Module, data: ProbeData, train_seed: int = 0):
    g = generator(50 + train_seed)
    initial = {n: p.detach() + 0.2 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    return path_probe(model, initial, data, PATH, VARIANT, train_seed)


def run_curvature(model: nn.Module, data: ProbeData, train_seed: int = 0):
    probes = ProbeParams(parameters="weights", bn=["frozen"])
    split = data.splits["train"]
    return [], curvature_probe(model, split, data.batch_size, CURVATURE, probes, VARIANT, train_seed, draws=VARIANT)


PROBES = {
    "robustness": run_robustness,
    "slice": lambda model, data, train_seed=0: run_slice(model, data, train_seed, BN_MODES),
    "surface": run_surface,
    "path": run_path,
    "curvature": run_curvature,
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
def test_filter_normalization_of_all_parameters_scales_biases_as_one_unit(name):
    model = MODELS[name]()
    for p, d in zip(model.parameters(), filter_normalized_direction(model, 3, parameters="all"), strict=True):
        if p.dim() <= 1:
            assert torch.count_nonzero(d) == d.numel()
            torch.testing.assert_close(d.norm(), p.detach().norm(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("parameters", ["weights", "all"])
def test_layer_normalization_matches_tensor_norms(name, parameters):
    model = MODELS[name]()
    for p, d in zip(model.parameters(), filter_normalized_direction(model, 3, "layer", parameters), strict=True):
        if p.dim() <= 1 and parameters == "weights":
            assert torch.count_nonzero(d) == 0
        else:
            torch.testing.assert_close(d.norm(), p.detach().norm(), rtol=1e-5, atol=0)


def test_unnormalized_direction_is_the_seeded_gaussian():
    model = tiny_cnn()
    g = generator(5)
    expected = [torch.randn(p.shape, generator=g) for p in model.parameters()]
    for d, e in zip(filter_normalized_direction(model, 5, "none", "all"), expected, strict=True):
        assert torch.equal(d, e)


def test_directions_are_seeded():
    model = tiny_cnn()
    a, b, c = (filter_normalized_direction(model, s) for s in (1, 1, 2))
    weights = [i for i, p in enumerate(model.parameters()) if p.dim() > 1]
    assert all(torch.equal(a[i], b[i]) for i in weights)
    assert not any(torch.equal(a[i], c[i]) for i in weights)


@pytest.mark.parametrize("name", MODELS)
def test_perturbed_set_is_the_weight_tensors_or_everything(name):
    model = MODELS[name]()
    named = list(model.named_parameters())
    assert perturbed_mask(model, "weights") == [p.dim() > 1 for _, p in named]
    assert perturbed_mask(model, "all") == [True] * len(named)
    assert weight_names(model, "weights") == [n for n, p in named if p.dim() > 1]
    assert all(n.endswith("weight") for n in weight_names(model, "weights"))
    assert weight_names(model, "all") == [n for n, _ in named]


@pytest.fixture
def params_and_noise() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = [p.detach() for p in tiny_cnn().parameters()]
    return params, gaussian_like(params, seed=4)


def everything(params: list[torch.Tensor]) -> list[bool]:
    return [True] * len(params)


def test_absolute_noise_is_xi(params_and_noise):
    params, xi = params_and_noise
    for d, x in zip(noise_delta(params, xi, "absolute", everything(params)), xi, strict=True):
        assert torch.equal(d, x)


def test_relative_noise_is_theta_times_xi(params_and_noise):
    params, xi = params_and_noise
    for d, p, x in zip(noise_delta(params, xi, "relative", everything(params)), params, xi, strict=True):
        assert torch.equal(d, p * x)


def test_filter_noise_is_scaled_to_each_unit_rms(params_and_noise):
    params, xi = params_and_noise
    for d, p, x in zip(noise_delta(params, xi, "filter", everything(params)), params, xi, strict=True):
        rows = p.reshape(p.shape[0], -1) if p.dim() > 1 else p.reshape(1, -1)
        scale = rows.norm(dim=1, keepdim=True) / math.sqrt(rows.shape[1])
        torch.testing.assert_close(d, (x.reshape(rows.shape) * scale).reshape(p.shape), rtol=1e-6, atol=0)


def test_unknown_noise_mode_is_refused(params_and_noise):
    params, xi = params_and_noise
    with pytest.raises(ValueError, match="gaussian"):
        noise_delta(params, xi, "gaussian", everything(params))


# --- noise and slices: the same parameter set, independent random streams ----------------------


@pytest.mark.parametrize("name", ["mlp_bn", "cnn"])
@pytest.mark.parametrize("parameters", ["weights", "all"])
def test_noise_and_slices_perturb_the_same_set(name, parameters):
    """'weights' (the default): every noise mode and the slice direction are exactly 0 on biases and BN
    gamma/beta and move every weight tensor; 'all': they move those too."""
    model = MODELS[name]()
    params = [p.detach() for p in model.parameters()]
    mask = perturbed_mask(model, parameters)
    vectors = {
        **{mode: noise_delta(params, gaussian_like(params, 1), mode, mask) for mode in MODES},
        "slice": filter_normalized_direction(model, 2, "filter", parameters),
        "slice-layer": filter_normalized_direction(model, 2, "layer", parameters),
    }
    for (pname, p), keep in zip(model.named_parameters(), mask, strict=True):
        small = p.dim() <= 1  # a bias or a BN gamma/beta
        assert keep == (parameters == "all" or not small)
        for what, v in vectors.items():
            t = v[list(dict(model.named_parameters())).index(pname)]
            if keep:
                assert torch.count_nonzero(t) == t.numel(), f"{what} leaves {pname} unperturbed"
            else:
                assert torch.count_nonzero(t) == 0, f"{what} moves {pname}"
    assert any(p.dim() <= 1 for p in params)  # the check is not vacuous: there are biases and BN parameters


@pytest.mark.parametrize("parameters", ["weights", "all"])
@pytest.mark.parametrize("probe", ["robustness", "slice"])
def test_probes_move_exactly_the_configured_set(data, monkeypatch, probe, parameters):
    """At every evaluation inside the probe, only tensors of the configured set differ from the trained ones."""
    model = tiny_cnn()
    named = list(model.named_parameters())
    originals = [p.detach().clone() for _, p in named]
    moved: set[str] = set()
    real_evaluate = probes_module.evaluate

    def spy(m, split, *args, **kwargs):
        moved.update(n for (n, p), p0 in zip(named, originals, strict=True) if not torch.equal(p, p0))
        return real_evaluate(m, split, *args, **kwargs)

    monkeypatch.setattr(probes_module, "evaluate", spy)
    (run_robustness if probe == "robustness" else run_slice)(model, data, parameters=parameters, bn_modes=["frozen"])
    expected = {n for n, p in named if parameters == "all" or p.dim() > 1}
    assert moved == expected


def flat(vectors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in vectors]).double()


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    x, y = flat(a), flat(b)
    return (x @ y / (x.norm() * y.norm())).item()


@pytest.mark.parametrize("variant", ["mlp", "cnn"])
def test_noise_draws_and_slice_directions_are_independent(variant):
    """Across draws k, a robustness noise vector and slice direction k are nearly orthogonal, as independent
    Gaussians in N dimensions are (|cos| ~ N^-1/2); drawn from one seed, they would be nearly parallel."""
    cfg = {
        "mlp": ModelConfig("mlp", [256, 128], 0, False, [0.0, 0.0]),
        "cnn": ModelConfig("cnn", [32, 64], 128, True, [0.25, 0.5]),
    }[variant]
    torch.manual_seed(0)
    model = build_model(cfg)
    params = [p.detach() for p in model.parameters()]
    n = sum(p.numel() for p in params)
    assert n > 200_000
    bound = 5 / math.sqrt(n)
    for train_seed in (0, 1):
        for k in range(4):
            xi = gaussian_like(params, stream_seed("robustness", variant, train_seed, k))
            slice_seed = stream_seed("slice", variant, train_seed, k)
            assert abs(cosine(xi, gaussian_like(params, slice_seed))) < bound, (train_seed, k)
            assert abs(cosine(xi, filter_normalized_direction(model, slice_seed))) < bound, (train_seed, k)
    shared = stream_seed("slice", variant, 0, 0)  # control: one seed for both gives (nearly) the same vector
    assert cosine(gaussian_like(params, shared), filter_normalized_direction(model, shared)) > 0.5


def test_stream_seeds_differ_for_every_probe_variant_seed_and_draw():
    probes = ["robustness", "slice", "surface", "curvature/lanczos", "curvature/hutchinson", "curvature/layer"]
    variants = ["mlp", "mlp_bn", "cnn", "cnn_nobn"]
    keys = [(p, v, s, k) for p in probes for v in variants for s in range(4) for k in range(12)]
    values = [stream_seed(*key) for key in keys]
    assert len(set(values)) == len(keys)
    assert all(0 <= v < 2**63 for v in values)  # a valid torch.Generator seed
    assert values == [stream_seed(*key) for key in keys]  # a pure function of its arguments
    assert stream_seed("slice", "mlp", 1, 0) != stream_seed("slice", "mlp", 0, 1)


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


def slice_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction, alphas: list[float]) -> list[float]:
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
    losses = slice_losses(model, x, y, direction, ALPHAS)
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
    width = basin_width(ALPHAS, slice_losses(model, x, y, direction, ALPHAS), tau)
    assert not width.censored
    assert width.width == pytest.approx(2 * math.sqrt(tau / a), rel=0.01)
    assert width.left == pytest.approx(-width.right, rel=0.01)


def test_basin_width_is_censored_when_tau_is_not_reached():
    model, x, y = least_squares(at_optimum=True)
    direction = filter_normalized_direction(model, seed=0)
    a, _, _ = closed_form(model, x, y, direction)
    width = basin_width(ALPHAS, slice_losses(model, x, y, direction, ALPHAS), tau=2 * a * SPAN**2)
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


def test_noise_curve_pairs_drops_by_trial_and_interpolates_sigma_star():
    sigmas = [0.0, 0.01, 0.1, 1.0]
    accs = [[0.9, 0.8], [0.9, 0.8], [0.89, 0.77], [0.4, 0.3]]  # acc[sigma][trial]
    curve = noise_curve("filter", "frozen", sigmas, accs, drops=[0.05, 0.01, 0.6])
    point = curve.points[number_key("sigma", 0.1)]
    assert point.sigma == 0.1
    assert point.acc == Spread.of([0.89, 0.77])
    assert point.drop == Spread.of([0.9 - 0.89, 0.8 - 0.77])  # paired per trial, not mean minus mean
    assert curve.points["sigma_0"].drop == Spread(0.0, 0.0, 2)
    # mean drops 0, 0, 0.02, 0.5: the 5 pp level is crossed between 0.1 and 1, linearly in log sigma
    star = curve.sigma_star[drop_key(0.05)]
    assert not star.censored
    assert star.value == pytest.approx(10 ** (-1 + (0.05 - 0.02) / (0.5 - 0.02)), rel=1e-9)
    one_pp = curve.sigma_star[drop_key(0.01)]
    assert one_pp.value == pytest.approx(10 ** (-2 + 0.01 / 0.02), rel=1e-9) and not one_pp.censored
    assert (curve.sigma_star[drop_key(0.6)].value, curve.sigma_star[drop_key(0.6)].censored) == (1.0, True)
    assert curve.drops == {drop_key(0.05): 0.05, drop_key(0.01): 0.01, drop_key(0.6): 0.6}


# --- the probes leave the model as they found it -----------------------------------------------


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "params": [id(p) for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "momentum": [bn.momentum for bn in batch_norms(model)],
    }


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("probe", PROBES)
def test_probe_leaves_model_exactly_as_found(data, probe, name, training):
    model = MODELS[name]().train(training)
    next(model.parameters()).requires_grad_(False)
    before = snapshot(model)
    PROBES[probe](model, data)
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key  # weights and buffers, bit for bit
    assert {k: v for k, v in after.items() if k != "state"} == {k: v for k, v in before.items() if k != "state"}


# --- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_robustness_at_sigma_zero_is_the_unperturbed_score(data, name):
    model = MODELS[name]()
    base = unperturbed(model, data)
    rows, summary = run_robustness(model, data)
    frozen = [r for r in rows_at_origin(rows) if r["bn"] == "frozen"]
    assert len(frozen) == len(MODES) * ROBUSTNESS.trials * len(data.splits)
    for row in frozen:
        assert (row["loss"], row["acc"]) == (base[row["split"]].loss, base[row["split"]].acc)
    assert summary.split == "val"
    for mode in MODES:
        zero = summary.curves[mode]["frozen"].points[number_key("sigma", 0.0)]
        assert zero.acc == Spread(base["val"].acc, 0.0, ROBUSTNESS.trials)
        assert zero.drop == Spread(0.0, 0.0, ROBUSTNESS.trials)


def mean_drops(rows: list[dict], mode: str, bn: str, sigmas: list[float], split: str = "val") -> list[float]:
    """Mean over trials of acc(sigma = 0) - acc(sigma), from the rows."""
    acc = {(r["sigma"], r["trial"]): r["acc"] for r in rows if (r["mode"], r["bn"], r["split"]) == (mode, bn, split)}
    trials = sorted({t for _, t in acc})
    return [sum(acc[(0.0, t)] - acc[(s, t)] for t in trials) / len(trials) for s in sigmas]


@pytest.mark.parametrize("name", MODELS)
def test_sigma_star_is_the_interpolated_crossing_of_the_mean_drops(learnable, name):
    """On a fitted model (noise really costs accuracy) sigma*_d is stats.interpolate_crossing of the rows' mean
    drops, in log sigma, for every mode and BN handling."""
    torch.manual_seed(0)
    model = fitted(MODELS[name](), learnable.splits["train"])
    assert evaluate(model, learnable.splits["val"], 64).acc > 0.5
    settings = RobustnessParams(
        sigmas=[0.0, 0.02, 0.1, 0.5, 2.0],
        trials=3,
        modes=MODES,
        drops=[0.02, 0.1, 0.3],
        samples=UNUSED,
    )
    rows, summary = run_robustness(model, learnable, settings=settings)
    crossed = 0
    for mode, by_bn in summary.curves.items():
        for bn, curve in by_bn.items():
            drops = mean_drops(rows, mode, bn, settings.sigmas)
            assert [p.drop.mean for p in curve.points.values()] == pytest.approx(drops, abs=1e-12)
            for d in settings.drops:
                value, censored = interpolate_crossing(settings.sigmas, drops, d, log_x=True)
                star = curve.sigma_star[drop_key(d)]
                assert star.value == pytest.approx(value, rel=1e-12) and star.censored == censored
                crossed += not censored and value > settings.sigmas[1]
    assert crossed > 0  # some crossings fall between two positive grid points: the interpolation is exercised


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
    rows, summary = run_robustness(tiny_mlp(), data, bn_modes=BN_MODES)
    assert {r["bn"] for r in rows} == {"frozen"}
    assert all(set(summary.curves[mode]) == {"frozen"} for mode in MODES)
    _, with_bn = run_robustness(tiny_mlp_bn(), data, bn_modes=BN_MODES)
    assert all(set(with_bn.curves[mode]) == set(BN_MODES) for mode in MODES)


def perturbed_copy(model: nn.Module, delta: list[torch.Tensor], scale: float) -> nn.Module:
    """theta + scale * delta, built independently of the probes' in-place machinery."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p, d in zip(other.parameters(), delta, strict=True):
            p.add_(scale * d)
    return other


def independent_noise(params: list[torch.Tensor], xi: list[torch.Tensor], mode: str) -> list[torch.Tensor]:
    """The noise definitions of DESIGN.md per unit sigma, on weight tensors only (the default set)."""
    out = []
    for p, x in zip(params, xi, strict=True):
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
        elif mode == "absolute":
            out.append(x)
        elif mode == "relative":
            out.append(p * x)
        else:
            rows = p.reshape(p.shape[0], -1)
            out.append((x.reshape(rows.shape) * rows.norm(dim=1, keepdim=True) / rows.shape[1] ** 0.5).reshape(p.shape))
    return out


def independent_direction(model: nn.Module, seed: int) -> list[torch.Tensor]:
    """Li et al.'s filter-normalized direction, weights only: d_j <- d_j ||theta_j|| / ||d_j|| per output unit."""
    g = generator(seed)
    out = []
    for p in model.parameters():
        d = torch.randn(p.shape, generator=g, dtype=p.dtype)
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
        else:
            ratio = row_norms(p) / d.reshape(p.shape[0], -1).norm(dim=1)
            out.append(d * ratio.view(-1, *[1] * (p.dim() - 1)))
    return out


@pytest.fixture(scope="module")
def frozen_robustness_rows(data) -> dict[str, list[dict]]:
    """One frozen robustness run per model (training seed 7), shared by the per-mode checks below."""
    return {name: run_robustness(make(), data, train_seed=7, bn_modes=["frozen"])[0] for name, make in MODELS.items()}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", MODES)
def test_robustness_rows_score_the_documented_perturbation(data, frozen_robustness_rows, name, mode):
    model = MODELS[name]()
    sigma, trial = 0.05, 1
    params = [p.detach().clone() for p in model.parameters()]
    g = generator(stream_seed("robustness", VARIANT, 7, trial))
    xi = [torch.randn(p.shape, generator=g) for p in params]
    expected = unperturbed(perturbed_copy(model, independent_noise(params, xi, mode), sigma), data)
    rows = frozen_robustness_rows[name]
    picked = [r for r in rows if (r["mode"], r["sigma"], r["trial"]) == (mode, sigma, trial)]
    assert len(picked) == len(data.splits)
    for row in picked:
        assert row["loss"] == pytest.approx(expected[row["split"]].loss, rel=1e-5)


# --- slices -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_slice_at_alpha_zero_is_the_unperturbed_loss(data, name):
    model = MODELS[name]()
    base = unperturbed(model, data)
    rows, summary = run_slice(model, data)
    at_zero = rows_at_origin(rows)
    assert len(at_zero) == SLICE.directions * len(data.splits)
    for row in at_zero:
        assert (row["loss"], row["acc"]) == (base[row["split"]].loss, base[row["split"]].acc)
    for split in data.splits:
        assert summary.curves["frozen"][split].loss_at_0 == base[split].loss


@pytest.mark.parametrize("name", MODELS)
def test_slice_rows_score_the_documented_direction(data, name):
    model = MODELS[name]()
    train_seed, direction_k, alpha = 3, 1, 1.0
    d = independent_direction(model, stream_seed("slice", VARIANT, train_seed, direction_k))
    expected = unperturbed(perturbed_copy(model, d, alpha), data)
    rows, summary = run_slice(model, data, train_seed=train_seed)
    picked = [r for r in rows if (r["direction"], r["alpha"]) == (direction_k, alpha)]
    assert len(picked) == len(data.splits)
    for row in picked:
        assert row["loss"] == pytest.approx(expected[row["split"]].loss, rel=1e-5)
    weights = [p.detach() for p in model.parameters() if p.dim() > 1]
    assert summary.theta_norm == pytest.approx(math.sqrt(sum(float((w.double() ** 2).sum()) for w in weights)))
    assert summary.direction_norm_rel.mean == pytest.approx(1.0, rel=1e-5)  # ||d_j|| = ||theta_j|| for every unit


class QuadraticLoss(nn.Module):
    """A model whose cross-entropy IS a quadratic in its weight: logits (0, log(expm1(q_i))) with label 0 give
    CE_i = log(1 + expm1(q_i)) = q_i, where q_i = C + (x_i . w + b - t_i)^2 and t_i is the last input column.

    So L(w + alpha d) = L(w) + alpha g.d + alpha^2 mean_i (x_i . d)^2 exactly, and d^T H d = 2 mean_i (x_i . d)^2.
    """

    C = 0.5

    def __init__(self, dim: int, seed: int):
        super().__init__()
        g = generator(seed)
        self.weight = nn.Parameter(torch.randn(1, dim, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(1, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, target = x[:, :-1], x[:, -1]
        q = self.C + (features @ self.weight[0] + self.bias[0] - target) ** 2
        return torch.stack([torch.zeros_like(q), torch.log(torch.expm1(q))], dim=1)


def quadratic_data(n: int, dim: int) -> ProbeData:
    def split(seed: int) -> Split:
        return Split(
            0.5 * torch.randn(n, dim + 1, generator=generator(seed), dtype=torch.float64), torch.zeros(n).long()
        )

    return ProbeData(splits={"train": split(1), "val": split(2)}, bn_data=split(3), batch_size=7)


def test_quadratic_loss_model_is_what_it_claims():
    model, data = QuadraticLoss(4, 0), quadratic_data(20, 4)
    x = data.splits["train"].x
    q = QuadraticLoss.C + (x[:, :-1] @ model.weight[0] + model.bias[0] - x[:, -1]) ** 2
    with torch.no_grad():
        ce = F.cross_entropy(model(x), torch.zeros(len(x)).long(), reduction="none")
    torch.testing.assert_close(ce, q.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fit_fraction", [1.0, 0.5, 0.25])
def test_slice_exact_curvature_equals_fitted_2a_on_an_exact_quadratic(fit_fraction):
    """d^T H d from the Hessian-vector product, the quadratic fit's 2a and the closed form 2 mean (x.d)^2 agree,
    whatever the fit window, where the loss along d is exactly a parabola."""
    dim = 6
    model, data = QuadraticLoss(dim, 0), quadratic_data(30, dim)
    settings = SliceParams(**{**vars(SLICE), "points": 9, "span": 2.0, "fit_fraction": fit_fraction, "directions": 3})
    weight = model.weight.detach().clone()
    _, summary = run_slice(model, data, settings=settings)
    assert torch.equal(model.weight, weight)
    x = data.splits["train"].x[:, :-1]
    for k, (exact, fit) in enumerate(
        zip(summary.curvature_exact_per_direction, summary.curvature_fit_per_direction, strict=True)
    ):
        d = independent_direction(model, stream_seed("slice", VARIANT, 0, k))[0].double()
        closed = 2 * ((x @ d[0]) ** 2).mean().item()
        assert exact == pytest.approx(closed, rel=1e-9)
        assert fit == pytest.approx(closed, rel=1e-7)
    assert summary.curvature_exact.mean == pytest.approx(sum(summary.curvature_exact_per_direction) / 3, rel=1e-12)


def test_fitted_curvature_converges_to_exact_as_the_window_shrinks(learnable):
    """On a smooth non-quadratic model the fit depends on its window; as the window shrinks, 2a -> d^T H d."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 12), nn.Tanh(), nn.Linear(12, 10))
    model = fitted(model, learnable.splits["train"]).double()
    data = ProbeData(
        splits={n: Split(s.x.double(), s.y) for n, s in learnable.splits.items()},
        bn_data=Split(learnable.bn_data.x.double(), learnable.bn_data.y),
        batch_size=32,
    )
    errors = []
    fractions = (1.0, 0.5, 0.2, 0.1, 0.05)
    for fraction in fractions:
        settings = SliceParams(**{**vars(SLICE), "points": 41, "span": 1.0, "fit_fraction": fraction})
        _, s = run_slice(model, data, settings=settings)
        exact, fit = s.curvature_exact_per_direction, s.curvature_fit_per_direction
        errors.append(max(abs(f - e) / abs(e) for e, f in zip(exact, fit, strict=True)))
    assert errors[0] > 0.1  # a wide window is not local: the fit is far off
    for wide, narrow, e_wide, e_narrow in zip(fractions, fractions[1:], errors, errors[1:], strict=False):
        assert e_narrow < e_wide * (narrow / wide) ** 2 * 2  # the error shrinks like window^2 (quartic term)
    assert errors[-1] < 5e-3


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("probe", ["robustness", "slice"])
def test_probe_is_seeded(data, probe, name):
    model = MODELS[name]()
    run = PROBES[probe]
    first, again, other = (run(model, data, train_seed=s) for s in (0, 0, 1))
    assert first[0] == again[0]
    assert first[1] == again[1]
    origin = rows_at_origin(first[0])
    assert rows_at_origin(other[0]) == origin
    moved = [(a["loss"], b["loss"]) for a, b in zip(first[0], other[0], strict=True) if a not in origin]
    assert moved and all(a != b for a, b in moved)


@pytest.mark.parametrize("probe", ["robustness", "slice"])
def test_summaries_survive_the_json_round_trip(data, probe):
    rows, summary = PROBES[probe](tiny_cnn(), data)
    cls = RobustnessSummary if probe == "robustness" else SliceSummary
    text = json.dumps(to_json(summary), allow_nan=False)
    assert "=" not in "".join(json.loads(text).keys())
    assert from_json(cls, json.loads(text)) == summary


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
        run_slice(model, data, bn_modes=["frozen"])
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
    """(B, C, H, W) -> (C, B*H*W); (B, C) -> (C, B)."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def perturbed(make) -> nn.Module:
    model = make()
    g = generator(21)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("make", [tiny_cnn, tiny_mlp_bn], ids=["cnn", "mlp_bn"])
@pytest.mark.parametrize("batch_size", [10, 20, 40, 64])
def test_recalibration_recomputes_running_stats_from_the_data(data, batch_size, make):
    model = perturbed(make)
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
    model = perturbed(tiny_cnn)
    recalibrate_batch_norm(model, data.bn_data, batch_size=len(data.bn_data))
    conv, bn = model.features[0], model.features[1]
    with torch.no_grad():
        out = channels(conv(data.bn_data.x)).double()
    torch.testing.assert_close(bn.running_mean.double(), out.mean(dim=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), out.var(dim=1), rtol=1e-5, atol=1e-5)


def test_recalibration_mean_is_exact_with_a_short_last_batch(data):
    model = perturbed(tiny_cnn)
    captured = recalibrate_and_capture(model, data.bn_data, batch_size=16)  # batches of 16, 16, 8
    for bn, inputs in captured.items():
        expected = channels(torch.cat(inputs)).double().mean(dim=1)
        torch.testing.assert_close(bn.running_mean.double(), expected, rtol=1e-5, atol=1e-5)
