"""Adaptive sharpness: the curvature of the mean loss in coordinates scaled by the weights' own magnitudes, a
sharpness that does not change when the weights are rescaled in a way that leaves the network's function alone.

The adaptive Hessian is diag(|theta|) H diag(|theta|) (Kwon et al. 2021, ASAM; Andriushchenko et al. 2023): the
Hessian of theta -> L(|theta| * u) at u = sign(theta), i.e. of the loss in units of each parameter's own size. For
a ReLU network, multiplying one layer's weights and biases by a > 0 and the next layer's weights by 1/a leaves the
function and the loss unchanged, multiplies H's blocks by 1/a, 1/a^2, a, ... and so changes lambda_max and the trace
of H; with T that diagonal rescaling, the new adaptive Hessian is (T D)(T^-1 H T^-1)(T D) = D H D: unchanged. Its
largest eigenvalue, ``adaptive_sharpness``, is therefore comparable between runs whose weights differ in scale
(a higher learning rate or more noise grows the weights), where raw lambda_max is not.

It is the existing Lanczos and Hutchinson machinery of ``landscape.probes.hessian`` on a rescaled Hessian-vector
product; every convention there holds here (mean loss over ``data``, eval mode, ``params`` default every
parameter, weights never written). tests/test_adaptive.py checks it against the full Hessian of tiny models.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from landscape.probes.data import BATCH_SIZE, Data
from landscape.probes.evaluation import LossFn, cross_entropy
from landscape.probes.hessian import Eigen, MeanLoss, TraceEstimate, Vector, _like


@dataclass(frozen=True)
class AdaptiveMeanLoss(MeanLoss):
    """``MeanLoss`` whose Hessian-vector product is that of diag(|theta|) H diag(|theta|), |theta| taken from
    ``params`` when the product is formed; its ``lanczos`` and ``hutchinson_trace`` estimate the adaptive
    Hessian's top eigenvalues and trace (sum_i theta_i^2 H_ii)."""

    def hvp_many(self, vs: list[Vector]) -> list[Vector]:
        scale = [p.detach().abs() for p in self.params]
        scaled = [[s * a for s, a in zip(scale, _like(v, self.params), strict=True)] for v in vs]
        return [[s * h for s, h in zip(scale, hv, strict=True)] for hv in super().hvp_many(scaled)]


def adaptive_sharpness(
    model: nn.Module, data: Data, *, k: int = 1, iterations: int = 20, seed: int = 0, params: Vector | None = None,
    batch_size: int = BATCH_SIZE, loss_fn: LossFn = cross_entropy,
) -> Eigen:  # fmt: skip
    """The k largest eigenvalues of diag(|theta|) H diag(|theta|) (``values[0]``: the adaptive sharpness), from
    min(iterations, dim) Lanczos steps from a seeded Gaussian start, as ``hessian.lanczos`` does for H. In loss
    units (nats): a relative step of 1 along the top eigenvector raises the loss by about values[0] / 2."""
    return AdaptiveMeanLoss.of(model, data, params, batch_size, loss_fn).lanczos(k, iterations, seed)


def adaptive_trace(
    model: nn.Module, data: Data, *, samples: int = 10, seed: int = 0, params: Vector | None = None,
    batch_size: int = BATCH_SIZE, loss_fn: LossFn = cross_entropy,
) -> TraceEstimate:  # fmt: skip
    """Hutchinson estimate of tr(diag(|theta|) H diag(|theta|)) = sum_i theta_i^2 H_ii, as ``hutchinson_trace``."""
    return AdaptiveMeanLoss.of(model, data, params, batch_size, loss_fn).hutchinson_trace(samples, seed)
