"""Question 4 without circularity: does an epoch-1 landscape signal add to a baseline that needs no landscape?

Fixed before the runs; nothing here reads the validation curve.

- Unit: the *cell* (a variant), in families of cells differing in one setting (learning rate, depth, init scale,
  momentum), each with n >= 3 training seeds, which are a cluster: a signal or baseline variable is the mean over
  a cell's seeds (``cell_values``), difficulty the mean over its seeds of each run's rank among all runs by the
  final eval-mode training loss at the budget, dead (chance accuracy) and diverged runs hardest and tied
  (``difficulty``). A signal has a direction declared in advance (``Signal``); the baseline is the epoch-1
  training loss and the learning rate (``BASELINE``).
- (a) Partial Kendall tau of (signal x, difficulty y) given the baseline Z, from the tau-b matrix T:
  tau_xy.Z = (T_xy - T_xZ T_ZZ^+ T_Zy) / sqrt((1 - T_xZ T_ZZ^+ T_Zx)(1 - T_yZ T_ZZ^+ T_Zy)); for one baseline
  variable (tau_xy - tau_xz tau_yz) / sqrt((1 - tau_xz^2)(1 - tau_yz^2)), for two sequential partialling (that
  formula on the first-order partials), in either order. No rank-sum composite: it would presume both baseline
  variables point the same way with equal weight. Tau-b is the cosine of two pair-sign vectors, so this is their
  cosine after projecting out the baseline's; a rank function of the baseline has nothing left and gets 0.
  p is one-sided in the declared direction, from Freedman-Lane draws within families (numpy Generator, fixed
  seed; p = (hits + 1) / (draws + 1)): the signal's scaled ranks less their least-squares fit on the baseline's
  are shuffled within each family and added back to the fit. Shuffling the signal itself breaks its tie to the
  baseline too, and a partial tau is not 0 under conditional independence (about 0.08 for Gaussian data with the
  signal at correlation 0.9 with a baseline variable): in 400 such simulations each, at 12 / 20 / 40 cells, the raw
  shuffle rejected at 5 % in about 6.5 / 11 / 24 %, Freedman-Lane in 4.0 / 6.3 / 7.5 %. Holm over the signals.
- (b) Leave-one-cell-out: for each cell, least squares of the other cells' difficulty ranks (scaled to 0..1) on
  the baseline's ranks, with and without the signal's; the held-out predictions are scored by Kendall's tau with
  difficulty and by the mean absolute error in scaled ranks.
- Verdict: "adds" when (a)'s Holm-adjusted p < ALPHA and (b)'s held-out tau rises with the signal; "does not
  add" when the partial tau is shown below +MARGIN in the declared direction (one-sided equivalence on a
  location-shift model: the same draws, shifted to the margin, as the estimate's spread), Holm over the signals;
  else "inconclusive". Power: ``smallest_reachable_p`` (can the test pass Holm's first step at all?) and
  ``minimum_detectable_tau`` (by simulation).

Ranks from scipy.stats.rankdata; Kendall's tau-b is ranking's vectorised one (many shuffles at once), which
tests/test_early_warning.py checks against scipy.stats.kendalltau.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from landscape.report.analysis.ranking import CHUNK, _blocks, _tau_b_rows
from landscape.report.analysis.stats import holm_family, kendall_tau
from landscape.report.terms import ALPHA

BASELINE = ("train_loss_epoch1", "lr")  # needs no landscape: known before training, or read off epoch 1's loss
MARGIN = 0.2  # the smallest partial tau of interest: below it in the declared direction, a signal does not add
RESAMPLES = 9999
MIN_CELLS = 4  # with a finite signal and baseline; fewer get no test (and 4! = 24 orderings cannot decide anyway)
OUTCOMES = ("adds", "does not add", "inconclusive")
_TIE = 1e-12  # a shuffled statistic within this of the observed one counts as at least as extreme
_EPS = 1e-12  # a residual pair-sign variance below this is nothing left to explain


@dataclass(frozen=True)
class Signal:
    """An epoch-1 observation declared before the runs: ``direction`` +1 if larger means harder, -1 if smaller."""

    name: str
    direction: int
    why: str

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"Signal {self.name!r}: direction must be +1 or -1, got {self.direction!r}")


@dataclass(frozen=True)
class Run:
    """One training run: its cell and family, the eval-mode training loss at the budget (nan if diverged), the
    dead (chance accuracy) and diverged flags, and its epoch-1 observations by name (signals and baseline)."""

    cell: str
    family: str
    seed: int
    final_loss: float
    dead: bool = False
    diverged: bool = False
    early: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HeldOut:
    """Leave-one-cell-out predictions scored by Kendall's tau with difficulty and mean absolute scaled-rank error."""

    tau: float
    mae: float


