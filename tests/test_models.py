"""Every variant of the two model families, their checkpoints, and the one evaluation function."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO
from conftest import SMALL_MODELS as SMALL
from landscape.errors import StudyError
from landscape.probes.evaluation import evaluate
from landscape.study.data import Split
from landscape.study.models import (
    CNN,
    MLP,
    build_model,
    count_parameters,
    load_checkpoint,
    max_pool_2x2,
    save_checkpoint,
    training_record,
)
from landscape.study.params import ModelConfig, TrainParams, load_params

PARAMS = load_params(REPO / "params.yaml")
MLP_CFG = ModelConfig("mlp", [256, 128], 0, False, [0.0, 0.0])  # Model A
CNN_CFG = ModelConfig("cnn", [16, 32], 144, True, [0.25, 0.5])  # Model B, at Model A's size


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def seeded_model(cfg: ModelConfig, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():  # give BN running statistics non-default values, as training would
        model.train()(images(32, seed + 1))
    return model.eval()


def module_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def layer_types(sequence: nn.Sequential) -> list[type]:
    return [type(m) for m in sequence]


# --- architecture: parameter counts by hand ---------------------------------------------------

MLP_WEIGHTS = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10  # three linear layers, each weight + bias
MLP_BN = 2 * (256 + 128)  # gamma and beta after each hidden linear layer
CNN_CONV = (1 * 16 * 3 * 3 + 16) + (16 * 32 * 3 * 3 + 32)
CNN_BN = 2 * 16 + 2 * 32
CNN_FC = (32 * 7 * 7 * 144 + 144) + (144 * 10 + 10)  # two 2x2 max-pools: 28 -> 14 -> 7
# question 4's MLP cells with widths of their own (variants.<v>.hidden): ten hidden layers, and a 4-unit bottleneck
DEEP10 = (784 * 256 + 256) + (256 * 128 + 128) + 8 * (128 * 128 + 128) + (128 * 10 + 10)
BOTTLENECK4 = (784 * 256 + 256) + (256 * 4 + 4) + (4 * 128 + 128) + (128 * 10 + 10)
HAND_COUNTS = {
    "mlp": MLP_WEIGHTS,
    "mlp_bn": MLP_WEIGHTS + MLP_BN,
    "mlp_dropout": MLP_WEIGHTS,  # dropout has no parameters
    "mlp_bn_dropout": MLP_WEIGHTS + MLP_BN,
    "cnn": CNN_CONV + CNN_BN + CNN_FC,
    "cnn_nobn": CNN_CONV + CNN_FC,
    "cnn_nodropout": CNN_CONV + CNN_BN + CNN_FC,
    "cnn_plain": CNN_CONV + CNN_FC,
    "mlp_deep10": DEEP10,
    "mlp_bottleneck4": BOTTLENECK4,
}


def test_model_b_is_at_model_a_size():
    """B's widths were chosen to match A's parameter count (232,282 against 235,146: within 1.5 %)."""
    assert HAND_COUNTS["mlp"] == 235_146 and HAND_COUNTS["cnn"] == 232_282
    assert abs(HAND_COUNTS["cnn"] / HAND_COUNTS["mlp"] - 1) < 0.015


def test_params_yaml_widths_are_the_ones_counted_by_hand():
    assert PARAMS.mlp.hidden == [256, 128]
    assert (PARAMS.cnn.channels, PARAMS.cnn.fc) == ([16, 32], 144)
    assert PARAMS.model_config("mlp") == MLP_CFG
    assert PARAMS.model_config("cnn") == CNN_CFG


@pytest.mark.parametrize("variant", HAND_COUNTS)
def test_variant_parameter_count_matches_hand_count(variant):
    assert count_parameters(build_model(PARAMS.model_config(variant))) == HAND_COUNTS[variant]


def test_mlp_dropout_has_the_same_count_as_mlp_and_bn_adds_gamma_beta():
    count = {v: count_parameters(build_model(PARAMS.model_config(v))) for v in HAND_COUNTS}
    assert count["mlp_dropout"] == count["mlp"]
    assert count["mlp_bottleneck4"] < count["mlp"] < count["mlp_deep10"]
    assert count["mlp_bn"] - count["mlp"] == MLP_BN
    assert count["cnn"] - count["cnn_nobn"] == CNN_BN


def test_every_variant_in_params_builds_in_its_training_group():
    """Every variant of params.yaml builds and runs; those of the study sit in the dvc.yaml group of their family
    (the CNN regime cells are defined but not in the default study)."""
    study = PARAMS.study
    assert set(study.variants) == set(study.train_mlp) | set(study.train_cnn)
    assert set(PARAMS.variants) == set(study.variants)  # the default study runs every variant params.yaml defines
    for name in PARAMS.variants:
        cfg = PARAMS.model_config(name)
        variant = PARAMS.variant(name)
        model = build_model(cfg).eval()
        with torch.no_grad():
            assert model(images(2)).shape == (2, 10), name
        assert cfg.family == variant.family == ("cnn" if variant.conv else "mlp")
        if name in study.variants:
            assert (name in study.train_cnn) == isinstance(model, CNN), name
            assert (name in study.train_mlp) == isinstance(model, MLP), name
        has_bn = bool(module_types(model) & {nn.BatchNorm1d, nn.BatchNorm2d})
        dropout = [m.p for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
        assert has_bn == variant.bn, name
        assert dropout == ([PARAMS.dropout.conv, PARAMS.dropout.fc] if variant.dropout else []), name


def test_unknown_variant_is_a_study_error_naming_the_known_ones():
    with pytest.raises(StudyError, match="unknown variant 'cnn_bn'.*Did you mean"):
        PARAMS.model_config("cnn_bn")


def test_unknown_family_is_a_study_error():
    with pytest.raises(StudyError, match="resnet"):
        build_model(ModelConfig("resnet", [8], 0, False, [0.0, 0.0]))


# --- architecture: placement of BN and dropout ------------------------------------------------


@pytest.mark.parametrize(("cfg", "batch"), [(MLP_CFG, 1), (MLP_CFG, 5), (CNN_CFG, 1), (CNN_CFG, 5)])
def test_output_shape(cfg, batch):
    model = build_model(cfg).eval()
    with torch.no_grad():
        assert model(images(batch)).shape == (batch, 10)


def test_model_a_has_no_normalization_or_dropout_model_b_has_both():
    cnn, mlp = module_types(build_model(CNN_CFG)), module_types(build_model(MLP_CFG))
    assert {nn.BatchNorm2d, nn.Dropout, nn.Conv2d} <= cnn
    assert not mlp & {nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.LayerNorm}
    assert isinstance(build_model(CNN_CFG), CNN) and isinstance(build_model(MLP_CFG), MLP)


def test_mlp_bn_dropout_places_bn_before_relu_and_dropout_as_model_b():
    """BN after each hidden linear layer, before its ReLU; dropout[0] after the first hidden layer, dropout[1]
    after the last one (none after a middle one)."""
    mlp = MLP([12, 10, 8], bn=True, dropout=(0.25, 0.5))
    Lin, BN, ReLU, Drop = nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout
    assert layer_types(mlp.net) == [nn.Flatten, Lin, BN, ReLU, Drop, Lin, BN, ReLU, Lin, BN, ReLU, Drop, Lin]
    drops = [m.p for m in mlp.net if isinstance(m, Drop)]
    assert drops == [0.25, 0.5]
    assert [m.num_features for m in mlp.net if isinstance(m, BN)] == [12, 10, 8]


@pytest.mark.parametrize(
    ("bn", "dropout", "expected"),
    [
        (False, (0.0, 0.0), [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]),
        (True, (0.0, 0.0), [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU,
                            nn.Linear]),
        (False, (0.25, 0.5), [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]),
    ],
    ids=["mlp", "mlp_bn", "mlp_dropout"],
)  # fmt: skip
def test_mlp_variant_layer_order(bn, dropout, expected):
    assert layer_types(MLP([16, 8], bn=bn, dropout=dropout).net) == expected


def test_cnn_without_bn_holds_identity_in_bn_place_and_keeps_dropout():
    model = CNN([4, 8], fc=16, bn=False, dropout=(0.25, 0.5))
    assert layer_types(model.features) == [nn.Conv2d, nn.Identity, nn.MaxPool2d, nn.ReLU] * 2
    assert not module_types(model) & {nn.BatchNorm1d, nn.BatchNorm2d}
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.25, 0.5]
    assert layer_types(CNN([4, 8], fc=16).features) == [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU] * 2


def test_cnn_classifier_order_dropout_flatten_fc_relu_dropout_fc():
    model = CNN([4, 8], fc=16, bn=True, dropout=(0.25, 0.5))
    assert layer_types(model.classifier) == [nn.Dropout, nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]


def textbook_cnn(model: CNN, x: torch.Tensor) -> torch.Tensor:
    """The CNN as described: conv -> BN (the module itself, or Identity) -> ReLU -> max-pool, then the classifier."""
    f = model.features
    for i in range(0, len(f), CNN.BLOCK):
        conv, bn = f[i], f[i + 1]
        x = F.max_pool2d(F.relu(bn(conv(x))), 2)
    return model.classifier(x)


def cnn_with_nontrivial_batch_norm(cfg: ModelConfig = SMALL["cnn"]) -> CNN:
    model = seeded_model(cfg)  # running statistics away from 0 / 1
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
    return model


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [[4, 8], [4, 8, 8]])  # three blocks pool an odd side: 7 -> 3
@pytest.mark.parametrize("bn", [True, False])
def test_cnn_eval_forward_with_folded_batch_norm_matches_textbook_order(channels_last, channels, bn):
    cfg = ModelConfig("cnn", channels, 16, bn, [0.25, 0.5])
    model = cnn_with_nontrivial_batch_norm(cfg).eval()
    x = images(16, seed=5)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        got, expected = model(x), textbook_cnn(model, x)
    if bn:
        assert not torch.equal(model.features[1].running_var, torch.ones_like(model.features[1].running_var))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


@pytest.mark.parametrize("bn", [True, False])
def test_cnn_train_forward_is_bit_identical_to_textbook_order_and_updates_batch_norm_alike(bn):
    cfg = ModelConfig("cnn", [4, 8], 16, bn, [0.25, 0.5])
    ours, reference = cnn_with_nontrivial_batch_norm(cfg).train(), cnn_with_nontrivial_batch_norm(cfg).train()
    x = images(16, seed=6)
    torch.manual_seed(0)  # the same dropout masks
    got = ours(x)
    torch.manual_seed(0)
    expected = textbook_cnn(reference, x)
    assert torch.equal(got, expected)  # pooling before ReLU is exact: max commutes with ReLU
    for a, b in zip(ours.buffers(), reference.buffers(), strict=True):
        assert torch.equal(a, b)
    got.square().sum().backward()
    expected.square().sum().backward()
    for (key, a), b in zip(ours.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), key


@pytest.mark.parametrize("shape", [(3, 2, 28, 28), (3, 2, 7, 7), (1, 1, 5, 6), (2, 3, 3, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_max_pool_equals_max_pool2d_exactly(shape, channels_last):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(8)).round(decimals=1)  # many ties
    x[0, 0, 0, 0] = float("nan")
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    got, expected = max_pool_2x2(x), F.max_pool2d(x, 2)
    assert got.shape == expected.shape
    assert torch.equal(got.isnan(), expected.isnan()) and got.isnan().any()
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())


# --- checkpoints ----------------------------------------------------------------------------


CHECKPOINT_CONFIGS = {
    **SMALL,
    "mlp_bn_dropout": ModelConfig("mlp", [16, 8], 0, True, [0.25, 0.5]),
    "cnn_nobn": ModelConfig("cnn", [4, 8], 16, False, [0.25, 0.5]),
}


@pytest.mark.parametrize("name", CHECKPOINT_CONFIGS)
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, name):
    cfg = CHECKPOINT_CONFIGS[name]
    model = seeded_model(cfg)
    path = save_checkpoint(tmp_path / name / "0" / "model.pt", name, cfg, model, training_record(PARAMS.train, 7))
    loaded, _ = load_checkpoint(path, expected=cfg)
    assert type(loaded) is type(model)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = images(8, seed=9)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


def test_checkpoint_records_its_training_conditions(tmp_path):
    """Beside the config that builds it, a checkpoint keeps the `train:` section it was trained under and the
    training seed, as plain values that a `weights_only` load returns; loading still checks the config."""
    train = dataclasses.replace(PARAMS.train, lr=0.0125, epochs=3, optimizer="adam")
    cfg = SMALL["mlp"]
    path = save_checkpoint(tmp_path / "m.pt", "mlp", cfg, build_model(cfg), training_record(train, 4))
    _, training = load_checkpoint(path, expected=cfg)
    assert training == {"train": dataclasses.asdict(train), "seed": 4}
    assert TrainParams(**training["train"]) == train
    with pytest.raises(StudyError, match="Retrain"):
        load_checkpoint(path, expected=dataclasses.replace(cfg, bn=True))


def test_checkpoint_without_training_conditions_loads_with_none(tmp_path):
    """A checkpoint written before the training record existed (``extra`` in its place) still loads."""
    cfg = SMALL["mlp"]
    state = build_model(cfg).state_dict()
    torch.save({"name": "mlp", "config": dataclasses.asdict(cfg), "state_dict": state, "extra": {}}, tmp_path / "m.pt")
    model, training = load_checkpoint(tmp_path / "m.pt", expected=cfg)
    assert training == {} and model.state_dict().keys() == state.keys()


def test_equal_checkpoints_are_equal_bytes(tmp_path):
    """Written twice (each time through a fresh temp name), the same model gives the same file: DVC sees no change."""
    model = seeded_model(SMALL["cnn"])
    a = save_checkpoint(tmp_path / "a" / "model.pt", "cnn", SMALL["cnn"], model, {"seed": 0}).read_bytes()
    b = save_checkpoint(tmp_path / "b" / "model.pt", "cnn", SMALL["cnn"], model, {"seed": 0}).read_bytes()
    assert a == b


def test_checkpoint_without_expected_config_rebuilds_the_stored_one(tmp_path):
    cfg = CHECKPOINT_CONFIGS["mlp_bn_dropout"]
    path = save_checkpoint(tmp_path / "m.pt", "mlp_bn_dropout", cfg, build_model(cfg), {})
    loaded, _ = load_checkpoint(path)
    assert layer_types(loaded.net) == layer_types(build_model(cfg).net)


@pytest.mark.parametrize(
    "other",
    [
        ModelConfig("mlp", [300, 128], 0, False, [0.0, 0.0]),  # another width
        ModelConfig("mlp", [256, 128], 0, True, [0.0, 0.0]),  # another variant of the same widths: BN
        ModelConfig("mlp", [256, 128], 0, False, [0.25, 0.5]),  # dropout
    ],
    ids=["widths", "bn", "dropout"],
)
def test_checkpoint_with_other_config_is_refused(tmp_path, other):
    path = save_checkpoint(tmp_path / "mlp.pt", "mlp", MLP_CFG, build_model(MLP_CFG), {})
    with pytest.raises(StudyError) as err:
        load_checkpoint(path, expected=other)
    message = str(err.value)
    assert str(path) in message and "[256, 128]" in message and "Retrain" in message
    assert str(dataclasses.asdict(other)) in message


def test_missing_checkpoint_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match="does not exist"):
        load_checkpoint(tmp_path / "mlp.pt")


class CreatesDirectoryWhenUnpickled:
    """A pickle payload that runs ``os.mkdir(marker)`` when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    state = build_model(SMALL["mlp"]).state_dict()
    payload = {"name": "mlp", "config": dataclasses.asdict(SMALL["mlp"]), "state_dict": state, "extra": {}}
    payload["extra"]["x"] = CreatesDirectoryWhenUnpickled(marker)
    torch.save(payload, path)
    return path


