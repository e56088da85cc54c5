"""The 2-D loss surface and the path from the initial to the trained weights, against the 1-D slice and
against direct evaluation."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from conftest import fitted, learnable_split, probe_data_from
from landscape.probes.directions import stream_seed
from landscape.probes.evaluation import evaluate
from landscape.probes.perturb import recalibrate_batch_norm
from landscape.probes.settings import PathSettings, SliceSettings, SurfaceSettings
from landscape.probes.surfaces import SurfacePoint, interpolation_path, loss_surface, path_grid
from landscape.probes.sweeps import alpha_grid, loss_slices
from landscape.study.data import ProbeData
from landscape.study.models import CNN, MLP
from landscape.study.results import number_key
from landscape.study.summaries.path import path_summary
from landscape.study.summaries.slices import surface_area

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data() -> ProbeData:
    return probe_data_from(learnable_split, 48, 40, 40, batch_size=16)


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "mlp":
        return MLP([16, 12])
    if name == "mlp_bn":
        return MLP([16, 12], bn=True, dropout=(0.25, 0.5))
    return CNN([3, 4], fc=8, bn=True, dropout=(0.25, 0.5))


NAMES = ["mlp", "mlp_bn", "cnn"]


@pytest.fixture(scope="module")
def runs(data) -> dict[str, tuple[nn.Module, dict[str, torch.Tensor]]]:
    """name -> (model fitted for a few steps, its initial state_dict)."""
    out = {}
    for name in NAMES:
        model = make(name)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        out[name] = (fitted(model, data.splits["train"], steps=30), initial)
    return out


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# --- 2-D surface ------------------------------------------------------------------------------


def slice_losses(model: nn.Module, data: ProbeData, seed: int, points: int, span: float) -> dict[tuple, tuple]:
    """(alpha, split) -> (loss, acc) of the 1-D slice along the direction of ``seed``, BN frozen."""
    result = loss_slices(model, data, SliceSettings(points=points, span=span, seeds=(seed,)))
    return {(q.alpha, q.split): (q.loss[0], q.acc[0]) for q in result.points}


@pytest.mark.parametrize("name", NAMES)
def test_surface_axes_are_the_one_dimensional_slices_with_the_same_seeds(data, runs, name):
    """The row b = 0 is the slice along d1, the column a = 0 the slice along d2 (same seeds, same grid)."""
    model, _ = runs[name]
    points, span = 5, 0.8
    seeds = [stream_seed("surface", name, 0, k) for k in range(2)]
    before = state(model)
    rows = loss_surface(model, data, SurfaceSettings(points=points, span=span, seeds=seeds))
    assert_same_state(model, before)
    grid = alpha_grid(points, span)
    assert len(rows) == points * points * len(data.splits)
    assert {(r.a, r.b) for r in rows} == {(a, b) for a in grid for b in grid}
    surface = {(r.a, r.b, r.split): (r.loss, r.acc) for r in rows}
    along_d1 = slice_losses(model, data, seeds[0], points, span)
    along_d2 = slice_losses(model, data, seeds[1], points, span)
    assert len(along_d1) == points * len(data.splits)
    for (alpha, split), (loss, acc) in along_d1.items():
        assert surface[(alpha, 0.0, split)][0] == pytest.approx(loss, rel=1e-6, abs=1e-7)
        assert surface[(alpha, 0.0, split)][1] == acc
    for (alpha, split), (loss, _) in along_d2.items():
        assert surface[(0.0, alpha, split)][0] == pytest.approx(loss, rel=1e-6, abs=1e-7)
    corner = surface[(grid[0], grid[-1], "train")][0]
    assert corner != pytest.approx(surface[(0.0, 0.0, "train")][0])  # the grid really moves in two directions


def test_surface_center_is_the_unperturbed_model(data, runs):
    model, _ = runs["cnn"]
    rows = loss_surface(model, data, SurfaceSettings(points=3, span=1.0, seeds=(1, 2)))
    for r in rows:
        if (r.a, r.b) == (0.0, 0.0):
            score = evaluate(model, data.splits[r.split], data.batch_size)
            assert (r.loss, r.acc) == (score.loss, score.acc)


def test_surface_area_is_the_fraction_of_grid_points_within_tau():
    losses = {(-1.0, -1.0): 3.0, (0.0, -1.0): 1.5, (1.0, -1.0): 2.5,
              (-1.0, 0.0): 1.2, (0.0, 0.0): 1.0, (1.0, 0.0): 1.05,
              (-1.0, 1.0): 9.0, (0.0, 1.0): 1.08, (1.0, 1.0): 4.0}  # fmt: skip
    rows = [SurfacePoint(a, b, "train", v, math.nan) for (a, b), v in losses.items()]
    rows += [SurfacePoint(a, b, "val", 100.0, math.nan) for a, b in losses]  # another split, ignored
    area = surface_area(rows, "train", [0.1, 0.5, 100.0])
    assert area == {number_key("tau", 0.1): 3 / 9, number_key("tau", 0.5): 5 / 9, number_key("tau", 100.0): 1.0}


# --- path from initialization -----------------------------------------------------------------


@pytest.mark.parametrize(("points", "margin", "expected"), [(5, 0.0, [0, 0.25, 0.5, 0.75, 1.0]),
                                                           (5, 0.5, [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]),
                                                           (3, 0.5, [0, 0.5, 1.0, 1.5])])  # fmt: skip
def test_path_grid_steps_evenly_through_one_into_the_margin(points, margin, expected):
    assert path_grid(points, margin) == expected


def test_default_path_grid_hits_one_and_the_margin():
    grid = path_grid(21, 0.2)
    assert len(grid) == 25 and grid[0] == 0.0 and grid[20] == 1.0
    assert grid[-1] == pytest.approx(1.2)


def at_initial(model: nn.Module, initial: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with the initial parameters (trained buffers kept)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in other.named_parameters():
            p.copy_(initial[n])
    return other


def scores(model: nn.Module, data: ProbeData, recalibrate: bool) -> dict:
    model = copy.deepcopy(model)
    if recalibrate:
        recalibrate_batch_norm(model, data.bn_data, data.batch_size)
    return {name: evaluate(model, split, data.batch_size) for name, split in data.splits.items()}


@pytest.mark.parametrize("name", NAMES)
def test_path_ends_are_the_initial_and_trained_models(data, runs, name):
    """t = 0 scores theta_0 and t = 1 scores theta_T; with BN, after recalibrating on the same BN images."""
    model, initial = runs[name]
    has_bn = name != "mlp"
    before = state(model)
    result = interpolation_path(model, initial, data, PathSettings(points=5, margin=0.5))
    assert_same_state(model, before)
    assert not model.training
    assert result.bn == ("recalibrated" if has_bn else "frozen")
    ts = path_grid(5, 0.5)
    assert result.ts == ts and len(result.points) == len(ts) * len(data.splits)
    at = {(r.t, r.split): r for r in result.points}
    start, end = scores(at_initial(model, initial), data, has_bn), scores(model, data, has_bn)
    for split in data.splits:
        assert at[(0.0, split)].loss == pytest.approx(start[split].loss, rel=1e-5)
        assert at[(0.0, split)].acc == start[split].acc
        assert at[(1.0, split)].loss == pytest.approx(end[split].loss, rel=1e-9)
        assert at[(1.0, split)].acc == end[split].acc
        curve = result.losses(split)
        assert curve == [at[(t, split)].loss for t in ts]
        assert curve[0] > curve[ts.index(1.0)]  # training lowered the loss
    if not has_bn:
        assert at[(1.0, "train")].loss == evaluate(model, data.splits["train"], data.batch_size).loss  # exact
    params = [n for n, _ in model.named_parameters()]
    diff = math.sqrt(sum(float(((model.state_dict()[n] - initial[n]).double() ** 2).sum()) for n in params))
    size = math.sqrt(sum(float((initial[n].double() ** 2).sum()) for n in params))
    assert result.distance_rel == pytest.approx(diff / size, rel=1e-6)


def test_path_point_between_the_ends_is_the_interpolated_model(data, runs):
    model, initial = runs["mlp"]
    rows = interpolation_path(model, initial, data, PathSettings(points=5)).points
    mid = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in mid.named_parameters():
            p.copy_(0.75 * initial[n] + 0.25 * p)
    expected = evaluate(mid, data.splits["val"], data.batch_size).loss
    assert next(r for r in rows if (r.t, r.split) == (0.25, "val")).loss == pytest.approx(expected, rel=1e-5)


TS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def summarize(curves: dict[str, list[float]]):
    return path_summary("mlp", 0, TS, curves, {s: 0.9 for s in curves}, 0.7, "frozen", 1e-3)


def test_path_summary_of_a_monotonic_convex_descent():
    s = summarize({"train": [3.0, 2.0, 1.4, 1.1, 1.0, 50.0]})  # the margin point past t = 1 is ignored
    assert s.monotonic == {"train": True}
    assert s.max_rise == {"train": 0.0}
    assert s.barrier["train"] == pytest.approx(0.0)  # convex: never above the chord
    assert (s.loss_at_0, s.loss_at_1, s.acc_at_1) == ({"train": 3.0}, {"train": 1.0}, {"train": 0.9})
    assert (s.variant, s.seed, s.bn, s.distance_rel) == ("mlp", 0, "frozen", 0.7)


def test_path_summary_of_a_bump():
    s = summarize({"val": [3.0, 2.0, 2.5, 1.0, 0.5, 0.4]})
    assert s.monotonic == {"val": False}
    assert s.max_rise["val"] == pytest.approx(0.5)  # 2.5 over the earlier minimum 2.0
    # chord from 3.0 to 0.5: at t = 0.5 it is 1.75, so the barrier is 2.5 - 1.75
    assert s.barrier["val"] == pytest.approx(0.75)


def test_path_summary_of_a_concave_monotonic_curve_has_a_barrier_but_no_rise():
    s = summarize({"train": [3.0, 2.9, 2.7, 2.0, 1.0, 0.9]})
    assert s.monotonic["train"] and s.max_rise["train"] == 0.0
    assert s.barrier["train"] == pytest.approx(2.7 - 2.0)  # above the chord without ever rising


def test_path_summary_tolerates_rises_below_its_tolerance():
    s = summarize({"train": [3.0, 2.0, 2.0005, 1.5, 1.0, 1.0]})
    assert s.monotonic["train"] and s.max_rise["train"] == pytest.approx(0.0005)
    assert not summarize({"train": [3.0, 2.0, 2.002, 1.5, 1.0, 1.0]}).monotonic["train"]
