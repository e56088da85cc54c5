"""Typed, validated view of ``params.yaml``.

Every section is a frozen dataclass. ``load_params`` reads the YAML once,
checks every key (unknown, missing, type, range, consistency) and raises
``StudyError`` with the key, the bad value and what is allowed. The library
never reads ``params.yaml`` itself; stages pass these objects down.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from landscape.errors import StudyError
from landscape.probes.settings import (
    BN_MODES,
    NOISE_MODES,
    NORMALIZATIONS,
    PARAMETER_SETS,
    CurvatureSettings,
    NoiseSettings,
    PathSettings,
    SliceSettings,
    SurfaceSettings,
)
from landscape.study.validation import (
    ALL_POSITIVE,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    checked,
    closest,
    coerce,
    one_of,
    rule,
    section,
    subset_of,
)

N_TRAIN_IMAGES = 60000
FAMILIES = ("mlp", "cnn")


@dataclass(frozen=True)
class DataParams:
    mirror: str
    urls: list[str]
    sha256: dict[str, str]
    val_size: int = checked(**rule(f"an integer in [1, {N_TRAIN_IMAGES - 1}]", lambda v: 0 < v < N_TRAIN_IMAGES))
    split_seed: int = checked(**NON_NEGATIVE)
    train_eval_size: int = checked(**POSITIVE)


NAMES = rule(
    "a non-empty list of distinct variant names",
    lambda v: len(v) > 0 and len(set(v)) == len(v),
)


@dataclass(frozen=True)
class StudyParams:
    """The study matrix: every variant is trained once per seed and probed the same way."""

    seeds: list[int] = checked(
        **rule(
            "a non-empty list of distinct integers >= 0", lambda v: len(v) > 0 and len(set(v)) == len(v) and min(v) >= 0
        )
    )
    variants: list[str] = checked(**NAMES)  # training, robustness, curvature and the aggregate run over these
    factorial: list[str] = checked(**NAMES)  # the conv x BN x dropout cells: slice, surface and path run over these
    train_mlp: list[str] = checked(**NAMES)  # the MLP-family variants (dvc.yaml's train_mlp group)
    train_cnn: list[str] = checked(**NAMES)  # the CNN-family variants (train_cnn group)


@dataclass(frozen=True)
class VariantParams:
    """One cell of the conv x BN x dropout factorial, or (with ``train`` overrides) a training-regime cell:
    the same network trained under other ``train:`` keys (e.g. ``{lr: 0.2, batch_size: 512}``)."""

    conv: bool
    bn: bool
    dropout: bool
    train: dict[str, object] = dataclasses.field(default_factory=dict)  # overrides of the train section
    hidden: list[int] | None = None  # MLP only: hidden widths in place of the mlp section's (a deep or narrow cell)

    @property
    def family(self) -> str:
        return "cnn" if self.conv else "mlp"

    @property
    def regime(self) -> bool:
        """True for a cell outside the factorial: its training differs from the shared ``train`` section, or its
        MLP has widths of its own."""
        return bool(self.train) or self.hidden is not None


@dataclass(frozen=True)
class TrainParams:
    epochs: int = checked(**POSITIVE)
    batch_size: int = checked(**POSITIVE)
    optimizer: str = checked(**one_of("sgd", "adam"))
    lr: float = checked(**POSITIVE)
    momentum: float = checked(**PROBABILITY)
    weight_decay: float = checked(**NON_NEGATIVE)
    schedule: str = checked(**one_of("constant", "cosine"))
    target_acc: float = checked(**rule("a number in (0, 1)", lambda v: 0 < v < 1))
    stop_loss: float = checked(**NON_NEGATIVE)  # > 0: stop once the mean eval-mode train-subset loss of the last
    # stop_window epochs is <= this (matched fit, question 1); epochs is then the cap. 0: train every epoch
    stop_window: int = checked(**POSITIVE)


@dataclass(frozen=True)
class RuntimeParams:
    """Where and how a stage computes: settings that change results only by float rounding.

    Training and every probe read them; a change reruns those stages, whose numbers may move in the
    last digits (the seed CIs put that in proportion, README "Reproducibility").
    """

    device: str = checked(**one_of("auto", "cpu", "cuda"))  # auto: CUDA when present
    eval_batch_size: int = checked(**POSITIVE)  # images per evaluation batch (no_grad passes)
    threads: int = checked(**NON_NEGATIVE)  # torch intra-op threads; 0: torch's default (one per core)


@dataclass(frozen=True)
class MLPParams:
    hidden: list[int] = checked(**ALL_POSITIVE)


@dataclass(frozen=True)
class CNNParams:
    channels: list[int] = checked(**ALL_POSITIVE)
    fc: int = checked(**POSITIVE)


@dataclass(frozen=True)
class DuringTrainingParams:
    """What the train stage records besides the learning curves (questions 1 and 4): lambda_max at the initial
    weights and after every epoch, and after epoch 1 the accuracy drop under one filter-normalized noise level.
    The Hessian is of the mean loss over the first ``hessian_samples`` images of the probes' training
    permutation, eval mode. Epoch 0 starts Lanczos from the curvature probe's start vector, and so does every epoch
    without ``warm_start``; with it, each epoch starts from the previous epoch's top Ritz vector, which is close to
    the new top eigenvector, so a few iterations suffice. With ``hessian_samples`` = ``curvature.samples.train``,
    ``cold_iterations`` = ``curvature.lanczos_iterations`` and no warm start, the last epoch's value is the
    curvature probe's own."""

    hessian_samples: int = checked(**POSITIVE)
    lanczos_iterations: int = checked(**POSITIVE)  # per warm-started epoch
    cold_iterations: int = checked(**POSITIVE)  # from the seeded start: epoch 0, and every epoch without warm_start
    warm_start: bool  # start each epoch's Lanczos from the previous epoch's top Ritz vector (the first: seeded)
    noise_sigma: float = checked(**POSITIVE)
    noise_val: int = checked(**POSITIVE)  # validation images (the first of the probes' validation permutation)
    noise_trials: int = checked(**POSITIVE)
    parameters: str = checked(**one_of(*PARAMETER_SETS))  # as probes.parameters, kept apart so that no probe
    # section reruns training


