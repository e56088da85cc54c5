"""Side-by-side benchmark: this pipeline's training, evaluation and probes against the conventional way.

Run from the repository root: ``python bench/bench.py [--out FILE] [--tiny]`` (``make bench``). It needs
data/raw/ (``dvc repro download``) and benchmarks Model A (variant ``mlp``) and Model B (variant ``cnn``):
their trained seed-0 checkpoints models/<variant>/0/model.pt where present, else freshly initialized
networks; the output says which. Every ratio compares two measurements made in this one run on this one
machine. Not part of ``dvc repro`` and not a test (tests/test_bench.py runs it on tiny settings).

The conventional reference is what most tutorials write: torchvision's FashionMNIST with ToTensor +
Normalize, a DataLoader, and for probes a deep copy of the model per perturbation. Both sides work on the
same images: the training split for training, one seeded validation subset for evaluation and probes.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from landscape.probes.directions import (
    filter_normalized_direction,
    gaussian_like,
    noise_delta,
    parameters_of,
    perturbed_mask,
)
from landscape.probes.evaluation import Score, evaluate
from landscape.probes.hessian import hvp, loss_gradient
from landscape.probes.perturb import restored
from landscape.probes.sweeps import loss_slices, noise_robustness, score_point
from landscape.study.atomic import write_text
from landscape.study.data import Dataset, ProbeData, Split, batch_indices, split_indices
from landscape.study.device import prepare_for_device
from landscape.study.inputs import study_inputs, trained_model
from landscape.study.models import build_model
from landscape.study.params import Params
from landscape.study.stage import RAW_DIR, TIMINGS_DIR, RunPaths, run_stage
from landscape.study.train import make_optimizer, make_schedule, train_epoch

VARIANTS = ("mlp", "cnn")  # Model A and Model B
SUBSET_SEED = 0  # which validation images both sides evaluate


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement times; the defaults are the full benchmark."""

    train_batches: dict[str, int] = field(default_factory=lambda: {"mlp": 200, "cnn": 40})  # timed per variant
    eval_images: int = 5000  # validation images per evaluation
    probe_images: int = 2000  # images per evaluated parameter set (the first of the evaluation images)
    probe_points: int = 5  # parameter sets timed per probe
    scaling_images: int = 1000  # images per evaluation in the scaling table
    scaling_batches: tuple[int, int] = (20, 40)  # training batches at the two sizes of the scaling table
    matmul_side: int = 2048  # n of the n x n matmul that measures the peak FLOP/s
    repeats: int = 5  # each time is the best of this many rounds: this machine's timings are noisy
    eval_batch_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)


FULL = Sizes()
TINY = Sizes(  # a smoke test that cannot rot: seconds on a CPU, fits the tests' 100 synthetic validation images
    train_batches={"mlp": 2, "cnn": 2},
    eval_images=64,
    probe_images=32,
    probe_points=2,
    scaling_images=32,
    scaling_batches=(1, 2),
    matmul_side=64,
    repeats=1,
    eval_batch_sizes=(16, 32),
)


def seconds(on: torch.device, repeats: int, *calls: Callable[[], object]) -> tuple[float, ...]:
    """Best wall time of ``repeats`` runs of each zero-argument call, including device ``on``'s queued work.

    One untimed run of each first warms up kernels and allocations. The calls take turns within
    every round, so a slow spell of a shared machine hits all of them alike and a ratio of two
    results compares like with like.
    """
    for call in calls:
        call()
    best = [float("inf")] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            if on.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            call()
            if on.type == "cuda":
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - start)
    return tuple(best)


def ratio_row(measure: str, unit: str, ours: float, ref: float, fmt: str = ",.0f") -> list[str]:
    """A row of the comparison table; ``ours`` and ``ref`` are rates (higher is better)."""
    return [measure, unit, f"{ours:{fmt}}", f"{ref:{fmt}}", f"{ours / ref:.1f}x"]


# The same images on both sides


@dataclass(frozen=True)
class Images:
    """One set of images as both sides see them: our normalized tensors, and their indices in torchvision's
    training set (Fashion-MNIST's validation split is drawn from its 60k training images)."""

    split: Split
    indices: list[int]

    def first(self, n: int) -> Images:
        return Images(Split(self.split.x[:n], self.split.y[:n]), self.indices[:n])


