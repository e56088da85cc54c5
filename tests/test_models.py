"""The two models, their checkpoints, and the one evaluation function."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import SMALL_MODELS as SMALL
from landscape.data import Split
from landscape.errors import StudyError
from landscape.evaluate import evaluate
from landscape.models import (
    CNN,
    MLP,
    build_model,
    count_parameters,
    load_checkpoint,
    max_pool_2x2,
    save_checkpoint,
)
from landscape.params import CNNParams, MLPParams

MLP_CFG = MLPParams(hidden=[256, 128])
CNN_CFG = CNNParams(channels=[32, 64], fc=128, dropout_conv=0.25, dropout_fc=0.5)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def seeded_model(name: str, cfg, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, cfg)
    with torch.no_grad():  # give BN running statistics non-default values, as training would
        model.train()(images(32, seed + 1))
    return model.eval()


def module_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


# --- architecture ---------------------------------------------------------------------------


def test_mlp_parameter_count():
    expected = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert count_parameters(build_model("mlp", MLP_CFG)) == expected


def test_cnn_parameter_count():
    conv1 = 1 * 32 * 3 * 3 + 32
    bn1 = 2 * 32
    conv2 = 32 * 64 * 3 * 3 + 64
    bn2 = 2 * 64
    fc = 64 * 7 * 7 * 128 + 128  # two 2x2 max-pools: 28 -> 14 -> 7
    out = 128 * 10 + 10
    assert count_parameters(build_model("cnn", CNN_CFG)) == conv1 + bn1 + conv2 + bn2 + fc + out


@pytest.mark.parametrize(("name", "cfg"), [("mlp", MLP_CFG), ("cnn", CNN_CFG)])
@pytest.mark.parametrize("batch", [1, 5])
def test_output_shape(name, cfg, batch):
    model = build_model(name, cfg).eval()
    with torch.no_grad():
        assert model(images(batch)).shape == (batch, 10)


def test_cnn_has_batch_norm_and_dropout_mlp_has_neither():
    cnn, mlp = module_types(build_model("cnn", CNN_CFG)), module_types(build_model("mlp", MLP_CFG))
    assert {nn.BatchNorm2d, nn.Dropout, nn.Conv2d} <= cnn
    assert not mlp & {nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.LayerNorm}
    assert isinstance(build_model("cnn", CNN_CFG), CNN) and isinstance(build_model("mlp", MLP_CFG), MLP)


def textbook_cnn(model: CNN, x: torch.Tensor) -> torch.Tensor:
    """The CNN as described: conv -> BN (the module itself) -> ReLU -> max-pool, then the classifier."""
    f = model.features
    for i in range(0, len(f), CNN.BLOCK):
        conv, bn = f[i], f[i + 1]
        x = F.max_pool2d(F.relu(bn(conv(x))), 2)
    return model.classifier(x)


def cnn_with_nontrivial_batch_norm(cfg: CNNParams = SMALL["cnn"]) -> CNN:
    model = seeded_model("cnn", cfg)  # running statistics away from 0 / 1
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
    return model


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [[4, 8], [4, 8, 8]])  # three blocks pool an odd side: 7 -> 3
def test_cnn_eval_forward_with_folded_batch_norm_matches_textbook_order(channels_last, channels):
    cfg = CNNParams(channels=channels, fc=16, dropout_conv=0.25, dropout_fc=0.5)
    model = cnn_with_nontrivial_batch_norm(cfg).eval()
    x = images(16, seed=5)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        got, expected = model(x), textbook_cnn(model, x)
    assert not torch.equal(model.features[1].running_var, torch.ones_like(model.features[1].running_var))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_cnn_train_forward_is_bit_identical_to_textbook_order_and_updates_batch_norm_alike():
    ours, reference = cnn_with_nontrivial_batch_norm().train(), cnn_with_nontrivial_batch_norm().train()
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


def test_unknown_model_is_a_study_error():
    with pytest.raises(StudyError, match="resnet"):
        build_model("resnet", MLP_CFG)


# --- checkpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, name):
    model = seeded_model(name, SMALL[name])
    path = save_checkpoint(tmp_path / f"{name}.pt", name, SMALL[name], model, {"seed": 7})
    loaded, extra = load_checkpoint(path, expected=SMALL[name])
    assert extra == {"seed": 7}
    assert type(loaded) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = images(8, seed=9)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


def test_checkpoint_with_other_config_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "mlp.pt", "mlp", MLP_CFG, build_model("mlp", MLP_CFG), {})
    with pytest.raises(StudyError) as err:
        load_checkpoint(path, expected=MLPParams(hidden=[300, 128]))
    message = str(err.value)
    assert "[256, 128]" in message and "[300, 128]" in message


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
    state = build_model("mlp", SMALL["mlp"]).state_dict()
    payload = {"name": "mlp", "config": {"hidden": [16, 8]}, "state_dict": state, "extra": {}}
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
    path = save_checkpoint(tmp_path / "mlp.pt", "mlp", SMALL["mlp"], build_model("mlp", SMALL["mlp"]), {})
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


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        {"name": "mlp", "config": {"hidden": [4]}},
        {"name": "vgg", "config": {}, "state_dict": {}},
        {"name": "mlp", "config": {"width": 4}, "state_dict": {}},
        {"name": "mlp", "config": {"hidden": [4]}, "state_dict": {"w": torch.zeros(2)}},
    ],
    ids=["list", "no-state", "unknown-model", "bad-config", "bad-weights"],
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
    model = seeded_model("cnn", SMALL["cnn"])
    x = images(12, seed=4)
    split = Split(x, torch.arange(12) % 10)
    with torch.no_grad():
        expected = F.cross_entropy(model.eval()(x), split.y).item()
    running_mean = model.features[1].running_mean.clone()
    score = evaluate(model.train(), split, batch_size=5)
    assert score.loss == pytest.approx(expected, rel=1e-6)
    assert torch.equal(model.features[1].running_mean, running_mean)
    assert model.training
