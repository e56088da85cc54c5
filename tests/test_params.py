"""params.yaml validation: the real file passes; every kind of bad value is a StudyError naming the key."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, run_stage_script, tiny_params
from landscape.errors import StudyError
from landscape.study.device import use_runtime
from landscape.study.params import N_TRAIN_IMAGES, ModelConfig, Params, RuntimeParams, load_params, parse_params

PARAMS_FILE = REPO / "params.yaml"
DELETE = object()  # sentinel: remove the key instead of setting it


def real_raw() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())


def with_value(raw: dict, dotted: str, value) -> dict:
    """A deep copy of ``raw`` with ``section.key`` (or a whole ``section``) set to ``value`` or removed."""
    raw = copy.deepcopy(raw)
    *parents, last = dotted.split(".")
    target = raw
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return raw


def test_real_params_file_validates():
    params = parse_params(real_raw())
    assert isinstance(params, Params)
    assert params.train.epochs > 0
    assert params.robustness.sigmas[0] == 0.0
    assert params.slice.points % 2 == 1
    assert params.model_config("mlp").family == "mlp"
    assert params.model_config("cnn").family == "cnn"
    assert len(params.study.seeds) >= 3
    assert params.claim_rules.reference == "mlp" and params.claim_rules.early_epochs <= params.train.epochs


def test_variants_make_the_full_conv_bn_dropout_factorial():
    params = parse_params(real_raw())
    factorial = {n: v for n, v in params.variants.items() if not v.regime}
    cells = {(v.conv, v.bn, v.dropout): name for name, v in factorial.items()}
    assert len(cells) == 8 == len(factorial) == len(params.factorial())
    assert cells[(False, False, False)] == "mlp"  # Model A
    assert cells[(True, True, True)] == "cnn"  # Model B
    assert params.study.train_mlp == [n for n in params.study.variants if not params.variant(n).conv]
    assert params.study.train_cnn == [n for n in params.study.variants if params.variant(n).conv]


def test_variants_make_the_full_conv_bn_dropout_factorial_and_study_factorial_lists_it():
    """study.factorial is the eight conv x BN x dropout cells, the variants without train or hidden overrides."""
    params = parse_params(real_raw())
    cells = {(params.variant(v).conv, params.variant(v).bn, params.variant(v).dropout) for v in params.study.factorial}
    assert len(cells) == 8 == len(params.study.factorial)
    assert sorted(params.study.factorial) == sorted(params.factorial())
    assert set(params.study.factorial) <= set(params.study.variants)
    for name in params.study.factorial:
        assert params.variant(name).train == {} and params.variant(name).hidden is None, name


NOISE_CELL = re.compile(r"fit_b(?P<batch>\d+)_x(?P<num>\d+)(?:_(?P<den>\d+))?")


def test_matched_fit_cells_are_model_a_at_a_constant_lr_to_the_question1_target():
    """Question 1 at matched fit: each fit_b<batch>_x<ratio> cell is Model A trained at a constant lr until its
    windowed train loss reaches claim_rules.question1.target_loss, under a cap of 100 epochs; its name gives the
    batch and the noise scale lr/batch as a multiple of the default's (x1_8 = 1/8), read here from the name."""
    params = parse_params(real_raw())
    q1 = params.claim_rules.question1
    default_noise = params.train.lr / params.train.batch_size
    cells = [v for v in params.study.variants if v.startswith("fit_")]
    assert len(cells) == 8
    batches, ratios = set(), set()
    for name in cells:
        m = NOISE_CELL.fullmatch(name)
        assert m, name
        ratio = int(m["num"]) / int(m["den"] or 1)
        t = params.train_for(name)
        assert t.batch_size == int(m["batch"]), name
        assert t.lr / t.batch_size / default_noise == pytest.approx(ratio), name
        assert (t.schedule, t.epochs, t.stop_loss) == ("constant", 100, q1["target_loss"]), name
        assert t.stop_window == params.train.stop_window and t.momentum == params.train.momentum, name
        assert params.model_config(name) == params.model_config("mlp"), name
        assert name in params.study.train_mlp and name not in params.study.factorial, name
        batches.add(t.batch_size)
        ratios.add(ratio)
    assert batches == {q1["batch"], q1["large_batch"], q1["full_batch"]}
    assert min(ratios) == 1 / 8 and max(ratios) == 2  # five levels spanning 16x at batch 128
    assert q1["default_eta"] == params.train.lr
    assert params.train.stop_loss == 0 and params.train_for("mlp") == params.train  # no override leaks


