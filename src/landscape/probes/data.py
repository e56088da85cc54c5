"""What the probes evaluate on, and how it is batched.

A probe takes its data as any re-iterable of ``(x, y)`` batches (a torch ``DataLoader``, a list of tuples),
as a pair of tensors ``(x, y)``, or as a ``Split``; the last two are cut into batches of ``batch_size`` in
order. Every batch is moved to the model's own device (that of its first parameter or buffer). The probes
that look at several splits at once take a mapping from split name to data, or a ``ProbeData``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from landscape.errors import StudyError

BATCH_SIZE = 256  # for tensors and Splits when the caller gives none; a DataLoader keeps its own batches
SINGLE = "data"  # the split name of data given as one dataset rather than a mapping of named splits


@dataclass(frozen=True)
class Split:
    """Inputs x (N, ...) and targets y (N,) on one device, e.g. normalized images and int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int, seed: int) -> Split:
        """A fixed seeded subset of ``n`` samples (the whole split when n == len)."""
        if n > len(self):
            raise StudyError(f"asked for a subset of {n} samples from a split of only {len(self)}; lower the param.")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].to(self.y.device)
        return Split(self.x[idx], self.y[idx])


Data = Split | tuple[torch.Tensor, torch.Tensor] | Iterable[Any]


@dataclass(frozen=True)
class ProbeData:
    """Named splits a probe evaluates on, the data that recalibrates BN (inputs only are used), and the
    batch size that tensors and Splits are cut into."""

    splits: Mapping[str, Data]
    bn_data: Data | None = None
    batch_size: int = BATCH_SIZE


def as_probe_data(
    data: Data | Mapping[str, Data] | ProbeData, bn_data: Data | None, batch_size: int | None
) -> ProbeData:
    """``data`` as named splits: a mapping as it is, one dataset as the split ``"data"``. ``bn_data`` and
    ``batch_size``, when given, replace those of a ``ProbeData``."""
    if isinstance(data, ProbeData):
        base = data
    elif isinstance(data, Mapping):
        base = ProbeData(dict(data))
    else:
        base = ProbeData({SINGLE: data})
    if not base.splits:
        raise ValueError("no data: the mapping of splits is empty")
    return ProbeData(
        base.splits,
        base.bn_data if bn_data is None else bn_data,
        base.batch_size if batch_size is None else batch_size,
    )


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); None for a model with neither."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return None


def _to(obj: Any, device: torch.device | None) -> Any:
    """A tensor, or tuples, lists and dicts of tensors, on ``device`` (unchanged when None or already there)."""
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple | list):
        return type(obj)(_to(v, device) for v in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _tensor_pair(data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, y) of a Split or of a pair of tensors with one row per sample; None for anything else."""
    if isinstance(data, Split):
        return data.x, data.y
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"a pair of tensors (x, y) needs one row per sample; got shapes {tuple(x.shape)}, {tuple(y.shape)}"
            )
        return x, y
    return None


def batches(data: Data, batch_size: int, device: torch.device | None) -> Iterator[tuple[Any, torch.Tensor]]:
    """The ``(x, y)`` batches of ``data`` on ``device``: tensors cut in order into ``batch_size`` rows."""
    pair = _tensor_pair(data)
    if pair is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        x, y = pair
        for start in range(0, len(y), batch_size):
            yield _to(x[start : start + batch_size], device), _to(y[start : start + batch_size], device)
        return
    if isinstance(data, Mapping | torch.Tensor) or not isinstance(data, Iterable):
        raise ValueError(
            f"data must be (x, y) batches (a DataLoader, a list of tuples), a pair of tensors or a Split; "
            f"got {type(data).__name__}"
        )
    if iter(data) is data:
        raise ValueError("data is a one-shot iterator, but probes read it many times: pass a list or a DataLoader")
    for batch in data:
        if not (isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[1], torch.Tensor)):
            raise ValueError(f"each batch must be an (x, y) pair with y a tensor; got {type(batch).__name__}")
        yield _to(batch[0], device), _to(batch[1], device)


def sample_count(data: Data) -> int:
    """How many samples ``data`` holds (an iterable of batches is read once to count them)."""
    pair = _tensor_pair(data)
    if pair is not None:
        return len(pair[1])
    return sum(len(y) for _, y in batches(data, BATCH_SIZE, None))
