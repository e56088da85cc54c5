"""Adaptive sharpness, lambda_max of diag(|theta|) H diag(|theta|), against the dense Hessian of tiny float64 models,
and its invariance under a function-preserving rescaling of a ReLU network's layers (raw lambda_max changes)."""

from __future__ import annotations

import copy

import pytest
import torch

from landscape.probes.adaptive import AdaptiveMeanLoss, adaptive_sharpness, adaptive_trace
from landscape.probes.hessian import lanczos
from test_curvature import SHORT_BATCH, N, build, flat, full_hessian, make_split, select

pytestmark = pytest.mark.usefixtures("single_thread")


def dense_adaptive(model, params, split) -> torch.Tensor:
    """diag(|theta|) H diag(|theta|) from the dense Hessian."""
    d = flat([p.detach().abs() for p in params])
    return d[:, None] * full_hessian(model, params, split) * d[None, :]


@pytest.mark.parametrize("which", ["tanh-all", "convbn-all", "relu_nobias-weights"])
def test_adaptive_sharpness_matches_eigvalsh_of_the_rescaled_dense_hessian(which):
    kind, sel = which.split("-")
    model, split = build(kind), make_split()
    params = select(model, sel)
    a = dense_adaptive(model, params, split)
    exact = torch.linalg.eigvalsh(a).flip(0)[:2].tolist()
    eig = adaptive_sharpness(model, split, params=params, batch_size=SHORT_BATCH, k=2, iterations=a.shape[0], seed=0)
    for got, want in zip(eig.values, exact, strict=True):
        assert abs(got - want) < 1e-8 * abs(want)
    # the product itself, on a random vector
    g = torch.Generator().manual_seed(3)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    got = flat(AdaptiveMeanLoss.of(model, split, params, N, torch.nn.functional.cross_entropy).hvp_many([v])[0])
    assert torch.allclose(got, a @ flat(v), rtol=1e-10, atol=1e-12)


def test_adaptive_trace_within_three_standard_errors():
    model, split = build("convbn"), make_split()
    params = select(model, "all")
    exact = dense_adaptive(model, params, split).trace().item()
    est = adaptive_trace(model, split, params=params, batch_size=SHORT_BATCH, samples=400, seed=0)
    assert abs(est.total - exact) < 3 * est.total_se


def test_adaptive_sharpness_is_invariant_under_layer_rescaling_and_raw_lambda_max_is_not():
    model, split = build("relu_nobias"), make_split()
    scaled = copy.deepcopy(model)
    with torch.no_grad():  # ReLU is positively homogeneous: W1 -> W1 / 4, W2 -> 4 W2 leaves the function unchanged
        scaled[1].weight.mul_(0.25)
        scaled[3].weight.div_(0.25)
    assert torch.allclose(model(split.x), scaled(split.x), rtol=1e-12, atol=1e-12)
    adaptive, raw = [], []
    for m in (model, scaled):
        params = select(m, "weights")
        dim = sum(p.numel() for p in params)
        adaptive.append(adaptive_sharpness(m, split, params=params, batch_size=SHORT_BATCH, iterations=dim).values[0])
        raw.append(lanczos(m, split, params=params, batch_size=SHORT_BATCH, iterations=dim).values[0])
    assert abs(adaptive[1] / adaptive[0] - 1) < 1e-8
    assert raw[1] / raw[0] > 2  # H's first block grows by 16: raw sharpness is not comparable across scales


def test_weights_and_flags_are_left_as_they_were():
    model, split = build("convbn"), make_split()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    adaptive_sharpness(model, split, batch_size=SHORT_BATCH, iterations=5)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