@dataclass(frozen=True)
class DropoutParams:
    """Model B's dropout rates, used by every variant with ``dropout: true`` (MLP and CNN family alike)."""

    conv: float = checked(**PROBABILITY)  # after the feature extractor (MLP: after the first hidden layer)
    fc: float = checked(**PROBABILITY)  # after the last hidden layer


@dataclass(frozen=True)
class ModelConfig:
    """Everything that builds one network; stored inside its checkpoint.

    ``dropout`` holds the two rates of Model B (after the feature extractor, after the last
    hidden layer), both 0 for variants without dropout.
    """

    family: str
    widths: list[int]  # MLP: hidden widths; CNN: conv channels
    fc: int  # CNN: hidden fc width; MLP: 0
    bn: bool
    dropout: list[float]


@dataclass(frozen=True)
class Samples:
    """Fixed seeded subsets a probe evaluates on (the same images for every variant and seed)."""

    train: int = checked(**NON_NEGATIVE)  # training images (0: not evaluated)
    val: int = checked(**NON_NEGATIVE)  # validation images (0: not evaluated)
    bn: int = checked(**POSITIVE)  # training images that recalibrate BN statistics


@dataclass(frozen=True)
class ProbeParams:
    """What every probe shares: the perturbed parameter set and the evaluation batch."""

    parameters: str = checked(**one_of(*PARAMETER_SETS))  # weights: dim > 1 only (Li et al.); all: + biases, BN
    bn: list[str] = checked(**subset_of(*BN_MODES))  # BN handling after a perturbation, for variants with BN


