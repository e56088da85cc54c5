"""Side-by-side benchmark: this pipeline's training, evaluation and probes against the conventional way.

Run: ``python -m landscape.bench`` from the repository root after ``dvc repro`` (it
needs data/raw/ and models/*.pt). Every ratio compares two measurements made in
this one run on this one machine. Not part of ``dvc repro`` and not a test.

The conventional reference is what most tutorials write: torchvision's
FashionMNIST with ToTensor + Normalize, a DataLoader(batch_size=128, shuffle=True),
and for probes a deep copy of the model per perturbation.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from landscape.atomic import write_text
from landscape.cli import METRICS_DIR, RAW_DIR, study_inputs, trained_model
from landscape.data import Dataset, Split, batch_indices
from landscape.device import keep_freed_memory
from landscape.directions import filter_normalized_direction, gaussian_like, noise_delta, parameters_of
from landscape.evaluate import evaluate
from landscape.models import build_model
from landscape.params import Params
from landscape.perturb import restored
from landscape.probes import ProbeData, robustness_probe, score_point, slice_probe
from landscape.report import markdown_table
from landscape.train import make_optimizer, make_schedule, prepare_for_device, train_epoch

CONVENTIONAL_BATCH = 128


REPEATS = 5  # each measurement is the best of this many calls: this machine's timings are noisy


def seconds(on: torch.device, *calls: Callable[[], object]) -> tuple[float, ...]:
    """Best wall time of ``REPEATS`` runs of each zero-argument call, including device ``on``'s queued work.

    One untimed run of each first warms up kernels and allocations. The calls take turns within
    every repeat, so a slow spell of a shared machine hits all of them alike and a ratio of two
    results compares like with like.
    """
    for call in calls:
        call()
    best = [float("inf")] * len(calls)
    for _ in range(REPEATS):
        for i, call in enumerate(calls):
            if on.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            call()
            if on.type == "cuda":
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - start)
    return tuple(best)


def conventional_dataset(train: bool, mean: float, std: float, indices: list[int] | None = None):
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    ds = FashionMNIST(str(RAW_DIR), train=train, download=False, transform=tf)
    return Subset(ds, indices) if indices is not None else ds


def conventional_train(model: nn.Module, optimizer, loader: DataLoader, n_batches: int, device) -> None:
    model.train()
    for i, (x, y) in enumerate(loader):
        if i == n_batches:
            break
        x, y = x.to(device), y.to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def conventional_eval(model: nn.Module, loader: DataLoader, device) -> float:
    model.eval()
    correct = 0
    for x, y in loader:
        correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    return correct


def conventional_point(model: nn.Module, delta: list[torch.Tensor], scale: float, loader: DataLoader, device) -> float:
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


def forward_flops(model: nn.Module, device) -> int:
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


def matmul_flops_per_s(device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    (t,) = seconds(device, partial(sweep, lambda _: torch.mm(a, b), range(repeats)))
    return 2 * n**3 * repeats / t


def fresh_training(name: str, params: Params, device: torch.device, data: Dataset):
    """A seeded untrained model, its optimizer and schedule (never annealing here), and one epoch of batches."""
    torch.manual_seed(0)
    model = prepare_for_device(build_model(name, params.model(name)), device)
    optimizer = make_optimizer(model, params.train)
    schedule = make_schedule(optimizer, params.train, 10**9)
    batches = batch_indices(len(data.train), params.train.batch_size, torch.Generator().manual_seed(0), device)
    return model, optimizer, schedule, batches


def bench(
    params: Params,
    device: torch.device,
    data: Dataset,
    trained_models: dict[str, nn.Module],
    n_train_batches: dict[str, int],
    eval_images: int,
    probe_images: int,
    probe_points: int,
) -> list[list[str]]:
    rows: list[list[str]] = []
    conv_kw = {"num_workers": 0}
    for name in ("mlp", "cnn"):
        cfg = params.model(name)
        n_batches = n_train_batches[name]
        images = n_batches * params.train.batch_size

        model, opt, sched, batches = fresh_training(name, params, device, data)
        torch.manual_seed(0)
        ref_model = build_model(name, cfg).to(device)
        ref_opt = make_optimizer(ref_model, params.train)
        loader = DataLoader(
            conventional_dataset(True, data.mean, data.std), CONVENTIONAL_BATCH, shuffle=True, **conv_kw
        )
        ours_t, ref_t = seconds(
            device,
            partial(train_epoch, model, opt, sched, data.train, batches[:n_batches], "bench", progress=False),
            partial(conventional_train, ref_model, ref_opt, loader, n_batches, device),
        )
        ours = images / ours_t
        ref = n_batches * CONVENTIONAL_BATCH / ref_t
        rows.append([f"train {name}", "images/s", f"{ours:,.0f}", f"{ref:,.0f}", f"{ours / ref:.1f}x"])

        if name == "cnn":
            fwd = forward_flops(model, device)
            achieved = 3 * fwd * ours  # backward costs about twice the forward
            peak = matmul_flops_per_s(device)
            rows.append(
                [
                    "cnn train step FLOP/s",
                    f"3 x {fwd / 1e6:.2f} MFLOP/image",
                    f"{achieved / 1e9:.1f} GFLOP/s",
                    f"mm peak {peak / 1e9:.1f} GFLOP/s",
                    f"{100 * achieved / peak:.0f} % of mm",
                ]
            )

        trained = trained_models[name]
        val = data.val.subset(eval_images, 0)
        bs = params.train.eval_batch_size
        val_idx = list(range(eval_images))
        ref_ds = Subset(conventional_dataset(True, data.mean, data.std), val_idx)
        ref_loader = DataLoader(ref_ds, batch_size=1000, **conv_kw)
        ours_t, ref_t = seconds(
            device, partial(evaluate, trained, val, bs), partial(conventional_eval, trained, ref_loader, device)
        )
        ours, ref = eval_images / ours_t, eval_images / ref_t
        rows.append([f"evaluate {name}", "images/s", f"{ours:,.0f}", f"{ref:,.0f}", f"{ours / ref:.1f}x"])

        probe_split = Split(data.val.x[:probe_images], data.val.y[:probe_images])
        probe = ProbeData(splits={"val": probe_split}, bn_data=probe_split, batch_size=bs)
        probe_loader = DataLoader(Subset(ref_ds, list(range(probe_images))), batch_size=1000, **conv_kw)
        params_list = parameters_of(trained)
        kinds = {
            "robustness": noise_delta(params_list, gaussian_like(params_list, 0), "absolute"),
            "slice": filter_normalized_direction(trained, 0),
        }
        scales = [0.01 * (i + 1) for i in range(probe_points)]
        base = copy.deepcopy(trained)  # the conventional path's unperturbed model while ours moves `trained`
        for kind, delta in kinds.items():
            ours_t, ref_t = seconds(
                device,
                partial(probe_sweep, trained, delta, scales, probe),
                partial(sweep, conventional_point, scales, base, delta, loader=probe_loader, device=device),
            )
            rows.append(
                [
                    f"{kind} probe {name}",
                    f"parameter sets/s ({probe_images} images each)",
                    f"{probe_points / ours_t:.1f}",
                    f"{probe_points / ref_t:.1f}",
                    f"{ref_t / ours_t:.1f}x",
                ]
            )
    for path in sorted(METRICS_DIR.rglob("*.json")):
        timing = json.loads(path.read_text()).get("timing", {})
        if "peak_rss_mb" in timing:
            stage = str(path.relative_to(METRICS_DIR)).removesuffix(".json")
            rows.append(
                [
                    f"peak memory {stage}",
                    "MB (resident, from the last dvc repro)",
                    f"{timing['peak_rss_mb']:.0f}",
                    "",
                    "",
                ]
            )
    return rows


def scaling(params: Params, device: torch.device, data: Dataset, model: nn.Module, images: int) -> list[list[str]]:
    """How the trained CNN's cost grows with each knob: the same measurement at two sizes."""
    bs = params.train.eval_batch_size
    subset = data.val.subset(images, 0)
    probe = ProbeData(splits={"val": subset}, bn_data=subset, batch_size=bs)
    fresh, opt, sched, batches = fresh_training("cnn", params, device, data)
    sigmas = [0.0, 0.01, 0.02, 0.05, 0.1]
    knobs = [  # (knob, size A, size B, run(size)); a size is a count or a (count, count) product
        (
            "training batches (epochs)",
            20,
            40,
            lambda n: train_epoch(fresh, opt, sched, data.train, batches[:n], "scaling", progress=False),
        ),
        (
            "slice directions x points",
            (1, 11),
            (2, 21),
            lambda c: slice_probe(model, probe, c[0], c[1], 1.0, "filter", "biasbn", 0, "frozen", 0.25, [0.1]),
        ),
        (
            "noise trials x levels",
            (2, 3),
            (4, 5),
            lambda c: robustness_probe(model, probe, sigmas[: c[1]], c[0], 0, ["absolute"], ["frozen"], [0.01], 0),
        ),
        ("evaluation subset (images)", images // 4, images, lambda n: evaluate(model, data.val.subset(n, 0), bs)),
    ]
    rows = []
    for knob, small, large, run in knobs:
        size = {c: c if isinstance(c, int) else c[0] * c[1] for c in (small, large)}
        t_small, t_large = seconds(device, partial(run, small), partial(run, large))
        rows.append(
            [
                knob,
                f"{small}",
                f"{large}",
                f"{t_small:.2f} s",
                f"{t_large:.2f} s",
                f"{size[large] / size[small]:.1f}x",
                f"{t_large / t_small:.1f}x",
            ]
        )
    return rows


EVAL_BATCH_SIZES = (64, 128, 256, 512, 1024, 2048)


def eval_batch_sizes(
    device: torch.device, data: Dataset, trained_models: dict[str, nn.Module], images: int
) -> list[list[str]]:
    """Evaluation images/s of each trained model at each batch size: what `train.eval_batch_size` is chosen by."""
    val = data.val.subset(images, 0)
    rows = []
    for name, model in trained_models.items():
        times = seconds(device, *(partial(evaluate, model, val, bs) for bs in EVAL_BATCH_SIZES))
        rows.append([name, *(f"{images / t:,.0f}" for t in times)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlp-batches", type=int, default=200, help="training batches timed for the MLP")
    parser.add_argument("--cnn-batches", type=int, default=40, help="training batches timed for the CNN")
    parser.add_argument("--eval-images", type=int, default=5000)
    parser.add_argument("--probe-images", type=int, default=2000, help="images per evaluated parameter set")
    parser.add_argument("--probe-points", type=int, default=5, help="parameter sets timed per probe")
    parser.add_argument("--scaling-images", type=int, default=1000, help="images per evaluation in the scaling table")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default bench/results-<device>.md)")
    args = parser.parse_args()
    keep_freed_memory()
    params, device, data = study_inputs()  # loaded once for every measurement below
    trained = {name: trained_model(name, params, device) for name in ("mlp", "cnn")}
    rows = bench(
        params,
        device,
        data,
        trained,
        {"mlp": args.mlp_batches, "cnn": args.cnn_batches},
        args.eval_images,
        args.probe_images,
        args.probe_points,
    )
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    table = markdown_table(["measure", "unit", "ours", "conventional", "ratio"], rows)
    grow = markdown_table(
        ["CNN cost vs", "size A", "size B", "time A", "time B", "size ratio", "time ratio"],
        scaling(params, device, data, trained["cnn"], args.scaling_images),
    )
    sizes = markdown_table(
        ["model", *(f"batch {bs}" for bs in EVAL_BATCH_SIZES)],
        eval_batch_sizes(device, data, trained, args.eval_images),
    )
    text = (
        f"Benchmark on {device.type} ({machine}), torch {torch.__version__}\n\n{table}\n\n"
        f"Scaling (probe evaluations on {args.scaling_images}-image subsets; each time is the best of "
        f"{REPEATS}):\n\n{grow}\n\n"
        f"Evaluation images/s by batch size ({args.eval_images} validation images; the pipeline uses "
        f"train.eval_batch_size = {params.train.eval_batch_size}):\n\n{sizes}\n"
    )
    print(text)
    out = args.out or Path("bench") / f"results-{device.type}.md"
    write_text(out, text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