# Each regime cell differs from the shared train section (and Model A's / B's widths) in exactly these.
REGIME_CELLS = {
    "cnn_lo_noise": ("cnn", {"lr": 0.0125}, None),
    "cnn_hi_noise": ("cnn", {"lr": 0.2}, None),
    "mlp_unstable": ("mlp", {"lr": 0.3}, None),
    "mlp_slow": ("mlp", {"lr": 0.003}, None),
    "mlp_wd5": ("mlp", {"weight_decay": 0.005}, None),
    "mlp_wd10": ("mlp", {"weight_decay": 0.01}, None),
    "mlp_nomomentum": ("mlp", {"momentum": 0.0}, None),
    "mlp_deep10": ("mlp", {}, [256] + [128] * 9),
    "mlp_bottleneck4": ("mlp", {}, [256, 4, 128]),
}


@pytest.mark.parametrize("name", REGIME_CELLS)
def test_regime_cell_overrides_reach_its_own_train_params_and_network_only(name):
    params = parse_params(real_raw())
    model, changed, hidden = REGIME_CELLS[name]
    base, own = dataclasses.asdict(params.train), dataclasses.asdict(params.train_for(name))
    assert {k: v for k, v in own.items() if base[k] != v} == changed
    expected = params.model_config(model)
    if hidden is not None:
        expected = dataclasses.replace(expected, widths=hidden)
    assert params.model_config(name) == expected
    assert params.variant(name).regime and name in params.study.variants and name not in params.study.factorial
    assert params.train_for(model) == params.train


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"lrr": 0.1}, "unknown key 'variants.mlp_slow.train.lrr'. Did you mean 'lr'"),
        ({"lr": -1}, "'variants.mlp_slow.train.lr' = -1 is not allowed"),
        ({"batch_size": 10**6}, "'variants.mlp_slow.train.batch_size' = 1000000 is larger than the training split"),
        ({"optimizer": "lion"}, "'variants.mlp_slow.train.optimizer' = 'lion' is not allowed"),
        ({"stop_loss": -0.1}, "'variants.mlp_slow.train.stop_loss' = -0.1 is not allowed"),
        ({"stop_window": 0}, "'variants.mlp_slow.train.stop_window' = 0 is not allowed"),
    ],
)
def test_bad_train_overrides_name_the_variant_key(override, fragment):
    raw = real_raw()
    raw["variants"]["mlp_slow"]["train"] = override
    with pytest.raises(StudyError) as err:
        parse_params(raw)
    assert fragment in str(err.value)


def test_model_config_takes_widths_from_the_family_and_bn_dropout_from_the_variant():
    params = parse_params(real_raw())
    rates = [params.dropout.conv, params.dropout.fc]
    assert params.model_config("mlp") == ModelConfig("mlp", params.mlp.hidden, 0, False, [0.0, 0.0])
    assert params.model_config("mlp_bn_dropout") == ModelConfig("mlp", params.mlp.hidden, 0, True, rates)
    assert params.model_config("cnn") == ModelConfig("cnn", params.cnn.channels, params.cnn.fc, True, rates)
    assert params.model_config("cnn_nobn") == ModelConfig("cnn", params.cnn.channels, params.cnn.fc, False, rates)
    assert params.model_config("cnn_plain").dropout == [0.0, 0.0]


