"""Benchmark of per-pair registration (issue: the registration engine), laid out like the IMSE
paper's registration tables, on MNI pairs with a known deformation.

Pairs (fixed seeds; ``A -> B`` registers the moving image A onto the fixed image B):
T2-like -> T1, T1 -> T2-like and CT-like -> T1, built by :func:`imse.data.make_pair` (random
smooth deformations up to 8 mm, own bias field and noise per image). 2D pairs are axial slices
inside the central slab that the shipped evaluators never saw in training; 3D pairs are whole
volumes, registered by IMSE with the shipped 3D evaluator (trained on the same T1 outside that
slab; the pairs' contrasts and deformations are new to it).

Rows: Initial (no registration), our optimisation (Adam) with NCC, MI, MIND and IMSE (the
shipped evaluator), the extra row MIND + IMSE (their sum: the combined loss the issue allows
beside, never instead of, IMSE alone), MIND and IMSE with the discrete search
(:mod:`imse.discrete`) instead of Adam (MIND also with the fixed image's automatic foreground
mask, every other row registering without masks; both in 2D also on a 1.5 mm grid), IMSE with
the demons (:mod:`imse.demons`, driven by the evaluator's output; in 2D also on that grid, and
there with the evaluator averaged over flips, :class:`imse.networks.FlipAveraged`, and also
zoomed 2 times on the pairs' own grid, :class:`imse.networks.Zoomed`, with and without in-plane
rotations of +-60 degrees, :class:`imse.networks.RotationAveraged`, and with those flips and
turns shown one a demons step, :class:`imse.networks.OrientationCycled`; in 3D also with the 2D
evaluator slice by slice on a 2 mm grid, and flip-averaged and zoomed on the volumes' grid), IMSE
(network) with the installed 2D model trained with the IMSE loss and the one taught by the
``imse-2d`` preset (``imse train-registration --teacher imse-2d``), alone and refined by 24 steps
of that preset's demons, and the peers a user would
pick instead, when installed: elastix (itk-elastix, its default B-spline map with
AdvancedMattesMutualInformation) and ANTs SyN (antspyx, affine then
SyN, Mattes MI for both; it runs in its own environment, ``make ants``, and its seconds are the
registration alone, as ANTs timed it). The rows of the presets (:mod:`imse.presets`: MI with a CT
equalised, MIND's masked search, IMSE's best 2D and 3D rows) run them as ``imse register --preset``
does, in the dimensions they are recommended for; the other rows of ours, the engine's defaults
but what they change, with 3 levels of 150 Adam iterations in 2D and 2 of 100 in 3D.
Every method's result is a displacement in mm on the fixed grid (ITK convention) and is scored
identically: Dice of GM and WM after warping the moving labels (nearest neighbour), HD95 (mean
of GM and WM, mm), mean end-point error against the true field, % of det J <= 0 and mean
|grad u| (all three inside the fixed brain), the shipped evaluator's mean |E| after registration (in
the brain; a low |E| with a high EPE means the evaluator was fooled), and wall seconds (same
thread count for every method; one-off library loading excluded by a warm-up). Seconds are wall
time; CPU seconds (this process and its subprocesses, all their threads) tell the cost when
other jobs share the cores.

Run alone: ``python Testing/bench/bench_registration.py --out bench-output/registration``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from imse import metrics, peers
from imse.cli import AUTO_MASK
from imse.data import Pair, load_mni_atlas, make_pair, warp_image
from imse.demo import tissue_scores
from imse.evaluator import installed_evaluator, load_evaluator
from imse.foreground import foreground_mask
from imse.image import Image, foreground_window
from imse.models import list_models
from imse.presets import ENGINE_DEFAULTS, PRESET_OPTIONS, PRESETS
from imse.register import RegistrationSettings, register_pair
from imse.report import Panel, save_report
from imse.similarity import similarity_terms
from imse.train_evaluator import held_out_slab

#: Pair kinds: name -> (fixed contrast, moving contrast).
KINDS = {"T2 -> T1": ("t1", "t2"), "T1 -> T2": ("t2", "t1"), "CT -> T1": ("t1", "ct")}
#: Per dimension: voxel size (mm), pairs per kind, and the engine's pyramid and iterations.
SETUPS = {
    2: {"spacing_mm": 2.0, "pairs_per_kind": 7, "levels": 3, "iterations": 150},
    3: {"spacing_mm": 3.0, "pairs_per_kind": 2, "levels": 2, "iterations": 100},
}
#: IMSE's best 2D row before session 18: the demons with the evaluator flipped, turned and zoomed.
IMSE_TURNS_2D = {
    "similarity": "imse",
    "optimizer": "demons",
    "levels": 1,
    "grid_spacing": 2.0,
    "flip_average": True,
    "evaluator_rotation": 60.0,
    "evaluator_zoom": 2.0,
    "demons_iterations": 30,
    "demons_max_step": 1.0,
    "dims": (2,),
}
#: IMSE's best 3D row before session 18: the 2D evaluator slice by slice, flipped and zoomed.
IMSE_SLICEWISE_3D = {
    "similarity": "imse",
    "optimizer": "demons",
    "levels": 1,
    "flip_average": True,
    "evaluator_zoom": 2.0,
    "demons_max_step": 1.0,
    "model": "mni-t1-light-2d",
    "dims": (3,),
}
#: Our rows: name -> ``{"preset": NAME}`` (a preset of :mod:`imse.presets`, exactly as ``imse
#: register --preset NAME`` runs it, in the dimensions it is recommended for), or the ``imse
#: register`` options (argparse names, :data:`imse.presets.PRESET_OPTIONS`) that differ from the
#: engine's defaults and the benchmark's pyramid and iterations (:data:`SETUPS`), with optionally
#: ``dims`` (the dimensions the row runs in; default both). ``model``: the evaluator to use by
#: name (the 2D one maps volumes slice by slice); ``None``, the installed one of the pairs'
#: dimension. ``fixed_mask`` ``"auto"``: the fixed image's automatic foreground
#: (:func:`imse.foreground.foreground_mask`), which needs no ground truth.
#: IMSE's discrete search runs on the finest level alone: on the coarser ones the evaluator sees
#: images at 2 to 4 times its training spacing and leads the search astray (2D EPE with the
#: CPU-trained evaluator 5.20 mm with 3 levels, 3.36 with 1; with the GPU-fine-tuned one 3.06
#: with 2 levels, 2.77 with 1).
OURS = {
    "ncc": {"similarity": "ncc"},
    "mi": {"similarity": "mi"},
    "mi_equalized": {"preset": "mi"},
    "mind": {"similarity": "mind"},
    "imse": {"similarity": "imse"},
    "mind+imse": {"similarity": "mind+imse"},
    "mind_discrete": {"similarity": "mind", "optimizer": "discrete"},
    "mind_discrete_masked": {"preset": "mind-search"},
    "mind_discrete_fine": {"similarity": "mind", "optimizer": "discrete", "grid_spacing": 1.5, "dims": (2,)},
    "imse_discrete": {"similarity": "imse", "optimizer": "discrete", "levels": 1},
    "imse_discrete_fine": {"similarity": "imse", "optimizer": "discrete", "levels": 1, "grid_spacing": 1.5, "dims": (2,)},
    "imse_demons": {"similarity": "imse", "optimizer": "demons", "levels": 1},
    "imse_demons_fine": {"similarity": "imse", "optimizer": "demons", "levels": 1, "grid_spacing": 1.5, "dims": (2,)},
    "imse_demons_fine_flips": {"similarity": "imse", "optimizer": "demons", "levels": 1, "grid_spacing": 1.5, "flip_average": True, "dims": (2,)},
    "imse_demons_zoom_flips": {
        "similarity": "imse",
        "optimizer": "demons",
        "levels": 1,
        "grid_spacing": 2.0,
        "flip_average": True,
        "evaluator_zoom": 2.0,
        "demons_iterations": 30,
        "demons_max_step": 1.0,
        "dims": (2,),
    },
    "imse_demons_zoom_flips_rotations": IMSE_TURNS_2D,
    "imse_demons_zoom_flips_rotations_equalized": {**IMSE_TURNS_2D, "equalize_tissue": True},
    "imse_demons_cycled_equalized": {"preset": "imse-2d"},
    "imse_demons_slicewise_fine": {"similarity": "imse", "optimizer": "demons", "levels": 1, "grid_spacing": 2.0, "model": "mni-t1-light-2d", "dims": (3,)},
    "imse_demons_slicewise_zoom_flips": IMSE_SLICEWISE_3D,
    "imse_demons_slicewise_zoom_flips_equalized": {**IMSE_SLICEWISE_3D, "equalize_tissue": True},
    "imse_demons_slicewise_cycled_equalized": {"preset": "imse-3d"},
}
#: The preset rows: "mi_equalized" (``mi``) and "mind_discrete_masked" (``mind-search``) run, in
#: 3D, the engine's 3 levels of at most 150 iterations where the other 3D rows run 2 of 100.
#: The 2D "_fine" rows register the 2 mm 2D pairs on a 1.5 mm grid, where the 2D evaluator scores
#: them better (chosen on 21 other pairs: IMSE 2.60 mm at 2 mm, 2.33 at 1.5, 2.31 at 1.25, 2.44
#: at 1); MIND's row, on the same grid, shows what the finer grid gives the other similarity.
#: Not in 3D: IMSE's search takes over 2 CPU minutes a volume on the 3 mm grid, and a 2.25 mm
#: grid holds 2.4 times the voxels (one-off, session 10: 2.50/2.57/2.32 -> 2.34/2.44/2.32 mm on
#: the first volume of each kind, 564-723 s each on a shared machine); the demons gained nothing
#: there (one-off, session 11: 2.62 -> 2.65 mm on the 6 volumes, 14 -> 39 CPU s a volume), and
#: averaging the 3D evaluator over the in-plane flips gained little (2.62 -> 2.59 mm, 33 CPU s).
#: The 2D "_zoom_flips" row shows the flip-averaged evaluator the pairs zoomed 2 times, so that it
#: sees 1 mm voxels, while the demons run on the pairs' 2 mm grid (chosen on the 21 other pairs,
#: session 13, with flips: evaluator at 1.33 / 1.125 / 1 / 0.8 mm on the 2 mm grid 1.79 / 1.71 /
#: 1.69 / 1.74 mm, at 1.125 mm on the 1.5 mm grid 1.73; 30 demons steps 1.66, 40 and 60 1.65).
#: The 2D "_rotations" row averages that evaluator also over in-plane rotations by 0 and +-60
#: degrees (chosen on a rebuilt set of those 21 pairs, session 16, where the row without them
#: gave 1.614 mm: +-5 degrees 1.598, +-10 1.574, +-20 1.561, +-30 1.521, +-45 1.489, +-60 1.465;
#: with the flips, +-60 shows the evaluator six evenly spaced orientations; half-voxel shifts
#: instead of turns, the same interpolation, gained nothing: 1.312 / 1.221 mm against 1.299 /
#: 1.226 on the MR kinds; the transposes, quarter turns, gained nothing in sessions 11 and 13;
#: session 17, through the option itself: +-60 1.465 again, +-75 1.492, +-90 1.521).
#: The 2D "_equalized" row also equalises a CT-like image's tissue histogram (chosen on those 21
#: pairs, session 18, without the turns: CT-like 2.317 -> 1.848 mm; equalising the MR images' too,
#: which the option does not, gave 1.299 -> 1.298 on T2 -> T1 and lost on T1 -> T2, 1.226 -> 1.383);
#: the 3D "_equalized" row does the same for the slice-by-slice row (not chosen on other volumes).
#: The 2D "_cycled" row shows the evaluator those 12 flips and turns one a demons step, in turn,
#: instead of all 12 at every step, for 60 steps, and takes the mean of the field over the last 12
#: (chosen on those 21 pairs, session 19, all with the CT equalised: the 12-pass row 1.328 mm at
#: 21 CPU s a pair; cycled, 30 steps 1.419 (1.8 s), 90 steps 1.394; with the mean of the last
#: steps' fields, 30 steps and the last 12 gave 1.103 on T1 -> T2 alone (1.194 without the mean),
#: 40 and 12 1.337, 60 and 12 1.296 (3.4 s), 60 and 24 1.298, 90 and 24 1.323; shrinking the step
#: to a tenth or a quarter over the steps instead lost, 1.585 and 1.333 on T1 -> T2).
#: The 3D "_cycled" row (the imse-3d preset) does the same with the slice-by-slice row's 4 flips
#: and the volumes' slices across each of their 3 axes, one of each a step, over 24 steps, the
#: field averaged over the last 12 (6 other volumes, seeds 9000+, session 20: 2.011 mm at about 49
#: CPU s a volume, against 2.188 across the first axis alone; session 19's preset, the first axis,
#: 20 steps and the last 4: 2.187; the turns added to that cycle gained nothing on four of them;
#: 36 steps, or a zoom of 3 instead of 2, gained nothing on the first two, session 20).
#: Not in 3D: there the turns gained nothing at 3 times the time (one-off, session 16, the 2D
#: evaluator slice by slice, flips, zoom 2: 2.26 mm against 2.27, 520 CPU s a volume).
#: The 3D "_slicewise_fine" row drives the demons with the 2D evaluator slice by slice on a 2 mm
#: grid, 2/3 of the volumes' 3 mm (one-off runs, session 12, the session-12 2D evaluator: 2.61 mm
#: on the 3 mm grid, 2.47 on the 2 mm one; the 3D evaluator's demons 2.62, and 2.65 on 2.25 mm).
#: The 3D "_slicewise_zoom_flips" row shows that evaluator, averaged over its in-plane flips, the
#: volumes' 3 mm slices zoomed 2 times (1.5 mm pixels) on their own grid (one-off, session 13, on
#: the first T2-like and CT-like volumes: 2.27 and 2.36 mm, against 2.26 and 2.65 for the 2 mm row).
METHOD_NAMES = {
    "initial": "Initial",
    "ncc": "NCC",
    "mi": "MI",
    "mi_equalized": "MI, CT-like images' tissue histogram-equalised",
    "mind": "MIND",
    "imse": "IMSE (optimisation)",
    "mind+imse": "MIND + IMSE (combined, optimisation)",
    "mind_discrete": "MIND (discrete search)",
    "mind_discrete_masked": "MIND (discrete search, automatic fixed mask)",
    "mind_discrete_fine": "MIND (discrete search, on a 1.5 mm grid)",
    "imse_discrete": "IMSE (discrete search, finest level only)",
    "imse_discrete_fine": "IMSE (discrete search, finest level only, on a 1.5 mm grid)",
    "imse_demons": "IMSE (demons, finest level only)",
    "imse_demons_fine": "IMSE (demons, finest level only, on a 1.5 mm grid)",
    "imse_demons_fine_flips": "IMSE (demons, finest level only, on a 1.5 mm grid, evaluator averaged over flips)",
    "imse_demons_zoom_flips": "IMSE (demons, finest level only, on a 2 mm grid, evaluator averaged over flips and zoomed 2 times, 30 steps of up to a voxel)",
    "imse_demons_zoom_flips_rotations": "IMSE (demons, finest level only, on a 2 mm grid, evaluator averaged over flips and rotations of +-60 degrees and zoomed 2 times, 30 steps of up to a voxel)",
    "imse_demons_zoom_flips_rotations_equalized": "IMSE (the row with rotations of +-60 degrees, CT-like images' tissue histogram-equalised)",
    "imse_demons_cycled_equalized": "IMSE (the equalised row with rotations, its 12 orientations one a step, 60 steps, the field averaged over the last 12)",
    "imse_demons_slicewise_fine": "IMSE (demons, finest level only, on a 2 mm grid, the 2D evaluator slice by slice)",
    "imse_demons_slicewise_zoom_flips": "IMSE (demons, finest level only, the 2D evaluator slice by slice, averaged over flips and zoomed 2 times, steps of up to a voxel)",
    "imse_demons_slicewise_zoom_flips_equalized": "IMSE (the 2D evaluator slice by slice, flipped and zoomed, CT-like images' tissue histogram-equalised)",
    "imse_demons_slicewise_cycled_equalized": "IMSE (the equalised slice-by-slice row, slices across each of the 3 axes and the 4 flips one a step, 24 steps, the field averaged over the last 12)",
    "imse_network": "IMSE (network, one shot)",
    "imse_network_taught": "IMSE (network taught by the imse-2d preset's demons, one shot)",
    "imse_network_taught_refined": "IMSE (the taught network, refined by 24 steps of the imse-2d preset's demons)",
    "elastix": "elastix B-spline (MI)",
    "ants": "ANTs SyN (Mattes MI)",
    "truth": "True field (what a perfect registration reaches)",
}
#: The rows a full run pictures (a picture of every row is too wide to read): Initial, each
#: similarity's recommended preset, IMSE with Adam and its networks, and the peers. A run of
#: chosen rows (``--methods``) pictures them all.
PICTURED = (
    "initial", "mi_equalized", "mind_discrete_masked", "imse", "imse_demons_cycled_equalized", "imse_demons_slicewise_cycled_equalized",
    "imse_network", "imse_network_taught", "imse_network_taught_refined", "elastix", "ants",
)  # fmt: skip
COLUMNS = ("dice_gm", "dice_wm", "hd95_mm", "epe_mm", "folding_percent", "mean_grad", "imse_error", "seconds", "cpu_seconds")
ANTS_MISSING = "not installed (make ants builds its own environment: antspyx 0.6.3 pins numpy < 2.4 and scipy < 1.16)"

#: A method registers a pair's moving image onto its fixed image and returns (displacement
#: Image in mm on the fixed grid, ITK convention; seconds).
Method = Callable[[Pair], tuple[Image, float]]


def pairs(dim: int, pairs_per_kind: int) -> list[tuple[str, int, Pair]]:
    """The benchmark's pairs as (kind, index, pair): ``pairs_per_kind`` per kind, fixed seeds;
    2D slices evenly spread over the held-out slab of the atlas."""
    spacing = SETUPS[dim]["spacing_mm"]
    positions = [None] * pairs_per_kind
    if dim == 2:
        atlas = load_mni_atlas(spacing)
        low, high = held_out_slab(atlas.t1.shape[0])
        ks = np.linspace(low, high - 1, pairs_per_kind).round().astype(int)
        positions = [float(atlas.geometry.index_to_physical([0, 0, k])[2]) for k in ks]
    cases = []
    for kind_index, (kind, (fixed, moving)) in enumerate(KINDS.items()):
        for index, position in enumerate(positions):
            seed = 1000 * dim + 100 * kind_index + index
            cases.append((kind, index, make_pair(dim, fixed, moving, spacing, slice_mm=position, seed=seed)))
    return cases


def row_options(dim: int, row: dict) -> tuple[dict, tuple[int, ...]]:
    """A row of :data:`OURS` as every ``imse register`` option of
    :data:`imse.presets.PRESET_OPTIONS` (the benchmark's pyramid and iterations of ``dim`` where
    the row says nothing), and the dimensions it runs in; a row naming another option is
    refused."""
    if "preset" in row:
        preset = PRESETS[row["preset"]]
        return preset.options, preset.dims
    unknown = set(row) - set(PRESET_OPTIONS) - {"dims"}
    if unknown:
        raise ValueError(f"Unknown options {sorted(unknown)} in a row of OURS: use imse register's argparse names ({', '.join(PRESET_OPTIONS)})")
    setup = {"levels": SETUPS[dim]["levels"], "iterations": SETUPS[dim]["iterations"]}
    options = {**ENGINE_DEFAULTS, **setup, **{name: value for name, value in row.items() if name != "dims"}}
    return options, row.get("dims", (2, 3))


def t1_side(pair: Pair) -> str:
    """Which image of ``pair`` is the T1, the evaluator's trained modality: IMSE's reference."""
    return "fixed" if pair.fixed_contrast == "t1" else "moving"


def our_method(options: dict, evaluator) -> Method:
    """Our registration with ``options`` (every ``imse register`` option of
    :data:`imse.presets.PRESET_OPTIONS`, translated into the engine's settings as the command
    line does, :meth:`RegistrationSettings.from_options`; ``fixed_mask`` ``"auto"``: the fixed
    image's foreground, timed with the registration) and ``evaluator`` (for IMSE, else
    ``None``). IMSE puts the T1 image (the evaluator's trained modality) in the evaluator's
    reference channel."""

    def run(pair: Pair) -> tuple[Image, float]:
        settings = RegistrationSettings.from_options(options, t1_side(pair), device="cpu")
        started = time.perf_counter()
        fixed_mask = foreground_mask(pair.fixed) if options["fixed_mask"] == AUTO_MASK else None
        masking_seconds = time.perf_counter() - started
        result = register_pair(pair.fixed, pair.moving, settings, fixed_mask=fixed_mask, evaluator=evaluator)
        return result.displacement, result.seconds + masking_seconds

    return run


def elastix_method(threads: int) -> Method:
    def run(pair: Pair) -> tuple[Image, float]:
        result = peers.elastix(pair.fixed, pair.moving, "bspline", threads)
        return result.displacement, result.seconds

    return run


def ants_method(threads: int) -> Method:
    def run(pair: Pair) -> tuple[Image, float]:
        result = peers.ants_syn(pair.fixed, pair.moving, threads=threads)
        return result.displacement, result.seconds

    return run


#: The taught network's refinement: its teacher's demons for this many steps (the field averaged
#: over the last 12, as the preset does), as ``imse register --model NAME --preset imse-2d
#: --refine-iterations 24`` runs it.
TAUGHT_REFINE_STEPS = 24


def network_method(dim: int, teacher: str | None = None, evaluator=None) -> Method | str:
    """An "IMSE (network)" row: one-shot prediction (:mod:`imse.registration_network`) by the
    installed registration model of this dimension trained with the IMSE loss (``teacher``
    None) or taught by the preset ``teacher``, or the reason the row is empty. With an
    ``evaluator``, the result is refined by :data:`TAUGHT_REFINE_STEPS` steps of the teacher
    preset's optimisation, the T1 image as the evaluator's reference."""
    models = [
        card.name
        for _, card in list_models(task="registration", dim=dim)
        if card.training.get("similarity") == "imse" and card.training.get("teacher") == teacher
    ]
    if not models:
        return f"no {dim}D registration model " + (f"taught by the {teacher} preset" if teacher else "trained with the IMSE loss") + " installed"
    from imse.registration_network import register_with_network

    def run(pair: Pair) -> tuple[Image, float]:
        if evaluator is None:
            result = register_with_network(pair.fixed, pair.moving, models[0], device="cpu")
        else:
            settings = RegistrationSettings.from_options(PRESETS[teacher].options, t1_side(pair), device="cpu")
            result = register_with_network(pair.fixed, pair.moving, models[0], TAUGHT_REFINE_STEPS, settings, evaluator=evaluator, device="cpu")
        return result.displacement, result.seconds

    return run


def methods(dim: int, threads: int, evaluator) -> dict[str, Method | str]:
    """Every row's method (in :data:`METHOD_NAMES` order, without Initial and the true field),
    or the reason it has no figures; ``evaluator``: the installed one (in 3D, the 2D one when no
    3D evaluator is installed) or None."""
    rows: dict[str, Method | str] = {}
    named_evaluators = {}  # an evaluator named by rows (``model``), loaded once
    for name, row in OURS.items():
        options, dims = row_options(dim, row)
        if dim not in dims:
            rows[name] = f"{dim}D: not run (see OURS)"
        elif "imse" not in similarity_terms(options["similarity"]):
            rows[name] = our_method(options, None)
        elif options["model"] is None and evaluator is None:
            rows[name] = f"no {dim}D evaluator installed"
        else:
            model = options["model"]
            if model is not None and model not in named_evaluators:
                named_evaluators[model] = load_evaluator(model, dim)
            rows[name] = our_method(options, named_evaluators[model] if model else evaluator)
    rows["imse_network"] = network_method(dim)
    rows["imse_network_taught"] = network_method(dim, teacher="imse-2d")
    rows["imse_network_taught_refined"] = network_method(dim, "imse-2d", evaluator) if evaluator is not None else f"no {dim}D evaluator installed"
    rows["elastix"] = elastix_method(threads) if peers.elastix_available() else "not installed (pip install 'imse[bench]')"
    rows["ants"] = ants_method(threads) if peers.ants_available() else ANTS_MISSING
    return rows


def score(pair, displacement: Image, seconds: float, evaluator=None) -> dict[str, float]:
    """The benchmark's columns for one registration result (see the module docstring); with an
    ``evaluator``, also the mean IMSE |E| in the fixed brain between the fixed image and the
    moving image warped by ``displacement`` (the T1 as the evaluator's reference)."""
    brain = pair.fixed_labels.array > 0
    tissues = tissue_scores(warp_image(pair.moving_labels, displacement, "nearest"), pair.fixed_labels)
    imse_error = float("nan")
    if evaluator is not None:
        warped = warp_image(pair.moving, displacement, default_value=float(pair.moving.array.min()))
        imse_error = float(evaluator.error_map(pair.fixed, warped, t1_side(pair)).magnitude.array[brain].mean())
    return {
        "dice_gm": tissues["gm"]["dice"],
        "dice_wm": tissues["wm"]["dice"],
        "hd95_mm": float(np.mean([tissues["gm"]["hd95_mm"], tissues["wm"]["hd95_mm"]])),
        "epe_mm": metrics.endpoint_error(displacement, pair.displacement, brain)["mean"],
        "folding_percent": metrics.folding_percentage(displacement, brain),
        "mean_grad": metrics.mean_gradient_magnitude(displacement, brain),
        "imse_error": imse_error,
        "seconds": seconds,
    }


def run_dimension(
    dim: int, threads: int, out: Path, pairs_per_kind: int | None = None, only: tuple[str, ...] | None = None, log=print
) -> tuple[list[dict], dict[str, str]]:
    """Register every pair of ``dim`` with every installed method (or the methods named in
    ``only``) and save a picture of the first pair of each kind under ``out`` (of the methods
    in ``only``, else of :data:`PICTURED`). Returns one row per (pair, method), and the
    reasons of the rows that have no figures."""
    evaluator = installed_evaluator(dim, slicewise=True)
    rows_by_method = methods(dim, threads, evaluator)
    if only is not None:
        rows_by_method = {name: method for name, method in rows_by_method.items() if name in only}
    runnable = {name: method for name, method in rows_by_method.items() if callable(method)}
    cases = pairs(dim, pairs_per_kind or SETUPS[dim]["pairs_per_kind"])
    if "elastix" in runnable:  # warm-up, not timed: the first call loads ITK's libraries
        runnable["elastix"](cases[0][2])
    results, examples = [], {}
    for kind, index, pair in cases:
        zero = pair.displacement.with_array(np.zeros_like(pair.displacement.array))
        found = {"initial": {**score(pair, zero, 0.0, evaluator), "cpu_seconds": 0.0}}
        displacements = {"initial": zero}
        for name, method in runnable.items():
            cpu_started = cpu_time()
            displacement, seconds = method(pair)
            cpu_seconds = cpu_time() - cpu_started
            found[name] = {**score(pair, displacement, seconds, evaluator), "cpu_seconds": cpu_seconds}
            if only is not None or name in PICTURED:
                displacements[name] = displacement
        found["truth"] = {**score(pair, pair.displacement, 0.0, evaluator), "cpu_seconds": 0.0}
        if index == 0:
            examples[kind] = (pair, displacements)
        for name, values in found.items():
            results.append({"dim": dim, "kind": kind, "pair": index, "seed": pair.seed, "method": name, **values})
        log(f"{dim}D {kind} #{index}: " + ", ".join(f"{n} EPE {v['epe_mm']:.2f} mm Dice {v['dice_gm']:.3f}/{v['dice_wm']:.3f} ({v['seconds']:.1f} s)" for n, v in found.items()))
    picture(examples, out / f"examples_{dim}d.png")
    return results, {name: reason for name, reason in rows_by_method.items() if isinstance(reason, str)}


def cpu_time() -> float:
    """CPU seconds of this process and of its finished subprocesses (ANTs runs in one)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def picture(examples: dict[str, tuple[Pair, dict[str, Image]]], path: Path) -> Path:
    """For the first pair of each kind: the fixed image, then the moving image warped by each
    method (Initial: unregistered), each shown in its tissue window (:func:`foreground_window`,
    so a CT shows brain, not air); below, the true field's size and each method's end-point
    error inside the fixed brain (mm)."""
    panels = []
    for kind, (pair, displacements) in examples.items():
        brain = pair.fixed_labels.array > 0
        low, high = foreground_window(pair.moving)
        images = [Panel(f"{kind}: fixed", pair.fixed, "gray", *foreground_window(pair.fixed))]
        errors = [Panel("true |u| (mm)", _norm(pair.displacement, brain), "viridis", 0, 8, "mm")]
        for name, displacement in displacements.items():
            images.append(Panel(METHOD_NAMES[name], warp_image(pair.moving, displacement, default_value=float(pair.moving.array.min())), "gray", low, high))
            error = displacement.with_array(displacement.array - pair.displacement.array)
            errors.append(Panel("end-point error (mm)", _norm(error, brain), "magma", 0, 8, "mm"))
        panels += [images, errors]
    return save_report(panels, path)  # no title: save_report's layout would let it cover the panels' titles


def _norm(field: Image, inside: np.ndarray) -> Image:
    """|field| (mm) inside ``inside``, NaN (blank) elsewhere."""
    return Image(np.where(inside, np.linalg.norm(field.array, axis=-1), np.nan), field.geometry)


def summarise(rows: list[dict]) -> dict[tuple, dict[str, tuple[float, float]]]:
    """Mean and standard deviation of every column per (dim, kind, method), and over all kinds
    (kind ``all``)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dim"], row["kind"], row["method"]), []).append(row)
        groups.setdefault((row["dim"], "all", row["method"]), []).append(row)
    return {key: {c: (float(np.mean([r[c] for r in group])), float(np.std([r[c] for r in group]))) for c in COLUMNS} for key, group in groups.items()}


def markdown(summary: dict, missing: dict[int, dict[str, str]], counts: dict[tuple, int], machine: str, threads: int) -> str:
    lines = ["# Registration benchmark: MNI pairs with a known deformation", "", f"Machine: {machine}; {threads} thread(s) for every method. Wall seconds depend on other jobs sharing the cores; CPU seconds less so.", ""]
    for dim in sorted(missing):
        setup = SETUPS[dim]
        lines += [
            f"## {dim}D ({setup['spacing_mm']:g} mm; our engine: {setup['levels']} levels, at most {setup['iterations']} iterations per level, "
            f"default weights)",
            "",
            "Mean over pairs (standard deviation in brackets). Dice and HD95 on GM/WM labels; EPE, % det J <= 0, mean |grad u| and "
            "the shipped evaluator's mean |E| (fixed vs warped moving, the T1 as reference; '-' without an evaluator of this dimension) inside the fixed brain.",
            "",
        ]
        for kind in (*KINDS, "all"):
            n = counts.get((dim, kind), 0)
            lines += [f"### {kind} ({n} pairs)", "", "| Method | Dice GM | Dice WM | HD95 mm | EPE mm | % det J <= 0 | mean abs(grad u) | IMSE mean abs(E) | seconds | CPU seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
            for method, title in METHOD_NAMES.items():
                values = summary.get((dim, kind, method))
                if values is None:
                    reason = missing[dim].get(method, "not run")
                    lines.append(f"| {title} | {reason} |  |  |  |  |  |  |  |  |")
                    continue
                cells = [f"{values[c][0]:.3f} ({values[c][1]:.3f})" for c in ("dice_gm", "dice_wm")]
                cells += [f"{values['hd95_mm'][0]:.2f}", f"{values['epe_mm'][0]:.2f} ({values['epe_mm'][1]:.2f})"]
                error = values["imse_error"][0]
                cells += [f"{values['folding_percent'][0]:.3f}", f"{values['mean_grad'][0]:.3f}", "-" if np.isnan(error) else f"{error:.4f}"]
                cells += [f"{values['seconds'][0]:.1f}", f"{values['cpu_seconds'][0]:.1f}"]
                lines.append(f"| {title} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def run(out: Path, dims: tuple[int, ...] = (2, 3), pairs_per_kind: int | None = None, only: tuple[str, ...] | None = None) -> str:
    """Run the benchmark for ``dims`` (every method, or those named in ``only``, with Initial
    and the true field); write results.md, pairs.csv and summary.csv under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    # One thread for every method: elastix (itk-elastix 0.25.4) segfaults with more on these
    # pairs (InsightSoftwareConsortium/ITKElastix issues 160 and 295).
    torch.set_num_threads(1)
    threads = 1
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CUDA: {torch.cuda.is_available()}"
    rows, missing = [], {}
    for dim in dims:
        dim_rows, missing[dim] = run_dimension(dim, threads, out, pairs_per_kind, only)
        rows += dim_rows
        write_csv(out / "pairs.csv", rows)
    summary = summarise(rows)
    counts = {}
    for row in rows:
        if row["method"] == "initial":
            counts[(row["dim"], row["kind"])] = counts.get((row["dim"], row["kind"]), 0) + 1
            counts[(row["dim"], "all")] = counts.get((row["dim"], "all"), 0) + 1
    write_csv(out / "summary.csv", [{"dim": k[0], "kind": k[1], "method": k[2], **{f"{c}_mean": v[c][0] for c in COLUMNS}, **{f"{c}_sd": v[c][1] for c in COLUMNS}} for k, v in summary.items()])
    text = markdown(summary, missing, counts, machine, threads)
    (out / "results.md").write_text(text)
    return text


def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys) as a CSV file with a header."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-output/registration")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--pairs-per-kind", type=int, help="(default: 7 in 2D, 2 in 3D)")
    parser.add_argument("--methods", nargs="+", choices=[name for name in METHOD_NAMES if name not in ("initial", "truth")], help="only these rows (default: all)")
    args = parser.parse_args()
    started = time.perf_counter()
    print(run(Path(args.out), tuple(args.dims), args.pairs_per_kind, tuple(args.methods) if args.methods else None))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
