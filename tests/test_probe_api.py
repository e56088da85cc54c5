"""The public probe API (``from landscape import probes``): every probe leaves the model as it found it, any
(x, y) data form gives the same numbers, ``loss_fn`` works for a regression (checked against closed forms),
settings are checked, and the package imports lazily."""

from __future__ import annotations

import ast
import inspect
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import REPO, run_command
from landscape import probes
from landscape.probes.data import Split, batches, model_device
from landscape.study.params import CurvatureParams, PathParams, ProbeParams, RobustnessParams, Samples, SliceParams

pytestmark = pytest.mark.usefixtures("single_thread")

N, DIM, CLASSES = 24, 6, 3


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def classification(n: int = N, seed: int = 0) -> Split:
    g = generator(seed)
    return Split(torch.randn(n, DIM, generator=g), torch.randint(0, CLASSES, (n,), generator=g))


def mlp_bn_dropout() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(DIM, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 5), nn.Tanh(),
        nn.Linear(5, CLASSES),
    )  # fmt: skip


class ConvBNDropout(nn.Module):
    """Inputs (N, DIM) seen as 1 x 2 x 3 images: conv + BN2d + dropout + linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv, self.bn = nn.Conv2d(1, 2, 2, padding=1), nn.BatchNorm2d(2)
        self.drop, self.fc = nn.Dropout(0.3), nn.Linear(2 * 3 * 4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x.view(-1, 1, 2, 3)))).flatten(1)))


def trained_like(model: nn.Module) -> nn.Module:
    """Non-default weights and BN running statistics."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator(5)))
        model.train()(classification(32, seed=9).x)
    return model


MODELS = {"mlp": mlp_bn_dropout, "conv": ConvBNDropout}


def loader(split: Split, batch_size: int = 10) -> DataLoader:
    return DataLoader(TensorDataset(split.x, split.y), batch_size=batch_size)


def initial_of(model: nn.Module) -> dict[str, torch.Tensor]:
    g = generator(3)
    return {n: p.detach() + 0.2 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}


# Every public function that takes a model, run on tiny settings (BN recalibrated wherever a probe offers it).
MODES, BN = ["absolute", "filter"], ["frozen", "recalibrated"]
CALLS = {
    "evaluate": lambda m, d, bn: probes.evaluate(m, d),
    "noise_robustness": lambda m, d, bn: probes.noise_robustness(
        m, {"train": d}, probes.NoiseSettings(sigmas=[0, 0.1], seeds=[1, 2], modes=MODES, bn=BN), bn_data=bn
    ),
    "loss_slices": lambda m, d, bn: probes.loss_slices(
        m, d, probes.SliceSettings(points=3, seeds=[4], parameters="all", bn=BN), bn_data=bn
    ),
    "loss_surface": lambda m, d, bn: probes.loss_surface(m, d, probes.SurfaceSettings(points=3)),
    "interpolation_path": lambda m, d, bn: probes.interpolation_path(
        m, initial_of(m), d, probes.PathSettings(points=3), bn_data=bn
    ),
    "curvature": lambda m, d, bn: probes.curvature(
        m, d, probes.CurvatureSettings(lanczos_iterations=3, hutchinson_samples=2, flatness_samples=2, layer_seeds=[1])
    ),
    "top_eigenvalues": lambda m, d, bn: probes.top_eigenvalues(m, d, probes.CurvatureSettings(lanczos_iterations=3)),
    "loss_gradient": lambda m, d, bn: probes.loss_gradient(m, d),
    "hvp": lambda m, d, bn: probes.hvp(m, d, [torch.ones_like(p) for p in m.parameters()]),
    "hvp_many": lambda m, d, bn: probes.hvp_many(m, d, [[torch.ones_like(p) for p in m.parameters()]] * 2),
    "directional_curvature": lambda m, d, bn: probes.directional_curvature(
        m, d, [probes.filter_normalized_direction(m, 2, "filter", "all")]
    ),
    "lanczos": lambda m, d, bn: probes.lanczos(m, d, k=2, iterations=3),
    "hutchinson_trace": lambda m, d, bn: probes.hutchinson_trace(m, d, samples=2),
    "relative_flatness": lambda m, d, bn: probes.relative_flatness(m, d, samples=2),
    "filter_normalized_direction": lambda m, d, bn: probes.filter_normalized_direction(m, 0),
}


