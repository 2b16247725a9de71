"""Benchmark of the IMSE evaluator (issue: the evaluator), on held-out MNI data.

Pairs are built from the central slab of the MNI atlas that training held out: 2D cases are
axial slices of the slab at 2 mm; 3D cases the whole volume at 3 mm, scored only inside the
slab (the network needs the context around it; it trained on the rest). Both are the shipped
evaluators' training spacings; the 2D evaluator also maps the 3D cases, slice by slice, for
comparison. The fixed image is the T1 (the evaluator's trained modality, channel 1) and the
moving image a contrast the evaluator never saw (T2-, PD- or CT-like), misaligned by a known
translation or a known random deformation. Measured:

1. mean |E| against the size of the misalignment (translations 0-8 mm, deformations of
   growing size): is it monotone?
2. Spearman rank correlation of mean |E|, MI and NCC with Dice (mean of GM and WM) over 60
   misaligned pairs;
3. the sharpness of the minimum: mean |E| at 0, 1, 2 and 4 mm shifts, for our training recipe
   and the paper's (when a paper-recipe model is given);
4. translation: NMAE, PSNR, SSIM of the translated image against the truth (the T1 in the
   source's layout), beside the untranslated, misaligned reference;
5. inference time of the light and paper networks at 160x192 (2D) and 96x112x96 (3D) on this
   machine, as medians, and their ratio; and the light network's max pooling at its first
   level, PyTorch's against ours (:func:`imse.networks.max_pool_by_two`), and their ratio.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from imse import metrics
from imse.data import BrainAtlas, load_mni_atlas, random_displacement, synthesize_contrast, warp_image
from imse.data.slicing import extract_slice
from imse.evaluator import Evaluator
from imse.image import Image
from imse.models import find_model, load_model
from imse.networks import build_network, max_pool_by_two
from imse.train_evaluator import held_out_slab

UNSEEN_CONTRASTS = ("t2", "pd", "ct")
SHIFTS_MM = (0.0, 1.0, 2.0, 4.0, 6.0, 8.0)
DEFORMATIONS_MM = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
CASE_SPACING_MM = {2: 2.0, 3: 3.0}  # the shipped evaluators' training spacings


@dataclass(frozen=True)
class Case:
    """An atlas (2D slice or 3D volume) and the voxels scored in it (``None``: all)."""

    atlas: BrainAtlas
    scored: np.ndarray | None = None


def held_out_cases(spacing_mm: float, dim: int, count: int = 5) -> list[Case]:
    """2D: ``count`` axial slices of the atlas evenly inside the held-out slab. 3D: the whole
    volume scored inside the slab, twice (the pairs' noise differs by case)."""
    atlas = load_mni_atlas(spacing_mm)
    low, high = held_out_slab(atlas.t1.shape[0])
    if dim == 3:
        slab = np.zeros(atlas.t1.shape, dtype=bool)
        slab[low:high] = True
        return [Case(atlas, slab)] * 2
    z_positions = [atlas.t1.geometry.index_to_physical([0, 0, k])[2] for k in np.linspace(low, high - 1, count).round().astype(int)]
    return [Case(atlas.map(lambda image, z=z: extract_slice(image, "axial", float(z)))) for z in z_positions]


def direction(angle: float, dim: int) -> np.ndarray:
    """A unit vector at ``angle`` (radians) in the first two axes; in 3D raised 30 degrees
    out of that plane, so that every axis moves."""
    if dim == 2:
        return np.array([np.cos(angle), np.sin(angle)])
    return np.array([np.cos(angle) * np.cos(np.pi / 6), np.sin(angle) * np.cos(np.pi / 6), np.sin(np.pi / 6)])


def translation(reference: Image, shift_mm: float, angle: float) -> Image:
    """A constant displacement of ``shift_mm`` along :func:`direction` ``(angle)``."""
    vector = (shift_mm * direction(angle, reference.dim)).astype(np.float32)
    return Image(np.broadcast_to(vector, (*reference.shape, reference.dim)).copy(), reference.geometry)


def misaligned_pair(case: Case, contrast: str, displacement: Image | None, seed: int) -> dict:
    """Fixed T1, moving ``contrast`` warped by ``displacement`` (None: aligned), and labels."""
    atlas = case.atlas
    fixed = synthesize_contrast(atlas, "t1", seed=seed)
    moving = synthesize_contrast(atlas, contrast, seed=seed + 1)
    moving_labels = atlas.labels
    if displacement is not None:
        moving = warp_image(moving, displacement, default_value=float(moving.array.min()))
        moving_labels = warp_image(atlas.labels, displacement, "nearest")
    return {"fixed": fixed, "moving": moving, "fixed_labels": atlas.labels, "moving_labels": moving_labels, "scored": case.scored}


def scores(evaluator: Evaluator, pair: dict) -> dict[str, float]:
    """Mean |E|, Dice (mean of GM and WM), MI and NCC over the brain in the scored voxels."""
    scored = pair["scored"] if pair["scored"] is not None else True
    region = ((pair["fixed_labels"].array > 0) | (pair["moving_labels"].array > 0)) & scored
    dice = metrics.dice(pair["moving_labels"].array * scored, pair["fixed_labels"].array * scored, labels=[2, 3])
    error = evaluator.error_map(pair["fixed"], pair["moving"]).magnitude.array
    return {
        "imse": float(error[region].mean()),
        "dice": float(np.mean([dice[2], dice[3]])),
        "mi": metrics.mutual_information(pair["fixed"], pair["moving"], region),
        "ncc": metrics.normalized_cross_correlation(pair["fixed"], pair["moving"], region),
    }


def curves(evaluator: Evaluator, cases) -> dict[str, list[float]]:
    """Mean |E| per misalignment size, for translations and for deformations."""
    result = {"translation": [], "deformation": []}
    for shift in SHIFTS_MM:
        values = [
            scores(evaluator, misaligned_pair(case, contrast, translation(case.atlas.t1, shift, angle) if shift else None, seed))["imse"]
            for seed, case in enumerate(cases)
            for contrast in UNSEEN_CONTRASTS
            for angle in (0.6, 2.5)
        ]
        result["translation"].append(float(np.mean(values)))
    for size in DEFORMATIONS_MM:
        values = [
            scores(evaluator, misaligned_pair(case, contrast, random_displacement(case.atlas.t1, size, seed=seed) if size else None, seed))["imse"]
            for seed, case in enumerate(cases)
            for contrast in UNSEEN_CONTRASTS
        ]
        result["deformation"].append(float(np.mean(values)))
    return result


def correlations(evaluator: Evaluator, cases, pairs: int = 60) -> tuple[dict[str, float], list[dict]]:
    """Spearman correlation of each score with Dice over ``pairs`` misaligned pairs of random
    kind and size, spread evenly over the cases and contrasts."""
    rng = np.random.default_rng(2024)
    rows = []
    for seed, case in enumerate(cases):
        for contrast in UNSEEN_CONTRASTS:
            for _ in range(pairs // (len(cases) * len(UNSEEN_CONTRASTS))):
                if rng.random() < 0.5:
                    displacement = translation(case.atlas.t1, rng.uniform(0.5, 8.0), rng.uniform(0, 2 * np.pi))
                else:
                    displacement = random_displacement(case.atlas.t1, rng.uniform(1.0, 10.0), seed=int(rng.integers(1 << 30)))
                rows.append({"contrast": contrast, **scores(evaluator, misaligned_pair(case, contrast, displacement, seed))})
    dice = [row["dice"] for row in rows]
    return {name: float(spearmanr([row[name] for row in rows], dice)[0]) for name in ("imse", "mi", "ncc")}, rows


def translation_quality(evaluator: Evaluator, cases) -> dict[str, dict[str, float]]:
    """Translate a deformed unseen contrast with the T1 as reference; compare with the T1 in the
    deformed layout, beside the untranslated (misaligned) reference."""
    values = {"translated": [], "reference (misaligned)": []}
    for seed, case in enumerate(cases):
        displacement = random_displacement(case.atlas.t1, 6.0, seed=100 + seed)
        truth = warp_image(synthesize_contrast(case.atlas, "t1", seed=seed, noise_std=0.0, bias_strength=0.0), displacement)
        reference = synthesize_contrast(case.atlas, "t1", seed=seed)
        for contrast in UNSEEN_CONTRASTS:
            source = warp_image(synthesize_contrast(case.atlas, contrast, seed=seed + 1), displacement, default_value=-1000.0 if contrast == "ct" else 0.0)
            translated = evaluator.translate(source, reference)
            for name, image in (("translated", translated), ("reference (misaligned)", reference)):
                scored = case.scored
                values[name].append((metrics.nmae(image, truth, scored), metrics.psnr(image, truth, scored), metrics.ssim(image, truth, scored)))
    return {name: dict(zip(("nmae", "psnr_db", "ssim"), np.mean(rows, axis=0).tolist())) for name, rows in values.items()}


def inference_times(repeats: int = 5) -> list[dict]:
    """Median seconds of one forward pass (no gradient) per network and input size on the CPU."""
    rows = []
    torch.manual_seed(0)
    for dim, shape in ((2, (1, 2, 160, 192)), (3, (1, 2, 96, 112, 96))):
        medians = {}
        for architecture in ("light", "paper"):
            network = build_network(architecture, dim).eval()
            x = torch.randn(shape)
            times = []
            with torch.no_grad():
                network(x)  # warm-up
                for _ in range(repeats if (dim, architecture) != (3, "paper") else 2):
                    started = time.perf_counter()
                    network(x)
                    times.append(time.perf_counter() - started)
            medians[architecture] = float(np.median(times))
        rows.append({"input": "x".join(map(str, shape[2:])), **{f"{k}_s": v for k, v in medians.items()}, "light_over_paper": medians["light"] / medians["paper"]})
    return rows


def pooling_times(repeats: int = 20) -> list[dict]:
    """Median seconds of the light evaluator's max pooling at its first level (16 channels of the
    inference inputs' size), PyTorch's (``F.max_pool2d/3d``) against ours
    (:func:`imse.networks.max_pool_by_two`), which must give the same tensor."""
    rows = []
    torch.manual_seed(0)
    for pytorch, shape in ((F.max_pool2d, (1, 16, 160, 192)), (F.max_pool3d, (1, 16, 96, 112, 96))):
        x = torch.randn(shape)
        if not torch.equal(pytorch(x, 2), max_pool_by_two(x)):
            raise AssertionError("max_pool_by_two differs from PyTorch's pooling")
        medians = {}
        for name, pool in (("pytorch", lambda: pytorch(x, 2)), ("ours", lambda: max_pool_by_two(x))):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                pool()
                times.append(time.perf_counter() - started)
            medians[name] = float(np.median(times))
        rows.append({"input": "x".join(map(str, shape[1:])), **{f"{k}_s": v for k, v in medians.items()}, "pytorch_over_ours": medians["pytorch"] / medians["ours"]})
    return rows


def run(
    out: Path,
    model: str = "mni-t1-light-2d",
    paper_recipe_model: str | None = "mni-t1-light-2d-paper-recipe",
    timings: bool = True,
    dim: int | None = None,
) -> str:
    """Every measurement above for ``model`` on ``dim``-dimensional cases (default: the model's
    dimension; a 2D model on 3D cases maps them slice by slice), the recipe comparison when a
    ``paper_recipe_model`` is given, and the network timings when ``timings``."""
    out.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(load_model(find_model(model)))
    dim = dim or evaluator.card.dim
    cases = held_out_cases(CASE_SPACING_MM[dim], dim)
    lines = [f"# IMSE evaluator benchmark ({evaluator.card.name}, {evaluator.card.training.get('iterations')} iterations, {dim}D cases)", ""]

    ours = curves(evaluator, cases)
    lines += ["## Mean |E| against misalignment (held-out cases, T2/PD/CT-like against T1)", ""]
    lines += _table(["translation (mm)", *map(str, SHIFTS_MM)], [["mean abs(E)", *[f"{v:.4f}" for v in ours["translation"]]]])
    lines += [f"Monotone: {bool(np.all(np.diff(ours['translation']) > 0))}", ""]
    lines += _table(["deformation max (mm)", *map(str, DEFORMATIONS_MM)], [["mean abs(E)", *[f"{v:.4f}" for v in ours["deformation"]]]])
    lines += [f"Monotone: {bool(np.all(np.diff(ours['deformation']) > 0))}", ""]

    rho, rows = correlations(evaluator, cases)
    with open(out / "correlation_pairs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines += [f"## Spearman correlation with Dice (GM, WM) over {len(rows)} misaligned pairs", ""]
    lines += _table(["score", "rho"], [["IMSE mean abs(E)", f"{rho['imse']:.3f}"], ["mutual information", f"{rho['mi']:.3f}"], ["NCC", f"{rho['ncc']:.3f}"]])

    lines += ["## Sharpness of the minimum: mean abs(E) at a shift / at alignment", ""]
    recipes = [("ours", ours)]
    if paper_recipe_model:
        paper = Evaluator(load_model(find_model(paper_recipe_model)))
        recipes.append(("paper", curves(paper, cases)))
    rows_sharp = []
    for name, values in recipes:
        at = dict(zip(SHIFTS_MM, values["translation"]))
        rows_sharp.append([name, f"{at[0.0]:.4f}", *[f"{at[s]:.4f} ({at[s] / at[0.0]:.2f}x)" for s in (1.0, 2.0, 4.0)]])
    lines += _table(["recipe", "0 mm", "1 mm", "2 mm", "4 mm"], rows_sharp)

    quality = translation_quality(evaluator, cases)
    lines += ["## Translation (unseen contrast -> T1, truth: the T1 in the source's layout)", ""]
    lines += _table(["image", "NMAE", "PSNR (dB)", "SSIM"], [[k, f"{v['nmae']:.4f}", f"{v['psnr_db']:.2f}", f"{v['ssim']:.4f}"] for k, v in quality.items()])

    if timings:
        timing = inference_times()
        lines += [f"## Inference time (median, CPU, {torch.get_num_threads()} threads)", ""]
        lines += _table(["input", "light (s)", "paper (s)", "light / paper"], [[r["input"], f"{r['light_s']:.4f}", f"{r['paper_s']:.3f}", f"{r['light_over_paper']:.3f}"] for r in timing])
        pooling = pooling_times()
        lines += [f"## Max pooling at the light evaluator's first level (median, CPU, {torch.get_num_threads()} threads)", ""]
        lines += _table(
            ["input (C x spatial)", "PyTorch (ms)", "ours (ms)", "PyTorch / ours"],
            [[r["input"], f"{1000 * r['pytorch_s']:.2f}", f"{1000 * r['ours_s']:.2f}", f"{r['pytorch_over_ours']:.1f}"] for r in pooling],
        )
    text = "\n".join(lines)
    (out / "results.md").write_text(text)
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(row) + " |" for row in rows], ""]
