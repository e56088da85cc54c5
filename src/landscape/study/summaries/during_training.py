"""What the train stage records while it trains (questions 1 and 4): lambda_max of the training loss at the
initial weights and after every epoch, and the epoch-1 weights with their noise sensitivity.

``TrainingObserver`` is the ``observe`` callback of ``train_model``; it times itself, so the stage can report
its cost as a share of the training time.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from landscape.probes.data import ProbeData
from landscape.probes.layers import top_eigenvalues
from landscape.probes.settings import CurvatureSettings, NoiseSettings
from landscape.probes.sweeps import noise_robustness
from landscape.study.data import Dataset
from landscape.study.inputs import probe_data
from landscape.study.params import Params, Samples, TrainParams
from landscape.study.results import EarlySignals, SharpnessPoint, stability_ratio, stability_threshold
from landscape.study.summaries import stream_seeds
from landscape.study.summaries.curvature import curvature_seeds

if TYPE_CHECKING:
    from landscape.study.train import EpochRecord


class TrainingObserver:
    """``observe(epoch, model, lr)`` for ``train_model``: lambda_max every epoch; at epoch 1 also a copy of
    the weights and the mean accuracy drop under filter-normalized noise of ``noise_sigma``."""

    def __init__(self, params: Params, variant: str, seed: int, data: Dataset, cfg: TrainParams):
        p = params.during_training
        draws = params.draw_family(variant)
        self.batch_size = params.runtime.eval_batch_size
        self.hessian = probe_data(Samples(train=p.hessian_samples, val=0, bn=1), params, data).splits["train"]
        self.cold = CurvatureSettings(
            top_k=1,
            lanczos_iterations=p.cold_iterations,
            parameters=p.parameters,
            lanczos_seed=curvature_seeds(draws, seed)["lanczos"],
        )
        self.warm = dataclasses.replace(self.cold, lanczos_iterations=p.lanczos_iterations)
        self.noise_data: ProbeData = probe_data(Samples(train=0, val=p.noise_val, bn=1), params, data)
        self.noise = NoiseSettings(
            sigmas=(0.0, p.noise_sigma),
            seeds=tuple(stream_seeds("during_training/noise", draws, seed, p.noise_trials)),
            modes=("filter",),
            parameters=p.parameters,
            bn=("frozen",),
        )
        self.cfg = cfg
        self.warm_start = p.warm_start
        self.vector: torch.Tensor | None = None  # the last top Ritz vector: the next epoch's start
        self.sharpness: list[SharpnessPoint] = []
        self.epoch1: dict[str, torch.Tensor] | None = None
        self.noise_drop: float | None = None
        self.seconds = 0.0

    def __call__(self, epoch: int, model: nn.Module, lr: float) -> None:
        start = time.perf_counter()
        warm = self.vector if self.warm_start else None
        settings = self.cold if warm is None else self.warm
        eigen = top_eigenvalues(model, self.hessian, settings, batch_size=self.batch_size, start=warm)
        lam, self.vector = eigen.values[0], eigen.vector
        self.sharpness.append(SharpnessPoint(epoch, lam, lr))
        if epoch == 1:
            self.epoch1 = {k: v.detach().clone() for k, v in model.state_dict().items()}
            points = [q for q in noise_robustness(model, self.noise_data, self.noise) if q.split == "val"]
            self.noise_drop = sum(points[1].drop) / len(points[1].drop)
        self.seconds += time.perf_counter() - start

    def early_signals(self, first: EpochRecord | None, loss_slope: float | None) -> EarlySignals | None:
        """The signals after epoch 1 (None when the run diverged in epoch 1)."""
        if first is None or loss_slope is None or self.noise_drop is None:
            return None
        lam = next(q.lambda_max for q in self.sharpness if q.epoch == 1)
        return EarlySignals(
            val_acc=first.val_acc,
            val_loss=first.val_loss,
            gap=first.gap,
            loss_slope=loss_slope,
            lambda_max=lam,
            lambda_max_scaled=stability_ratio(lam, self.cfg.lr, self.cfg.momentum),
            noise_sigma=self.noise.sigmas[1],
            noise_drop=self.noise_drop,
        )


SHARPNESS_COLUMNS = ["epoch", "lambda_max", "lr", "threshold", "ratio"]


def sharpness_rows(points: list[SharpnessPoint], cfg: TrainParams) -> list[dict]:
    """One row per recorded epoch: lambda_max, the lr then, the stability threshold 2 (1 + beta) / lr at the
    run's base lr, and lambda_max over that threshold at the current lr (``stability_ratio``)."""
    threshold = stability_threshold(cfg.lr, cfg.momentum)
    return [
        {"epoch": q.epoch, "lambda_max": q.lambda_max, "lr": q.lr, "threshold": threshold,
         "ratio": stability_ratio(q.lambda_max, q.lr, cfg.momentum)}
        for q in points
    ]  # fmt: skip