def test_every_public_function_is_in_the_state_test():
    functions = {n for n in probes.__all__ if inspect.isfunction(getattr(probes, n))}
    assert functions - {"cross_entropy"} == set(CALLS)  # the default loss takes no model


def snapshot(model: nn.Module) -> dict:
    return {
        "tensors": {k: v.clone() for k, v in [*model.named_parameters(), *model.named_buffers()]},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "momentum": [m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)],
    }


@pytest.mark.parametrize("training", [True, False], ids=["train_mode", "eval_mode"])
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("probe", CALLS)
def test_probe_leaves_every_parameter_buffer_and_flag_exactly_as_found(probe, model_name, training):
    model = trained_like(MODELS[model_name]()).train(training)
    model.get_submodule(next(n for n, m in model.named_modules() if isinstance(m, nn.Dropout))).train(not training)
    list(model.parameters())[-1].requires_grad_(False)
    before = snapshot(model)
    CALLS[probe](model, loader(classification()), loader(classification(20, seed=1)))
    after = snapshot(model)
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, value in before["tensors"].items():
        assert torch.equal(after["tensors"][name], value), name
    assert {k: v for k, v in after.items() if k != "tensors"} == {k: v for k, v in before.items() if k != "tensors"}


# --- data forms ---------------------------------------------------------------------------------


def forms(split: Split, batch_size: int) -> dict:
    """The same samples in the same batches, as every accepted form."""
    chunks = [(split.x[i : i + batch_size], split.y[i : i + batch_size]) for i in range(0, len(split), batch_size)]
    return {"split": split, "pair": (split.x, split.y), "list": chunks, "loader": loader(split, batch_size)}


@pytest.mark.parametrize("form", ["pair", "list", "loader"])
def test_every_data_form_gives_the_numbers_of_a_split(form):
    model, split = trained_like(mlp_bn_dropout()).eval(), classification()
    data = forms(split, 7)
    v = [torch.randn(p.shape, generator=generator(2)) for p in model.parameters()]
    settings = probes.NoiseSettings(sigmas=[0, 0.2], seeds=[1], bn=["frozen", "recalibrated"])

    def run(d):
        return (
            probes.evaluate(model, d, batch_size=7),
            probes.hvp(model, d, v, batch_size=7),
            probes.noise_robustness(model, d, settings, bn_data=d, batch_size=7),
        )

    (score, hv, noise), (score_f, hv_f, noise_f) = run(data["split"]), run(data[form])
    assert score_f == score
    if form == "loader":  # collated copies, not views of one tensor: BN statistics and backward sums may round
        torch.testing.assert_close(hv_f, hv, rtol=1e-5, atol=1e-7)  # differently (they do for these sizes)
        assert [(p.mode, p.bn, p.sigma, p.acc) for p in noise_f] == [(p.mode, p.bn, p.sigma, p.acc) for p in noise]
        assert [p.loss[0] for p in noise_f] == pytest.approx([p.loss[0] for p in noise], rel=1e-6)
    else:
        assert all(torch.equal(a, b) for a, b in zip(hv_f, hv, strict=True))
        assert noise_f == noise


def test_batches_go_to_the_model_device_and_tensors_are_cut_in_order():
    split = classification(10)
    got = list(batches(split, 4, torch.device("meta")))
    assert [len(y) for _, y in got] == [4, 4, 2]
    assert all(x.device.type == "meta" and y.device.type == "meta" for x, y in got)
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.Identity()) is None  # nothing to move to: data stays where it is
    assert [y.tolist() for _, y in batches(split, 4, None)] == [split.y[i : i + 4].tolist() for i in (0, 4, 8)]


def test_bad_data_is_refused_with_a_message():
    model = mlp_bn_dropout().eval()
    split = classification()
    with pytest.raises(ValueError, match="one-shot iterator"):
        probes.evaluate(model, iter([(split.x, split.y)]))
    with pytest.raises(ValueError, match="got dict"):
        probes.evaluate(model, {"train": split})
    with pytest.raises(ValueError, match="one row per sample"):
        probes.evaluate(model, (split.x, split.y[:-1]))
    with pytest.raises(ValueError, match=r"\(x, y\) pair"):
        probes.evaluate(model, [split.x])
    with pytest.raises(ValueError, match="needs bn_data"):
        probes.noise_robustness(model, split, probes.NoiseSettings(bn=["recalibrated"]))
    with pytest.raises(ValueError, match="hessian_split"):
        probes.loss_slices(model, split, probes.SliceSettings(points=3, hessian_split="val"))
    with pytest.raises(ValueError, match="lack the parameters"):
        probes.interpolation_path(model, {}, split)


