"""Registration networks against per-pair optimisation on held-out 2D pairs.

Pairs: ``--pairs`` T2-like (or ``--contrast``) -> T1 axial slices at 2 mm, evenly spread over the
central slab that neither the evaluator nor the networks were trained on, fixed seeds
(``2000 + index``: the first ones are the registration benchmark's "T2 -> T1" pairs), random
smooth deformations up to 8 mm. Rows: Initial, per-pair optimisation with MIND and with IMSE
(the shipped evaluator), and for each model given: one shot, and one shot refined by
``--refine-iterations`` steps of its training similarity (Adam), and a network taught by a preset
(``imse train-registration --teacher``) also refined as that preset registers, for the steps
the registration benchmark gives it. Columns: Dice of GM and WM (moving
labels warped by nearest neighbour), mean end-point error in the fixed brain (mm), % det J <= 0,
mean IMSE |E| of the warped image (the shipped evaluator; low |E| with a high end-point error
means the evaluator was fooled), median seconds. Means over pairs.

Run: ``python Testing/bench/bench_registration_network.py --model NAME [NAME ...] --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from imse import metrics
from imse.data import load_mni_atlas, make_pair, warp_image
from imse.evaluator import Evaluator
from imse.register import RegistrationSettings, register_pair
from imse.registration_network import load_registration_network, register_with_network
from imse.presets import PRESETS
from imse.train_evaluator import held_out_slab

from bench_registration import TAUGHT_REFINE_STEPS  # noqa: E402 (the script's folder is on the path)

COLUMNS = ("dice_gm", "dice_wm", "epe_mm", "folding_percent", "imse_error", "seconds")


def held_out_pairs(count: int, contrast: str, spacing_mm: float = 2.0) -> list:
    atlas = load_mni_atlas(spacing_mm)
    low, high = held_out_slab(atlas.t1.shape[0])
    planes = np.linspace(low, high - 1, count).round().astype(int)
    positions = [float(atlas.geometry.index_to_physical([0, 0, k])[2]) for k in planes]
    return [make_pair(2, "t1", contrast, spacing_mm, slice_mm=z, seed=2000 + i) for i, z in enumerate(positions)]


def score(pair, displacement, warped, evaluator, seconds: float) -> dict:
    dice = metrics.dice(warp_image(pair.moving_labels, displacement, "nearest"), pair.fixed_labels, labels=[2, 3])
    brain = pair.fixed_labels.array > 0
    return {
        "dice_gm": dice[2],
        "dice_wm": dice[3],
        "epe_mm": metrics.endpoint_error(displacement, pair.displacement, brain)["mean"],
        "folding_percent": metrics.folding_percentage(displacement, brain),
        "imse_error": evaluator.error_map(pair.fixed, warped).statistics["image"]["mean"],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="*", default=[], help="registration networks (names or paths)")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--contrast", default="t2")
    parser.add_argument("--refine-iterations", type=int, default=50)
    parser.add_argument("--skip-imse-optimisation", action="store_true")
    parser.add_argument("--out", default="bench-output/registration-network")
    args = parser.parse_args()
    torch.set_num_threads(1)
    evaluator = Evaluator.load(dim=2)
    pairs = held_out_pairs(args.pairs, args.contrast)
    methods = {"Initial": None, "MIND (optimisation)": "mind"}
    if not args.skip_imse_optimisation:
        methods["IMSE (optimisation)"] = "imse"
    networks = {name: load_registration_network(name) for name in args.model}
    card_names = [loaded.card.name for loaded in networks.values()]
    # Rows are labelled by model name, or by the name or path given when two models share a name
    # (a retrained network beside the shipped one), so that their results never pool.
    labels = {given: loaded.card.name if card_names.count(loaded.card.name) == 1 else given for given, loaded in networks.items()}
    rows: dict[str, list[dict]] = {}
    for pair in pairs:
        zero = pair.displacement.with_array(np.zeros_like(pair.displacement.array))
        rows.setdefault("Initial", []).append(score(pair, zero, pair.moving, evaluator, 0.0))
        for label, similarity in list(methods.items())[1:]:
            result = register_pair(pair.fixed, pair.moving, RegistrationSettings(similarity=similarity, device="cpu"), evaluator=evaluator)
            rows.setdefault(label, []).append(score(pair, result.displacement, result.warped, evaluator, result.seconds))
        for given, loaded in networks.items():
            teacher = loaded.card.training.get("teacher")
            refinements = [(0, None), (args.refine_iterations, None)]
            if teacher:  # also as its teacher registers, as the registration benchmark's row does
                refinements.append((TAUGHT_REFINE_STEPS, RegistrationSettings.from_options(PRESETS[teacher].options, device="cpu")))
            for refine, settings in refinements:
                started = time.perf_counter()
                result = register_with_network(pair.fixed, pair.moving, loaded, refine, settings, evaluator=evaluator, device="cpu")
                label = f"{labels[given]} ({loaded.card.training.get('similarity')} network)" + (f" + {refine} refinement steps" if refine else "")
                label += f" of the {teacher} preset" if settings is not None else ""
                rows.setdefault(label, []).append(score(pair, result.displacement, result.warped, evaluator, time.perf_counter() - started))
    summary = {
        label: {column: float(np.median([r[column] for r in results]) if column == "seconds" else np.mean([r[column] for r in results])) for column in COLUMNS}
        for label, results in rows.items()
    }
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU"
    lines = [
        f"{args.pairs} held-out {args.contrast.upper()}-like -> T1 pairs (2 mm axial slices, deformations up to 8 mm); {machine}",
        "",
        "| method | Dice GM | Dice WM | EPE mm | % det J <= 0 | IMSE mean abs(E) | seconds (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, values in summary.items():
        lines.append(
            f"| {label} | {values['dice_gm']:.3f} | {values['dice_wm']:.3f} | {values['epe_mm']:.2f} | {values['folding_percent']:.2f} "
            f"| {values['imse_error']:.4f} | {values['seconds']:.2f} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "registration_network.md").write_text("\n".join(lines) + "\n")
    (out / "registration_network.json").write_text(json.dumps({"summary": summary, "pairs": rows, "machine": machine}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
