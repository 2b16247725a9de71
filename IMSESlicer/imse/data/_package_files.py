"""Locating data files that ship inside installed Python packages (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, *parts: str) -> Path:
    """Path of a file inside the installed ``package`` (found without importing it, which
    for nilearn or dipy would take seconds).

    Raises :class:`ModuleNotFoundError` when the package is not installed and
    :class:`FileNotFoundError` when it lacks the file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The built-in data sets need the Python package '{package}'. Install the data "
            "extras with: pip install 'imse[data]'."
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise FileNotFoundError(
            f"The installed package '{package}' has no file '{path}'. Reinstall it with: "
            "pip install --force-reinstall 'imse[data]'."
        )
    return path