@dataclass(frozen=True)
class Reach:
    """What the permutation test can reach: the within-family orderings of the signal, the expected smallest p
    (the observed ordering alone as extreme), Holm's first-step threshold ALPHA / family size, and whether the
    first can pass the second (a rule that cannot is no test: drop it or add cells)."""

    orderings: int
    smallest_p: float
    threshold: float
    can_decide: bool


@dataclass(frozen=True)
class SignalResult:
    """One declared signal's evidence and verdict; p's nan where there is no test (fewer than MIN_CELLS cells)."""

    signal: Signal
    cells: int  # with a finite signal and baseline
    partial_tau: float  # tau_xy.Z, signed as measured (the declared direction is in signal.direction)
    p: float  # one-sided in the declared direction
    p_adjusted: float
    p_equivalence: float  # that the partial tau in the declared direction lies below +margin
    p_equivalence_adjusted: float
    baseline_only: HeldOut
    with_signal: HeldOut
    reach: Reach
    verdict: str


def difficulty(runs: Sequence[Run]) -> dict[str, float]:
    """Per cell, the mean over its runs of each run's rank among all runs by final training loss (1 = easiest);
    dead and diverged runs rank above every other run, tied. A cell of only such runs ties with the others like it.
    A live run without a finite loss -> ValueError."""
    scores = [math.inf if r.dead or r.diverged else r.final_loss for r in runs]
    bad = [f"{r.cell}/{r.seed}" for r, s in zip(runs, scores, strict=True) if math.isnan(s) or s == -math.inf]
    if bad:
        raise ValueError(f"difficulty: run(s) neither dead nor diverged without a final loss: {', '.join(bad)}")
    ranks = stats.rankdata(scores)  # ties share their mean rank; inf ranks last
    by_cell: dict[str, list[float]] = {}
    for r, rank in zip(runs, ranks, strict=True):
        by_cell.setdefault(r.cell, []).append(float(rank))
    return {cell: float(np.mean(v)) for cell, v in by_cell.items()}


def cell_values(runs: Sequence[Run], name: str) -> dict[str, float]:
    """Per cell, the mean over its seeds of the epoch-1 observation ``name`` (seeds without a finite value left
    out; nan where none has one)."""
    by_cell: dict[str, list[float]] = {}
    for r in runs:
        by_cell.setdefault(r.cell, []).append(r.early.get(name, math.nan))
    return {
        c: float(np.mean(f)) if (f := [v for v in vs if math.isfinite(v)]) else math.nan for c, vs in by_cell.items()
    }


def _partial(txy: np.ndarray, txz: np.ndarray, tyz: np.ndarray, zz: np.ndarray) -> np.ndarray:
    """tau_xy.Z for rows of txy (r,) and txz (r, k), given tyz (k,) and the baseline's tau matrix zz (k, k)."""
    w = np.linalg.pinv(zz)
    num = txy - txz @ w @ tyz
    vx = 1.0 - np.einsum("rk,kl,rl->r", txz, w, txz)
    vy = 1.0 - tyz @ w @ tyz
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / np.sqrt(np.clip(vx, _EPS, None) * max(vy, _EPS))
    return np.where(np.isnan(txy), np.nan, np.where((vx > _EPS) & (vy > _EPS), out, 0.0))


