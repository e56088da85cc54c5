"""examples/ on tiny sizes, so that the documented use of ``landscape.probes`` cannot rot; their numbers are
checked against closed forms (a linear model's MSE Hessian 2 A^T A / n) and identities that must hold."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch

from conftest import REPO
from landscape import probes

pytestmark = pytest.mark.usefixtures("single_thread")


def load_example(name: str):
    """An example is a script, not a package module: import it from its file."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def residual(single_thread) -> dict:
    return load_example("residual_net").main(small=True)


@pytest.fixture(scope="module")
def regression(single_thread) -> dict:
    return load_example("regression").main(small=True)


def rayleigh(slices: probes.SliceResult) -> list[float]:
    """d^T H d / ||d||^2 of each slice direction: a lower bound of lambda_max."""
    return [c / n**2 for c, n in zip(slices.curvature, slices.direction_norms, strict=True)]


def test_residual_net_probes_agree_with_each_other_and_leave_the_model_alone(residual):
    score = residual["score"]
    assert 0.0 <= score.acc <= 1.0 and math.isfinite(score.loss)
    again = probes.evaluate(residual["model"], residual["loader"])
    assert again == score  # every probe put the weights, BN statistics and dropout flags back exactly
    for point in residual["noise"]:
        assert len(point.acc) == 3
        if point.sigma == 0:
            assert set(point.loss) == {score.loss} and set(point.acc) == {score.acc} and set(point.drop) == {0.0}
    slices = residual["slices"]
    for curve in slices.curves("data"):
        assert len(curve) == 9 and curve[4] == score.loss
    hessian = residual["curvature"]
    assert hessian.samples == 64
    assert hessian.eigen.values == sorted(hessian.eigen.values, reverse=True)
    assert all(r <= hessian.lambda_max * (1 + 1e-6) for r in rayleigh(slices))
    assert math.fsum(hessian.trace.per_tensor) == pytest.approx(hessian.trace.total, rel=1e-9)
    assert [layer.name for layer in hessian.layers] == [
        n for n, p in residual["model"].named_parameters() if p.dim() > 1
    ]


def test_linear_regression_lambda_max_is_the_top_eigenvalue_of_2_ata_over_n(regression):
    assert regression["linear_top"].values[0] == pytest.approx(regression["exact_top"], rel=1e-9)
    assert regression["linear_top"].residuals[0] < 1e-6


def test_linear_regression_slice_is_the_exact_parabola(regression):
    """Along d = (d_w, d_b): L(alpha) = mean((A (theta + alpha d) - y)^2) and d^T H d = 2 |A d|^2 / n."""
    x, y, linear = regression["x"], regression["y"], regression["linear"]
    result = regression["linear_slice"]
    d = torch.cat([t.reshape(-1) for t in probes.filter_normalized_direction(linear, 3, "filter", "all")])
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    theta = torch.cat([linear.weight.detach().reshape(-1), linear.bias.detach()])
    assert result.curvature[0] == pytest.approx(2 * (a @ d).square().mean().item(), rel=1e-9)
    for point in result.points:
        expected = (a @ (theta + point.alpha * d) - y[:, 0]).square().mean().item()
        assert point.loss[0] == pytest.approx(expected, rel=1e-10)
        assert math.isnan(point.acc[0])  # a regression: no accuracy


def test_mlp_regression_slice_and_lambda_max(regression):
    mlp, batches, slices = regression["mlp"], regression["batches"], regression["slices"]
    loss = probes.evaluate(mlp, batches, loss_fn=torch.nn.functional.mse_loss)
    assert math.isnan(loss.acc)
    for curve in slices.curves("data"):
        assert curve[len(curve) // 2] == loss.loss
        assert min(curve) >= 0 and curve[0] > loss.loss and curve[-1] > loss.loss  # fitted: a basin around theta
    assert all(0 < r <= regression["mlp_top"].values[0] * (1 + 1e-6) for r in rayleigh(slices))
