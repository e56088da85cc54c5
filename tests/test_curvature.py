"""Curvature estimators against the full Hessian of tiny float64 models (computed with autograd.functional)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from landscape.probes.hessian import (
    directional_curvature,
    hutchinson_trace,
    hvp,
    hvp_many,
    lanczos,
    loss_gradient,
    relative_flatness,
)
from landscape.study.data import Split

pytestmark = pytest.mark.usefixtures("single_thread")

SIDE = 6  # tiny images: (N, 1, 6, 6)
CLASSES = 4
N = 40
SHORT_BATCH = 16  # 16 + 16 + 8: a short last batch
DT = torch.float64


def make_split(n: int = N, side: int = SIDE, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, 1, side, side, generator=g, dtype=DT), torch.randint(0, CLASSES, (n,), generator=g))


class ConvBN(nn.Module):
    """Conv3x3 + BN + max-pool + ReLU + dropout + linear; pools differently when autograd is off.

    ``smooth``: tanh and average pooling instead, so the loss has no kinks along a line.
    """

    def __init__(self, smooth: bool = False):
        super().__init__()
        self.smooth = smooth
        self.conv = nn.Conv2d(1, 3, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * (SIDE // 2) ** 2, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.smooth:
            y = torch.tanh(
                F.avg_pool2d(y, 2) if torch.is_grad_enabled() else y.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))
            )
        elif torch.is_grad_enabled():
            y = torch.relu(F.max_pool2d(y, 2))
        else:
            y = torch.maximum(y[..., 0::2, :], y[..., 1::2, :])
            y = torch.relu(torch.maximum(y[..., 0::2], y[..., 1::2]))
        return self.fc(self.drop(y).flatten(1))


def build(kind: str) -> nn.Module:
    torch.manual_seed(1)
    if kind == "tanh":
        model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 6), nn.Tanh(), nn.Linear(6, CLASSES))
    elif kind == "relu_nobias":  # W1 -> lambda W1, W2 -> W2 / lambda leaves the function unchanged
        model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 5, bias=False), nn.ReLU(), nn.Linear(5, CLASSES))
    else:
        model = ConvBN(smooth=kind == "convbn_smooth")
        with torch.no_grad():  # non-trivial BN running statistics and affine parameters
            model.bn.running_mean.normal_(0.0, 0.3)
            model.bn.running_var.uniform_(0.5, 1.5)
            model.bn.weight.uniform_(0.5, 1.5)
            model.bn.bias.normal_(0.0, 0.2)
    return model.to(DT)


def select(model: nn.Module, which: str) -> list[torch.Tensor]:
    return [p for p in model.parameters() if which == "all" or p.dim() > 1]


def full_hessian(model: nn.Module, params: list[torch.Tensor], split: Split) -> torch.Tensor:
    """Dense Hessian of the mean loss in eval mode w.r.t. the flattened ``params``."""
    names = {id(p): name for name, p in model.named_parameters()}
    keys, shapes = [names[id(p)] for p in params], [p.shape for p in params]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        chunks = flat.split([math.prod(s) for s in shapes])
        values = {k: c.reshape(s) for k, c, s in zip(keys, chunks, shapes, strict=True)}
        return F.cross_entropy(functional_call(model, values, (split.x,)), split.y)

    was_training = model.training
    model.eval()
    h = torch.autograd.functional.hessian(loss, torch.cat([p.detach().reshape(-1) for p in params]))
    model.train(was_training)
    return h


@dataclass
class Case:
    model: nn.Module
    params: list[torch.Tensor]
    split: Split
    h: torch.Tensor


CASES = ["tanh-all", "convbn-all", "convbn-weights", "relu_nobias-weights"]


@pytest.fixture(scope="module", params=CASES)
def case(request) -> Case:
    kind, which = request.param.split("-")
    model = build(kind)
    params = select(model, which)
    split = make_split()
    return Case(model, params, split, full_hessian(model, params, split))


def flat(v: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in v])


def gaussian(params: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


def rel(a: torch.Tensor | float, b: torch.Tensor | float) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return ((a - b).norm() / b.norm()).item()


def test_hvp_equals_full_hessian_times_v(case):
    v = gaussian(case.params, 0)
    expected = case.h @ flat(v)
    assert rel(flat(hvp(case.model, case.split, v, params=case.params, batch_size=N)), expected) < 1e-5
    batched = hvp(case.model, case.split, v, params=case.params, batch_size=SHORT_BATCH)
    assert rel(flat(batched), expected) < 1e-10


def test_hvp_equals_central_difference_of_gradient(case):
    v = gaussian(case.params, 1)
    scale = flat(v).norm()
    v = [t / scale for t in v]
    eps = 1e-5
    grads = []
    for sign in (1, -1):
        shifted = copy.deepcopy(case.model)
        index = {id(p): i for i, p in enumerate(case.model.parameters())}
        moved = [list(shifted.parameters())[index[id(p)]] for p in case.params]
        with torch.no_grad():
            for p, d in zip(moved, v, strict=True):
                p.add_(d, alpha=sign * eps)
        grads.append(flat(loss_gradient(shifted, case.split, params=moved, batch_size=SHORT_BATCH)))
    fd = (grads[0] - grads[1]) / (2 * eps)
    assert rel(flat(hvp(case.model, case.split, v, params=case.params, batch_size=SHORT_BATCH)), fd) < 1e-5


def test_loss_gradient_matches_autograd_on_whole_split(case):
    case.model.eval()
    loss = F.cross_entropy(case.model(case.split.x), case.split.y)
    expected = torch.autograd.grad(loss, case.params)
    got = loss_gradient(case.model, case.split, params=case.params, batch_size=SHORT_BATCH)
    assert rel(flat(got), flat(expected)) < 1e-12


def test_hvp_many_equals_separate_hvp_calls(case):
    vs = [gaussian(case.params, s) for s in range(3)]
    many = hvp_many(case.model, case.split, vs, params=case.params, batch_size=SHORT_BATCH)
    for v, got in zip(vs, many, strict=True):
        assert rel(flat(got), flat(hvp(case.model, case.split, v, params=case.params, batch_size=SHORT_BATCH))) < 1e-12
    assert hvp_many(case.model, case.split, [], params=case.params, batch_size=SHORT_BATCH) == []


def test_directional_curvature_equals_dHd(case):
    ds = [gaussian(case.params, s) for s in range(10, 13)]
    got = directional_curvature(case.model, case.split, ds, params=case.params, batch_size=SHORT_BATCH)
    for d, c in zip(ds, got, strict=True):
        assert abs(c - (flat(d) @ case.h @ flat(d)).item()) < 1e-4 * abs(c)


@pytest.mark.parametrize("kind", ["tanh", "convbn_smooth"])
def test_directional_curvature_is_second_derivative_along_the_line(kind):
    """5-point finite difference of the mean loss along theta + alpha d (no Hessian involved). Smooth models
    only: with ReLU/max-pool, kinks (pooling argmax switches) lie within a few 1e-3 of alpha = 0.
    """
    model, split = build(kind), make_split()
    params = select(model, "all")
    d = gaussian(params, 7)
    scale = flat(d).norm()
    d = [t / scale for t in d]
    step = 1e-3

    def loss_at(alpha: float) -> float:
        moved = copy.deepcopy(model).eval()
        with torch.no_grad():
            for p, t in zip(moved.parameters(), d, strict=True):
                p.add_(t, alpha=alpha)
            return F.cross_entropy(moved(split.x), split.y).item()

    f = [loss_at(k * step) for k in (-2, -1, 0, 1, 2)]
    second = (-f[0] + 16 * f[1] - 30 * f[2] + 16 * f[3] - f[4]) / (12 * step**2)
    (curvature,) = directional_curvature(model, split, [d], params=params, batch_size=SHORT_BATCH)
    assert abs(curvature - second) < 1e-5 * abs(second)


def test_lanczos_top3_match_eigvalsh(case):
    dim = case.h.shape[0]
    exact = torch.linalg.eigvalsh(case.h).flip(0)[:3]
    eig = lanczos(case.model, case.split, params=case.params, batch_size=N, k=3, iterations=dim, seed=0)
    assert eig.iterations <= dim and len(eig.values) == 3
    assert eig.values == sorted(eig.values, reverse=True)
    for got, want, r in zip(eig.values, exact.tolist(), eig.residuals, strict=True):
        assert abs(got - want) < 1e-3 * abs(want)
        assert r < 1e-6


def test_lanczos_residual_bounds_the_error_after_few_iterations(case):
    """With m << dim the residual is still an honest bound: some eigenvalue lies within residual * |theta|."""
    exact = torch.linalg.eigvalsh(case.h)
    eig = lanczos(case.model, case.split, params=case.params, batch_size=SHORT_BATCH, k=3, iterations=25, seed=3)
    assert eig.iterations == 25
    for theta, r in zip(eig.values, eig.residuals, strict=True):
        assert (exact - theta).abs().min().item() <= r * abs(theta) * (1 + 1e-6) + 1e-12
    assert abs(eig.values[0] - exact[-1].item()) < 1e-3 * exact[-1].item()  # the top one converges first
    again = lanczos(case.model, case.split, params=case.params, batch_size=SHORT_BATCH, k=3, iterations=25, seed=3)
    assert again == eig


def test_ritz_spectrum_is_the_quadrature_of_the_start_vector_and_bounds_lambda_min(case):
    """Stochastic Lanczos quadrature: after dim steps the Ritz values are the eigenvalues and the weights the
    squared components of the (normalized) start vector in the eigenbasis, so sum_i w_i theta_i = q^T H q; after
    fewer steps the first moments still match exactly and the smallest Ritz value is >= lambda_min."""
    exact = torch.linalg.eigvalsh(case.h)
    short = lanczos(case.model, case.split, params=case.params, batch_size=SHORT_BATCH, k=1, iterations=12, seed=3)
    assert len(short.ritz) == len(short.ritz_weights) == 12 and short.ritz == sorted(short.ritz)
    assert abs(sum(short.ritz_weights) - 1) < 1e-9
    assert short.ritz[0] >= exact[0].item() - 1e-9 and short.ritz[-1] == short.values[0]
    dim = sum(p.numel() for p in case.params)
    q = torch.randn(dim, generator=torch.Generator().manual_seed(3), dtype=DT)
    q = q / q.norm()
    for power in (1, 2, 3):  # Gauss quadrature with m nodes is exact for moments up to 2m - 1
        want = (q @ torch.linalg.matrix_power(case.h, power) @ q).item()
        got = sum(w * th**power for w, th in zip(short.ritz_weights, short.ritz, strict=True))
        assert abs(got - want) < 1e-6 * max(1.0, abs(want))


def test_lanczos_stops_on_breakdown():
    """The last bias spans a 4-dim space: the Krylov space is exhausted after at most 4 steps."""
    model, split = build("tanh"), make_split()
    params = [model[3].bias]
    exact = torch.linalg.eigvalsh(full_hessian(model, params, split)).flip(0)
    eig = lanczos(model, split, params=params, batch_size=N, k=3, iterations=50, seed=0)
    assert eig.iterations <= 4
    assert torch.allclose(torch.tensor(eig.values, dtype=DT), exact[:3], rtol=1e-9)
    assert max(eig.residuals) < 1e-8


def test_hutchinson_trace_within_three_standard_errors():
    model, split = build("convbn"), make_split()
    params = select(model, "all")
    h = full_hessian(model, params, split)
    est = hutchinson_trace(model, split, params=params, batch_size=SHORT_BATCH, samples=400, seed=0)
    assert est.samples == 400
    assert abs(est.total - h.trace().item()) < 3 * est.total_se
    assert abs(sum(est.per_tensor) - est.total) < 1e-10 * abs(est.total)
    start = 0
    for p, t, se in zip(params, est.per_tensor, est.per_tensor_se, strict=True):
        block = h[start : start + p.numel(), start : start + p.numel()].trace().item()
        start += p.numel()
        assert abs(t - block) < 3 * se + 1e-12
    small = hutchinson_trace(model, split, params=params, batch_size=SHORT_BATCH, samples=100, seed=1)
    assert 1.5 < small.total_se / est.total_se < 2.7


def exact_kappa(params: list[torch.Tensor], h: torch.Tensor) -> list[float]:
    """sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'}) for each weight tensor, from the dense Hessian; nan for dim <= 1."""
    out, start = [], 0
    for p in params:
        n = p.numel()
        if p.dim() > 1:
            w = p.detach().reshape(p.shape[0], -1)
            block = h[start : start + n, start : start + n].reshape(*w.shape, *w.shape)
            out.append(torch.einsum("st,sbtb->", w @ w.T, block).item())
        else:
            out.append(math.nan)
        start += n
    return out


