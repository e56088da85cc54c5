"""Report sections 6 and 7: curvature (the local Hessian beside the finite-step curvature of the slices, the
estimators' noise, and the per-layer test of the fan-in explanation) and the optimization path.

For ReLU and max-pool networks the autograd Hessian is the Hessian inside one activation pattern, so every
Hessian quantity here (d^T H d, lambda_max, trace, relative flatness) is called "local". Numbers come from typed
objects only; the sentences are generated from the numbers with the verdict vocabulary.
"""

from __future__ import annotations

import math

from landscape.report.format import PERCENT, PLAIN, SIGNED, count, estimate, interval, table
from landscape.report.render.estimator_noise import estimator_noise
from landscape.report.schema import FanIn, Rise, StudySummary
from landscape.study import results as M

LOCAL = "local Hessian (one activation pattern)"


def _counts(values: list[int]) -> str:
    distinct = sorted(set(values))
    return " or ".join(map(str, distinct)) if distinct else "no"


def fan_in_test(f: FanIn | None) -> str:
    if f is None:
        return "The fan-in test needs at least two weight tensors with a slice curvature."
    units = [f"`{v}`: " + ", ".join(f"{lay.name} {lay.fan_in}" for lay in layers) for v, layers in f.units.items()]
    finding = (
        f"consistent with the fan-in explanation (tau < 0 with one-sided p < {f.level:g})"
        if f.consistent
        else f"not evidence for the fan-in explanation at the one-sided {f.level:g} level"
    )
    points = "; ".join(f"{r.name} (fan-in {r.fan_in}) {PLAIN(r.curvature)}" for r in f.layers)
    how = "exact, all orderings" if f.exact else "seeded random orderings"
    steepest = "".join(
        f" In `{s.variant}` the steepest tensor is {s.tensor} (fan-in {s.fan_in}): local d_l^T H d_l = "
        f"{interval(s.curvature, PLAIN)}."
        for s in f.steepest
    )
    return (
        "The fan-in explanation: filter normalization scales each output filter or neuron as a whole, so the unit "
        "holds fan-in weights (" + "; ".join(units) + "), and a small unit might be perturbed more sharply. The test "
        f"is over the {len(f.layers)} distinct layers (a tensor's position in the MLP or CNN family), each the mean "
        f"of the local d_l^T H d_l over its family's variants and seeds: {points}. Kendall's tau between fan-in and "
        f"that mean: {SIGNED(f.tau)}, one-sided permutation p = {PLAIN(f.p)} ({f.permutations:,} orderings, "
        f"{how}). The explanation predicts tau < 0; the ranking is **{finding}**. It is not a confirmation: fan-in "
        "goes with the layer's position and type (the CNN's smallest fan-in is its first, convolutional layer and "
        "its largest the first linear layer after the features; in the MLP fan-in falls with depth), so the same "
        f"ranking follows from a depth or layer-type effect. Each run's per-layer value rests on only "
        f"{_counts(f.run_directions)} filter-normalized directions (params curvature.layer_directions), a distinct "
        f"layer's mean on {_counts([r.directions for r in f.layers])} directions in all." + steepest
    )