def test_one_family_reads_no_key_of_the_other():
    """No `cnn:` key changes an MLP-family network and no `mlp:` key a CNN-family one, which is what lets
    dvc.yaml's train_mlp stages not depend on `cnn` (and train_cnn not on `mlp`); `dropout:` changes both."""
    base = parse_params(real_raw())
    other_cnn = parse_params(with_value(with_value(real_raw(), "cnn.channels", [8]), "cnn.fc", 7))
    other_mlp = parse_params(with_value(real_raw(), "mlp.hidden", [7]))
    other_dropout = parse_params(with_value(real_raw(), "dropout", {"conv": 0.1, "fc": 0.2}))
    for name in base.study.train_mlp:
        assert other_cnn.model_config(name) == base.model_config(name), name
    for name in base.study.train_cnn:
        assert other_mlp.model_config(name) == base.model_config(name), name
    for name, variant in base.variants.items():
        assert other_dropout.model_config(name).dropout == ([0.1, 0.2] if variant.dropout else [0.0, 0.0]), name


@pytest.mark.parametrize("threads", [0, 1])
def test_runtime_sets_torch_threads_only_when_asked(threads):
    before = torch.get_num_threads()
    try:
        assert use_runtime(RuntimeParams(device="cpu", eval_batch_size=8, threads=threads)) == torch.device("cpu")
        assert torch.get_num_threads() == (threads or before)
    finally:
        torch.set_num_threads(before)


def test_unknown_variant_is_a_study_error_with_a_suggestion():
    params = parse_params(real_raw())
    with pytest.raises(StudyError, match=r"unknown variant 'mlp_nb'\. Did you mean 'mlp_bn'\?"):
        params.variant("mlp_nb")


def test_tiny_test_params_validate(tmp_path, synthetic_mirror):
    mirror, checksums = synthetic_mirror
    tiny_params(tmp_path / "params.yaml", mirror, checksums)
    params = load_params(tmp_path / "params.yaml")
    assert params.study.variants == ["mlp", "cnn"] and params.study.seeds == [0, 1]
    assert params.data.mirror == str(mirror) and params.data.sha256 == checksums


def test_load_params_reads_the_real_file():
    assert load_params(PARAMS_FILE) == parse_params(real_raw())


N_FIT = N_TRAIN_IMAGES - real_raw()["data"]["val_size"]
FACTORIAL = real_raw()["study"]["factorial"]


