"""Benchmark of AdaCS (issue 5) on LV phantom pairs whose correspondence is broken in a sector.

Every test pair is the end-diastolic frame 0 of a phantom cine (the target, fixed) and a later
frame ``t`` (the source, moving), with a dropout, a noise burst or an intensity change in a
random sector of the target (fixed seeds). The truth is the phantom's analytic displacement
and strain. AdaCS is compared with the same displacement estimator without scoring (``S = 1``,
plain masked MSE: the paper's VoxelMorph row), in two modes:

* **network**: the AdaCS networks and the baseline network trained on other phantom cines
  (held-out speckle seeds and sectors), then one forward pass per test pair;
* **per pair**: a dense field (and a free score map) optimised for each pair alone.

In both modes the two displacement estimators take the same number of optimiser steps (AdaCS
spends extra steps on its scoring estimator). Measured per pair, then the median over pairs:
end-point error in the myocardium of the target (mm), Dice of the source's myocardium warped
onto the target against the target's, mean absolute error of the radial and circumferential
Green-Lagrange strain in the myocardium against the analytic strain, % of the grid with det J
<= 0, and the mean score in the myocardium inside the broken sector and outside it. Also the
training time per step of both networks in this run (medians) and their ratio.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch

from imse import metrics
from imse.adacs import (
    AdaCSAlternation,
    AdaCSConfig,
    AdaCSModel,
    AdaCSPairSettings,
    AdaCSSchedule,
    adacs_pair,
    minmax_normalize,
    register_frames,
    train_adacs,
)
from imse.data import warp_image
from imse.image import Image, from_tensor
from imse.phantom import CORRUPTIONS, SectorCorruption, lv_phantom_2d
from imse.strain import green_lagrange_strain, radial_circumferential_strain

SHAPE, SPACING_MM, FRAMES = (64, 64), 1.5, 8
RADII_MM = {"inner_radius_mm": 14.0, "outer_radius_mm": 24.0, "end_systolic_inner_radius_mm": 9.0}
TEST_PAIRS = 24  # 8 of each corruption kind
TRAINING_CINES = 12
NETWORK = AdaCSConfig(
    iterations=1600, displacement_warmup=400, scoring_warmup=200, displacement_learning_rate=1e-3,
    scoring_learning_rate=1e-3, batch_size=4, device="cpu", seed=0, command="Testing/bench/bench_adacs.py",
)  # fmt: skip
PER_PAIR = AdaCSPairSettings(iterations=300, displacement_warmup=100, scoring_warmup=50, device="cpu")
COLUMNS = ("epe_mm", "dice", "radial_strain_error", "circumferential_strain_error", "folding_percent", "score_broken", "score_elsewhere")
GLOBAL_COLUMNS = ("global_radial_error", "global_circumferential_error")


def corrupted_cine(seed: int, kind: str, rng: np.random.Generator):
    """A phantom cine with a ``kind`` corruption in frame 0, in a random sector."""
    strength = {"dropout": 1.0, "noise_burst": 0.3, "intensity_change": float(rng.uniform(1.4, 1.8))}[kind]
    corruption = SectorCorruption(frames=(0,), start_deg=float(rng.uniform(0, 360)), width_deg=float(rng.uniform(60, 90)), strength=strength)
    return lv_phantom_2d(shape=SHAPE, spacing_mm=SPACING_MM, frames=FRAMES, seed=seed, **RADII_MM, **{kind: corruption})


def test_cases() -> list[dict]:
    """The test pairs: kinds in turn, source frames 2, 3, 4 (end-systole), seeds 0 to 23."""
    rng = np.random.default_rng(5)
    cases = []
    for index in range(TEST_PAIRS):
        kind = CORRUPTIONS[index % len(CORRUPTIONS)]
        cases.append({"pair": index, "kind": kind, "t": 2 + (index // len(CORRUPTIONS)) % 3, "phantom": corrupted_cine(index, kind, rng)})
    return cases


def training_cines() -> list:
    """Phantom cines for the networks: other speckle seeds and sectors than the test pairs."""
    rng = np.random.default_rng(1005)
    return [corrupted_cine(1000 + i, CORRUPTIONS[i % len(CORRUPTIONS)], rng) for i in range(TRAINING_CINES)]


def evaluate(case: dict, displacement: torch.Tensor, score: torch.Tensor | None) -> dict[str, float]:
    """The columns for one pair: ``displacement`` ``[1, 2, H, W]`` mm on the target grid."""
    phantom, t = case["phantom"], case["t"]
    geometry, ring = phantom.geometry, phantom.myocardium_masks[0]
    field = from_tensor(displacement, geometry)
    truth = Image(np.moveaxis(phantom.displacements[t], 0, -1), geometry)
    warped_ring = warp_image(Image(phantom.myocardium_masks[t].astype(np.uint8), geometry), field, "nearest")
    radial, circumferential = radial_circumferential_strain(green_lagrange_strain(displacement.double(), geometry), geometry, phantom.centre_mm)
    true_radial, true_circumferential = (component[t] for component in phantom.analytic_strain())
    broken = phantom.corruption_masks[case["kind"]][0] & ring
    radial, circumferential = radial[0].numpy(), circumferential[0].numpy()
    row = {
        "epe_mm": metrics.endpoint_error(field, truth, ring)["mean"],
        "dice": metrics.dice(warped_ring.array, ring.astype(np.uint8), labels=[1])[1],
        "radial_strain_error": float(np.abs(radial - true_radial)[ring].mean()),
        "circumferential_strain_error": float(np.abs(circumferential - true_circumferential)[ring].mean()),
        "folding_percent": metrics.folding_percentage(field),
        "global_radial_error": float(abs(radial[ring].mean() - true_radial[ring].mean())),
        "global_circumferential_error": float(abs(circumferential[ring].mean() - true_circumferential[ring].mean())),
    }
    if score is not None:
        score = score[0, 0].numpy()
        row.update(score_broken=float(score[broken].mean()), score_elsewhere=float(score[ring & ~broken].mean()))
    return row


def train_networks(cines) -> tuple[dict, dict]:
    """The AdaCS networks and the baseline, whose displacement network takes as many steps as
    AdaCS's; and each training's wall time (s)."""
    frames, geometry = [cine.frames for cine in cines], cines[0].geometry
    baseline = AdaCSConfig(**{**vars(NETWORK), "scoring": False, "iterations": displacement_steps(NETWORK.schedule)})
    models, seconds = {}, {}
    for name, config in (("AdaCS", NETWORK), ("no scoring (MSE)", baseline)):
        training = train_adacs(frames, geometry, config)
        models[name], seconds[name] = training.model, training.summary["seconds"]
    return models, seconds


def step_seconds(cines, repeats: int = 25) -> dict[str, float]:
    """Median seconds of one training step, the three kinds interleaved in one loop so that both
    methods meet the same machine load: the baseline's step, AdaCS's displacement step (which
    also runs the scoring network forward) and its scoring step (which also runs the
    displacement network forward), on fresh networks and a batch of training pairs."""
    geometry = cines[0].geometry
    frames = minmax_normalize(torch.from_numpy(np.stack([cine.frames for cine in cines[: NETWORK.batch_size]])))
    source, target = frames[:, 1:2], frames[:, 0:1]  # [batch, 1, H, W]: frame 1 onto frame 0
    torch.manual_seed(NETWORK.seed)
    alternations = {}
    for name, scoring in (("AdaCS", True), ("no scoring (MSE)", False)):
        model = AdaCSModel(2, scoring)
        optimizers = [torch.optim.Adam(network.parameters(), lr=1e-3) if network else None for network in (model.displacement_network, model.scoring_network)]
        alternations[name] = AdaCSAlternation(model, AdaCSSchedule(2 * repeats + 2, 0, 0, scoring), NETWORK.objective, *optimizers)
    times = {"baseline": [], "displacement": [], "scoring": []}
    for repeat in range(repeats + 1):  # the first round warms up
        for key, name, step in (("baseline", "no scoring (MSE)", repeat), ("displacement", "AdaCS", 2 * repeat), ("scoring", "AdaCS", 2 * repeat + 1)):
            started = time.perf_counter()
            alternations[name].step(step, source, target, geometry)
            if repeat:
                times[key].append(time.perf_counter() - started)
    return {key: float(np.median(values)) for key, values in times.items()}


def displacement_steps(schedule: AdaCSSchedule) -> int:
    return sum(schedule.phase(step) == "displacement" for step in range(schedule.iterations))


def network_rows(cases, models) -> list[dict]:
    rows = []
    for case in cases:
        frames, geometry = case["phantom"].frames, case["phantom"].geometry
        for name, model in models.items():
            displacement, _, score = register_frames(model, frames[case["t"]], frames[0], geometry)
            rows.append({"mode": "network", "method": name, **_labels(case), **evaluate(case, displacement, score if model.scoring else None)})
    return rows


def per_pair_rows(cases) -> list[dict]:
    baseline = AdaCSPairSettings(**{**vars(PER_PAIR), "scoring": False, "iterations": displacement_steps(PER_PAIR.schedule)})
    rows = []
    for case in cases:
        frames, geometry = case["phantom"].frames, case["phantom"].geometry
        for name, settings in (("AdaCS", PER_PAIR), ("no scoring (MSE)", baseline)):
            result = adacs_pair(frames[case["t"]], frames[0], geometry, settings)
            rows.append({"mode": "per pair", "method": name, **_labels(case), **evaluate(case, result.displacement, result.score if settings.scoring else None)})
    return rows


def unregistered_rows(cases) -> list[dict]:
    return [{"mode": "-", "method": "no registration", **_labels(case), **evaluate(case, torch.zeros(1, 2, *SHAPE), None)} for case in cases]


def _labels(case: dict) -> dict:
    return {"pair": case["pair"], "kind": case["kind"], "source_frame": case["t"]}


def medians(rows: list[dict], column: str) -> float:
    values = [row[column] for row in rows if column in row]
    return float(np.median(values)) if values else float("nan")


def run(out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cases = test_cases()
    cines = training_cines()
    models, seconds = train_networks(cines)
    rows = unregistered_rows(cases) + network_rows(cases, models) + per_pair_rows(cases)
    with open(out / "pairs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["mode", "method", "pair", "kind", "source_frame", *COLUMNS, *GLOBAL_COLUMNS])
        writer.writeheader()
        writer.writerows(rows)

    methods = [("-", "no registration"), *[(mode, name) for mode in ("network", "per pair") for name in ("AdaCS", "no scoring (MSE)")]]
    lines = [
        f"# AdaCS benchmark: {len(cases)} LV phantom pairs with a broken sector in the target",
        "",
        f"{SHAPE[0]}x{SHAPE[1]} at {SPACING_MM} mm; source frames 2-4 of {FRAMES} (end-systole: 4); 8 pairs each of "
        "dropout (signal lost), noise burst (sd 0.3) and intensity change (gain 1.4-1.8) in a 60-90 degree sector. "
        f"Networks: {TRAINING_CINES} training cines (other seeds), {NETWORK.iterations} AdaCS steps, baseline with the "
        f"same {displacement_steps(NETWORK.schedule)} displacement steps. Per pair: {PER_PAIR.iterations} AdaCS steps, "
        f"baseline {displacement_steps(PER_PAIR.schedule)}. Medians over pairs; strain errors are mean |error| of the "
        "Green-Lagrange strain in the myocardium; scores are means in the myocardium.",
        "",
        "| mode | method | EPE (mm) | Dice | radial strain err | circ. strain err | % det J <= 0 | score in broken | score elsewhere |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, name in methods:
        selected = [row for row in rows if row["mode"] == mode and row["method"] == name]
        values = [medians(selected, column) for column in COLUMNS]
        lines.append(f"| {mode} | {name} | " + " | ".join(_format(v, column) for v, column in zip(values, COLUMNS)) + " |")
    lines += ["", "Pairs where AdaCS beats its baseline (same mode, same pair):", "", "| mode | EPE | Dice | radial | circ. | folding (<=) |", "|---|---|---|---|---|---|"]
    for mode in ("network", "per pair"):
        lines.append(f"| {mode} | " + " | ".join(_wins(rows, mode, column) for column in COLUMNS[:5]) + " |")
    lines += ["", "Median EPE (mm) by corruption kind:", "", "| mode | method | " + " | ".join(CORRUPTIONS) + " |", "|---|---|---|---|---|"]
    for mode, name in methods:
        selected = [row for row in rows if row["mode"] == mode and row["method"] == name]
        lines.append(f"| {mode} | {name} | " + " | ".join(f"{medians([r for r in selected if r['kind'] == kind], 'epe_mm'):.2f}" for kind in CORRUPTIONS) + " |")
    lines += ["", "Global strain (mean over the myocardium), median |error| against the analytic mean:", ""]
    lines += ["| mode | method | radial | circumferential |", "|---|---|---|---|"]
    for mode, name in methods:
        selected = [row for row in rows if row["mode"] == mode and row["method"] == name]
        lines.append(f"| {mode} | {name} | " + " | ".join(f"{medians(selected, column):.3f}" for column in GLOBAL_COLUMNS) + " |")
    step = step_seconds(cines)
    iteration = step["displacement"] + step["scoring"]
    lines += [
        "",
        f"## Training time per step (median of interleaved steps, CPU, {torch.get_num_threads()} threads, batch {NETWORK.batch_size} of {SHAPE[0]}x{SHAPE[1]})",
        "",
        "| baseline step (s) | AdaCS displacement step (s) | AdaCS scoring step (s) | AdaCS iteration: one of each (s) | iteration / baseline step |",
        "|---|---|---|---|---|",
        f"| {step['baseline']:.4f} | {step['displacement']:.4f} | {step['scoring']:.4f} | {iteration:.4f} | {iteration / step['baseline']:.2f} |",
        "",
        f"Whole trainings in this run: AdaCS {seconds['AdaCS']:.0f} s, baseline {seconds['no scoring (MSE)']:.0f} s "
        f"(ratio {seconds['AdaCS'] / seconds['no scoring (MSE)']:.2f}; wall times, sensitive to other load on the machine).",
        "",
        f"Benchmark wall time: {time.perf_counter() - started:.0f} s.",
    ]
    text = "\n".join(lines)
    (out / "results.md").write_text(text)
    return text


def _format(value: float, column: str) -> str:
    if np.isnan(value):
        return "-"
    return f"{value:.3f}" if column != "epe_mm" else f"{value:.2f}"


def _wins(rows: list[dict], mode: str, column: str) -> str:
    """``k/n``: pairs where AdaCS is better (lower error, higher Dice, folding not higher)."""
    by_pair = {}
    for row in rows:
        if row["mode"] == mode:
            by_pair.setdefault(row["pair"], {})[row["method"]] = row[column]
    better = 0
    for values in by_pair.values():
        ours, theirs = values["AdaCS"], values["no scoring (MSE)"]
        better += ours > theirs if column == "dice" else ours <= theirs if column == "folding_percent" else ours < theirs
    return f"{better}/{len(by_pair)}"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench-output/adacs")
    print(run(Path(parser.parse_args().out)))
