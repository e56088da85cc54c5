"""The local Hessian of a ReLU network against its finite-step curvature (METHODS.md, "Directional curvature").

Autograd differentiates inside the current activation pattern, so for ReLU d^T H d is the curvature of one smooth
piece. On one tiny float64 MLP: the central difference (L(h) + L(-h) - 2 L(0)) / h^2, computed here from the loss
alone, converges to the library's d^T H d while no pattern switches, and exceeds it once patterns switch. With
GELU in place of ReLU its error shrinks like h^2 at every step, switches of the pre-activations' sign included.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from landscape.probes import directional_curvature, filter_normalized_direction

pytestmark = pytest.mark.usefixtures("single_thread")

SEED = 1
INPUTS, FEATURES, HIDDEN, CLASSES = 8, 5, 16, 3
STEPS, LR = 20, 0.5  # a few steps of full-batch gradient descent: a model part-way to a minimum, as probed
LADDER = (0.2, 0.1, 0.05, 0.025, 0.0125)  # steps at which the ReLU patterns switch


def tiny_mlp(activation: type[nn.Module]) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """A 5-16-3 MLP in float64 after STEPS of gradient descent on INPUTS seeded points, and a seeded
    filter-normalized direction over its weights (biases fixed, as in the study's slices)."""
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(100 + SEED)
    x = torch.randn(INPUTS, FEATURES, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (INPUTS,), generator=g)
    model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), activation(), nn.Linear(HIDDEN, CLASSES)).double()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    d = [t.double() for t in filter_normalized_direction(model, SEED, "filter", "weights")]
    return model, x, y, d


def loss_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, d: list[torch.Tensor], h: float) -> float:
    """L(theta + h d), from the loss alone (no autograd)."""
    moved = {name: p.detach() + h * di for (name, p), di in zip(model.named_parameters(), d, strict=True)}
    with torch.no_grad():
        return float(F.cross_entropy(functional_call(model, moved, (x,)), y))


def finite_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, d: list[torch.Tensor], h: float) -> float:
    return (loss_at(model, x, y, d, h) + loss_at(model, x, y, d, -h) - 2 * loss_at(model, x, y, d, 0.0)) / h**2


def preactivations(model: nn.Sequential, x: torch.Tensor, d: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) with the hidden pre-activations at theta + h d equal to a + h b: d moves the first weight only
    linearly, and its bias not at all."""
    first = model[0]
    with torch.no_grad():
        return x @ first.weight.T + first.bias, x @ d[0].T


def switches(model: nn.Sequential, x: torch.Tensor, d: list[torch.Tensor], h: float) -> int:
    """How many (input, unit) pre-activations change sign between theta and theta +- h d."""
    a, b = preactivations(model, x, d)
    return sum(int(((a + s * h * b > 0) != (a > 0)).sum()) for s in (1, -1))


def local_dhd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, d: list[torch.Tensor]) -> float:
    return directional_curvature(model, (x, y), [d])[0]


def test_relu_finite_difference_converges_to_the_local_dhd_inside_one_pattern() -> None:
    model, x, y, d = tiny_mlp(nn.ReLU)
    a, b = preactivations(model, x, d)
    h_switch = float((a.abs() / b.abs()).min())  # the smallest step at which some unit changes sign
    assert 2e-3 < h_switch < min(LADDER)  # premise: resolvable steps inside one pattern, and kinks on the ladder
    dhd = local_dhd(model, x, y, d)
    assert dhd > 0
    errors = {}
    for h in (1e-3, 5e-4, 1e-4):
        assert switches(model, x, d, h) == 0
        errors[h] = finite_step(model, x, y, d, h) - dhd
    assert abs(errors[1e-4]) / dhd < 1e-6
    # inside one pattern the loss is smooth: the error is the h^2 term of its Taylor series
    assert errors[1e-3] / errors[5e-4] == pytest.approx(4.0, rel=0.02)


def test_relu_finite_step_exceeds_the_local_dhd_where_patterns_switch() -> None:
    model, x, y, d = tiny_mlp(nn.ReLU)
    dhd = local_dhd(model, x, y, d)
    excess = {}
    for h in LADDER:
        assert switches(model, x, d, h) > 0
        excess[h] = finite_step(model, x, y, d, h) - dhd
        assert excess[h] > 0.5 * dhd, (h, excess[h], dhd)
    # a kink adds about |jump| * h / h^2: the excess does not shrink like h^2 (it would fall 4-fold per halving)
    for big, small in zip(LADDER, LADDER[1:], strict=False):
        assert excess[big] / excess[small] < 2.0


def test_gelu_error_shrinks_like_h_squared_at_every_step() -> None:
    model, x, y, d = tiny_mlp(nn.GELU)
    dhd = local_dhd(model, x, y, d)
    errors = [finite_step(model, x, y, d, h) - dhd for h in LADDER]
    assert switches(model, x, d, max(LADDER)) > 0  # pre-activations cross 0 there, but GELU has no kink
    for big, small in zip(errors, errors[1:], strict=False):
        assert big / small == pytest.approx(4.0, abs=0.1)
    assert abs(errors[0]) / dhd < 0.05  # no kink excess, even at the largest step