@pytest.mark.parametrize("which", ["convbn-all", "relu_nobias-weights"])
def test_relative_flatness_matches_exact_kappa(which):
    kind, sel = which.split("-")
    model, split = build(kind), make_split()
    params = select(model, sel)
    kappa = exact_kappa(params, full_hessian(model, params, split))
    est = relative_flatness(model, split, params=params, batch_size=SHORT_BATCH, samples=300, seed=0)
    for p, k, got, se in zip(params, kappa, est.per_tensor, est.per_tensor_se, strict=True):
        if p.dim() <= 1:
            assert math.isnan(got) and math.isnan(se)
        else:
            assert abs(got - k) < 3 * se
    assert abs(est.total - math.fsum(k for k in kappa if not math.isnan(k))) < 3 * est.total_se


def test_relative_flatness_is_invariant_under_layer_rescaling_and_trace_is_not():
    model, split = build("relu_nobias"), make_split()
    scaled = copy.deepcopy(model)
    lam = 0.25  # (3.0 happens to leave this net's trace nearly unchanged: Tr(H11) / Tr(H22) ~ 9)
    with torch.no_grad():
        scaled[1].weight.mul_(lam)
        scaled[3].weight.div_(lam)
    assert torch.allclose(model(split.x), scaled(split.x), rtol=1e-12, atol=1e-12)
    results = []
    for m in (model, scaled):
        params = select(m, "weights")
        h = full_hessian(m, params, split)
        est = relative_flatness(m, split, params=params, batch_size=SHORT_BATCH, samples=200, seed=5)
        trace = hutchinson_trace(m, split, params=params, batch_size=SHORT_BATCH, samples=200, seed=5)
        results.append((exact_kappa(params, h), est, h.trace().item(), trace))
    (k0, e0, t0, tr0), (k1, e1, t1, tr1) = results
    for a, b in zip(k0, k1, strict=True):
        assert abs(a - b) < 1e-9 * abs(a)
    for a, b, se in zip(e0.per_tensor, e1.per_tensor, e0.per_tensor_se, strict=True):
        assert abs(a - b) < 1e-8 * abs(a) and abs(a - b) < se  # same seed: equal up to rounding
    assert abs(e0.total - e1.total) < e0.total_se
    assert abs(t1 / t0 - 1) > 0.5  # the raw trace changes a lot ...
    assert abs(tr1.total - tr0.total) > 3 * math.hypot(tr0.total_se, tr1.total_se)  # ... and so does its estimate


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


