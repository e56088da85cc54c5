"""Kendall's tau with permutation p-values that respect the study's clusters.

The runs of one variant are a cluster, not independent draws, so the primary test ranks the variant means and
takes its p-value from every permutation of one variable (8! = 40,320 orderings for 8 variants;
scipy.stats.permutation_test). Two companions ask different questions: the within-variant (residual) tau, each
run's deviation from its variant mean against the same for the other variable, permuted within variants; and the
tau stratified by a known confounder, the mean of the per-stratum taus, permuted within strata. These block
permutations have no library equivalent and are drawn here. Report section 8 states the procedure next to its
numbers. A tau on its own is scipy.stats.kendalltau (``stats.kendall_tau``); ``_tau_b_rows`` is the same tau-b
over a batch of permutations at once, the null distributions' inner loop.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from itertools import permutations

import numpy as np
from scipy import stats

from landscape.probes.summary import _finite_array
from landscape.report.analysis.stats import kendall_tau

MAX_EXACT = 50_000  # enumerate every permutation up to this many (8! = 40,320), else draw RESAMPLES at random
RESAMPLES = 20_000
CHUNK = 4096  # permutations per vectorized batch
ALTERNATIVES = ("two-sided", "less", "greater")
_TIE = 1e-12  # a permuted tau within this of the observed one counts as at least as extreme (float rounding)


@dataclass(frozen=True)
class PermutationTau:
    """Kendall's tau-b (or a mean of them over strata), its permutation p-value and how the p was taken."""

    tau: float  # nan with fewer than 2 points or all values of one variable tied
    p: float  # nan where tau is nan
    permutations: int  # orderings behind p: all of them (exact) or the random draws
    exact: bool


