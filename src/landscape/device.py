"""Pick the torch device from the ``train.device`` param."""

from __future__ import annotations

import torch

from landscape.errors import StudyError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise StudyError(
            "params.yaml: 'train.device' = 'cuda' but this machine has no usable CUDA device. "
            "Use 'auto' (falls back to the CPU) or 'cpu'."
        )
    return torch.device(name)
