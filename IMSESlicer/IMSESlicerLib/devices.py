"""Compute devices for the GUI's device menu, and whether torch is installed at all.

Nothing here imports torch at import time: inside Slicer it may be missing until the user
installs it through the PyTorch extension.
"""

from __future__ import annotations

import importlib.util


def torch_available() -> bool:
    """Whether torch can be imported here (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def _gpu_description(index: int) -> str:
    """``"<name>, <memory> GiB"`` of CUDA device ``index`` (memory rounded to whole GiB)."""
    import torch

    properties = torch.cuda.get_device_properties(index)
    return f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB"


def device_choices() -> list[tuple[str, str]]:
    """The device menu as ``(label, value)`` pairs, values as the ``imse --device`` option takes
    them: ``auto`` first (labelled with what it picks: ``"Auto (CUDA: NVIDIA H100 80GB HBM3,
    79 GiB)"`` or ``"Auto (CPU)"``), then each CUDA GPU (``cuda:N``) and ``cpu``. Without torch
    the menu is ``auto`` and ``cpu`` (nothing can run until torch is installed)."""
    gpus = []
    if torch_available():
        import torch

        if torch.cuda.is_available():
            gpus = [(f"CUDA {index}: {_gpu_description(index)}", f"cuda:{index}") for index in range(torch.cuda.device_count())]
    auto = f"Auto (CUDA: {_gpu_description(torch.cuda.current_device())})" if gpus else "Auto (CPU)"
    return [(auto, "auto"), *gpus, ("CPU", "cpu")]