BAD_VALUES = [
    ("train.epochs", 0, ["'train.epochs'", "= 0", "> 0"]),
    ("train.epochs", -3, ["'train.epochs'", "-3"]),
    ("train.lr", -0.1, ["'train.lr'", "-0.1"]),
    ("train.lr", 0.0, ["'train.lr'", "0.0", "> 0"]),
    ("train.lr", True, ["'train.lr'", "True", "boolean"]),
    ("train.lr", "fast", ["'train.lr'", "'fast'", "number"]),
    ("train.lr", float("inf"), ["'train.lr'", "inf", "finite"]),
    ("train.batch_size", N_FIT + 1, ["'train.batch_size'", str(N_FIT + 1), "training split"]),
    ("slice.points", 40, ["'slice.points'", "40", "odd"]),
    ("robustness.sigmas", [-0.01, 0.0, 0.1], ["'robustness.sigmas'", "-0.01", ">= 0"]),
    ("robustness.sigmas", [0.01, 0.1], ["'robustness.sigmas'", "[0.01, 0.1]", "include 0"]),
    ("robustness.sigmas", [0.0, 0.1, 0.05], ["'robustness.sigmas'", "[0.0, 0.1, 0.05]", "increasing"]),
    ("robustness.sigmas", [0.0, 0.1, 0.1], ["'robustness.sigmas'", "[0.0, 0.1, 0.1]", "increasing"]),
    ("data.val_size", N_TRAIN_IMAGES, ["'data.val_size'", str(N_TRAIN_IMAGES)]),
    ("data.val_size", 0, ["'data.val_size'", "= 0"]),
    ("train.optimizer", "rmsprop", ["'train.optimizer'", "'rmsprop'", "'sgd'", "'adam'"]),
    ("runtime.device", "tpu", ["'runtime.device'", "'tpu'", "'cuda'"]),
    ("runtime.eval_batch_size", 0, ["'runtime.eval_batch_size'", "= 0", "> 0"]),
    ("runtime.threads", -1, ["'runtime.threads'", "-1", ">= 0"]),
    ("runtime.threads", 1.5, ["'runtime.threads'", "1.5", "integer"]),
    ("runtime.threads", DELETE, ["missing key 'runtime.threads'"]),
    ("runtime", DELETE, ["missing section 'runtime'"]),
    ("dropout", DELETE, ["missing section 'dropout'"]),
    ("robustness.modes", ["absolute", "gaussian"], ["'robustness.modes'", "'gaussian'", "'filter'"]),
    ("probes.bn", ["frozen", "frozen"], ["'probes.bn'", "['frozen', 'frozen']"]),
    ("probes.bn", ["recalibrate"], ["'probes.bn'", "'recalibrate'", "'recalibrated'"]),
    ("probes.parameters", "biases", ["'probes.parameters'", "'biases'", "'weights'", "'all'"]),
    ("dropout.fc", 1.0, ["'dropout.fc'", "1.0", "[0, 1)"]),
    ("dropout.conv", 1.5, ["'dropout.conv'", "1.5"]),
    # keys that moved to a section of their own are named there
    ("train.device", "cpu", ["unknown key 'train.device'", "Did you mean 'runtime.device'?"]),
    ("train.eval_batch_size", 256, ["unknown key 'train.eval_batch_size'", "Did you mean 'runtime.eval_batch_size'?"]),
    (
        "cnn.dropout_conv",
        0.25,
        ["unknown key 'cnn.dropout_conv'", "Did you mean 'dropout.conv'?", "Allowed keys in 'cnn'"],
    ),
    ("cnn.dropout_fc", 0.5, ["unknown key 'cnn.dropout_fc'", "Did you mean 'dropout.fc'?"]),
    ("cnn.channels", [8, 8, 8, 8, 8], ["'cnn.channels'", "[8, 8, 8, 8, 8]", "at most 4"]),
    ("mlp.hidden", [], ["'mlp.hidden'", "[]", "non-empty"]),
    ("train.epochs", [12], ["'train.epochs'", "[12]", "integer"]),
    ("train.epochs", 2.5, ["'train.epochs'", "2.5", "integer"]),
    ("train.epochs", "12", ["'train.epochs'", "'12'", "integer"]),
    ("mlp.hidden", 256, ["'mlp.hidden'", "256", "list"]),
    ("robustness.samples.val", 10001, ["'robustness.samples.val'", "10001", "validation split"]),
    ("slice.samples.train", N_FIT + 5, ["'slice.samples.train'", str(N_FIT + 5), "training split"]),
    ("slice.surface_samples.bn", N_FIT + 1, ["'slice.surface_samples.bn'", "training split"]),
    ("path.samples.bn", 0, ["'path.samples.bn'", "= 0", "> 0"]),
    ("curvature.samples.train", 0, ["'curvature.samples.train'", "Hessian"]),
    ("slice.samples.tran", 5, ["'slice.samples.tran'", "Did you mean 'train'?"]),
    ("slice.samples", 100, ["'slice.samples'", "100", "mapping"]),
    ("slice.samples.val", DELETE, ["missing key 'slice.samples.val'"]),
    ("slice.surface_points", 20, ["'slice.surface_points'", "20", "odd"]),
    ("path.points", 1, ["'path.points'", ">= 2"]),
    ("path.margin", -0.1, ["'path.margin'", ">= 0"]),
    ("curvature.hutchinson_samples", 1, ["'curvature.hutchinson_samples'", ">= 2"]),
    ("train.target_acc", 1.0, ["'train.target_acc'", "(0, 1)"]),
    ("train.seed", 0, ["'train.seed'", "unknown key", "Allowed keys"]),
    ("robustness.bisect_steps", 4, ["'robustness.bisect_steps'", "unknown key"]),
    ("robustness.moderate_sigma", {"filter": 0.1}, ["'robustness.moderate_sigma'", "unknown key"]),
    ("claim_rules.reference", "mpl", ["'claim_rules.reference'", "'mpl'", "no variant", "Did you mean 'mlp'?"]),
    ("claim_rules.moderate_drop", 1.0, ["'claim_rules.moderate_drop'", "(0, 1)"]),
    ("claim_rules.early_epochs", 1, ["'claim_rules.early_epochs'", ">= 2"]),
    ("claim_rules.early_epochs", 11, ["'claim_rules.early_epochs'", "11", "train.epochs = 10"]),
    ("claim_rules.regimes.noise_low", 8.0, ["'claim_rules.regimes.noise_low'", "below", "noise_high' = 4"]),
    ("claim_rules.regimes.hard_seeds", 0, ["'claim_rules.regimes.hard_seeds'"]),
    ("claim_rules.regimes.spike_factor", 1.0, ["'claim_rules.regimes.spike_factor'", "> 1"]),
    ("claim_rules.regimes.gap_margin", DELETE, ["missing key 'claim_rules.regimes.gap_margin'"]),
    ("claim_rules.regimes.gap_margn", 0.01, ["unknown key 'claim_rules.regimes.gap_margn'", "gap_margin"]),
    ("study.seeds", [], ["'study.seeds'", "[]", "non-empty"]),
    ("study.seeds", [0, 1, 1], ["'study.seeds'", "[0, 1, 1]", "distinct"]),
    ("study.seeds", [0, -1], ["'study.seeds'", ">= 0"]),
    ("study.seeds", [0, 1.5], ["'study.seeds[1]'", "1.5", "integer"]),
    ("study.variants", ["mlp", "resnet"], ["unknown variant 'resnet'"]),
    ("study.variants", ["mlp", "cnn"], ["'study.variants'", "exactly", "mlp_bn"]),
    (
        "study.train_mlp",
        ["mlp", "mlp_bn", "mlp_dropout", "mlp_bn_dropout", "cnn"],
        ["'study.train_mlp'", "'cnn'", "conv: True", "train_cnn"],
    ),
    ("study.factorial", ["mlp", "cnn"], ["'study.factorial'", "exactly", "without train or hidden", "mlp_bn"]),
    ("study.factorial", [*FACTORIAL, "mlp_slow"], ["'study.factorial'", "'mlp_slow'", "without train or hidden"]),
    ("study.factorial", [*FACTORIAL, "resnet"], ["'study.factorial'", "'resnet'", "exactly"]),
    ("study.factorial", [], ["'study.factorial'", "[]", "non-empty"]),
    ("study.factorial", DELETE, ["missing key 'study.factorial'"]),
    # a factorial cell given training or widths of its own leaves the factorial: study.factorial must say so
    ("variants.mlp.train", {"lr": 0.1}, ["'study.factorial'", "without train or hidden", "'mlp'"]),
    ("variants.mlp_bn.hidden", [64], ["'study.factorial'", "without train or hidden", "'mlp_bn'"]),
    ("variants.mlp_deep10.hidden", [], ["'variants.mlp_deep10.hidden'", "[]", "non-empty"]),
    ("variants.mlp_deep10.hidden", [256, 0], ["'variants.mlp_deep10.hidden'", "[256, 0]", "> 0"]),
    ("variants.mlp_deep10.hidden", "wide", ["'variants.mlp_deep10.hidden'", "'wide'", "list"]),
    ("variants.mlp_deep10.hidden", [256, 1.5], ["'variants.mlp_deep10.hidden[1]'", "1.5", "integer"]),
    ("variants.cnn_hi_noise.hidden", [64], ["'variants.cnn_hi_noise.hidden'", "[64]", "conv: false"]),
    ("variants.mlp_deep10.hiden", [64], ["unknown key 'variants.mlp_deep10.hiden'", "Did you mean 'hidden'?"]),
    ("train.stop_loss", -0.1, ["'train.stop_loss'", "-0.1", ">= 0"]),
    ("train.stop_window", 0, ["'train.stop_window'", "= 0", "> 0"]),
    ("train.stop_window", DELETE, ["missing key 'train.stop_window'"]),
    ("variants.mlp.bn", "yes", ["'variants.mlp.bn'", "'yes'", "true or false"]),
    ("variants.mlp.bn", 1, ["'variants.mlp.bn'", "1", "true or false"]),
    ("variants.mlp.conv", DELETE, ["missing key 'variants.mlp.conv'"]),
    ("variants.mlp.norm", True, ["unknown key 'variants.mlp.norm'"]),
    ("variants.mlp", [False, False, False], ["'variants.mlp'", "mapping"]),
    ("variants", ["mlp"], ["'variants'", "mapping"]),
    ("study", DELETE, ["missing section 'study'"]),
    ("slice.fit_fraction", 0.0, ["'slice.fit_fraction'", "0.0", "(0, 1]"]),
    ("train.lrr", 0.1, ["'train.lrr'", "Did you mean 'lr'?"]),
    ("slice.normalisation", "filter", ["'slice.normalisation'", "Did you mean 'normalization'?"]),
    ("trian", {"seed": 0}, ["'trian'", "unknown section", "Did you mean 'train'?"]),
    ("train.lr", DELETE, ["missing key 'train.lr'"]),
    ("slice", DELETE, ["missing section 'slice'"]),
    ("cnn", [32, 64], ["section 'cnn'", "[32, 64]", "mapping"]),
]


