"""Report section 5: the reference's four questions, answered in plain words from the factorial effects.

The effects are exploratory (no rule was fixed for them in advance): each sentence gives an effect's 95 % CI, its
t-test p and Holm's adjustment over the measure's 7 terms, and says "an increase" or "a decrease" only where the
adjusted p is below 0.05. Where an interaction's CI excludes 0 the simple effects behind it are given, and a
factor whose simple effects have opposite signs gets no main-effect sentence. Where the data cannot decide, a
sentence names the experiment that would.
"""

from __future__ import annotations

from landscape.report.format import PP, SIGNED, Unit, count, effect_sentence, estimate, optimizer_name, tested
from landscape.report.schema import SimpleEffect, StudySummary, val_loss_area
from landscape.report.terms import FACTORS
from landscape.study import results as M

TERMS = {"conv": "+conv", "bn": "+BN", "dropout": "+dropout"}
EPOCHS = Unit(signed=True, suffix=" epochs")


LEVELS = {
    ("conv", False): "within MLPs",
    ("conv", True): "within CNNs",
    ("bn", False): "without BN",
    ("bn", True): "with BN",
    ("dropout", False): "without dropout",
    ("dropout", True): "with dropout",
}


def _simple(effects: list[SimpleEffect], unit: Unit) -> str:
    return "; ".join(
        f"{' '.join(LEVELS[(f, on)] for f, on in e.within.items())} {estimate(e.estimate, unit)}" for e in effects
    )


def _opposite(effects: list[SimpleEffect]) -> bool:
    signs = {e.estimate.interval.mean > 0 for e in effects if e.estimate.interval.mean != 0}
    return len(signs) == 2


def _effects(study: StudySummary, measure: str, what: str, unit: Unit = SIGNED) -> list[str]:
    """One line per factor, then one per interaction whose CI excludes 0. A factor in such an interaction is given
    by its simple effects; where they have opposite signs, no main effect is stated."""
    simple = study.simple_effects.get(measure, {})
    lines = []
    for factor in FACTORS:
        groups = {t: [e for e in found if e.factor == factor] for t, found in simple.items() if factor in t.split(":")}
        main = effect_sentence(TERMS[factor], what, study.tested_effect(measure, factor), unit)
        within = " ".join(f"Within the {_term(t)} interaction: {_simple(g, unit)}." for t, g in groups.items())
        if any(_opposite(g) for g in groups.values()):
            lines.append(
                f"- {TERMS[factor]}: its effect on {what} has opposite signs at different levels of the other factors, "
                f"so no main effect is stated (it would average them). {within}"
            )
        else:
            lines.append(f"- {main} {within}".rstrip())
    for term in simple:
        effect = study.tested_effect(measure, term)
        lines.append(
            f"- The {_term(term)} interaction on {what} is {estimate(effect.estimate, unit)} "
            f"({tested(effect.p, effect.p_adjusted)}): its CI excludes 0, so the main effects of its factors average "
            "different simple effects."
        )
    return lines


def _term(term: str) -> str:
    return " x ".join("BN" if f == "bn" else f for f in term.split(":"))


def monotonic_count(study: StudySummary, split: str) -> str:
    """'k of n': the factorial runs whose path loss is monotonic on ``split``."""
    return count(*study.geometry.paths.monotonic[split])


def _gap_range(study: StudySummary) -> str:
    means = {v: e.interval.mean for v in study.factorial if (e := study.get(v, M.GAP)) is not None}
    low, high = min(means, key=means.get), max(means, key=means.get)
    return f"Mean eval-mode gaps range from {PP(means[low])} (`{low}`) to {PP(means[high])} (`{high}`)."


def _optimizer_experiment(optimizer: str) -> str:
    if optimizer == "sgd":
        return (
            "- Section 10 varies SGD's noise scale (lr / batch) for A at matched fit and tests what it does to "
            "sharpness and the gap; whether any of it is specific to SGD is not tested "
            "(`dvc exp run -S train.optimizer=adam`)."
        )
    return f"- This study trains with {optimizer_name(optimizer)}; the default SGD study is its comparison."