@dataclass(frozen=True)
class RobustnessParams:
    sigmas: list[float] = checked(**rule("a non-empty list of numbers >= 0", lambda v: len(v) > 0 and min(v) >= 0))
    trials: int = checked(**POSITIVE)
    modes: list[str] = checked(**subset_of(*NOISE_MODES))
    drops: list[float] = checked(**ALL_POSITIVE)
    samples: Samples

    def noise_settings(self, probes: ProbeParams, seeds: Sequence[int]) -> NoiseSettings:
        """The noise probe's settings: these levels and modes, the shared parameter set and BN handling, and
        one noise draw per seed (``len(seeds)`` = trials)."""
        return NoiseSettings(
            sigmas=tuple(self.sigmas), seeds=tuple(seeds), modes=tuple(self.modes), parameters=probes.parameters,
            bn=tuple(probes.bn),
        )  # fmt: skip


@dataclass(frozen=True)
class SliceParams:
    directions: int = checked(**POSITIVE)
    points: int = checked(
        **rule("an odd integer >= 3 (the grid must contain alpha = 0)", lambda v: v >= 3 and v % 2 == 1)
    )
    span: float = checked(**POSITIVE)
    normalization: str = checked(**one_of(*NORMALIZATIONS))
    fit_fraction: float = checked(**rule("a number in (0, 1]", lambda v: 0 < v <= 1))
    taus: list[float] = checked(**ALL_POSITIVE)
    samples: Samples
    surface_points: int = checked(**rule("an odd integer >= 3", lambda v: v >= 3 and v % 2 == 1))
    surface_span: float = checked(**POSITIVE)
    surface_samples: Samples

    def slice_settings(self, probes: ProbeParams, seeds: Sequence[int]) -> SliceSettings:
        """The 1-D slices' settings, one direction per seed; d^T H d on the "train" split."""
        return SliceSettings(
            points=self.points, span=self.span, seeds=tuple(seeds), normalization=self.normalization,
            parameters=probes.parameters, bn=tuple(probes.bn), hessian_split="train",
        )  # fmt: skip

    def surface_settings(self, probes: ProbeParams, seeds: Sequence[int]) -> SurfaceSettings:
        """The 2-D surface's settings; ``seeds`` gives its two directions."""
        return SurfaceSettings(
            points=self.surface_points, span=self.surface_span, seeds=tuple(seeds), normalization=self.normalization,
            parameters=probes.parameters,
        )  # fmt: skip


@dataclass(frozen=True)
class PathParams:
    points: int = checked(**rule("an integer >= 2", lambda v: v >= 2))  # on t in [0, 1]
    margin: float = checked(**NON_NEGATIVE)  # the path continues to t = 1 + margin
    samples: Samples
    monotonic_tolerance: float = checked(**NON_NEGATIVE)  # nats a loss may rise and the path still count monotonic

    def path_settings(self) -> PathSettings:
        """The path's settings: BN recalibrated at every t for a model with BN."""
        return PathSettings(points=self.points, margin=self.margin)


@dataclass(frozen=True)
class CurvatureParams:
    top_k: int = checked(**POSITIVE)
    lanczos_iterations: int = checked(**POSITIVE)
    hutchinson_samples: int = checked(**rule("an integer >= 2", lambda v: v >= 2))
    flatness_samples: int = checked(**rule("an integer >= 2", lambda v: v >= 2))
    layer_directions: int = checked(**POSITIVE)
    samples: Samples

    def curvature_settings(
        self, probes: ProbeParams, seeds: Mapping[str, int], layer_seeds: Sequence[int]
    ) -> CurvatureSettings:
        """The curvature probe's settings; ``seeds`` holds the "lanczos", "hutchinson" and "flatness" streams'
        seeds and ``layer_seeds`` one per layer direction."""
        return CurvatureSettings(
            top_k=self.top_k, lanczos_iterations=self.lanczos_iterations, hutchinson_samples=self.hutchinson_samples,
            flatness_samples=self.flatness_samples, layer_seeds=tuple(layer_seeds), parameters=probes.parameters,
            lanczos_seed=seeds["lanczos"], hutchinson_seed=seeds["hutchinson"], flatness_seed=seeds["flatness"],
        )  # fmt: skip


