"""``imse demo``: the main job on built-in data, with every output written to one folder.

A synthetic T2-like image is deformed by a known random field and paired with the MNI T1, in
2D (an axial slice) and 3D. For each pair the demo writes the images, the label maps and the
true displacement (mm), registers the pair, and measures Dice and HD95 per tissue and the
end-point error before registration, after it, and with the true field (what a perfect
registration would reach); it adds IMSE error maps before and after when an evaluator is
installed, and saves a report picture.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import metrics
from .data import LABELS, make_pair, warp_image
from .evaluator import installed_evaluator
from .image import Image, write_image
from .register import RegistrationResult, RegistrationSettings, register_pair
from .report import Panel, save_report
from .transforms import write_displacement_transform



def tissue_scores(moving_labels: Image, fixed_labels: Image) -> dict[str, dict[str, float]]:
    """Dice and HD95 (mm) per tissue between two label maps on one grid."""
    dice = metrics.dice(moving_labels, fixed_labels, labels=list(LABELS.values()))
    return {
        name: {
            "dice": dice[value],
            "hd95_mm": metrics.hausdorff_distance_95(
                moving_labels.with_array(moving_labels.array == value), fixed_labels.with_array(fixed_labels.array == value)
            ),
        }
        for name, value in LABELS.items()
    }


def _score_displacement(pair, displacement: Image) -> dict:
    """Tissue overlap, end-point error against the truth (brain, mm) and regularity."""
    brain = pair.fixed_labels.array > 0
    return {
        "tissues": tissue_scores(warp_image(pair.moving_labels, displacement, "nearest"), pair.fixed_labels),
        "endpoint_error_mm": metrics.endpoint_error(displacement, pair.displacement, brain),
        "folding_percent": metrics.folding_percentage(displacement),
    }


def demo_settings(similarity: str) -> RegistrationSettings:
    """How the demo registers its 2D pair with ``similarity`` (the 3D pair is not registered):
    MIND with the engine's defaults (Adam, 3 levels); IMSE as it did best on the registration
    benchmark, the demons on the pair's grid and finest level only, 30 steps of at most a voxel,
    driven by the evaluator averaged over flips and in-plane rotations of +-60 degrees and shown
    the images zoomed 2 times (the 2D evaluator scores a 2 mm pair better magnified; README,
    "Registration benchmark")."""
    if similarity == "imse":
        options = {"flip_average": True, "rotation": 60.0, "zoom": 2.0}
        return RegistrationSettings(similarity="imse", similarity_options=options, optimizer="demons", levels=1, demons_iterations=30, demons_max_step_voxels=1.0)
    return RegistrationSettings(similarity=similarity)


def _register(pair, similarity: str, evaluator, folder: Path) -> tuple[dict, RegistrationResult]:
    """Register the pair with ``similarity`` (:func:`demo_settings`), write its outputs, and score them."""
    result = register_pair(pair.fixed, pair.moving, demo_settings(similarity), evaluator=evaluator)
    write_image(result.warped, folder / f"warped_{similarity}.nii.gz")
    write_image(result.displacement, folder / f"displacement_{similarity}_mm.nii.gz")
    write_displacement_transform(result.displacement, folder / f"transform_{similarity}.h5")
    write_image(result.jacobian_determinant, folder / f"jacobian_determinant_{similarity}.nii.gz")
    return {**_score_displacement(pair, result.displacement), "seconds": round(result.seconds, 1)}, result


def _pair_outputs(pair, folder: Path, similarities: list[str], evaluator) -> dict:
    """Write one pair's files, registrations and picture; return its measurements."""
    files = {
        "fixed": pair.fixed,
        "moving": pair.moving,
        "fixed_labels": pair.fixed_labels,
        "moving_labels": pair.moving_labels,
        "true_displacement_mm": pair.displacement,
    }
    for name, image in files.items():
        write_image(image, folder / f"{name}.nii.gz")
    zero = pair.displacement.with_array(np.zeros_like(pair.displacement.array))
    stages = {"before": _score_displacement(pair, zero)}
    results = {}
    for similarity in similarities:
        stages[f"registered ({similarity})"], results[similarity] = _register(pair, similarity, evaluator, folder)
    stages["with the true field"] = _score_displacement(pair, pair.displacement)
    summary = {"stages": stages, "max_displacement_mm": float(pair.max_displacement_mm)}

    magnitude = pair.displacement.with_array(np.linalg.norm(pair.displacement.array, axis=-1))
    top = float(magnitude.array.max())
    rows = [
        [
            Panel("fixed: MNI T1", pair.fixed),
            Panel(f"moving: {pair.moving_contrast.upper()}-like, deformed", pair.moving),
            Panel("true |u| (mm)", magnitude, cmap="viridis", vmin=0, vmax=top, colorbar="mm"),
        ]
    ]
    for name, result in results.items():  # one row per registration
        found = result.displacement.with_array(np.linalg.norm(result.displacement.array, axis=-1))
        rows.append(
            [
                Panel(f"moving registered ({name})", result.warped),
                Panel(f"registered |u| (mm, {name})", found, cmap="viridis", vmin=0, vmax=top, colorbar="mm"),
                Panel(f"registered det J ({name})", result.jacobian_determinant, cmap="RdBu_r", vmin=0.5, vmax=1.5, colorbar="det J"),
            ]
        )
    if evaluator is not None:  # the error maps: before, and after each registration (the true field's when none ran)
        before = evaluator.error_map(pair.fixed, pair.moving)
        write_image(before.magnitude, folder / "error_map_before.nii.gz")
        summary["imse_mean_error"] = {"before": before.statistics["image"]["mean"]}
        error_top = max(float(np.percentile(before.magnitude.array, 99)), 1e-3)
        rows[0].append(Panel("IMSE |E| before", before.magnitude, cmap="inferno", vmin=0, vmax=error_top, colorbar="|E|"))
        if results:
            afters = [(f"after {name}", result.warped, row) for (name, result), row in zip(results.items(), rows[1:])]
        else:
            afters = [("with the true field", warp_image(pair.moving, pair.displacement), rows[0])]
        for stage, warped, row in afters:
            after = evaluator.error_map(pair.fixed, warped)
            write_image(after.magnitude, folder / f"error_map_{stage.replace(' ', '_')}.nii.gz")
            summary["imse_mean_error"][stage] = after.statistics["image"]["mean"]
            row.append(Panel(f"IMSE |E| {stage}", after.magnitude, cmap="inferno", vmin=0, vmax=error_top, colorbar="|E|"))
    summary["report"] = str(save_report(rows, folder / "report.png", title=f"{pair.fixed.dim}D pair, seed {pair.seed}"))
    return summary