def test_payload_really_runs_code_when_loaded_unsafely(tmp_path):
    # control for the next test: the crafted file is dangerous when weights_only is off
    marker = tmp_path / "pwned-unsafe"
    torch.load(malicious_checkpoint(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(StudyError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.01, 0.5, 0.99])
def test_truncated_checkpoint_is_a_study_error(tmp_path, keep):
    path = save_checkpoint(tmp_path / "mlp.pt", "mlp", SMALL["mlp"], build_model(SMALL["mlp"]), {})
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(StudyError, match=str(path)):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"<html><body>404</body></html>",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n",
        b"hello",
    ],
    ids=["empty", "html", "lfs-pointer", "text"],
)
def test_file_that_is_not_a_checkpoint_is_a_study_error(tmp_path, blob):
    path = tmp_path / "mlp.pt"
    path.write_bytes(blob)
    with pytest.raises(StudyError, match=str(path)):
        load_checkpoint(path)


STORED = dataclasses.asdict(SMALL["mlp"])


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        {"name": "mlp", "config": STORED},
        {"name": "vgg", "config": {}, "state_dict": {}},
        {"name": "vgg", "config": {**STORED, "family": "vgg"}, "state_dict": {}},
        {"name": "mlp", "config": {"width": 4}, "state_dict": {}},
        {"name": "mlp", "config": {**STORED, "widths": "wide"}, "state_dict": {}},
        {"name": "mlp", "config": STORED, "state_dict": {"w": torch.zeros(2)}},
        {"name": "mlp", "config": {**STORED, "bn": True}, "state_dict": build_model(SMALL["mlp"]).state_dict()},
    ],
    ids=["list", "no-state", "empty-config", "unknown-family", "bad-config", "bad-widths", "bad-weights", "no-bn"],
)
def test_wellformed_file_with_wrong_content_is_a_study_error(tmp_path, payload):
    path = tmp_path / "mlp.pt"
    torch.save(payload, path)
    with pytest.raises(StudyError, match=str(path)):
        load_checkpoint(path)