def finite_step_section(study: StudySummary) -> str:
    """The local d^T H d beside the finite-step curvature at three steps and the fitted 2a, with their ratio."""
    g = study.geometry
    alphas, alpha, window = g.alphas, g.steepness_alpha, study.setup.fit_window
    rows = [
        [
            r.variant,
            estimate(study.get(r.variant, M.CURVATURE_EXACT), PLAIN),
            *(interval(k, PLAIN) for k in r.kappa),
            estimate(study.get(r.variant, M.curvature_fit("frozen", "train")), PLAIN),
            interval(r.ratio, PLAIN),
            count(r.below, r.directions),
        ]
        for r in g.finite_step
    ]
    header = [
        "variant",
        "local d^T H d",
        *(f"kappa({a:g})" for a in alphas),
        f"fitted 2a (|alpha| <= {window:g})",
        f"d^T H d / kappa({alpha:g})",
        f"directions with d^T H d < kappa({alpha:g})",
    ]
    finite = {r.variant: r.ratio.mean for r in g.finite_step if math.isfinite(r.ratio.mean)}
    low, high = (min(finite, key=finite.get), max(finite, key=finite.get)) if finite else ("", "")
    spread = (
        f"The ratio d^T H d / kappa({alpha:g}) runs from {PLAIN(finite[low])} (`{low}`) to {PLAIN(finite[high])} "
        f"(`{high}`)."
        if finite
        else ""
    )
    return "\n\n".join(
        [
            "### Local and finite-step curvature of the slices",
            "ReLU and max-pool make the loss piecewise smooth: autograd differentiates inside the current activation "
            "pattern, so d^T H d omits the curvature that pattern switches add at any finite step. The slices give "
            "the finite-step curvature kappa(alpha) = (L(alpha) + L(-alpha) - 2 L(0)) / alpha^2 along the same "
            f"directions, at alpha = {', '.join(f'{a:g}' for a in alphas)} (the grid step and its multiples), on the "
            "same training subset with BN frozen. Each run's value is its mean over directions; mean [95 % CI over "
            "seeds]. The ratio is each run's mean d^T H d over its mean kappa, with its CI over seeds.",
            table(header, rows),
            f"{spread} A ratio below 1 is the kink excess the local Hessian misses; kappa growing with alpha is "
            "the slice turning steeper than a parabola further out. **For how steep the slice is, read "
            f"kappa({alpha:g})**, the finite-step curvature at the grid step: it is what the loss does over a step the "
            "slices resolve, kinks included, and the local d^T H d is the limit alpha -> 0 inside one activation "
            f"pattern. The fitted 2a on |alpha| <= {window:g} mixes kappa over its window.",
        ]
    )


def negative_curvature(study: StudySummary) -> str:
    """The bottom of each run's Lanczos spectrum: the smallest Ritz value (an upper bound on lambda_min), how many
    runs show negative curvature, and the stochastic Lanczos quadrature mass below 0."""
    rows = [
        [r.variant, interval(r.theta_min, PLAIN), count(r.negative, r.runs), interval(r.ratio, PLAIN),
         interval(r.mass_below, PERCENT)]
        for r in study.geometry.spectrum
    ]  # fmt: skip
    if not rows:
        return ""
    steps = study.setup.lanczos_steps
    return "\n\n".join(
        [
            "### Negative curvature and the spectral density",
            f"Each run's Lanczos run ({steps} steps from one seeded Gaussian start vector) also gives all its Ritz "
            "values theta_i with weights w_i (the start vector's squared components on the Ritz vectors): "
            "sum_i w_i delta(lambda - theta_i) is the stochastic Lanczos quadrature estimate of the spectral density "
            "(Ubaru et al. 2017; PyHessian's density plot), from a single probe vector. Ritz values lie inside the "
            "spectrum, so the smallest, theta_min, is an upper bound on the local lambda_min: a negative theta_min "
            "shows negative curvature (a direction along which the local loss bends down), a positive one shows "
            "nothing. -theta_min / theta_max compares the two ends; the mass below 0 is the quadrature's share of "
            "the spectrum with negative curvature (one probe vector: a rough estimate). Mean [95 % CI over seeds].",
            table(
                [
                    "variant",
                    "theta_min (>= local lambda_min)",
                    "runs with theta_min < 0",
                    "-theta_min / theta_max",
                    "quadrature mass below 0",
                ],
                rows,
            ),
        ]
    )


