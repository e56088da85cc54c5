"""Curvature of the mean loss on data: Hessian-vector products, directional curvature, top eigenvalues
(Lanczos), trace (Hutchinson) and relative flatness (Petzka et al. 2021).

H is the Hessian of the MEAN loss (``loss_fn``, default cross-entropy in nats) over ``data``, with the
model in eval mode (BN running statistics, dropout off), with respect to a list of parameter tensors
``params`` (default: every parameter of the model; the others are held fixed). A vector is a list of
tensors shaped like ``params``. Each batch is weighted by its size / N, so every result is exact for the
mean over all of ``data``. Weights and buffers are never written; the train/eval flags and the
``requires_grad`` flags are restored afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from landscape.probes.data import BATCH_SIZE, Data, batches, model_device, sample_count
from landscape.probes.evaluation import LossFn, cross_entropy, summed_loss
from landscape.probes.perturb import kept_modes

CHUNK = 8  # random vectors per reused graph in the estimators (memory: CHUNK vectors + one double-backward graph)
BREAKDOWN = 1e-10  # Lanczos stops when beta <= BREAKDOWN * (largest |alpha| or beta so far)

Vector = list[Tensor]


def _grad(out: Tensor | Vector, params: Vector, **kwargs) -> Vector:
    """d out / d params, zeros for tensors ``out`` does not depend on."""
    return list(torch.autograd.grad(out, params, allow_unused=True, materialize_grads=True, **kwargs))


def _like(v: Vector, params: Vector) -> Vector:
    """``v`` in the dtype and on the device of ``params``, shapes checked."""
    if len(v) != len(params) or any(a.shape != p.shape for a, p in zip(v, params, strict=False)):
        raise ValueError("a vector must be a list of tensors shaped like params")
    return [a.detach().to(dtype=p.dtype, device=p.device) for a, p in zip(v, params, strict=True)]


def _dot(a: Vector, b: Vector) -> float:
    """<a, b> summed over all tensors, in float64."""
    return sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b, strict=True))


def _autograd_ready(t: Any) -> Any:
    """A tensor made under inference_mode cannot be saved for backward: use a normal copy of it."""
    return t.clone() if isinstance(t, Tensor) and t.is_inference() else t


@dataclass(frozen=True)
class MeanLoss:
    """The mean loss of ``model`` over ``data`` (N samples, counted once) as a function of ``params``: every
    estimator below is a method, so that one probe reads an iterable's length once."""

    model: nn.Module
    params: Vector
    data: Data
    batch_size: int
    loss_fn: LossFn
    n: int

    @classmethod
    def of(cls, model: nn.Module, data: Data, params: Vector | None, batch_size: int, loss_fn: LossFn) -> MeanLoss:
        params = list(model.parameters()) if params is None else list(params)
        n = sample_count(data)
        if n == 0 or batch_size < 1:
            raise ValueError(f"need non-empty data and batch_size >= 1 (got N = {n}, batch_size = {batch_size})")
        return cls(model, params, data, batch_size, loss_fn, n)

    @contextmanager
    def differentiable(self) -> Iterator[None]:
        """Eval mode, autograd on (even inside no_grad/inference_mode), grads on ``params``; all flags restored."""
        flags = [p.requires_grad for p in self.params]
        with kept_modes(self.model):
            self.model.eval()
            try:
                with torch.inference_mode(False), torch.enable_grad():
                    for p in self.params:
                        p.requires_grad_(True)
                    yield
            finally:
                for p, flag in zip(self.params, flags, strict=True):
                    p.requires_grad_(flag)

    def batch_terms(self) -> Iterator[Tensor]:
        """Each batch's summed loss / N: the terms that add up to the mean loss over ``data``."""
        for x, y in batches(self.data, self.batch_size, model_device(self.model)):
            yield summed_loss(self.loss_fn, self.model(_autograd_ready(x)), _autograd_ready(y)) / self.n

    def gradient(self) -> Vector:
        with self.differentiable():
            total = [torch.zeros_like(p) for p in self.params]  # here: no inference tensors even under inference_mode
            for loss in self.batch_terms():
                for acc, g in zip(total, _grad(loss, self.params), strict=True):
                    acc.add_(g)
        return total

    def hvp_many(self, vs: list[Vector]) -> list[Vector]:
        """H v for each v; per batch one forward and one create_graph backward, then one backward per vector
        through that retained graph."""
        if not vs:
            return []
        params = self.params
        with self.differentiable():
            vs = [_like(v, params) for v in vs]
            out = [[torch.zeros_like(p) for p in params] for _ in vs]  # here: no inference tensors
            for loss in self.batch_terms():
                g = _grad(loss, params, create_graph=True)
                live = [i for i, gi in enumerate(g) if gi.requires_grad]  # a gradient constant in params adds 0
                if not live:
                    continue
                for j, v in enumerate(vs):
                    hv = _grad(
                        [g[i] for i in live], params, grad_outputs=[v[i] for i in live], retain_graph=j < len(vs) - 1
                    )
                    for acc, h in zip(out[j], hv, strict=True):
                        acc.add_(h)
        return out

    def directional_curvature(self, directions: list[Vector]) -> list[float]:
        out = []
        for start in range(0, len(directions), CHUNK):
            ds = directions[start : start + CHUNK]
            out += [_dot(d, hd) for d, hd in zip(ds, self.hvp_many(ds), strict=True)]
        return out

    def lanczos(self, k: int, iterations: int, seed: int, start: Tensor | None = None) -> Eigen:
        """See ``lanczos``. ``start``: a flat start vector (e.g. the top Ritz vector of a nearby Hessian: a warm
        start) in place of the seeded Gaussian one."""
        dim = sum(p.numel() for p in self.params)
        if k < 1 or iterations < 1 or dim == 0:
            raise ValueError(f"need k >= 1, iterations >= 1 and parameters (got k = {k}, iterations = {iterations})")
        if start is None:
            q = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        else:
            q = start.detach().double().reshape(-1)
            if q.numel() != dim or not bool(torch.isfinite(q).all()) or float(q.norm()) == 0:
                raise ValueError(f"lanczos: the start vector must be finite, non-zero and of length {dim}")
        q = (q / q.norm()).to(self.params[0].device)
        basis: list[Tensor] = []
        alphas, betas = _lanczos_coefficients(
            lambda vec: _flat(self.hvp_many([_unflat(vec, self.params)])[0]), q, min(iterations, dim), basis
        )
        m = len(alphas)
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if m > 1:
            off = torch.tensor(betas[:-1], dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(t)
        order = torch.argsort(theta, descending=True)[:k]
        values = [theta[i].item() for i in order]
        resid = [abs(betas[-1] * s[m - 1, i].item()) for i in order]
        residuals = [
            r / abs(v) if v != 0 else (0.0 if r == 0 else math.inf) for r, v in zip(resid, values, strict=True)
        ]
        ascending = torch.argsort(theta)
        ritz = [theta[i].item() for i in ascending]
        weights = [s[0, i].item() ** 2 for i in ascending]  # (e_1^T s_i)^2: the start vector's mass on pair i
        top = basis[0][:m].T @ s[:, order[0]].to(basis[0].device)  # the top Ritz vector, flat, float64
        return Eigen(values=values, residuals=residuals, iterations=m, ritz=ritz, ritz_weights=weights, vector=top)

    def hutchinson_trace(self, samples: int, seed: int) -> TraceEstimate:
        """See ``hutchinson_trace``."""
        gen = torch.Generator().manual_seed(seed)
        terms = _block_terms(self, lambda: [_rademacher(p.shape, gen, p) for p in self.params], samples)
        total, total_se = _mean_se(terms.sum(dim=1))
        per = [_mean_se(terms[:, i]) for i in range(len(self.params))]
        return TraceEstimate(total, total_se, [m for m, _ in per], [s for _, s in per], samples)

    def relative_flatness(self, samples: int, seed: int) -> RelativeFlatness:
        """See ``relative_flatness``."""
        weights = [i for i, p in enumerate(self.params) if p.dim() > 1]
        if not weights:
            raise ValueError("relative flatness needs at least one weight tensor (dim > 1) in params")
        gen = torch.Generator().manual_seed(seed)
        terms = _block_terms(self, lambda: _weight_delta(self.params, gen), samples)
        per = [_mean_se(terms[:, i]) if i in weights else (math.nan, math.nan) for i in range(len(self.params))]
        total, total_se = _mean_se(terms[:, weights].sum(dim=1))
        return RelativeFlatness([m for m, _ in per], [s for _, s in per], total, total_se, samples)


def loss_gradient(
    model: nn.Module, data: Data, *, params: Vector | None = None, batch_size: int = BATCH_SIZE,
    loss_fn: LossFn = cross_entropy,
) -> Vector:  # fmt: skip
    """Gradient of the mean loss (loss units per unit parameter), shaped like ``params``."""
    return MeanLoss.of(model, data, params, batch_size, loss_fn).gradient()


def hvp_many(
    model: nn.Module, data: Data, vs: list[Vector], *, params: Vector | None = None, batch_size: int = BATCH_SIZE,
    loss_fn: LossFn = cross_entropy,
) -> list[Vector]:  # fmt: skip
    """H v for each v in ``vs`` (shaped like ``params``, in their dtype), sharing one double-backward graph
    per batch."""
    return MeanLoss.of(model, data, params, batch_size, loss_fn).hvp_many(vs)


def hvp(
    model: nn.Module, data: Data, v: Vector, *, params: Vector | None = None, batch_size: int = BATCH_SIZE,
    loss_fn: LossFn = cross_entropy,
) -> Vector:  # fmt: skip
    """H v (loss units per unit parameter^2 times v's units), shaped like ``params``."""
    return MeanLoss.of(model, data, params, batch_size, loss_fn).hvp_many([v])[0]


def directional_curvature(
    model: nn.Module, data: Data, directions: list[Vector], *, params: Vector | None = None,
    batch_size: int = BATCH_SIZE, loss_fn: LossFn = cross_entropy,
) -> list[float]:  # fmt: skip
    """d^T H d for each direction d: the second derivative of the mean loss along theta + alpha d at alpha = 0."""
    return MeanLoss.of(model, data, params, batch_size, loss_fn).directional_curvature(directions)


@dataclass(frozen=True)
class Eigen:
    values: list[float]  # top-k Ritz values of H, descending (loss units per unit parameter^2)
    residuals: list[float]  # ||H q - theta q|| / |theta| of each Ritz pair, from the Lanczos relation
    iterations: int  # Lanczos steps done = HVPs spent (fewer than asked on breakdown)
    # All m Ritz values, ascending, with the stochastic Lanczos quadrature weights of the seeded start vector
    # (they sum to 1): the spectral density estimate sum_i w_i delta(lambda - theta_i) of Ubaru et al. 2017 and
    # PyHessian, one probe vector. Ritz values lie inside the spectrum, so ritz[0] >= lambda_min (a bound).
    ritz: list[float] = field(default_factory=list)
    ritz_weights: list[float] = field(default_factory=list)
    vector: Tensor | None = field(default=None, repr=False, compare=False)  # top Ritz vector, flat (a warm start)


def _flat(v: Vector) -> Tensor:
    return torch.cat([t.reshape(-1).double() for t in v])


def _unflat(flat: Tensor, params: Vector) -> Vector:
    sizes = [p.numel() for p in params]
    return [t.reshape(p.shape).to(p.dtype) for t, p in zip(flat.split(sizes), params, strict=True)]


def _lanczos_coefficients(
    apply: Callable[[Tensor], Tensor], q: Tensor, steps: int, keep: list[Tensor] | None = None
) -> tuple[list[float], list[float]]:
    """alpha_j, beta_j of the tridiagonal T from ``steps`` Lanczos steps with full re-orthogonalization (float64);
    the Lanczos vectors (steps x dim, rows beyond the steps done unused) are appended to ``keep`` when given."""
    basis = torch.empty(steps, q.numel(), dtype=torch.float64, device=q.device)
    if keep is not None:
        keep.append(basis)
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        basis[j] = q
        w = apply(q)
        alpha = torch.dot(q, w)
        w = w - alpha * q - (betas[-1] * basis[j - 1] if j else 0.0)
        for _ in range(2):  # twice is enough (Parlett's "twice is enough")
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        alphas.append(alpha.item())
        betas.append(w.norm().item())
        if betas[-1] <= BREAKDOWN * max(max(map(abs, alphas)), max(betas)):
            break  # invariant Krylov subspace: the Ritz values are exact eigenvalues
        q = w / betas[-1]
    return alphas, betas


def lanczos(
    model: nn.Module, data: Data, *, k: int = 1, iterations: int = 20, seed: int = 0, params: Vector | None = None,
    batch_size: int = BATCH_SIZE, loss_fn: LossFn = cross_entropy,
) -> Eigen:  # fmt: skip
    """The k largest (algebraic) eigenvalues of H from min(iterations, dim) Lanczos steps, seeded Gaussian start.

    Residuals use the Lanczos relation |beta_m * s_m| / |theta| (no extra HVP). Fewer than k values on breakdown.
    """
    return MeanLoss.of(model, data, params, batch_size, loss_fn).lanczos(k, iterations, seed)


def _mean_se(samples: Tensor) -> tuple[float, float]:
    """Mean of 1-D ``samples`` and its standard error s / sqrt(m) (nan for one sample)."""
    m = samples.numel()
    se = (samples.std(unbiased=True) / math.sqrt(m)).item() if m > 1 else math.nan
    return samples.mean().item(), se


def _block_terms(f: MeanLoss, draw: Callable[[], Vector], samples: int) -> Tensor:
    """(samples, len(params)) float64 of v_l^T (H v)_l for ``samples`` random v = draw(); one HVP each."""
    if samples < 1:
        raise ValueError(f"need samples >= 1 (got {samples})")
    rows = []
    for start in range(0, samples, CHUNK):
        vs = [draw() for _ in range(min(CHUNK, samples - start))]
        for v, hv in zip(vs, f.hvp_many(vs), strict=True):
            rows.append(torch.stack([(a.double() * b.double()).sum() for a, b in zip(v, hv, strict=True)]).cpu())
    return torch.stack(rows)


def _rademacher(shape: torch.Size | tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    """i.i.d. +-1 drawn on the CPU from ``gen``, then moved to ``like``'s dtype and device."""
    return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class TraceEstimate:
    total: float  # Hutchinson estimate of Tr(H), loss units per unit parameter^2
    total_se: float  # its standard error s / sqrt(m)
    per_tensor: list[float]  # Tr(H_ll) of each tensor's diagonal block; they add up to ``total``
    per_tensor_se: list[float]
    samples: int


def hutchinson_trace(
    model: nn.Module, data: Data, *, samples: int = 10, seed: int = 0, params: Vector | None = None,
    batch_size: int = BATCH_SIZE, loss_fn: LossFn = cross_entropy,
) -> TraceEstimate:  # fmt: skip
    """Tr(H) and each diagonal block's trace from ``samples`` seeded Rademacher v: mean of v^T H v and v_l^T (Hv)_l."""
    return MeanLoss.of(model, data, params, batch_size, loss_fn).hutchinson_trace(samples, seed)


@dataclass(frozen=True)
class RelativeFlatness:
    per_tensor: list[float]  # kappa_l of each weight tensor (dim > 1) in params, loss units; nan for dim <= 1
    per_tensor_se: list[float]
    total: float  # sum of kappa_l over the weight tensors
    total_se: float  # from the per-sample sums
    samples: int


def _weight_delta(params: Vector, gen: torch.Generator) -> Vector:
    """Delta_l = W_l R_l with W_l viewed as (out, fan_in) and R_l an independent fan_in x fan_in Rademacher matrix."""
    out = []
    for p in params:
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
            continue
        w = p.detach().reshape(p.shape[0], -1)
        out.append((w @ _rademacher((w.shape[1], w.shape[1]), gen, p)).reshape(p.shape))
    return out


def relative_flatness(
    model: nn.Module, data: Data, *, samples: int = 10, seed: int = 0, params: Vector | None = None,
    batch_size: int = BATCH_SIZE, loss_fn: LossFn = cross_entropy,
) -> RelativeFlatness:  # fmt: skip
    """kappa_l = sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'}) for each weight tensor (Petzka et al. 2021), unbiased:
    kappa_l ~ Delta_l^T (H Delta)_l with all layers' Delta_l = W_l R_l in one direction, one HVP per sample.
    """
    return MeanLoss.of(model, data, params, batch_size, loss_fn).relative_flatness(samples, seed)