# --- evaluate -------------------------------------------------------------------------------


def linear_problem(n: int = 37, seed: int = 0) -> tuple[nn.Module, Split]:
    """A linear classifier with known weights, followed by dropout (which eval mode must switch off)."""
    g = torch.Generator().manual_seed(seed)
    linear = nn.Linear(6, 10)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(10, 6, generator=g))
        linear.bias.copy_(torch.randn(10, generator=g))
    split = Split(torch.randn(n, 6, generator=g), torch.randint(0, 10, (n,), generator=g))
    return nn.Sequential(linear, nn.Dropout(0.5)), split


def test_evaluate_matches_direct_computation():
    model, split = linear_problem()
    linear = model[0]
    with torch.no_grad():
        logits = split.x.double() @ linear.weight.double().T + linear.bias.double()
    expected_loss = F.cross_entropy(logits, split.y).item()
    expected_acc = (logits.argmax(dim=1) == split.y).double().mean().item()
    score = evaluate(model, split, batch_size=8)
    assert score.loss == pytest.approx(expected_loss, rel=1e-6)
    assert score.acc == pytest.approx(expected_acc, abs=1e-12)
    assert 0 < score.acc < 1  # the check is not vacuous


def test_evaluate_counts_argmax_hits():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    split = Split(logits, torch.tensor([0, 1, 0, 1]))
    score = evaluate(nn.Identity(), split, batch_size=3)
    assert score.acc == 0.5
    assert score.loss == pytest.approx(F.cross_entropy(logits, split.y).item(), rel=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_restores_train_flag(training):
    model, split = linear_problem()
    model.train(training)
    evaluate(model, split, batch_size=10)
    assert all(m.training == training for m in model.modules())


def test_evaluate_does_not_depend_on_batch_size():
    model, split = linear_problem()
    scores = [evaluate(model, split, batch_size=b) for b in (1, 4, 10, len(split), 1000)]
    for score in scores[1:]:
        assert score.loss == pytest.approx(scores[0].loss, abs=1e-6)
        assert score.acc == scores[0].acc


def test_evaluate_uses_batch_norm_running_statistics_and_no_dropout():
    model = seeded_model(SMALL["cnn"])
    x = images(12, seed=4)
    split = Split(x, torch.arange(12) % 10)
    with torch.no_grad():
        expected = F.cross_entropy(model.eval()(x), split.y).item()
    running_mean = model.features[1].running_mean.clone()
    score = evaluate(model.train(), split, batch_size=5)
    assert score.loss == pytest.approx(expected, rel=1e-6)
    assert torch.equal(model.features[1].running_mean, running_mean)
    assert model.training
