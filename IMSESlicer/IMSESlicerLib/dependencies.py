"""Python packages the backend needs inside Slicer, and their installation (asking first).

torch comes through the PyTorch extension's utilities (SlicerPyTorch's ``PyTorchUtils``
module: it picks the build that matches the GPU driver); the other packages through
Slicer's pip. Nothing is imported here that might be missing.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

#: import name -> pip requirement, for what Slicer does not bundle (it bundles numpy, SimpleITK).
PIP_REQUIREMENTS = {"scipy": "scipy>=1.10", "safetensors": "safetensors>=0.4", "tqdm": "tqdm>=4.60"}
TORCH_REQUIREMENT = ">=2.1"


def missing_packages() -> list[str]:
    """Import names of the backend's packages that are not installed (torch first)."""
    names = ["torch", *PIP_REQUIREMENTS]
    return [name for name in names if importlib.util.find_spec(name) is None]


def ensure_backend(confirm: Callable[[str], bool]) -> bool:
    """Install what is missing after ``confirm(question)`` says yes; True when all is there.

    torch is installed with ``PyTorchUtils.PyTorchUtilsLogic().installTorch`` (the PyTorch
    extension, a dependency of ours), the rest with ``slicer.util.pip_install``.
    """
    missing = missing_packages()
    if not missing:
        return True
    question = (
        f"IMSESlicer needs these Python packages, which are not installed: {', '.join(missing)}.\n"
        "Install them now? This downloads them (several GB for torch with CUDA) and can take minutes."
    )
    if not confirm(question):
        return False
    if "torch" in missing:
        import PyTorchUtils

        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is None:
            return False
    others = [PIP_REQUIREMENTS[name] for name in missing if name in PIP_REQUIREMENTS]
    if others:
        import slicer.util

        slicer.util.pip_install(others)
    return not missing_packages()