def questions(study: StudySummary) -> str:
    head = "## 5. The reference's four questions, answered from the factorial"
    if not study.effects:
        return (
            f"{head}\n\nThe factorial effects need all 8 variants and >= 2 seeds; this study has "
            f"{len(study.factorial)} variant(s) x {len(study.seeds)} seed(s). Between A and B alone, conv, BN and "
            "dropout change together, so no difference can be given to one of them. Run the default study "
            "(`dvc repro` with params.yaml's `study:` section) to answer these questions."
        )
    setup = study.setup
    star, mode, drop = setup.sigma_star, setup.sigma_star_mode, setup.sigma_star_drop
    target = f"the epochs to {100 * setup.target_acc:g} % val accuracy"
    k = study.loss_area_epochs
    blocks = [
        [
            "**1. Why does SGD reach solutions that generalize well?** Every run was trained with "
            f"{optimizer_name(setup.optimizer)}. {_gap_range(study)} The straight path from the initial weights "
            f"is monotonic on the training subset in {monotonic_count(study, 'train')} runs.",
            *_effects(study, M.GAP, "the gap", PP),
            _optimizer_experiment(setup.optimizer),
        ],
        [
            "**2. How does architecture shape the loss landscape?**",
            *_effects(study, M.CURVATURE_EXACT, "the local slice curvature d^T H d (one activation pattern)"),
            *_effects(study, M.LAMBDA_MAX, "lambda_max"),
            *_effects(study, M.TRACE, "trace(H)"),
            *_effects(study, M.FLATNESS, "relative flatness"),
            *_effects(study, star, f"sigma* ({mode} noise, BN frozen, {100 * drop:g} pp drop)"),
        ],
        [
            "**3. Which geometric properties go with easy training and good generalization?**",
            *_effects(study, M.VAL_ACC, "validation accuracy", PP),
            *_effects(study, val_loss_area(k), f"the validation-loss area over epochs 1-{k} (nats x epochs)"),
            *_effects(study, M.EPOCHS_TO_TARGET, target, EPOCHS),
            "- Section 8 ranks every run by each geometric measure against its gap.",
        ],
        [
            "**4. Can simple landscape observations show that optimization will be hard?**",
            *_effects(study, M.path_barrier("train"), "the largest barrier on the path (training loss, nats)"),
            f"- The path is monotonic on the training subset in {monotonic_count(study, 'train')} factorial runs, "
            "which all train easily; section 11 adds runs that are hard to train and tests whether landscape "
            "observations after epoch 1 add to a baseline that needs no landscape.",
        ],
    ]
    intro = (
        "Each effect is the mean with the factor on minus the mean with it off, averaged over the other two factors, "
        f"with its 95 % t-interval over the {len(study.seeds)} per-seed contrasts. These effects are **exploratory**, "
        "not findings: "
        "no rule was fixed for them before the numbers. Each has the two-sided t-test p of its per-seed contrasts "
        "and Holm's adjustment over the 7 terms (3 main effects, 4 interactions) of its measure; 'an increase' or 'a "
        "decrease' needs an adjusted p below 0.05. Where an interaction's CI excludes 0, the simple effects of its "
        "factors follow (e.g. BN within MLPs and within CNNs, each averaged over the third factor, with its 95 % "
        "t-interval over seeds), and a factor whose simple effects have opposite signs gets no main effect. An "
        "effect with a censored value (a threshold never reached) is a bound ('>=' or '<='), with no CI and no test. "
        "'Seeds for 80 % power' is the paired t-test's n at the 5 % level if the true mean and spread were the "
        "estimates (normal approximation with t quantiles, iterated in n): a planning guess."
    )
    figure = "![factorial effects](plots/figures/effects.png)"
    return "\n\n".join([head, intro, *("\n".join(b) for b in blocks), figure])