def curvature(study: StudySummary) -> str:
    g = study.geometry
    columns = [
        M.ADAPTIVE_SHARPNESS,
        M.LAMBDA_MAX,
        M.TRACE,
        M.THETA_NORM,
        M.FLATNESS,
        M.FLATNESS_FEATURE,
        M.CURVATURE_EXACT,
        M.curvature_fit("frozen", "train"),
    ]
    rows = [
        [r.variant, *(estimate(study.get(r.variant, m), PLAIN) for m in columns), interval(r.fit_vs_local, PLAIN)]
        for r in g.finite_step
    ]
    window = study.setup.fit_window
    return "\n\n".join(
        [
            "## 6. Curvature",
            "Hessian of the mean training loss on a fixed training subset, at the trained weights, eval mode, with "
            "respect to the same parameter set as the slices. The networks are ReLU (and max-pool) networks, so the "
            f"autograd Hessian is the {LOCAL}: lambda_max, trace(H), relative flatness and d^T H d below are "
            "local quantities, blind to the activation-pattern switches of any finite step. Mean [95 % CI over "
            "seeds].",
            table(
                [
                    "variant",
                    "local adaptive sharpness",
                    "local lambda_max (raw)",
                    "local trace(H) (raw)",
                    "||theta||",
                    "local relative flatness (sum)",
                    "local relative flatness (classifier)",
                    "local d^T H d",
                    "fitted 2a (train)",
                    "mean |fit - local| / |local|",
                ],
                rows,
            ),
            "Raw lambda_max and trace change under rescalings that leave the function unchanged (Dinh et al. 2017), "
            "so ||theta|| stands beside them, and the report gives two measures that do not: adaptive sharpness, "
            "lambda_max of diag(|theta|) H diag(|theta|) (Kwon et al. 2021; Andriushchenko et al. 2023), unchanged by "
            "any rescaling of the weights, and relative flatness (Petzka et al., NeurIPS 2021): for each weight "
            "tensor, kappa_l = sum over output units s, s' of <w_s, w_s'> Tr(H_ss'), invariant to the layer-wise "
            "rescaling. The report uses the sum over weight tensors, and shows the classifier layer's kappa beside it.",
            f"Local vs fitted curvature: the quadratic fit on |alpha| <= {window:g} gives 2a, a finite-window "
            "curvature along the same directions; its mean relative difference from the local d^T H d over variants "
            f"is {PERCENT(g.fit_vs_local_mean)}. The local value does not depend on the fit window.",
            finite_step_section(study),
            negative_curvature(study),
            estimator_noise(study),
            "### Per-layer curvature and fan-in",
            fan_in_test(g.fan_in),
            "![curvature](plots/figures/curvature.png)\n\n![layers](plots/figures/layers.png)\n\n"
            "![slices](plots/figures/slices.png)\n\n![surfaces](plots/figures/surfaces.png)",
        ]
    )


def _span(values: list[float], fmt) -> str:
    low, high = min(values), max(values)
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)}-{fmt(high)}"


def non_monotonic_sentence(study: StudySummary, split: str, what: str) -> str:
    paths = study.geometry.paths
    head = f"The {what} loss on the path is monotonic in {count(*paths.monotonic[split])} runs"
    where: dict[str, list[Rise]] = {}
    for r in paths.rises[split]:
        where.setdefault(r.variant, []).append(r)
    if not where:
        return head + "."
    t = lambda x: f"{x:.2f}"  # noqa: E731
    parts = [
        f"`{v}` ({len(runs)} of {len(study.seeds)}: from its minimum at t = {_span([r.t_min for r in runs], t)} it "
        f"rises by {_span([r.rise for r in runs], PLAIN)} nats to t = {_span([r.t_peak for r in runs], t)})"
        for v, runs in where.items()
    ]
    return f"{head}; the others are " + "; ".join(parts) + "."


def path(study: StudySummary) -> str:
    p = study.geometry.paths
    splits = p.splits
    rows = [
        [r.variant, estimate(study.get(r.variant, M.PATH_DISTANCE), PLAIN)]
        + [count(r.monotonic[s], r.runs) for s in splits]
        + [estimate(study.get(r.variant, m(s)), PLAIN) for m in (M.path_barrier, M.path_max_rise) for s in splits]
        + [interval(r.loss_at_1[s], PLAIN) for s in splits]
        for r in p.rows
    ]
    header = [
        "variant",
        "||theta_T - theta_0|| / ||theta_0||",
        *(f"monotonic ({s})" for s in splits),
        *(f"{w} ({s})" for w in ("largest barrier", "max rise") for s in splits),
        *(f"loss at t = 1 ({s})" for s in splits),
    ]
    words = {"train": "training-subset", "val": "validation-subset"}
    worst = (
        f"The largest training-loss barrier is {PLAIN(p.worst_barrier)} nats (`{p.worst_run}`, seed {p.worst_seed})."
        if p.worst_barrier > 0
        else "No run has a barrier on the training subset."
    )
    return "\n\n".join(
        [
            "## 7. Optimization path",
            "Loss along theta(t) = (1 - t) theta_0 + t theta_T, from the initial to the trained weights, BN statistics "
            "recalibrated at every t where the variant has BN. Monotonic: the loss never rises more than "
            f"{p.tolerance:g} nats (params path.monotonic_tolerance) above an earlier minimum on [0, 1]; "
            "max rise: the largest such rise; "
            "barrier: the largest excess over the straight line between L(0) and L(1).",
            table(header, rows),
            " ".join(non_monotonic_sentence(study, s, words[s]) for s in splits) + f" {worst}",
            "![path](plots/figures/path.png)",
        ]
    )