def _tau_b_rows(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """tau-b of ``x`` (m,) against each row of ``ys`` (r, m); nan where a row (or x) is all tied."""
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(ys[:, :, None] - ys[:, None, :])
    num = np.einsum("ij,rij->r", sx, sy)
    denom = np.sqrt(float(np.sum(sx * sx)) * np.sum(sy * sy, axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)


def _blocks(groups: Sequence[Hashable]) -> list[np.ndarray]:
    """Indices of each distinct group, in order of first appearance."""
    names = list(dict.fromkeys(groups))
    return [np.array([i for i, g in enumerate(groups) if g == name]) for name in names]


def _count(blocks: list[np.ndarray]) -> int:
    return math.prod(math.factorial(len(b)) for b in blocks)


def _orderings(n: int, blocks: list[np.ndarray], seed: int) -> tuple[Iterator[np.ndarray], int, bool]:
    """Batches of index arrays (r, n), each row a permutation of 0..n-1 within ``blocks``; the identity is the
    first row when exact. Every such permutation when there are at most MAX_EXACT, else RESAMPLES random ones."""
    total = _count(blocks)
    if total <= MAX_EXACT:
        per_block = [np.array(list(permutations(b.tolist())), dtype=int).reshape(-1, len(b)) for b in blocks]
        choice = np.indices([len(p) for p in per_block]).reshape(len(blocks), -1)  # every combination, identity first
        rows = np.empty((total, n), dtype=int)
        for b, p, c in zip(blocks, per_block, choice, strict=True):
            rows[:, b] = p[c]
        return (rows[i : i + CHUNK] for i in range(0, total, CHUNK)), total, True
    rng = np.random.default_rng(seed)

    def drawn() -> Iterator[np.ndarray]:
        for start in range(0, RESAMPLES, CHUNK):
            batch = np.tile(np.arange(n), (min(CHUNK, RESAMPLES - start), 1))
            for b in blocks:
                batch[:, b] = rng.permuted(np.tile(b, (len(batch), 1)), axis=1)
            yield batch

    return drawn(), RESAMPLES, False


def _extreme(stats: np.ndarray, observed: float, alternative: str) -> int:
    if alternative == "two-sided":
        return int(np.sum(np.abs(stats) >= abs(observed) - _TIE))
    if alternative == "less":
        return int(np.sum(stats <= observed + _TIE))
    return int(np.sum(stats >= observed - _TIE))


def _permutation_test(
    x: np.ndarray, y: np.ndarray, strata: list[np.ndarray], blocks: list[np.ndarray], alternative: str, seed: int
) -> PermutationTau:
    """The mean over ``strata`` of tau-b(x, y) within each stratum, with y permuted within ``blocks``."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")

    def statistic(index: np.ndarray) -> np.ndarray:
        taus = np.stack([_tau_b_rows(x[s], y[index[:, s]]) for s in strata])
        with np.errstate(invalid="ignore"):
            return taus.mean(axis=0)

    observed = float(statistic(np.arange(x.size)[None, :])[0])
    batches, total, exact = _orderings(x.size, blocks, seed)
    if math.isnan(observed):
        return PermutationTau(math.nan, math.nan, total, exact)
    hits = sum(_extreme(statistic(batch), observed, alternative) for batch in batches)
    p = hits / total if exact else (hits + 1) / (total + 1)
    return PermutationTau(observed, min(1.0, p), total, exact)


def _pair(x: Sequence[float], y: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = _finite_array(x, f"{name} x"), _finite_array(y, f"{name} y")
    if xa.size != ya.size:
        raise ValueError(f"{name}: x has {xa.size} values, y has {ya.size}")
    return xa, ya


def permutation_tau(
    x: Sequence[float], y: Sequence[float], alternative: str = "two-sided", seed: int = 0
) -> PermutationTau:
    """Kendall's tau-b of (x, y) with the p-value of permuting y over all n! orderings (exact while n! <=
    MAX_EXACT; else RESAMPLES seeded draws, p = (hits + 1) / (draws + 1)), by scipy.stats.permutation_test.
    ``alternative``: "two-sided" (|tau| >= |observed|: the test of |tau|, which stays right where ties make the
    null distribution asymmetric), "less" (tau <= observed) or "greater"."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    xa, ya = _pair(x, y, "permutation_tau")
    exact = _count([np.arange(xa.size)]) <= MAX_EXACT
    total = math.factorial(xa.size) if exact else RESAMPLES
    tau = kendall_tau(xa, ya)
    if math.isnan(tau):
        return PermutationTau(math.nan, math.nan, total, exact)

    def statistic(ys: np.ndarray, axis: int = -1) -> np.ndarray:
        taus = _tau_b_rows(xa, np.reshape(ys, (-1, xa.size))).reshape(np.shape(ys)[:-1])
        return np.abs(taus) if alternative == "two-sided" else taus

    result = stats.permutation_test(
        (ya,),
        statistic,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=np.inf if exact else RESAMPLES,
        batch=CHUNK,
        alternative="greater" if alternative == "two-sided" else alternative,
        rng=np.random.default_rng(seed),
    )
    return PermutationTau(tau, min(1.0, float(result.pvalue)), total, exact)


def residuals(values: Sequence[float], groups: Sequence[Hashable]) -> np.ndarray:
    """Each value minus the mean of its group."""
    out = np.asarray(values, float).copy()
    for b in _blocks(list(groups)):
        out[b] -= out[b].mean()
    return out


def within_group_tau(
    x: Sequence[float], y: Sequence[float], groups: Sequence[Hashable], alternative: str = "two-sided", seed: int = 0
) -> PermutationTau:
    """tau-b over all points of the within-group residuals of x and y (each value minus its group's mean), with y
    permuted within groups: an association within the clusters, with the differences between them taken out."""
    xa, ya = _pair(x, y, "within_group_tau")
    g = list(groups)
    if len(g) != xa.size:
        raise ValueError(f"within_group_tau: {len(g)} groups for {xa.size} values")
    return _permutation_test(residuals(xa, g), residuals(ya, g), [np.arange(xa.size)], _blocks(g), alternative, seed)


def stratified_tau(
    x: Sequence[float], y: Sequence[float], strata: Sequence[Hashable], alternative: str = "two-sided", seed: int = 0
) -> tuple[PermutationTau, dict[Hashable, float]]:
    """The mean over strata of tau-b within each stratum, with y permuted within strata (exact while the product of
    the strata's factorials is <= MAX_EXACT), and each stratum's own tau. A stratum of one point has no tau (nan),
    and then neither has the mean."""
    xa, ya = _pair(x, y, "stratified_tau")
    s = list(strata)
    if len(s) != xa.size:
        raise ValueError(f"stratified_tau: {len(s)} strata for {xa.size} values")
    blocks = _blocks(s)
    own = {name: float(_tau_b_rows(xa[b], ya[b][None, :])[0]) for name, b in zip(dict.fromkeys(s), blocks, strict=True)}
    return _permutation_test(xa, ya, blocks, blocks, alternative, seed), own
