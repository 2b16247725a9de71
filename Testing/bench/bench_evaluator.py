"""Benchmark of the IMSE evaluator (issue: the evaluator), on held-out MNI data.

Pairs are axial slices from the central slab that training held out, at the model's spacing:
the fixed image is the T1 (the evaluator's trained modality, channel 1) and the moving image
a contrast the evaluator never saw (T2-, PD- or CT-like), misaligned by a known translation or
a known random deformation. Measured:

1. mean |E| against the size of the misalignment (translations 0-8 mm, deformations of
   growing size): is it monotone?
2. Spearman rank correlation of mean |E|, MI and NCC with Dice (mean of GM and WM) over 60
   misaligned pairs;
3. the sharpness of the minimum: mean |E| at 0, 1, 2 and 4 mm shifts, for our training recipe
   and the paper's (when a paper-recipe model is given);
4. translation: NMAE, PSNR, SSIM of the translated image against the truth (the T1 in the
   source's layout), beside the untranslated, misaligned reference;
5. inference time of the light and paper networks at 160x192 (2D) and 96x112x96 (3D) on this
   machine, as medians, and their ratio.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from imse import metrics
from imse.data import load_mni_atlas, random_displacement, synthesize_contrast, warp_image
from imse.data.slicing import extract_slice
from imse.evaluator import Evaluator
from imse.image import Image
from imse.models import find_model, load_model
from imse.networks import build_network
from imse.train_evaluator import held_out_slab

UNSEEN_CONTRASTS = ("t2", "pd", "ct")
SHIFTS_MM = (0.0, 1.0, 2.0, 4.0, 6.0, 8.0)
DEFORMATIONS_MM = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)


def held_out_slices(spacing_mm: float, count: int = 5):
    """``count`` axial slices of the atlas (tissue maps) evenly inside the held-out slab."""
    atlas = load_mni_atlas(spacing_mm)
    low, high = held_out_slab(atlas.t1.shape[0])
    z_positions = [atlas.t1.geometry.index_to_physical([0, 0, k])[2] for k in np.linspace(low, high - 1, count).round().astype(int)]
    return [atlas.map(lambda image, z=z: extract_slice(image, "axial", float(z))) for z in z_positions]


def translation(reference: Image, shift_mm: float, angle: float) -> Image:
    """A constant displacement of ``shift_mm`` in the in-plane direction ``angle`` (radians)."""
    vector = shift_mm * np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)
    return Image(np.broadcast_to(vector, (*reference.shape, 2)).copy(), reference.geometry)


def misaligned_pair(slice_atlas, contrast: str, displacement: Image | None, seed: int) -> dict:
    """Fixed T1, moving ``contrast`` warped by ``displacement`` (None: aligned), and labels."""
    fixed = synthesize_contrast(slice_atlas, "t1", seed=seed)
    moving = synthesize_contrast(slice_atlas, contrast, seed=seed + 1)
    moving_labels = slice_atlas.labels
    if displacement is not None:
        moving = warp_image(moving, displacement, default_value=float(moving.array.min()))
        moving_labels = warp_image(slice_atlas.labels, displacement, "nearest")
    return {"fixed": fixed, "moving": moving, "fixed_labels": slice_atlas.labels, "moving_labels": moving_labels}


def scores(evaluator: Evaluator, pair: dict) -> dict[str, float]:
    region = (pair["fixed_labels"].array > 0) | (pair["moving_labels"].array > 0)
    dice = metrics.dice(pair["moving_labels"], pair["fixed_labels"], labels=[2, 3])
    error = evaluator.error_map(pair["fixed"], pair["moving"]).magnitude.array
    return {
        "imse": float(error[region].mean()),
        "dice": float(np.mean([dice[2], dice[3]])),
        "mi": metrics.mutual_information(pair["fixed"], pair["moving"], region),
        "ncc": metrics.normalized_cross_correlation(pair["fixed"], pair["moving"], region),
    }


def curves(evaluator: Evaluator, slices) -> dict[str, list[float]]:
    """Mean |E| per misalignment size, for translations and for deformations."""
    result = {"translation": [], "deformation": []}
    for shift in SHIFTS_MM:
        values = [
            scores(evaluator, misaligned_pair(atlas, contrast, translation(atlas.t1, shift, angle) if shift else None, seed))["imse"]
            for seed, atlas in enumerate(slices)
            for contrast in UNSEEN_CONTRASTS
            for angle in (0.6, 2.5)
        ]
        result["translation"].append(float(np.mean(values)))
    for size in DEFORMATIONS_MM:
        values = [
            scores(evaluator, misaligned_pair(atlas, contrast, random_displacement(atlas.t1, size, seed=seed) if size else None, seed))["imse"]
            for seed, atlas in enumerate(slices)
            for contrast in UNSEEN_CONTRASTS
        ]
        result["deformation"].append(float(np.mean(values)))
    return result


def correlations(evaluator: Evaluator, slices, pairs_per_slice_and_contrast: int = 4) -> tuple[dict[str, float], list[dict]]:
    """Spearman correlation of each score with Dice over misaligned pairs of random kind and size."""
    rng = np.random.default_rng(2024)
    rows = []
    for seed, atlas in enumerate(slices):
        for contrast in UNSEEN_CONTRASTS:
            for _ in range(pairs_per_slice_and_contrast):
                if rng.random() < 0.5:
                    displacement = translation(atlas.t1, rng.uniform(0.5, 8.0), rng.uniform(0, 2 * np.pi))
                else:
                    displacement = random_displacement(atlas.t1, rng.uniform(1.0, 10.0), seed=int(rng.integers(1 << 30)))
                rows.append({"contrast": contrast, **scores(evaluator, misaligned_pair(atlas, contrast, displacement, seed))})
    dice = [row["dice"] for row in rows]
    return {name: float(spearmanr([row[name] for row in rows], dice)[0]) for name in ("imse", "mi", "ncc")}, rows


def translation_quality(evaluator: Evaluator, slices) -> dict[str, dict[str, float]]:
    """Translate a deformed unseen contrast with the T1 as reference; compare with the T1 in the
    deformed layout, beside the untranslated (misaligned) reference."""
    values = {"translated": [], "reference (misaligned)": []}
    for seed, atlas in enumerate(slices):
        displacement = random_displacement(atlas.t1, 6.0, seed=100 + seed)
        truth = warp_image(synthesize_contrast(atlas, "t1", seed=seed, noise_std=0.0, bias_strength=0.0), displacement)
        reference = synthesize_contrast(atlas, "t1", seed=seed)
        for contrast in UNSEEN_CONTRASTS:
            source = warp_image(synthesize_contrast(atlas, contrast, seed=seed + 1), displacement, default_value=-1000.0 if contrast == "ct" else 0.0)
            translated = evaluator.translate(source, reference)
            for name, image in (("translated", translated), ("reference (misaligned)", reference)):
                values[name].append((metrics.nmae(image, truth), metrics.psnr(image, truth), metrics.ssim(image, truth)))
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


def run(out: Path, model: str = "mni-t1-light-2d", paper_recipe_model: str | None = "mni-t1-light-2d-paper-recipe") -> str:
    out.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(load_model(find_model(model)))
    slices = held_out_slices(evaluator.card.spacing_mm)
    lines = [f"# IMSE evaluator benchmark ({evaluator.card.name}, {evaluator.card.training.get('iterations')} iterations)", ""]

    ours = curves(evaluator, slices)
    lines += ["## Mean |E| against misalignment (held-out slices, T2/PD/CT-like against T1)", ""]
    lines += _table(["translation (mm)", *map(str, SHIFTS_MM)], [["mean abs(E)", *[f"{v:.4f}" for v in ours["translation"]]]])
    lines += [f"Monotone: {bool(np.all(np.diff(ours['translation']) > 0))}", ""]
    lines += _table(["deformation max (mm)", *map(str, DEFORMATIONS_MM)], [["mean abs(E)", *[f"{v:.4f}" for v in ours["deformation"]]]])
    lines += [f"Monotone: {bool(np.all(np.diff(ours['deformation']) > 0))}", ""]

    rho, rows = correlations(evaluator, slices)
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
        recipes.append(("paper", curves(paper, slices)))
    rows_sharp = []
    for name, values in recipes:
        at = dict(zip(SHIFTS_MM, values["translation"]))
        rows_sharp.append([name, f"{at[0.0]:.4f}", *[f"{at[s]:.4f} ({at[s] / at[0.0]:.2f}x)" for s in (1.0, 2.0, 4.0)]])
    lines += _table(["recipe", "0 mm", "1 mm", "2 mm", "4 mm"], rows_sharp)

    quality = translation_quality(evaluator, slices)
    lines += ["## Translation (unseen contrast -> T1, truth: the T1 in the source's layout)", ""]
    lines += _table(["image", "NMAE", "PSNR (dB)", "SSIM"], [[k, f"{v['nmae']:.4f}", f"{v['psnr_db']:.2f}", f"{v['ssim']:.4f}"] for k, v in quality.items()])

    timing = inference_times()
    lines += [f"## Inference time (median, CPU, {torch.get_num_threads()} threads)", ""]
    lines += _table(["input", "light (s)", "paper (s)", "light / paper"], [[r["input"], f"{r['light_s']:.4f}", f"{r['paper_s']:.3f}", f"{r['light_over_paper']:.3f}"] for r in timing])
    text = "\n".join(lines)
    (out / "results.md").write_text(text)
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(row) + " |" for row in rows], ""]