def test_one_dataset_is_the_split_named_data_and_a_mapping_keeps_its_names():
    model, split = mlp_bn_dropout().eval(), classification()
    settings = probes.NoiseSettings(sigmas=[0], seeds=[0])
    assert {p.split for p in probes.noise_robustness(model, split, settings)} == {"data"}
    named = probes.noise_robustness(model, {"a": split, "b": classification(seed=4)}, settings)
    assert [p.split for p in named] == ["a", "b"]


def test_path_from_a_model_equals_the_path_from_its_state_dict():
    model, split = trained_like(mlp_bn_dropout()).eval(), classification()
    start = mlp_bn_dropout()
    settings = probes.PathSettings(points=3, bn="frozen")
    from_model = probes.interpolation_path(model, start, split, settings)
    assert from_model == probes.interpolation_path(model, start.state_dict(), split, settings)
    assert from_model.ts == [0.0, 0.5, 1.0] and from_model.bn == "frozen"
    assert from_model.losses("data")[-1] == probes.evaluate(model, split).loss


# --- loss_fn ------------------------------------------------------------------------------------


def linear_regression(n: int = 40, dim: int = 4) -> tuple[nn.Linear, Split]:
    g = generator(7)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = x @ torch.randn(dim, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(n, 1, generator=g, dtype=x.dtype)
    model = nn.Linear(dim, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, dim, generator=g))
        model.bias.fill_(0.3)
    return model, Split(x, y)


def test_regression_loss_is_the_mean_squared_error_and_has_no_accuracy():
    model, split = linear_regression()
    score = probes.evaluate(model, split, batch_size=7, loss_fn=F.mse_loss)
    with torch.no_grad():
        expected = F.mse_loss(model(split.x), split.y).item()
    assert score.loss == pytest.approx(expected, rel=1e-12)  # batches of 7, 7, ..., 5 weighted by their size
    assert math.isnan(score.acc)
    settings = probes.NoiseSettings(sigmas=[0, 0.1], seeds=[0])
    points = probes.noise_robustness(model, split, settings, batch_size=7, loss_fn=F.mse_loss)
    assert points[0].loss == (score.loss,) and all(math.isnan(a) for p in points for a in p.acc + p.drop)


def test_regression_hessian_is_2_ata_over_n():
    """For a linear model under MSE, H = 2 A^T A / n in (w, b), A = [X, 1], whatever the batching."""
    model, split = linear_regression()
    a = torch.cat([split.x, torch.ones(len(split), 1, dtype=split.x.dtype)], dim=1)
    h = 2 * a.T @ a / len(split)
    v = [torch.randn(1, 4, generator=generator(1), dtype=torch.float64), torch.tensor([0.7], dtype=torch.float64)]
    hv = torch.cat([t.reshape(-1) for t in probes.hvp(model, split, v, batch_size=9, loss_fn=F.mse_loss)])
    torch.testing.assert_close(hv, h @ torch.cat([t.reshape(-1) for t in v]), rtol=1e-12, atol=1e-12)
    eig = probes.lanczos(model, split, k=2, iterations=5, batch_size=9, loss_fn=F.mse_loss)
    torch.testing.assert_close(
        torch.tensor(eig.values, dtype=h.dtype), torch.linalg.eigvalsh(h).flip(0)[:2], rtol=1e-9, atol=0
    )
    trace = probes.hutchinson_trace(model, split, samples=300, batch_size=9, loss_fn=F.mse_loss)
    assert abs(trace.total - h.trace().item()) < 3 * trace.total_se