def split_raw_indices(params: Params, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices in the raw training set of our training and validation splits (as ``load_dataset`` draws them)."""
    return split_indices(len(data.train) + len(data.val), params.data.val_size, params.data.split_seed)


def validation_images(params: Params, data: Dataset, n: int, seed: int = SUBSET_SEED) -> Images:
    """A seeded subset of ``n`` validation images, the same one ``data.val.subset(n, seed)`` gives."""
    positions = torch.randperm(len(data.val), generator=torch.Generator().manual_seed(seed))[:n]
    on_device = positions.to(data.val.y.device)
    _, val_idx = split_raw_indices(params, data)
    return Images(Split(data.val.x[on_device], data.val.y[on_device]), val_idx[positions].tolist())


def conventional_dataset(raw: Path, mean: float, std: float, indices: list[int]) -> Subset:
    """torchvision's FashionMNIST training set, normalized per image by transforms, restricted to ``indices``."""
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    return Subset(FashionMNIST(str(raw), train=True, download=False, transform=tf), indices)


def conventional_loader(raw: Path, data: Dataset, indices: list[int], batch_size: int, shuffle: bool) -> DataLoader:
    return DataLoader(conventional_dataset(raw, data.mean, data.std, indices), batch_size, shuffle=shuffle)


# The conventional way


def conventional_train(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, n_batches: int, device: torch.device
) -> None:
    model.train()
    for i, (x, y) in enumerate(loader):
        if i == n_batches:
            break
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def conventional_eval(model: nn.Module, loader: DataLoader, device: torch.device) -> Score:
    """Mean cross-entropy and accuracy over the loader's images, in eval mode."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double().item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return Score(loss=loss_sum / n, acc=correct / n)


def conventional_point(
    model: nn.Module, delta: list[torch.Tensor], scale: float, loader: DataLoader, device: torch.device
) -> Score:
    """The textbook probe step: deep-copy the model, perturb the copy, loop the DataLoader."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p, d in zip(twin.parameters(), delta, strict=True):
            p.add_(d, alpha=scale)
    return conventional_eval(twin, loader, device)


def sweep(fn: Callable[..., object], scales, *args, **kwargs) -> None:
    """Call ``fn(*args, scale, **kwargs)`` for every scale: one probe's parameter sets."""
    for scale in scales:
        fn(*args, scale, **kwargs)


def probe_sweep(model: nn.Module, delta: list[torch.Tensor], scales, data: ProbeData) -> None:
    """Our probe step at every scale: theta0 + scale * delta in place, scored, restored once at the end."""
    with restored(model) as handle:
        sweep(score_point, scales, model, handle, delta, bn="frozen", data=data)


# The models


def fresh_training(variant: str, params: Params, device: torch.device, data: Dataset):
    """A seeded untrained model, its optimizer and schedule (never annealing here), and one epoch of batches."""
    torch.manual_seed(0)
    model = prepare_for_device(build_model(params.model_config(variant)), device)
    optimizer = make_optimizer(model, params.train)
    schedule = make_schedule(optimizer, params.train, 10**9)
    batches = batch_indices(len(data.train), params.train.batch_size, torch.Generator().manual_seed(0), device)
    return model, optimizer, schedule, batches


def benchmark_model(variant: str, params: Params, device: torch.device) -> tuple[nn.Module, str]:
    """The trained seed-0 model of ``variant`` if a dvc repro has made it, else a seeded fresh one; and which."""
    run = RunPaths(variant, 0)
    if run.model.is_file():
        return trained_model(run, params, device), f"trained ({run.model})"
    torch.manual_seed(0)
    model = prepare_for_device(build_model(params.model_config(variant)), device).eval()
    return model, f"freshly initialized (no {run.model})"


# The comparison table


def train_row(
    variant: str, params: Params, device: torch.device, data: Dataset, raw: Path, sizes: Sizes
) -> tuple[list[str], float]:
    """Training images/s, ours against the DataLoader loop on the same training split; and our rate."""
    n_batches = sizes.train_batches[variant]
    model, opt, sched, batches = fresh_training(variant, params, device, data)
    torch.manual_seed(0)
    ref_model = build_model(params.model_config(variant)).to(device)
    ref_opt = make_optimizer(ref_model, params.train)
    train_idx, _ = split_raw_indices(params, data)
    loader = conventional_loader(raw, data, train_idx.tolist(), params.train.batch_size, shuffle=True)
    ours_t, ref_t = seconds(
        device,
        sizes.repeats,
        partial(train_epoch, model, opt, sched, data.train, batches[:n_batches], "bench", progress=False),
        partial(conventional_train, ref_model, ref_opt, loader, n_batches, device),
    )
    images = n_batches * params.train.batch_size
    return ratio_row(f"train {variant}", "images/s", images / ours_t, images / ref_t), images / ours_t


def forward_flops(model: nn.Module, device: torch.device) -> int:
    """Multiply-adds x 2 of conv and linear layers for one 1x28x28 image (BN, ReLU, pooling left out)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * k * output.numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features * output.shape[0]

    counted = copy.deepcopy(model).train()  # train mode calls every layer (eval mode folds BN into conv)
    handles = [m.register_forward_hook(hook) for m in counted.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        counted(torch.zeros(1, 1, 28, 28, device=device))
    for h in handles:
        h.remove()
    return total


def matmul_flops_per_s(device: torch.device, n: int, repeats: int, calls: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    (t,) = seconds(device, repeats, partial(sweep, lambda _: torch.mm(a, b), range(calls)))
    return 2 * n**3 * calls / t


def flops_row(variant: str, model: nn.Module, images_per_s: float, device: torch.device, sizes: Sizes) -> list[str]:
    """Achieved FLOP/s of the training step against a plain matmul's."""
    fwd = forward_flops(model, device)
    achieved = 3 * fwd * images_per_s  # backward costs about twice the forward
    peak = matmul_flops_per_s(device, sizes.matmul_side, sizes.repeats)
    return [
        f"{variant} train step FLOP/s",
        f"3 x {fwd / 1e6:.2f} MFLOP/image",
        f"{achieved / 1e9:.1f} GFLOP/s",
        f"mm peak {peak / 1e9:.1f} GFLOP/s",
        f"{100 * achieved / peak:.0f} % of mm",
    ]


def eval_row(
    variant: str, model: nn.Module, images: Images, ref_loader: DataLoader, bs: int, device: torch.device, sizes: Sizes
) -> list[str]:
    """Evaluation images/s on the same images, ours against the DataLoader loop."""
    ours_t, ref_t = seconds(
        device,
        sizes.repeats,
        partial(evaluate, model, images.split, bs),
        partial(conventional_eval, model, ref_loader, device),
    )
    n = len(images.indices)
    return ratio_row(f"evaluate {variant}", "images/s", n / ours_t, n / ref_t)


def probe_rows(
    variant: str,
    model: nn.Module,
    params: Params,
    images: Images,
    raw: Path,
    data: Dataset,
    device: torch.device,
    sizes: Sizes,
) -> list[list[str]]:
    """Parameter sets/s of a noise and a slice probe on the same images, ours against deep copies."""
    bs = params.runtime.eval_batch_size
    probe = ProbeData(splits={"val": images.split}, bn_data=images.split, batch_size=bs)
    loader = conventional_loader(raw, data, images.indices, bs, shuffle=False)
    weights = parameters_of(model)
    mask = perturbed_mask(model, params.probes.parameters)
    deltas = {
        "robustness": noise_delta(weights, gaussian_like(weights, 0), "absolute", mask),
        "slice": filter_normalized_direction(model, 0, params.slice.normalization, params.probes.parameters),
    }
    scales = [0.01 * (i + 1) for i in range(sizes.probe_points)]
    base = copy.deepcopy(model)  # the conventional path's unperturbed model while ours moves ``model``
    rows = []
    for kind, delta in deltas.items():
        ours_t, ref_t = seconds(
            device,
            sizes.repeats,
            partial(probe_sweep, model, delta, scales, probe),
            partial(sweep, conventional_point, scales, base, delta, loader=loader, device=device),
        )
        unit = f"parameter sets/s ({len(images.indices)} images each)"
        rows.append(
            ratio_row(f"{kind} probe {variant}", unit, sizes.probe_points / ours_t, sizes.probe_points / ref_t, ".1f")
        )
    return rows


def memory_rows(timings: Path) -> list[list[str]]:
    """Peak resident memory of each benchmarked variant's seed-0 stages, from the last dvc repro."""
    rows = []
    for variant in VARIANTS:
        for path in sorted((timings / variant / "0").glob("*.json")):
            timing = json.loads(path.read_text())
            if "peak_rss_mb" in timing:
                unit = "MB (resident, from the last dvc repro)"
                rows.append([f"peak memory {path.stem} {variant}", unit, f"{timing['peak_rss_mb']:.0f}", "", ""])
    return rows


def comparison_rows(
    params: Params, device: torch.device, data: Dataset, raw: Path, models: dict[str, nn.Module], sizes: Sizes
) -> list[list[str]]:
    """The ours-against-conventional table: training, evaluation and probes of every benchmarked variant."""
    bs = params.runtime.eval_batch_size
    images = validation_images(params, data, sizes.eval_images)
    ref_loader = conventional_loader(raw, data, images.indices, bs, shuffle=False)
    rows: list[list[str]] = []
    for variant, model in models.items():
        row, images_per_s = train_row(variant, params, device, data, raw, sizes)
        rows.append(row)
        if params.model_config(variant).family == "cnn":
            rows.append(flops_row(variant, model, images_per_s, device, sizes))
        rows.append(eval_row(variant, model, images, ref_loader, bs, device, sizes))
        rows += probe_rows(variant, model, params, images.first(sizes.probe_images), raw, data, device, sizes)
    return rows


# The other tables


def hvp_rows(
    params: Params, device: torch.device, data: Dataset, models: dict[str, nn.Module], sizes: Sizes
) -> list[list[str]]:
    """Cost of one Hessian-vector product against one forward+backward of the mean loss, on the same batch
    (the eval batch of the curvature probe, eval mode, the perturbed parameter set)."""
    batch = validation_images(params, data, min(params.runtime.eval_batch_size, sizes.eval_images)).split
    rows = []
    for variant, model in models.items():
        mask = perturbed_mask(model, params.probes.parameters)
        weights = [p for p, keep in zip(parameters_of(model), mask, strict=True) if keep]
        v = gaussian_like(weights, 0)
        grad_t, hvp_t = seconds(
            device,
            sizes.repeats,
            partial(loss_gradient, model, batch, params=weights, batch_size=len(batch)),
            partial(hvp, model, batch, v, params=weights, batch_size=len(batch)),
        )
        rows.append(
            [variant, f"{len(batch)}", f"{1e3 * grad_t:.2f} ms", f"{1e3 * hvp_t:.2f} ms", f"{hvp_t / grad_t:.1f}x"]
        )
    return rows


SIGMAS = [0.0, 0.01, 0.02, 0.05, 0.1]


def scaling_rows(
    params: Params, device: torch.device, data: Dataset, model: nn.Module, sizes: Sizes
) -> list[list[str]]:
    """How Model B's cost grows with each knob: the same measurement at two sizes."""
    bs = params.runtime.eval_batch_size
    images = sizes.scaling_images
    subset = data.train.subset(images, 0)
    probe = ProbeData(splits={"train": subset}, bn_data=subset, batch_size=bs)
    fresh, opt, sched, batches = fresh_training("cnn", params, device, data)
    frozen = ("frozen",)

    def train(n: int) -> None:
        train_epoch(fresh, opt, sched, data.train, batches[:n], "scaling", progress=False)

    def slices(c: tuple[int, int]) -> None:
        settings = params.slice.slice_settings(params.probes, range(c[0]))
        loss_slices(model, probe, replace(settings, points=c[1], bn=frozen))

    def noise_levels(c: tuple[int, int]) -> None:
        settings = params.robustness.noise_settings(params.probes, range(c[0]))
        noise_robustness(model, probe, replace(settings, modes=("absolute",), sigmas=SIGMAS[: c[1]], bn=frozen))

    knobs = [  # (knob, size A, size B, run(size)); a size is a count or a (count, count) product
        ("training batches (epochs)", *sizes.scaling_batches, train),
        ("slice directions x points", (1, 11), (2, 21), slices),
        ("noise trials x levels", (2, 3), (4, 5), noise_levels),
        ("evaluation subset (images)", images // 4, images, lambda n: evaluate(model, data.val.subset(n, 0), bs)),
    ]
    rows = []
    for knob, small, large, run in knobs:
        size = {c: c if isinstance(c, int) else c[0] * c[1] for c in (small, large)}
        t_small, t_large = seconds(device, sizes.repeats, partial(run, small), partial(run, large))
        times = [f"{t_small:.2f} s", f"{t_large:.2f} s"]
        ratios = [f"{size[large] / size[small]:.1f}x", f"{t_large / t_small:.1f}x"]
        rows.append([knob, f"{small}", f"{large}", *times, *ratios])
    return rows


def eval_batch_size_rows(
    device: torch.device, data: Dataset, models: dict[str, nn.Module], sizes: Sizes
) -> list[list[str]]:
    """Evaluation images/s of each model at each batch size: what ``runtime.eval_batch_size`` is chosen by."""
    val = data.val.subset(sizes.eval_images, 0)
    rows = []
    for variant, model in models.items():
        times = seconds(device, sizes.repeats, *(partial(evaluate, model, val, bs) for bs in sizes.eval_batch_sizes))
        rows.append([variant, *(f"{sizes.eval_images / t:,.0f}" for t in times)])
    return rows


# The report


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def benchmark(params: Params, device: torch.device, data: Dataset, raw: Path, timings: Path, sizes: Sizes) -> str:
    """Every table, as markdown."""
    loaded = {variant: benchmark_model(variant, params, device) for variant in VARIANTS}
    models = {variant: model for variant, (model, _) in loaded.items()}
    which = "; ".join(f"{variant}: {origin}" for variant, (_, origin) in loaded.items())
    table = markdown_table(
        ["measure", "unit", "ours", "conventional", "ratio"],
        comparison_rows(params, device, data, raw, models, sizes) + memory_rows(timings),
    )
    curvature = markdown_table(
        ["model", "images (one batch)", "forward+backward", "Hessian-vector product", "HVP / forward+backward"],
        hvp_rows(params, device, data, models, sizes),
    )
    grow = markdown_table(
        ["CNN cost vs", "size A", "size B", "time A", "time B", "size ratio", "time ratio"],
        scaling_rows(params, device, data, models["cnn"], sizes),
    )
    batch_sizes = markdown_table(
        ["model", *(f"batch {bs}" for bs in sizes.eval_batch_sizes)], eval_batch_size_rows(device, data, models, sizes)
    )
    return (
        f"Benchmark on {device.type} ({machine(device)}), torch {torch.__version__}\n\n"
        f"Models: {which}.\n\n{table}\n\n"
        f"Hessian-vector product against one forward+backward of the mean loss on the same batch "
        f"(target: at most about 3x):\n\n{curvature}\n\n"
        f"Scaling (probe evaluations on {sizes.scaling_images}-image subsets; each time is the best of "
        f"{sizes.repeats}):\n\n{grow}\n\n"
        f"Evaluation images/s by batch size ({sizes.eval_images} validation images; the pipeline uses "
        f"runtime.eval_batch_size = {params.runtime.eval_batch_size}):\n\n{batch_sizes}\n"
    )


def main(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="bench/bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="markdown file (default bench/results-<device>.md; none with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="a smoke test on a few images, one round")
    args = parser.parse_args(argv)
    params, device, data = study_inputs()  # loaded once for every measurement below
    text = benchmark(params, device, data, RAW_DIR, TIMINGS_DIR, TINY if args.tiny else FULL)
    print(text)
    out = args.out or (None if args.tiny else Path("bench") / f"results-{device.type}.md")
    if out is not None:
        write_text(out, text)
        print(f"wrote {out}")


if __name__ == "__main__":
    run_stage(main)
