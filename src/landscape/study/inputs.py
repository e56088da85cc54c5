"""Loading what a stage works on: validated params, the device, the dataset, a run's checkpoint, and
the fixed probe subsets. Stage scripts call these; the library below never reads params.yaml."""

from __future__ import annotations

import torch
from torch import nn

from landscape.probes.directions import stream_seed
from landscape.study.data import Dataset, ProbeData, load_dataset
from landscape.study.device import keep_freed_memory, prepare_for_device, use_runtime
from landscape.study.models import load_checkpoint
from landscape.study.params import Params, Samples, load_params
from landscape.study.stage import RAW_DIR, RunPaths


def study_inputs(variant: str | None = None) -> tuple[Params, torch.device, Dataset]:
    """Validated params (checking ``variant`` is one of them), the device and threads of their ``runtime``
    section applied, and the dataset on that device."""
    keep_freed_memory()
    params = load_params()
    if variant is not None:
        params.variant(variant)
    device = use_runtime(params.runtime)
    data = load_dataset(RAW_DIR, params.data.val_size, params.data.split_seed, device)
    return params, device, data


def trained_model(run: RunPaths, params: Params, device: torch.device) -> nn.Module:
    """The checkpoint of ``run``, checked against params.yaml, in eval mode on ``device``."""
    model, _ = load_checkpoint(run.model, expected=params.model_config(run.variant))
    return prepare_for_device(model, device).eval()


def initial_state(run: RunPaths, params: Params) -> dict[str, torch.Tensor]:
    """The weights ``run`` started training from."""
    model, _ = load_checkpoint(run.initial, expected=params.model_config(run.variant))
    return model.state_dict()


def probe_data(samples: Samples, params: Params, data: Dataset) -> ProbeData:
    """A probe's fixed subsets: the first ``samples.<part>`` images of one seeded permutation per part, the same
    for every probe, variant and seed. Subsets of one size are therefore identical across probes (the slice,
    curvature, surface and path Hessians are of one loss), and a smaller subset lies inside a larger one."""

    def seed(part: str) -> int:
        return stream_seed("probes/subset", part, params.data.split_seed, 0)

    splits = {}
    if samples.train:
        splits["train"] = data.train.subset(samples.train, seed("train"))
    if samples.val:
        splits["val"] = data.val.subset(samples.val, seed("val"))
    bn_data = data.train.subset(samples.bn, seed("bn"))
    return ProbeData(splits=splits, bn_data=bn_data, batch_size=params.runtime.eval_batch_size)