def test_default_cross_entropy_is_the_summed_loss_and_a_custom_mean_loss_agrees():
    model, split = trained_like(mlp_bn_dropout()).eval(), classification()
    score = probes.evaluate(model, split, batch_size=5)
    with torch.no_grad():
        total = sum(F.cross_entropy(model(split.x[i : i + 5]), split.y[i : i + 5], reduction="sum").double()
                    for i in range(0, N, 5))  # fmt: skip
    assert score.loss == total.item() / N  # bitwise: the default sums, it does not multiply means
    assert probes.evaluate(model, split, batch_size=5, loss_fn=F.cross_entropy) == score
    custom = probes.evaluate(model, split, batch_size=5, loss_fn=lambda out, y: F.cross_entropy(out, y))
    assert custom.loss == pytest.approx(score.loss, rel=1e-6) and custom.acc == score.acc
    with pytest.raises(ValueError, match="scalar"):
        probes.evaluate(model, split, loss_fn=lambda out, y: F.cross_entropy(out, y, reduction="none"))


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: probes.NoiseSettings(modes=["gaussian"]), r"NoiseSettings.modes = \('gaussian',\)"),
        (lambda: probes.NoiseSettings(sigmas=[-0.1]), "NoiseSettings.sigmas"),
        (lambda: probes.NoiseSettings(seeds=[]), "NoiseSettings.seeds"),
        (lambda: probes.NoiseSettings(bn=["batch"]), "NoiseSettings.bn"),
        (lambda: probes.SliceSettings(points=4), "odd integer"),
        (lambda: probes.SliceSettings(normalization="unit"), "SliceSettings.normalization"),
        (lambda: probes.SurfaceSettings(seeds=[1, 2, 3]), "exactly two seeds"),
        (lambda: probes.PathSettings(points=1), "PathSettings.points"),
        (lambda: probes.PathSettings(bn="sometimes"), "PathSettings.bn"),
        (lambda: probes.CurvatureSettings(top_k=0), "CurvatureSettings.top_k"),
        (lambda: probes.CurvatureSettings(parameters="biases"), "CurvatureSettings.parameters"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_settings_are_immutable_and_take_lists():
    s = probes.NoiseSettings(sigmas=[0, 0.1], seeds=range(3))
    assert s.sigmas == (0, 0.1) and s.seeds == (0, 1, 2)
    assert hash(s) == hash(probes.NoiseSettings(sigmas=(0, 0.1), seeds=(0, 1, 2)))


def test_params_sections_compose_the_probe_settings():
    samples = Samples(train=1, val=1, bn=1)
    shared = ProbeParams(parameters="all", bn=["frozen", "recalibrated"])
    noise = RobustnessParams([0.0, 0.1], 2, ["filter"], [0.01], samples).noise_settings(shared, [7, 8])
    assert noise == probes.NoiseSettings((0.0, 0.1), (7, 8), ("filter",), "all", ("frozen", "recalibrated"))
    section = SliceParams(3, 5, 0.5, "layer", 0.5, [0.1], samples, 7, 0.25, samples)
    assert section.slice_settings(shared, [1, 2]) == probes.SliceSettings(
        5, 0.5, (1, 2), "layer", "all", ("frozen", "recalibrated"), "train"
    )
    assert section.surface_settings(shared, [3, 4]) == probes.SurfaceSettings(7, 0.25, (3, 4), "layer", "all")
    assert PathParams(11, 0.2, samples, 1e-3).path_settings() == probes.PathSettings(11, 0.2, "auto")
    seeds = {"lanczos": 1, "hutchinson": 2, "flatness": 3}
    assert CurvatureParams(2, 10, 4, 5, 1, samples).curvature_settings(shared, seeds, [9]) == probes.CurvatureSettings(
        2, 10, 4, 5, (9,), "all", 1, 2, 3
    )


# --- the package --------------------------------------------------------------------------------


def test_probes_import_neither_study_nor_report():
    for path in sorted((REPO / "src" / "landscape" / "probes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.startswith(("landscape.study", "landscape.report"))]
            assert not bad, f"{path.name} imports {bad}"


def test_public_names_resolve_and_unknown_names_raise():
    assert probes.evaluate is sys.modules["landscape.probes.evaluation"].evaluate
    assert set(probes.__all__) <= set(dir(probes))
    assert all(getattr(probes, name) is not None for name in probes.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = probes.nope


def test_the_package_imports_lazily():
    """``landscape.probes`` loads no torch; a submodule loads only what it imports (a train stage importing
    the evaluation does not load the sweeps, surfaces or curvature probes)."""
    code = (
        "import sys; import landscape.probes as p; assert 'torch' not in sys.modules; "
        "import landscape.probes.evaluation; "
        "print(sorted(m for m in sys.modules if m.startswith('landscape.probes.'))); "
        "assert callable(p.evaluate) and callable(p.curvature)"
    )
    out = run_command([sys.executable, "-c", code], REPO).stdout.strip()
    loaded = ["data", "evaluation", "perturb", "settings"]
    assert out == str([f"landscape.probes.{name}" for name in loaded])
