"""Model files and the model registry.

A model is two files side by side: ``<name>.safetensors`` (the weights; never a pickle) and
``<name>.json`` (the model card: what the network is, what it was trained on, how to feed it).
The registry lists the models shipped in ``Resources/Models`` and those in the user's folder
(``$IMSE_MODEL_DIR``, default ``~/.imse/models``). Training checkpoints use the same two-file
form, with the optimiser state split into tensors (safetensors) and the rest (JSON).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import ImageError
from .files import write_atomically
from .networks import build_network

MODEL_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"


@dataclass
class ModelCard:
    """The JSON sidecar of a model.

    Attributes:
        name: file stem, unique in its folder.
        task: what the network does, e.g. ``evaluator``.
        architecture: network name for :func:`imse.networks.build_network` (``light``, ``paper``).
        dim: 2 or 3.
        modality: the modality the evaluator was trained on (its channel-1 input), e.g. ``T1``.
        normalization: how intensities were mapped to [-1, 1] (method and percentiles).
        patch_size: training input size, NumPy order (voxels).
        spacing_mm: voxel size the model was trained at (the error map resamples to it).
        training: the exact command, data, iterations, final losses, time, device, seed.
        version: the imse version that wrote the file.
    """

    name: str
    task: str
    architecture: str
    dim: int
    modality: str
    normalization: dict[str, Any]
    patch_size: list[int]
    spacing_mm: float
    training: dict[str, Any] = field(default_factory=dict)
    version: str = __version__

    @classmethod
    def from_json(cls, path: Path) -> "ModelCard":
        try:
            values = json.loads(Path(path).read_text())
            return cls(**values)
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise ImageError(f"The model card '{path}' is unreadable or incomplete ({error}).") from None


@dataclass
class LoadedModel:
    network: torch.nn.Module
    card: ModelCard
    path: Path


def save_model(network: torch.nn.Module, card: ModelCard, folder: str | Path) -> Path:
    """Write ``<folder>/<card.name>.safetensors`` and its ``.json`` card; returns the weights path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{card.name}{MODEL_SUFFIX}"
    state = {key: value.detach().to("cpu").contiguous() for key, value in network.state_dict().items()}
    write_atomically(weights, lambda path: save_file(state, str(path)))
    write_atomically(weights.with_suffix(CARD_SUFFIX), lambda path: path.write_text(json.dumps(asdict(card), indent=2)))
    return weights


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model from its ``.safetensors`` or ``.json`` path (or the common stem), on ``device``,
    in evaluation mode."""
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix in (MODEL_SUFFIX, CARD_SUFFIX) else stem
    weights, card_path = stem.with_suffix(MODEL_SUFFIX), stem.with_suffix(CARD_SUFFIX)
    if not weights.exists() or not card_path.exists():
        raise ImageError(
            f"A model needs both '{weights.name}' and '{card_path.name}' in '{weights.parent}'; "
            "at least one is missing. Run 'imse models' to list the models that are installed."
        )
    card = ModelCard.from_json(card_path)
    network = build_network(card.architecture, card.dim)
    network.load_state_dict(load_file(str(weights), device=str(device)))
    return LoadedModel(network.to(device).eval(), card, weights)


def user_model_directory() -> Path:
    """The user's model library, where trained models go to be found by name:
    ``$IMSE_MODEL_DIR``, else ``~/.imse/models`` (it may not exist yet)."""
    return Path(os.environ.get("IMSE_MODEL_DIR") or Path.home() / ".imse" / "models").expanduser()


def model_directories() -> list[Path]:
    """Where models are looked for: the shipped folder (beside the installed modules, or the
    source tree's ``Resources/Models``) and then :func:`user_model_directory`."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "Resources" / "Models", here.parents[1] / "Resources" / "Models"]
    shipped = [path for path in candidates if path.is_dir()][:1]
    return shipped + [user_model_directory()]


def list_models(task: str | None = None, dim: int | None = None) -> list[tuple[Path, ModelCard]]:
    """(weights path, card) of the models in :func:`model_directories` (shipped first),
    optionally filtered by task and dimension."""
    cards = []
    for folder in model_directories():
        for card_path in sorted(folder.glob(f"*{CARD_SUFFIX}")):
            if not card_path.with_suffix(MODEL_SUFFIX).exists():
                continue
            card = ModelCard.from_json(card_path)
            if (task is None or card.task == task) and (dim is None or card.dim == dim):
                cards.append((card_path.with_suffix(MODEL_SUFFIX), card))
    return cards


def find_model(name_or_path: str | Path, task: str | None = None, dim: int | None = None) -> Path:
    """The weights path of a model given by path, or by name among the registered models."""
    path = Path(name_or_path)
    if path.with_suffix(MODEL_SUFFIX).exists():
        return path.with_suffix(MODEL_SUFFIX)
    for weights, card in list_models(task, dim):
        if card.name == str(name_or_path):
            return weights
    known = ", ".join(card.name for _, card in list_models(task, dim)) or "none"
    raise ImageError(f"No model named '{name_or_path}' (known: {known}). Give a path or one of these names.")


def save_checkpoint(path: str | Path, tensors_and_state: dict[str, Any]) -> None:
    """Save a nested state (model and optimiser state dicts, step, ...) without pickle: its
    tensors go to ``<path>.safetensors`` and everything else to ``<path>.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}

    def split(value: Any, key: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().to("cpu").contiguous()
            return {"__tensor__": key}
        if isinstance(value, dict):
            return {"__keys__": [[k, split(v, f"{key}.{k}")] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            return [split(v, f"{key}.{i}") for i, v in enumerate(value)]
        return value

    structure = split(tensors_and_state, "state")
    write_atomically(path.with_suffix(MODEL_SUFFIX), lambda p: save_file(tensors, str(p)))
    write_atomically(path.with_suffix(CARD_SUFFIX), lambda p: p.write_text(json.dumps(structure)))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Inverse of :func:`save_checkpoint` (dictionary keys keep their types, e.g. the integer
    parameter ids of an optimiser state)."""
    path = Path(path)
    tensors = load_file(str(path.with_suffix(MODEL_SUFFIX)), device=str(device))

    def join(value: Any) -> Any:
        if isinstance(value, dict) and "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if isinstance(value, dict):
            return {k: join(v) for k, v in value["__keys__"]}
        if isinstance(value, list):
            return [join(v) for v in value]
        return value

    return join(json.loads(path.with_suffix(CARD_SUFFIX).read_text()))
