"""Registration presets: the best measured settings of each similarity, by name.

The engine's defaults (MIND with Adam over 3 levels) are a safe start, not the best choice;
the benchmark (README, "Which settings, in short") found better ones, and IMSE in particular
registers only with its demons and test-time averaging (with Adam it barely moves a pair).
A preset spells one of them out in full, as ``imse register`` options, so that
``imse register --preset NAME`` and the IMSE Registration panel's "Recommended settings"
button give what the benchmark measured (its rows for the presets run them as they are:
``Testing/bench/bench_registration.py``, ``OURS``; all three translate the options into the
engine's settings with :meth:`imse.register.RegistrationSettings.from_options`).
This module needs no third-party package, so the panel can read it before PyTorch is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What every preset sets: ``imse register`` options by their argparse names (``--demons-max-step``
#: is ``demons_max_step``). ``grid_spacing`` ``None``: the fixed image's grid;
#: ``regularization_weight`` ``None``: the similarity's own; ``model`` ``None``: the installed
#: evaluator of the image's dimension; ``fixed_mask`` ``"auto"``: the fixed image's foreground.
PRESET_OPTIONS = (
    "similarity",
    "optimizer",
    "levels",
    "grid_spacing",
    "iterations",
    "regularization_weight",
    "diffeomorphic",
    "affine",
    "demons_iterations",
    "demons_max_step",
    "demons_average_last",
    "flip_average",
    "evaluator_zoom",
    "evaluator_rotation",
    "evaluator_orientations",
    "evaluator_slice_axes",
    "equalize_tissue",
    "fixed_mask",
    "model",
)

#: The engine's defaults as ``imse register`` options: what a preset does not change.
ENGINE_DEFAULTS = {
    "optimizer": "adam",
    "levels": 3,
    "grid_spacing": None,
    "iterations": 150,
    "regularization_weight": None,
    "diffeomorphic": False,
    "affine": False,
    "demons_iterations": 20,
    "demons_max_step": 0.5,
    "demons_average_last": 0,
    "flip_average": False,
    "evaluator_zoom": 1.0,
    "evaluator_rotation": 0.0,
    "evaluator_orientations": "average",
    "evaluator_slice_axes": "first",
    "equalize_tissue": False,
    "fixed_mask": None,
    "model": None,
}


@dataclass(frozen=True)
class Preset:
    """A named, complete set of registration options.

    ``dims``: the image dimensions it is recommended for; ``measured``: what it gave on the
    benchmark's pairs (end-point error in the brain, 2D pairs of 2 mm pixels, 3D volumes of 3 mm
    voxels); ``options``: every option of :data:`PRESET_OPTIONS` (``options["similarity"]`` is
    the similarity it is recommended for, :func:`recommended_preset`).
    """

    name: str
    dims: tuple[int, ...]
    measured: str
    options: dict


def _preset(name: str, dims: tuple[int, ...], measured: str, **changes) -> Preset:
    unknown = set(changes) - set(PRESET_OPTIONS)
    if unknown:
        raise ValueError(f"Preset {name}: unknown options {sorted(unknown)}")
    return Preset(name, dims, measured, {**ENGINE_DEFAULTS, **changes})


PRESETS = {
    preset.name: preset
    for preset in (
        _preset(
            "mind-search",
            (2, 3),
            "the most accurate in 2D on every kind of pair: 1.23 mm (CT to MR 1.74-1.92), 3D 1.78 mm, no folds, under a CPU second a 2D pair",
            similarity="mind",
            optimizer="discrete",
            fixed_mask="auto",
        ),
        _preset(
            "mi",
            (2, 3),
            "mutual information with Adam, a CT's tissue equalised: 2D 1.55 mm (CT to MR 2.09; 2.22 windowed), 3D 1.70 mm (CT to MR 2.20; 2.45 windowed)",
            similarity="mi",
            equalize_tissue=True,
        ),
        _preset(
            "imse-2d",
            (2,),
            "IMSE's best in 2D, a CT's tissue equalised, its evaluator's 12 orientations one a demons step: 1.53 mm "
            "(MR pairs 1.14-1.31; CT to MR 2.15, the mi preset 2.09), about 4 CPU s a pair (all 12 at every step: 1.52 mm, 21 s)",
            similarity="imse",
            optimizer="demons",
            levels=1,
            demons_iterations=60,
            demons_max_step=1.0,
            demons_average_last=12,
            flip_average=True,
            evaluator_zoom=2.0,
            evaluator_rotation=60.0,
            evaluator_orientations="cycle",
            equalize_tissue=True,
        ),
        _preset(
            "imse-3d",
            (3,),
            "IMSE's best in 3D, the 2D evaluator slice by slice across each axis in turn with its 4 flips, one a demons step, "
            "a CT's tissue equalised: 2.00 mm (CT to MR 2.24; ANTs 2.63), about 49 CPU s a volume (axial slices alone: 2.19 mm)",
            similarity="imse",
            optimizer="demons",
            levels=1,
            demons_iterations=24,
            demons_max_step=1.0,
            demons_average_last=12,
            flip_average=True,
            evaluator_zoom=2.0,
            evaluator_orientations="cycle",
            evaluator_slice_axes="all",
            equalize_tissue=True,
            model="mni-t1-light-2d",
        ),
    )
}


def recommended_preset(similarity: str, dim: int) -> Preset | None:
    """The preset for ``similarity`` (a backend name: ``mind``, ``mi``, ``imse``) on ``dim``-D
    images, or ``None`` when the benchmark found nothing better than the defaults for it."""
    for preset in PRESETS.values():
        if preset.options["similarity"] == similarity and dim in preset.dims:
            return preset
    return None
