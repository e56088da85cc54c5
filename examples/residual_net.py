"""Probe your own classifier: a small residual network on MNIST-shaped data, given as a DataLoader.

    python examples/residual_net.py          # a minute or two on a CPU
    python examples/residual_net.py --small  # tiny sizes, seconds (tests/test_examples.py runs this)

The data are MNIST-shaped random images: a fixed random template per class plus noise, which the network
fits in a few epochs. Swap in your own model and DataLoader. Every probe leaves the model as it was.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from landscape import probes


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class ResNet(nn.Module):
    """Stem conv, ``blocks`` residual blocks at 14x14, 4x4 average pooling, dropout, 10 logits."""

    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * channels, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def templated_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, 28, 28): the template of the label's class plus Gaussian noise; labels (n,)."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(10, 1, 28, 28, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return templates[labels] + torch.randn(n, 1, 28, 28, generator=g), labels


def fit(model: nn.Module, loader: DataLoader, epochs: int) -> nn.Module:
    """A few epochs of SGD (your training loop goes here); returns the model in eval mode."""
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def main(small: bool = False, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    n, channels, blocks, epochs = (64, 4, 1, 3) if small else (256, 8, 1, 4)
    images, labels = templated_images(n, seed)
    loader = DataLoader(TensorDataset(images, labels), batch_size=32)  # shuffle=False: the same batches each pass
    model = fit(ResNet(channels, blocks), loader, epochs)

    score = probes.evaluate(model, loader)  # Score(loss, acc), eval mode
    noise = probes.noise_robustness(model, loader, probes.NoiseSettings(sigmas=(0.0, 0.05, 0.2), seeds=(0, 1, 2)))
    slices = probes.loss_slices(model, loader, probes.SliceSettings(points=9, span=0.5, seeds=(0, 1)))
    iterations = 8 if small else 15
    settings = probes.CurvatureSettings(
        top_k=2, lanczos_iterations=iterations, hutchinson_samples=4, flatness_samples=4
    )
    hessian = probes.curvature(model, loader, settings)

    print(f"loss {score.loss:.4f} nats, accuracy {score.acc:.3f} on {n} images")
    for p in noise:
        print(f"filter noise sigma {p.sigma:<5g}: accuracy {p.acc_mean:.3f}, drop {100 * p.drop_mean:+.1f} pp")
    for k, (curve, exact) in enumerate(zip(slices.curves("data"), slices.curvature, strict=True)):
        ends = f"L(-0.5) {curve[0]:.3f}, L(0) {curve[len(curve) // 2]:.3f}, L(+0.5) {curve[-1]:.3f}"
        print(f"slice {k}: {ends}; d^T H d = {exact:.4g}")
    trace = hessian.trace
    print(f"Hessian: lambda_max {hessian.lambda_max:.4g}, trace {trace.total:.4g} +- {trace.total_se:.2g}")
    return {"model": model, "loader": loader, "score": score, "noise": noise, "slices": slices, "curvature": hessian}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes: seconds")
    main(parser.parse_args().small)
