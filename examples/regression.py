"""Probe a regression model with your own loss: an MLP and a linear model under mean squared error.

    python examples/regression.py          # about a minute on a CPU
    python examples/regression.py --small  # tiny sizes (tests/test_examples.py runs this)

``loss_fn`` is any function (output, target) -> the batch's mean loss; without class logits the probes
report the loss only (accuracy is NaN). For the linear model y ~ X w + b the mean squared error is an exact
quadratic with Hessian 2 A^T A / n (A = [X, 1]), so the probes can be checked against closed forms.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from landscape import probes


def regression_data(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, dim) and a noisy smooth target y (n, 1), float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = torch.sin(x @ torch.randn(dim, 1, generator=g, dtype=torch.float64)) + 0.1 * torch.randn(
        n, 1, generator=g, dtype=torch.float64
    )
    return x, y


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    """Full-batch Adam on the mean squared error; returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    return model.eval()


def linear_hessian(x: torch.Tensor) -> torch.Tensor:
    """The Hessian of mean((x w + b - y)^2) in (w, b): 2 A^T A / n with A = [x, 1]."""
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    return 2 * a.T @ a / len(x)


def main(small: bool = False, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    n, dim, hidden, steps = (64, 5, 16, 200) if small else (1000, 20, 64, 1000)
    x, y = regression_data(n, dim, seed)
    batches = [(x[i : i + 50], y[i : i + 50]) for i in range(0, n, 50)]  # any list of (x, y) batches will do
    mse = F.mse_loss  # (output, target) -> mean over the batch

    mlp = fit(nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1)).double(), x, y, steps)
    slices = probes.loss_slices(mlp, batches, probes.SliceSettings(points=11, span=0.5, seeds=(0, 1)), loss_fn=mse)
    mlp_top = probes.lanczos(mlp, batches, k=1, iterations=30, loss_fn=mse)

    linear = fit(nn.Linear(dim, 1).double(), x, y, steps)
    linear_top = probes.lanczos(linear, batches, k=1, iterations=dim + 1, loss_fn=mse)  # dim + 1: exact
    exact_top = torch.linalg.eigvalsh(linear_hessian(x))[-1].item()
    linear_slice = probes.loss_slices(
        linear, batches, probes.SliceSettings(points=5, span=1.0, seeds=(3,), parameters="all"), loss_fn=mse
    )

    print(f"MLP: mse {probes.evaluate(mlp, batches, loss_fn=mse).loss:.4f}, lambda_max {mlp_top.values[0]:.4g}")
    for k, (curve, exact) in enumerate(zip(slices.curves("data"), slices.curvature, strict=True)):
        ends = f"{curve[0]:.4f} .. {curve[len(curve) // 2]:.4f} .. {curve[-1]:.4f}"
        print(f"  slice {k}: mse {ends}, d^T H d {exact:.4g}")
    print(f"linear: lambda_max {linear_top.values[0]:.10g} (Lanczos) vs {exact_top:.10g} (eigvalsh of 2 A^T A / n)")
    return {
        "x": x, "y": y, "batches": batches, "mlp": mlp, "slices": slices, "mlp_top": mlp_top, "linear": linear,
        "linear_top": linear_top, "exact_top": exact_top, "linear_slice": linear_slice,
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes")
    main(parser.parse_args().small)
