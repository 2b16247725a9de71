"""Choosing the compute device: ``auto`` is CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from .errors import ImageError

DEVICE_CHOICES = ("auto", "cuda", "cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``auto``, ``cuda`` (or ``cuda:N``) or ``cpu``; asking for CUDA on a
    machine without it raises :class:`ImageError` that suggests ``auto`` or ``cpu``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ImageError("CUDA was requested but no CUDA GPU is available here; use device 'auto' or 'cpu'.")
        return torch.device(name)
    raise ImageError(f"Unknown device '{name}'; choose one of {list(DEVICE_CHOICES)} (or cuda:N).")


def describe_device(device: torch.device) -> str:
    """A line for logs and GUIs: the GPU's name and memory, or 'CPU (N threads)'."""
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return f"{properties.name} ({properties.total_memory / 2**30:.1f} GiB)"
    return f"CPU ({torch.get_num_threads()} threads)"