@dataclass(frozen=True)
class RegimeRuleParams:
    """The rules of questions 1 and 4 (the training-regime arm), fixed before any regime result is seen."""

    noise_low: float = checked(**POSITIVE)  # Q1's noise contrast at the default batch: the cell at this x the
    noise_high: float = checked(**POSITIVE)  # default's lr/batch against the cell at this x
    gap_margin: float = checked(**rule("a number in (0, 1)", lambda v: 0 < v < 1))  # TOST margin of the gap (fraction)
    lambda_margin: float = checked(**POSITIVE)  # TOST margin of lambda_max: log ratio within +-log(1 + this)
    spike_factor: float = checked(**rule("a number > 1", lambda v: v > 1))  # later epochs: a batch loss above this x
    # the previous epoch's running mean training loss is a spike
    first_epoch_spike: float = checked(**rule("a number > 1", lambda v: v > 1))  # epoch 1: above this x a uniform
    # guess's loss (ln 10)
    hard_seeds: int = checked(**POSITIVE)  # a cell is hard when at least this many seeds miss the target, spike or
    # diverge


@dataclass(frozen=True)
class ClaimRuleParams:
    """The rules that turn the reference's claims into tests; only the aggregate stage reads them."""

    reference: str  # the variant (Model A) whose mean noise drop over seeds fixes "moderate" noise
    moderate_drop: float = checked(**rule("a number in (0, 1)", lambda v: 0 < v < 1))  # fraction: 0.01 = 1 pp
    early_epochs: int = checked(**rule("an integer >= 2", lambda v: v >= 2))  # "trains faster": loss area 1..this
    regimes: RegimeRuleParams  # Model B's regime cells
    question1: dict[str, object]  # question 1 at matched fit: landscape.report.analysis.question1.Question1Rules
    question4: dict[str, object]  # question 4: landscape.report.analysis.question4.Question4Rules (checked there, by
    # the aggregate stage, the only one that reads claim_rules)


@dataclass(frozen=True)
class Params:
    data: DataParams
    study: StudyParams
    train: TrainParams
    runtime: RuntimeParams
    mlp: MLPParams
    cnn: CNNParams
    dropout: DropoutParams
    variants: dict[str, VariantParams]
    during_training: DuringTrainingParams
    probes: ProbeParams
    robustness: RobustnessParams
    slice: SliceParams
    path: PathParams
    curvature: CurvatureParams
    claim_rules: ClaimRuleParams

    def variant(self, name: str) -> VariantParams:
        if name not in self.variants:
            raise StudyError(
                f"unknown variant '{name}'.{closest(name, list(self.variants))} "
                f"Variants in params.yaml: {', '.join(self.variants)}."
            )
        return self.variants[name]

    def train_for(self, name: str) -> TrainParams:
        """The training conditions of variant ``name``: the ``train`` section with the variant's overrides."""
        return train_with(self.train, self.variant(name).train, f"variants.{name}.train")

    def factorial(self) -> list[str]:
        """The study's variants without training overrides: the cells of the conv x BN x dropout factorial."""
        return [v for v in self.study.variants if not self.variant(v).regime]

    def regimes(self) -> list[str]:
        """The study's training-regime variants (those with ``train`` overrides)."""
        return [v for v in self.study.variants if self.variant(v).regime]

    def draw_family(self, name: str) -> str:
        """The key of variant ``name``'s random streams (probe directions, noise draws): its model family, so
        that variants whose weights have the same shapes are probed along the same random vectors (common
        random numbers: a factorial contrast then carries no direction-sampling noise of its own)."""
        return self.model_config(name).family

    def model_config(self, name: str) -> ModelConfig:
        """The network of variant ``name``: its family's widths, with BN and dropout as the variant says."""
        v = self.variant(name)
        rates = [self.dropout.conv, self.dropout.fc] if v.dropout else [0.0, 0.0]
        if v.conv:
            return ModelConfig("cnn", list(self.cnn.channels), self.cnn.fc, v.bn, rates)
        return ModelConfig("mlp", list(self.mlp.hidden if v.hidden is None else v.hidden), 0, v.bn, rates)