def _statistic(xs: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """tau_xy.Z of each row of xs (r, n) with difficulty y (n,) given the baseline rows z (k, n); a constant
    baseline variable carries no order and is left out."""
    z = z[np.ptp(z, axis=1) > 0]
    if not len(z):
        return _tau_b_rows(y, xs)
    zz = np.array([[_tau_b_rows(a, b[None, :])[0] for b in z] for a in z])
    tyz = _tau_b_rows(y, z)
    txz = np.stack([_tau_b_rows(zj, xs) for zj in z], axis=1)
    return _partial(_tau_b_rows(y, xs), txz, tyz, zz)


def partial_tau(signal: Sequence[float], target: Sequence[float], baseline: Sequence[Sequence[float]]) -> float:
    """Kendall's partial tau-b of (signal, target) given the baseline variables (see the module docstring)."""
    x, y, z = np.asarray(signal, float), np.asarray(target, float), np.atleast_2d(np.asarray(baseline, float))
    return float(_statistic(x[None, :], y, z)[0])


def _scaled(values: np.ndarray) -> np.ndarray:
    return (stats.rankdata(values) - 1.0) / max(values.size - 1, 1)


def _shuffles(n: int, blocks: list[np.ndarray], resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    for start in range(0, resamples, CHUNK):
        batch = np.tile(np.arange(n), (min(CHUNK, resamples - start), 1))
        for b in blocks:
            batch[:, b] = rng.permuted(np.tile(b, (len(batch), 1)), axis=1)
        yield batch


def _test(x, y, z, blocks, direction, margin, resamples, rng) -> tuple[float, float, float]:
    """(tau_xy.Z, p, p_equivalence) with Freedman-Lane draws: the signal's scaled ranks less their least-squares
    fit on the baseline's, shuffled within ``blocks`` and added back to the fit (rounded, so that ties stay ties)."""
    observed = float(_statistic(x[None, :], y, z)[0])
    if math.isnan(observed):
        return math.nan, math.nan, math.nan
    design = np.column_stack([np.ones(x.size), *(_scaled(v) for v in z)])
    fitted = design @ np.linalg.lstsq(design, _scaled(x), rcond=None)[0]
    residual = _scaled(x) - fitted
    s = direction * observed
    above = below = 0
    for index in _shuffles(x.size, blocks, resamples, rng):
        null = direction * _statistic(np.round(fitted + residual[index], 9), y, z)
        above += int(np.sum(null >= s - _TIE))
        below += int(np.sum(null <= s - margin + _TIE))
    return observed, (above + 1) / (resamples + 1), (below + 1) / (resamples + 1)


def partial_tau_test(
    signal: Sequence[float],
    target: Sequence[float],
    baseline: Sequence[Sequence[float]],
    direction: int,
    strata: Sequence[Hashable],
    margin: float = MARGIN,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(tau_xy.Z, p, p_equivalence): p one-sided in ``direction``, the signal shuffled within ``strata``;
    p_equivalence that direction x tau_xy.Z < margin (location-shift model). Deterministic for a given ``seed``."""
    x, y = np.asarray(signal, float), np.asarray(target, float)
    z = np.atleast_2d(np.asarray(baseline, float))
    if not (x.size == y.size == z.shape[1] == len(strata)):
        raise ValueError(f"partial_tau_test: lengths differ ({x.size}, {y.size}, {z.shape[1]}, {len(strata)})")
    rng = np.random.default_rng(seed)
    return _test(x, y, z, _blocks(list(strata)), direction, margin, resamples, rng)


def leave_one_cell_out(target: Sequence[float], predictors: Sequence[Sequence[float]]) -> HeldOut:
    """For each cell, least squares of the other cells' scaled difficulty ranks (0..1, ranked among them) on an
    intercept and the predictors' scaled ranks (ranked over all cells: they are known before the outcome), then
    the held-out cell's prediction; scored against difficulty (tau) and its scaled rank over all cells (mae)."""
    y = np.asarray(target, float)
    n = y.size
    design = np.column_stack([np.ones(n), *(_scaled(np.asarray(p, float)) for p in predictors)])
    predicted = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        coef = np.linalg.lstsq(design[keep], _scaled(y[keep]), rcond=None)[0]
        predicted[i] = design[i] @ coef
    return HeldOut(kendall_tau(predicted, y), float(np.mean(np.abs(predicted - _scaled(y)))))


def smallest_reachable_p(
    n_cells: int, family_size: int, strata: Sequence[int] | None = None, resamples: int = RESAMPLES
) -> Reach:
    """What the within-stratum permutation test can reach over ``n_cells`` cells in strata of the given sizes (one
    stratum when None) with ``resamples`` draws, against Holm's first step over ``family_size`` signals."""
    sizes = list(strata) if strata is not None else [n_cells]
    if sum(sizes) != n_cells or min(sizes) < 0 or family_size < 1:
        raise ValueError(f"smallest_reachable_p: strata {sizes} must be >= 0 and sum to n_cells {n_cells}")
    orderings = math.prod(math.factorial(k) for k in sizes)
    smallest = (resamples / orderings + 1) / (resamples + 1)
    return Reach(orderings, smallest, ALPHA / family_size, smallest < ALPHA / family_size)


def minimum_detectable_tau(
    strata: Sequence[int], family_size: int, power: float = 0.8, sims: int = 200, resamples: int = 999, seed: int = 0
) -> float | None:
    """The smallest population partial tau that the one-sided test detects at Holm's first step (ALPHA / family
    size) in at least ``power`` of ``sims`` simulations, over rho = 0.1, 0.2, ..., 1; None if none does (or the test
    cannot decide at all).

    Generating model, per cell (i.i.d., no family effect): baseline z1, z2 ~ N(0, 1); difficulty
    y = 0.5 (z1 + z2) + sqrt(0.5) u with u ~ N(0, 1) (the baseline explains half of its variance); signal
    x = rho u + sqrt(1 - rho^2) e, independent of the baseline. With tau = (2 / pi) arcsin(r) for each Gaussian
    pair, its partial tau is tau_xy / sqrt(1 - 2 tau_yz^2): 0.57 at rho = 1, the most this model can show."""
    n = sum(strata)
    if not smallest_reachable_p(n, family_size, strata, resamples).can_decide:
        return None
    blocks = _blocks([i for i, k in enumerate(strata) for _ in range(k)])
    rng = np.random.default_rng(seed)
    for rho in np.round(np.arange(0.1, 1.05, 0.1), 1):
        hits = 0
        for _ in range(sims):
            z, u, e = rng.normal(size=(2, n)), rng.normal(size=n), rng.normal(size=n)
            x = rho * u + math.sqrt(max(1 - rho * rho, 0.0)) * e
            p = _test(x, 0.5 * z.sum(axis=0) + math.sqrt(0.5) * u, z, blocks, 1, MARGIN, resamples, rng)[1]
            hits += p < ALPHA / family_size
        if hits >= power * sims:
            tau_xy, tau_yz = (2 / math.pi * math.asin(r) for r in (rho * math.sqrt(0.5), 0.5))
            return tau_xy / math.sqrt(1 - 2 * tau_yz**2)
    return None


def outcome(p_adjusted: float, p_equivalence_adjusted: float, improves: bool) -> str:
    """The verdict: "adds" when (a) passes Holm and (b) improves, "does not add" when the equivalence test passes
    Holm, else "inconclusive" (a nan p included)."""
    if p_adjusted < ALPHA and improves:
        return "adds"
    return "does not add" if p_equivalence_adjusted < ALPHA else "inconclusive"


def evaluate(
    runs: Sequence[Run],
    signals: Sequence[Signal],
    baseline: Sequence[str] = BASELINE,
    margin: float = MARGIN,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, SignalResult]:
    """Each declared signal's (a) and (b) over the cells with a finite signal and baseline, permuted within
    families, both p's Holm-adjusted over ``signals``, and its verdict (see the module docstring)."""
    families: dict[str, str] = {}
    for r in runs:
        if families.setdefault(r.cell, r.family) != r.family:
            raise ValueError(f"evaluate: cell {r.cell!r} is in families {families[r.cell]!r} and {r.family!r}")
    hard = difficulty(runs)
    base = [cell_values(runs, b) for b in baseline]
    found = {}
    for s in signals:
        x = cell_values(runs, s.name)
        cells = [c for c in hard if all(math.isfinite(v[c]) for v in (x, *base))]
        y, zs = [hard[c] for c in cells], [[b[c] for c in cells] for b in base]
        strata = [families[c] for c in cells]
        sizes = [strata.count(f) for f in dict.fromkeys(strata)]
        reach = smallest_reachable_p(len(cells), len(signals), sizes or [0], resamples)
        if len(cells) < MIN_CELLS:
            none = HeldOut(math.nan, math.nan)
            found[s.name] = (s, len(cells), (math.nan,) * 3, none, none, reach)
            continue
        test = partial_tau_test([x[c] for c in cells], y, zs, s.direction, strata, margin, resamples, seed)
        found[s.name] = (s, len(cells), test, leave_one_cell_out(y, zs),
                         leave_one_cell_out(y, [*zs, [s.direction * x[c] for c in cells]]), reach)  # fmt: skip
    adjusted = holm_family({k: v[2][1] for k, v in found.items()})
    adjusted_eq = holm_family({k: v[2][2] for k, v in found.items()})
    results = {}
    for k, (s, n, (tau, p, p_eq), only, both, reach) in found.items():
        verdict = outcome(adjusted[k], adjusted_eq[k], both.tau > only.tau)
        results[k] = SignalResult(s, n, tau, p, adjusted[k], p_eq, adjusted_eq[k], only, both, reach, verdict)
    return results
