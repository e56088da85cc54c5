"""Our curvature probes against curvlinops, an independent implementation (its own Hessian-vector products
through torch.func, ARPACK's eigsh through scipy, its own Hutchinson estimator and Lanczos spectral density),
on a tiny MLP and a tiny CNN in float64, with the dense Hessian built from curvlinops' operator as ground truth.

curvlinops-for-pytorch and scipy are pinned in the ``dev`` extra only (pyproject.toml): the probes never import
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from curvlinops import HessianLinearOperator, lanczos_approximate_spectrum
from curvlinops import hutchinson_trace as curvlinops_hutchinson
from curvlinops.papyan2020traces.spectrum import fast_lanczos, lanczos_approximate_spectrum_from_iter
from scipy.sparse.linalg import eigsh
from torch import nn

from landscape.probes.hessian import hutchinson_trace, hvp_many, lanczos

pytestmark = pytest.mark.usefixtures("single_thread")

DT = torch.float64
N = 40
BATCH = 16  # ours: 16 + 16 + 8, a short last batch (weighted by size / N); curvlinops: one batch of N
SEED = 0


def build(kind: str) -> nn.Module:
    """Smooth (tanh, average pooling) so the Hessian is well defined everywhere; no BN or dropout, so curvlinops
    (which calls the model as it is) and our probes (which switch to eval mode) see the same function."""
    torch.manual_seed(0)
    if kind == "mlp":  # 36*6 + 6 + 6*3 + 3 = 243 parameters
        model = nn.Sequential(nn.Flatten(), nn.Linear(36, 6), nn.Tanh(), nn.Linear(6, 3))
    else:  # 4*9 + 4 + 36*3 + 3 = 151 parameters
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
        )
    return model.to(DT).eval()


@dataclass
class Case:
    model: nn.Module
    data: tuple[torch.Tensor, torch.Tensor]
    op: HessianLinearOperator
    h: torch.Tensor  # dense Hessian of the mean loss, column by column from curvlinops' operator
    eigenvalues: torch.Tensor  # of h, ascending

    @property
    def dim(self) -> int:
        return self.h.shape[0]


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def case(request) -> Case:
    model = build(request.param)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 1, 6, 6, generator=g, dtype=DT)
    y = torch.randint(0, 3, (N,), generator=g)
    params = list(model.parameters())
    op = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(x, y)])  # mean over the N samples
    h = op @ torch.eye(sum(p.numel() for p in params), dtype=DT)
    assert torch.allclose(h, h.T, rtol=0, atol=1e-14)
    return Case(model, (x, y), op, h, torch.linalg.eigvalsh(h))


def unflat(flat: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
    sizes = [p.numel() for p in model.parameters()]
    return [t.reshape(p.shape) for t, p in zip(flat.split(sizes), model.parameters(), strict=True)]


def test_hvp_matches_curvlinops(case: Case) -> None:
    """The building block of everything below: H v agrees to float64 roundoff (different autograd paths)."""
    vs = torch.randn(case.dim, 4, generator=torch.Generator().manual_seed(2), dtype=DT)
    ours = torch.stack(
        [torch.cat([t.reshape(-1) for t in hv]) for hv in hvp_many(
            case.model, case.data, [unflat(v, case.model) for v in vs.T], batch_size=BATCH
        )], dim=1,
    )  # fmt: skip
    theirs = case.op @ vs
    assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-12 * float(theirs.abs().max()))


def test_lambda_max_matches_eigsh(case: Case) -> None:
    """Our lambda_max against ARPACK (eigsh on curvlinops' operator, converged to 1e-12), and our top 3 Ritz
    values against the dense eigenvalues. Tolerance: a Ritz pair with residual r = ||H q - theta q|| has an
    eigenvalue within r of theta; our ``residuals`` are r / |theta|, so each value must lie within 2 r (plus
    roundoff) of the matching eigenvalue, and the top one must actually have converged (r / |theta| < 1e-6)."""
    ours = lanczos(case.model, case.data, k=3, iterations=40, seed=SEED, batch_size=BATCH)
    v0 = np.random.default_rng(SEED).standard_normal(case.dim)
    (arpack,) = eigsh(case.op.to_scipy(), k=1, which="LA", tol=1e-12, v0=v0, return_eigenvectors=False)
    dense = case.eigenvalues.flip(0)[:3].tolist()
    assert abs(arpack - dense[0]) <= 1e-10 * dense[0]
    assert ours.residuals[0] < 1e-6
    assert abs(ours.values[0] - arpack) <= 1e-10 * arpack, (ours.values[0], arpack)  # lambda_max: to 10 digits
    for value, residual, reference in zip(ours.values, ours.residuals, dense, strict=True):
        assert abs(value - reference) <= 2 * residual * abs(value) + 1e-12 * abs(reference), (value, reference)


SAMPLES = 32


def test_hutchinson_trace_against_exact_and_curvlinops(case: Case) -> None:
    """Both estimators are unbiased with Rademacher probes, whose variance is known exactly:
    Var(v^T H v) = 2 (||H||_F^2 - sum_i H_ii^2), so the standard deviation of a mean of m samples is
    sigma = sqrt(that / m). The two draw different probes (ours from a seeded Generator per tensor, curvlinops'
    with bernoulli_ from the global generator), so they agree only statistically: each within 4 sigma of the exact
    trace, their difference within 4 sqrt(2) sigma (a seed-independent bound: 4 sigma fails with probability about
    6e-5). Our reported standard error, a sample estimate of sigma from 32 samples, must be within a factor 2."""
    exact = float(case.h.trace())
    sigma = math.sqrt(2 * float((case.h**2).sum() - (case.h.diagonal() ** 2).sum()) / SAMPLES)
    ours = hutchinson_trace(case.model, case.data, samples=SAMPLES, seed=SEED, batch_size=BATCH)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        theirs = float(curvlinops_hutchinson(case.op, SAMPLES))
    assert abs(ours.total - exact) <= 4 * sigma, (ours.total, exact, sigma)
    assert abs(theirs - exact) <= 4 * sigma, (theirs, exact, sigma)
    assert abs(ours.total - theirs) <= 4 * math.sqrt(2) * sigma, (ours.total, theirs, sigma)
    assert 0.5 < ours.total_se / sigma < 2, (ours.total_se, sigma)
    assert math.isclose(sum(ours.per_tensor), ours.total, rel_tol=1e-12, abs_tol=1e-12)


STEPS = 20  # Lanczos steps: quadrature nodes


def test_spectral_density_matches_curvlinops_lanczos(case: Case) -> None:
    """Stochastic Lanczos quadrature from the same start vector: ours draws it with
    ``torch.randn(dim, generator=Generator().manual_seed(seed), dtype=float64)`` and curvlinops' Lanczos with
    ``torch.randn(dim, dtype=float64)`` from the global generator, the same numbers after
    ``torch.manual_seed(seed)`` (checked first). Both then build the Gauss quadrature of the start vector's
    spectral measure mu = sum_j (u_j^T q)^2 delta(lambda - lambda_j), exact for polynomials of degree
    <= 2 STEPS - 1. curvlinops does not re-orthogonalize, so its nodes may hold "ghost" copies of converged
    eigenvalues (the CNN's lambda_max twice), but in finite precision its quadrature still reproduces those
    moments (Greenbaum 1989; Knizhnerman 1996). So:

    - moments int (lambda / rho)^k dmu, k = 0 .. 2 STEPS - 1, rho = the spectral radius (all of them in [-1, 1]):
      ours against q^T (H / rho)^k q from the dense Hessian and against curvlinops' nodes and weights, to 1e-10
      absolute. Observed: <= 5e-16 (float64 roundoff); a weight or node wrong by 1e-8 would fail.
    - the density on curvlinops' grid (1024 points, Gaussian bumps of its default width, kappa = 3, between the
      exact lambda_min and lambda_max): ours (nodes and weights through the same smoothing) against curvlinops'
      own, to 1e-8 of the peak density. A node moved by delta changes the density by about delta / sigma
      relative, sigma the bump width (about 0.03 here); the CNN's ghost lies 4e-12 from lambda_max, hence the
      observed 2e-10 there (5e-15 for the MLP), while a node off by 3e-10 or a weight off by 1e-8 would fail.
    """
    dim = case.dim
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        assert torch.equal(
            torch.randn(dim, dtype=DT), torch.randn(dim, generator=torch.Generator().manual_seed(SEED), dtype=DT)
        ), "the global and a seeded generator no longer draw the same start vector: this comparison needs one"
        torch.manual_seed(SEED)
        boundaries = (float(case.eigenvalues[0]), float(case.eigenvalues[-1]))
        grid, theirs_density = lanczos_approximate_spectrum(case.op, STEPS, boundaries=boundaries)
        torch.manual_seed(SEED)
        theirs_nodes, theirs_vectors = fast_lanczos(case.op, STEPS)
    ours = lanczos(case.model, case.data, k=1, iterations=STEPS, seed=SEED, batch_size=BATCH)
    assert ours.iterations == STEPS and math.isclose(sum(ours.ritz_weights), 1.0, rel_tol=1e-12)
    nodes = torch.tensor(ours.ritz, dtype=DT)
    weights = torch.tensor(ours.ritz_weights, dtype=DT)
    theirs_weights = theirs_vectors[0] ** 2

    rho = float(case.eigenvalues.abs().max())
    q = torch.randn(dim, generator=torch.Generator().manual_seed(SEED), dtype=DT)
    q /= q.norm()
    power = q.clone()  # (H / rho)^k q
    for k in range(2 * STEPS):
        exact = float(q @ power)
        mine = float((weights * (nodes / rho) ** k).sum())
        other = float((theirs_weights * (theirs_nodes / rho) ** k).sum())
        assert abs(mine - exact) <= 1e-10, (k, mine, exact)
        assert abs(mine - other) <= 1e-10, (k, mine, other)
        power = case.h @ power / rho

    # Our nodes and weights as a Lanczos result (eigenvector matrix whose first row holds sqrt(weights)) through
    # curvlinops' smoothing with its defaults, so that only the quadratures differ.
    first_row = torch.zeros(STEPS, STEPS, dtype=DT)
    first_row[0] = weights.sqrt()
    _, ours_density = lanczos_approximate_spectrum_from_iter(
        (nodes, first_row), boundaries, num_points=grid.numel(), kappa=3.0, margin=0.05
    )
    peak = float(theirs_density.max())
    assert float((ours_density - theirs_density).abs().max()) <= 1e-8 * peak