def _check_subset_sizes(p: Params) -> None:
    n_fit = N_TRAIN_IMAGES - p.data.val_size
    subsets = {
        "data.train_eval_size": p.data.train_eval_size,
        "during_training.hessian_samples": p.during_training.hessian_samples,
    }
    if p.during_training.noise_val > p.data.val_size:
        raise StudyError(
            f"params.yaml: 'during_training.noise_val' = {p.during_training.noise_val} is larger than the "
            f"validation split (data.val_size = {p.data.val_size}). Lower it."
        )
    for probe in ("robustness", "slice", "path", "curvature"):
        for field_name in ("samples", "surface_samples"):
            s = getattr(getattr(p, probe), field_name, None)
            if s is not None:
                subsets |= {f"{probe}.{field_name}.train": s.train, f"{probe}.{field_name}.bn": s.bn}
                if s.val > p.data.val_size:
                    raise StudyError(
                        f"params.yaml: '{probe}.{field_name}.val' = {s.val} is larger than the validation split "
                        f"(data.val_size = {p.data.val_size}). Lower it."
                    )
    for key, value in subsets.items():
        if value > n_fit:
            raise StudyError(
                f"params.yaml: '{key}' = {value} is larger than the training split "
                f"({N_TRAIN_IMAGES} - data.val_size = {n_fit} images). Lower it."
            )
    if p.curvature.samples.train < 1:
        raise StudyError("params.yaml: 'curvature.samples.train' = 0; the Hessian needs training images (use >= 1).")


def train_with(base: TrainParams, overrides: Mapping[str, object], where: str) -> TrainParams:
    """``base`` with ``overrides`` applied, every value checked as in the ``train`` section; a bad key or value
    is a ``StudyError`` naming ``where`` (e.g. ``variants.mlp_hi_noise.train``)."""
    fields = [f.name for f in dataclasses.fields(TrainParams)]
    for key in overrides:
        if key not in fields:
            raise StudyError(
                f"params.yaml: unknown key '{where}.{key}'.{closest(str(key), fields)} "
                f"A variant may override these train keys: {', '.join(fields)}."
            )
    return section(TrainParams, {**dataclasses.asdict(base), **overrides}, where.rsplit(".", 1)[0] + ".train")


def _check_study(p: Params) -> None:
    s = p.study
    for name in p.variants:
        p.train_for(name)
    for name in s.variants:
        p.variant(name)
    for group, family in (("train_mlp", "mlp"), ("train_cnn", "cnn")):
        for name in getattr(s, group):
            if p.variant(name).family != family:
                raise StudyError(
                    f"params.yaml: 'study.{group}' lists '{name}', but variants.{name} has conv: "
                    f"{p.variant(name).conv}, so it belongs to train_{p.variant(name).family}. Move it there."
                )
    for name in p.variants:
        hidden = p.variant(name).hidden
        if hidden is not None and (p.variant(name).conv or not hidden or min(hidden) <= 0):
            raise StudyError(
                f"params.yaml: 'variants.{name}.hidden' = {hidden}: only an MLP variant (conv: false) may set "
                "hidden widths, as a non-empty list of integers > 0. Remove the key or set conv: false."
            )
    factorial = [v for v in s.variants if not p.variant(v).regime]
    if sorted(s.factorial) != sorted(factorial):
        raise StudyError(
            f"params.yaml: 'study.factorial' = {s.factorial} must list exactly the variants of 'study.variants' "
            f"without train or hidden overrides (the factorial cells): {factorial}."
        )
    trained = set(s.train_mlp) | set(s.train_cnn)
    if trained != set(s.variants):
        raise StudyError(
            "params.yaml: 'study.variants' must list exactly the variants of 'study.train_mlp' and 'study.train_cnn' "
            f"(every probed run must be trained, and every trained run probed); they differ in "
            f"{sorted(trained ^ set(s.variants))}."
        )


