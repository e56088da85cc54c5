"""Where a training step of Model B goes, per PyTorch op (issue: the CNN step's share of the matmul peak).

    python bench/profile_train_step.py              # Model B (cnn variant), train.batch_size, 20 profiled steps
    python bench/profile_train_step.py --steps 5

Builds the network, the optimizer and the device layout the train stage uses (params.yaml), runs 5 warm-up
steps and then profiles ``--steps`` steps of forward, cross-entropy, backward and the fused SGD update on one
random batch, and prints the ops by self CPU time with each op group's share. Not a test, not a stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from landscape.study.device import prepare_for_device  # noqa: E402
from landscape.study.models import build_model  # noqa: E402
from landscape.study.params import load_params  # noqa: E402
from landscape.study.train import make_optimizer  # noqa: E402

GROUPS = {
    "convolution (oneDNN, forward + backward)": ("convolution", "conv"),
    "batch norm (forward + backward)": ("batch_norm",),
    "dropout masks (bernoulli_)": ("bernoulli",),
    "max-pool (forward + backward)": ("max_pool",),
    "linear layers (mm, addmm)": ("aten::mm", "aten::addmm"),
    "optimizer and zeroing": ("sgd", "fill_", "zero_"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cnn")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    params = load_params()
    cfg = params.train
    torch.manual_seed(0)
    model = prepare_for_device(build_model(params.model_config(args.variant)), torch.device("cpu")).train()
    optimizer = make_optimizer(model, cfg)
    x = torch.randn(cfg.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (cfg.batch_size,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{args.variant}, batch {cfg.batch_size}, {torch.get_num_threads()} threads: "
          f"{total / args.steps / 1e3:.1f} ms of self CPU time per step")  # fmt: skip
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    for group, keys in GROUPS.items():
        share = sum(e.self_cpu_time_total for e in events if any(k in e.key.lower() for k in keys))
        print(f"{100 * share / total:5.1f} %  {group}")


if __name__ == "__main__":
    main()