def run_demo(out: Path, seed: int = 0) -> dict:
    """Build the 2D and 3D pairs, write everything under ``out`` and print a summary. The 2D
    pair is registered with MIND and, when a 2D evaluator is installed, with IMSE. The 3D pair
    is written with its truth and error maps but not registered here (run ``imse register`` on
    the files): with MIND it takes about half a minute on a 2-core CPU, and IMSE's demons, in
    about 20 s, move it little (2.73 -> 2.59 mm, Dice unchanged; session 11), or, driven by the
    2D evaluator slice by slice on a 2 mm grid, to 2.33 mm in 46 s (session 12)."""
    started = time.perf_counter()
    summary = {}
    for dim in (2, 3):
        evaluator = installed_evaluator(dim)
        similarities = (["imse"] if dim == 2 and evaluator is not None else []) + ([] if dim == 3 else ["mind"])
        pair = make_pair(dim=dim, fixed_contrast="t1", moving_contrast="t2", seed=seed)
        summary[f"{dim}d"] = _pair_outputs(pair, out / f"{dim}d", similarities, evaluator)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict, out: Path) -> None:
    for key in ("2d", "3d"):
        result = summary[key]
        print(f"{key.upper()} pair (T2-like moving onto the MNI T1, known deformation up to {result['max_displacement_mm']:g} mm):")
        for stage, values in result["stages"].items():
            tissues = ", ".join(f"{name} Dice {v['dice']:.3f} HD95 {v['hd95_mm']:.1f} mm" for name, v in values["tissues"].items())
            timing = f", {values['seconds']} s" if "seconds" in values else ""
            print(f"  {stage:>24}: {tissues}; end-point error {values['endpoint_error_mm']['mean']:.2f} mm{timing}")
        if "imse_mean_error" in result:
            errors = ", ".join(f"{value:.4f} {stage}" for stage, value in result["imse_mean_error"].items())
            print(f"  IMSE mean |E|: {errors}")
        print(f"  report picture: {result['report']}")
    print(f"All outputs (images, labels, displacements and transforms, Jacobians, error maps, metrics.json) are in {out.resolve()} ({summary['seconds']} s).")
