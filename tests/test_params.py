"""params.yaml validation: the real file passes; every kind of bad value is a StudyError naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from landscape.errors import StudyError
from landscape.params import N_TRAIN_IMAGES, Params, load_params, parse_params

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
    assert params.model("mlp") is params.mlp
    assert params.model("cnn") is params.cnn


def test_load_params_reads_the_real_file():
    assert load_params(PARAMS_FILE) == parse_params(real_raw())


N_FIT = N_TRAIN_IMAGES - real_raw()["data"]["val_size"]


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
    ("train.device", "tpu", ["'train.device'", "'tpu'", "'cuda'"]),
    ("robustness.modes", ["absolute", "gaussian"], ["'robustness.modes'", "'gaussian'", "'filter'"]),
    ("robustness.bn", ["frozen", "frozen"], ["'robustness.bn'", "['frozen', 'frozen']"]),
    ("slice.bn", "recalibrate", ["'slice.bn'", "'recalibrate'", "'recalibrated'"]),
    ("cnn.dropout_fc", 1.0, ["'cnn.dropout_fc'", "1.0", "[0, 1)"]),
    ("cnn.dropout_conv", 1.5, ["'cnn.dropout_conv'", "1.5"]),
    ("cnn.channels", [8, 8, 8, 8, 8], ["'cnn.channels'", "[8, 8, 8, 8, 8]", "at most 4"]),
    ("mlp.hidden", [], ["'mlp.hidden'", "[]", "non-empty"]),
    ("train.epochs", [12], ["'train.epochs'", "[12]", "integer"]),
    ("train.epochs", 2.5, ["'train.epochs'", "2.5", "integer"]),
    ("train.epochs", "12", ["'train.epochs'", "'12'", "integer"]),
    ("mlp.hidden", 256, ["'mlp.hidden'", "256", "list"]),
    ("robustness.val_samples", 10001, ["'robustness.val_samples'", "10001", "validation split"]),
    ("slice.train_samples", N_FIT + 5, ["'slice.train_samples'", str(N_FIT + 5), "training split"]),
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


def test_train_stage_exits_cleanly_on_bad_params(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value(real_raw(), "train.epochs", 0)))
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py"), "mlp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "train.epochs" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()
