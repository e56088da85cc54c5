"""Report section 5: the reference's four questions, answered in plain words from the factorial effects.

Each sentence is generated from an effect's 95 % CI with the verdict vocabulary (an increase, a decrease,
inconclusive); where the data cannot decide, it names the experiment that would.
"""

from __future__ import annotations

from landscape import measures as M
from landscape.params import Params
from landscape.report_format import PP, SIGNED, Unit, effect_sentence, optimizer_name
from landscape.report_geometry import monotonic_count
from landscape.stats import FACTORS
from landscape.study_data import StudyData

TERMS = {"conv": "+conv", "bn": "+BN", "dropout": "+dropout"}
EPOCHS = Unit(signed=True, suffix=" epochs")


def _effects(data: StudyData, measure: str, what: str, unit: Unit = SIGNED) -> list[str]:
    return [f"- {effect_sentence(TERMS[t], what, data.study.effect(measure, t), unit)}" for t in FACTORS]


def _gap_range(data: StudyData) -> str:
    means = {v: e.interval.mean for v in data.variants if (e := data.study.get(v, M.GAP)) is not None}
    low, high = min(means, key=means.get), max(means, key=means.get)
    return f"Mean eval-mode gaps range from {PP(means[low])} (`{low}`) to {PP(means[high])} (`{high}`)."


def _optimizer_experiment(params: Params) -> str:
    if params.train.optimizer == "sgd":
        return (
            "- Whether any of this is specific to SGD is not tested here: the same study with Adam decides it "
            "(`dvc exp run -S train.optimizer=adam`)."
        )
    return (
        f"- This study trains with {optimizer_name(params.train.optimizer)}; the default SGD study is its comparison."
    )


def questions(data: StudyData, params: Params) -> str:
    head = "## 5. The reference's four questions, answered from the factorial"
    if not data.study.effects:
        return (
            f"{head}\n\nThe factorial effects need all 8 variants and >= 2 seeds; this study has "
            f"{len(data.variants)} variant(s) x {len(data.seeds)} seed(s). Between A and B alone, conv, BN and "
            "dropout change together, so no difference can be given to one of them. Run the default study "
            "(`dvc repro` with params.yaml's `study:` section) to answer these questions."
        )
    star, mode, drop = M.headline_sigma_star(data.runs[(data.variants[0], data.seeds[0])])
    target = f"the epochs to {100 * params.train.target_acc:g} % val accuracy"
    blocks = [
        [
            "**1. Why does SGD reach solutions that generalize well?** Every run was trained with "
            f"{optimizer_name(params.train.optimizer)}. {_gap_range(data)} The straight path from the initial weights "
            f"is monotonic on the training subset in {monotonic_count(data, 'train')} runs.",
            *_effects(data, M.GAP, "the gap", PP),
            _optimizer_experiment(params),
        ],
        [
            "**2. How does architecture shape the loss landscape?**",
            *_effects(data, M.CURVATURE_EXACT, "the exact slice curvature d^T H d"),
            *_effects(data, M.LAMBDA_MAX, "lambda_max"),
            *_effects(data, M.TRACE, "trace(H)"),
            *_effects(data, M.FLATNESS, "relative flatness"),
            *_effects(data, star, f"sigma* ({mode} noise, BN frozen, {100 * drop:g} pp drop)"),
        ],
        [
            "**3. Which geometric properties go with easy training and good generalization?**",
            *_effects(data, M.VAL_ACC, "validation accuracy", PP),
            *_effects(data, M.EPOCHS_TO_TARGET, target, EPOCHS),
            "- Section 8 ranks every run by each geometric measure against its gap.",
        ],
        [
            "**4. Can simple landscape observations show that optimization will be hard?**",
            *_effects(data, M.path_barrier("train"), "the largest barrier on the path (training loss, nats)"),
            f"- The path is monotonic on the training subset in {monotonic_count(data, 'train')} runs. Where no run "
            "shows a barrier, the study has no hard case to predict; runs that struggle (a larger learning rate, no "
            "schedule) are the experiment that would decide it.",
        ],
    ]
    intro = (
        "Each effect is the mean with the factor on minus the mean with it off, averaged over the other two factors, "
        f"with its 95 % t-interval over the {len(data.seeds)} per-seed contrasts."
    )
    figure = "![factorial effects](plots/figures/effects.png)"
    return "\n\n".join([head, intro, *("\n".join(b) for b in blocks), figure])