CALLS = {
    "loss_gradient": lambda m, p, s: loss_gradient(m, s, params=p, batch_size=SHORT_BATCH),
    "hvp": lambda m, p, s: hvp(m, s, gaussian(p, 0), params=p, batch_size=SHORT_BATCH),
    "hvp_many": lambda m, p, s: hvp_many(m, s, [gaussian(p, 0), gaussian(p, 1)], params=p, batch_size=SHORT_BATCH),
    "directional_curvature": lambda m, p, s: directional_curvature(
        m, s, [gaussian(p, 0)], params=p, batch_size=SHORT_BATCH
    ),
    "lanczos": lambda m, p, s: lanczos(m, s, params=p, batch_size=SHORT_BATCH, k=2, iterations=5, seed=0),
    "hutchinson_trace": lambda m, p, s: hutchinson_trace(m, s, params=p, batch_size=SHORT_BATCH, samples=3, seed=0),
    "relative_flatness": lambda m, p, s: relative_flatness(m, s, params=p, batch_size=SHORT_BATCH, samples=3, seed=0),
}


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("training", [True, False])
def test_model_state_and_flags_are_restored(name, training):
    model, split = build("convbn"), make_split()
    model.conv.bias.requires_grad_(False)  # a frozen tensor in params must get its flag back
    params = select(model, "all")
    before = snapshot(model)
    model.train(training)
    CALLS[name](model, params, split)
    assert model.training is training
    assert not model.conv.bias.requires_grad and model.fc.weight.requires_grad
    after = snapshot(model)  # parameters and BN running statistics, bitwise
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_train_mode_caller_and_no_grad_context_still_give_the_eval_mode_hessian():
    model, split = build("convbn"), make_split()
    params = select(model, "all")
    v = gaussian(params, 0)
    expected = full_hessian(model, params, split) @ flat(v)
    model.train()  # dropout and batch statistics must not be used
    assert rel(flat(hvp(model, split, v, params=params, batch_size=SHORT_BATCH)), expected) < 1e-10
    with torch.no_grad():
        assert rel(flat(hvp(model, split, v, params=params, batch_size=SHORT_BATCH)), expected) < 1e-10
    with torch.inference_mode():
        frozen = Split(split.x.clone(), split.y.clone())  # inference tensors
    with torch.inference_mode():
        assert rel(flat(hvp(model, frozen, v, params=params, batch_size=SHORT_BATCH)), expected) < 1e-10