def _consistency(p: Params) -> None:
    n_fit = N_TRAIN_IMAGES - p.data.val_size
    _check_study(p)
    for key, batch in [("train.batch_size", p.train.batch_size)] + [
        (f"variants.{v}.train.batch_size", p.variant(v).train["batch_size"])
        for v in p.variants
        if "batch_size" in p.variant(v).train
    ]:
        if int(batch) > n_fit:
            raise StudyError(
                f"params.yaml: '{key}' = {batch} is larger than the training split "
                f"({N_TRAIN_IMAGES} - data.val_size = {n_fit} images). Lower the batch size or data.val_size."
            )
    if len(p.cnn.channels) > 4:
        raise StudyError(
            f"params.yaml: 'cnn.channels' = {p.cnn.channels} has {len(p.cnn.channels)} blocks; each halves 28x28 "
            "images, so at most 4 are allowed."
        )
    _check_subset_sizes(p)
    half = p.slice.points // 2
    if int(half * p.slice.fit_fraction + 1e-9) < 1:
        raise StudyError(
            f"params.yaml: 'slice.points' = {p.slice.points} with 'slice.fit_fraction' = {p.slice.fit_fraction} "
            "leaves fewer than 3 grid points for the quadratic fit; use points >= "
            f"{2 * math.ceil(1 / p.slice.fit_fraction) + 1} or a larger fit_fraction."
        )
    sigmas = p.robustness.sigmas
    if min(sigmas) != 0:
        raise StudyError(
            f"params.yaml: 'robustness.sigmas' = {sigmas} must include 0, the unperturbed baseline "
            "that accuracy drops are measured from."
        )
    if sorted(sigmas) != sigmas or len(set(sigmas)) != len(sigmas):
        raise StudyError(f"params.yaml: 'robustness.sigmas' = {sigmas} must be strictly increasing.")
    reference = p.claim_rules.reference
    if reference not in p.variants:
        hint = closest(reference, list(p.variants))
        raise StudyError(
            f"params.yaml: 'claim_rules.reference' = '{reference}' is no variant.{hint} "
            f"Variants in params.yaml: {', '.join(p.variants)}."
        )
    r = p.claim_rules.regimes
    if r.noise_low >= r.noise_high:
        raise StudyError(
            f"params.yaml: 'claim_rules.regimes.noise_low' = {r.noise_low:g} must be below "
            f"'claim_rules.regimes.noise_high' = {r.noise_high:g}: question 1 contrasts the low-noise cell with the "
            "high-noise one."
        )
    if p.claim_rules.early_epochs > p.train.epochs:
        raise StudyError(
            f"params.yaml: 'claim_rules.early_epochs' = {p.claim_rules.early_epochs} is more than train.epochs = "
            f"{p.train.epochs}; the validation-loss area needs that many epochs of history."
        )


SECTIONS = [f.name for f in dataclasses.fields(Params)]


def parse_params(raw: Any) -> Params:
    """Validate a parsed params mapping and return the typed view."""
    if not isinstance(raw, dict):
        raise StudyError("params.yaml must be a mapping with sections: " + ", ".join(SECTIONS) + ".")
    for key in raw:
        if key not in SECTIONS:
            raise StudyError(
                f"params.yaml: unknown section '{key}'.{closest(str(key), list(SECTIONS))} "
                f"Allowed sections: {', '.join(SECTIONS)}."
            )
    for key in SECTIONS:
        if key not in raw:
            raise StudyError(f"params.yaml: missing section '{key}'.")
    hints = get_type_hints(Params)
    keys = {s: [f.name for f in dataclasses.fields(hints[s])] for s in SECTIONS if dataclasses.is_dataclass(hints[s])}

    def typed(name: str) -> Any:
        if name not in keys:
            return coerce(raw[name], hints[name], name)
        return section(hints[name], raw[name], name, {s: k for s, k in keys.items() if s != name})

    params = Params(**{name: typed(name) for name in SECTIONS})
    _consistency(params)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; any problem is a ``StudyError`` naming the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise StudyError(f"cannot read {path}: {e.strerror}. Run the stage from the repository root.") from None
    try:
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 20x faster, same result
    except yaml.YAMLError as e:
        raise StudyError(f"{path} is not valid YAML: {e}") from None
    return parse_params(raw)