def case_id(key: str, value) -> str:
    return f"{key}=<missing>" if value is DELETE else f"{key}={value!r}"


@pytest.mark.parametrize(
    ("key", "value", "expected"), BAD_VALUES, ids=[case_id(key, value) for key, value, _ in BAD_VALUES]
)
def test_bad_value_is_a_study_error_naming_key_and_value(key, value, expected):
    with pytest.raises(StudyError) as err:
        parse_params(with_value(real_raw(), key, value))
    message = str(err.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("raw", [None, [], "train", 3])
def test_non_mapping_document_is_a_study_error(raw):
    with pytest.raises(StudyError, match="mapping"):
        parse_params(raw)


def test_float_written_by_dvc_exp_run_as_string_is_accepted():
    # `dvc exp run -S train.lr=1e-06` writes `lr: 1e-06`, which YAML 1.1 (PyYAML) reads as a string.
    raw = real_raw()
    raw["train"]["lr"] = yaml.safe_load("lr: 1e-06")["lr"]
    assert raw["train"]["lr"] == "1e-06"
    lr = parse_params(raw).train.lr
    assert isinstance(lr, float)
    assert lr == 1e-06


def test_float_that_yaml_reads_as_a_string_is_accepted_from_the_file(tmp_path):
    """load_params parses with libyaml where present; its resolver leaves '1e-06' a string too."""
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_FILE.read_text().replace("  lr: 0.05", "  lr: 1e-06"))
    assert load_params(path).train.lr == 1e-06


@pytest.mark.parametrize(("text", "value"), [("5e-4", 5e-4), ("+2E3", 2000.0), (" .5 ", 0.5), ("3", 3.0)])
def test_numeric_strings_become_floats(text, value):
    params = parse_params(with_value(real_raw(), "train.weight_decay", text))
    assert params.train.weight_decay == value


def test_integral_float_is_accepted_as_int():
    epochs = parse_params(with_value(real_raw(), "train.epochs", 3.0)).train.epochs
    assert epochs == 3
    assert isinstance(epochs, int)


def test_load_params_missing_file(tmp_path):
    missing = tmp_path / "nope" / "params.yaml"
    with pytest.raises(StudyError, match="cannot read"):
        load_params(missing)


def test_load_params_invalid_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: [0.1\n  epochs: 3\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_params(path)


def test_load_params_reports_bad_key_from_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value(real_raw(), "slice.points", 4)))
    with pytest.raises(StudyError, match=r"'slice\.points' = 4"):
        load_params(path)


@pytest.mark.slow
def test_train_stage_exits_cleanly_on_bad_params(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value(real_raw(), "train.epochs", 0)))
    result = run_stage_script(tmp_path, "train.py", "mlp", "0")
    assert result.returncode == 2
    assert "train.epochs" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()