def test_study_cnn_with_folded_batch_norm():
    """landscape.study.models.CNN (BN folded into the conv in eval mode) on 28x28 inputs, weights only."""
    from landscape.study import models

    try:
        model = models.CNN([2, 2], 4).to(DT)  # BN and dropout on by default
    except TypeError as e:  # the constructor is being redesigned elsewhere
        pytest.skip(f"landscape.study.models.CNN no longer constructs as CNN(channels, fc): {e}")
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(12, 1, 28, 28, generator=g, dtype=DT), torch.randint(0, 10, (12,), generator=g))
    params = select(model, "weights")
    h = full_hessian(model, params, split)
    v = gaussian(params, 0)
    assert rel(flat(hvp(model, split, v, params=params, batch_size=5)), h @ flat(v)) < 1e-10
    (c,) = directional_curvature(model, split, [v], params=params, batch_size=5)
    assert abs(c - (flat(v) @ h @ flat(v)).item()) < 1e-8 * abs(c)


# --- the study's curvature summary: adaptive sharpness and ||theta|| of the probed parameter set ----------------


@pytest.mark.parametrize("which", ["tanh-all", "tanh-weights", "convbn-weights"])
def test_curvature_summary_adaptive_sharpness_and_theta_norm_against_the_dense_hessian(which):
    """The curvature stage's summary (landscape.study.summaries.curvature) records, over the probes.parameters set:
    ||theta||, here summed by hand over exactly those tensors (biases and BN gamma/beta in "all" only), and the
    adaptive sharpness, here lambda_max of the explicit diag(|theta|) H diag(|theta|) with H from
    torch.autograd.functional.hessian (Lanczos run to the full dimension: exact to rounding)."""
    import dataclasses

    import yaml

    from conftest import REPO
    from landscape.study.params import parse_params
    from landscape.study.summaries.curvature import curvature_probe

    kind, sel = which.split("-")
    model, split = build(kind), make_split()
    named = dict(model.named_parameters())
    probed = [p for p in model.parameters() if sel == "all" or p.dim() > 1]
    dim = sum(p.numel() for p in probed)
    theta_norm = math.sqrt(sum(float(x) ** 2 for p in probed for x in p.detach().reshape(-1).tolist()))
    if sel == "weights":  # the set leaves out every bias (and BN's affine parameters)
        assert not [n for n, p in named.items() if p.dim() == 1 and any(p is q for q in probed)]
    d = flat([p.detach().abs() for p in probed])
    h = full_hessian(model, probed, split)
    adaptive = torch.linalg.eigvalsh(d[:, None] * h * d[None, :]).max().item()
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    settings = dataclasses.replace(
        params.curvature, top_k=1, lanczos_iterations=dim, hutchinson_samples=2, flatness_samples=2, layer_directions=1
    )
    probes = dataclasses.replace(params.probes, parameters=sel)
    summary = curvature_probe(model, split, SHORT_BATCH, settings, probes, "mlp", 0, draws="mlp")
    assert summary.parameters == sel
    assert summary.theta_norm == pytest.approx(theta_norm, rel=1e-12)
    assert summary.adaptive_sharpness == pytest.approx(adaptive, rel=1e-8)
    assert summary.eigenvalues[0] == pytest.approx(torch.linalg.eigvalsh(h).max().item(), rel=1e-8)
    assert summary.adaptive_sharpness != pytest.approx(summary.eigenvalues[0], rel=1e-2)  # a different quantity
