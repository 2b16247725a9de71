"""Benchmark of local guidance (:mod:`imse.guidance`): does each similarity's voxel-wise cost
point the voxels of a misaligned pair towards their match? It explains the registration
benchmark's IMSE rows: an evaluator can rank whole alignments well and still be a poor loss.

Pairs: the registration benchmark's (:func:`bench_registration.pairs`: T2-like -> T1, T1 ->
T2-like, CT-like -> T1 with known smooth deformations up to 8 mm; 2D slices from the
evaluators' held-out slab at 2 mm, 3D volumes at 3 mm). Candidate shifts: 5 x 5 in 2D, 3 x 3 x 3
in 3D, one voxel apart; costs smoothed by a Gaussian of 2 voxels; scores inside the fixed brain.
Measures: IMSE with each installed evaluator of the pairs' dimension (the T1 as reference),
MIND-SSC (the engine's multi-modal default) and LNCC (local correlation, squared: blind to the
sign of the local intensity relation, so it also follows locally monotone multi-modal pairs).

Run alone: ``python Testing/bench/bench_guidance.py --out bench-output/guidance``.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from bench_registration import KINDS, SETUPS, pairs, write_csv
from imse.evaluator import Evaluator
from imse.guidance import Guidance, local_guidance
from imse.models import list_models
from imse.similarity import build_similarity

#: Candidate shifts per axis on each side (in voxels of the pairs' grid), per dimension.
RADIUS = {2: 2, 3: 1}
SCORES = ("sharpness", "cosine", "moved", "gain_mm")


def measures(dim: int) -> dict[str, object]:
    """Name -> a function ``reference -> voxel-wise cost module`` for ``dim``-D pairs."""
    found = {"MIND-SSC": lambda reference: build_similarity("mind", reduction="voxel")}
    for path, card in list_models(task="evaluator", dim=dim):
        network = Evaluator.load(path, dim=dim).network
        found[f"IMSE ({card.name})"] = lambda reference, network=network: build_similarity("imse", network=network, reference=reference, reduction="voxel")
    found["LNCC"] = lambda reference: build_similarity("lncc", reduction="voxel")
    return found


def run_dimension(dim: int, log=print) -> list[dict]:
    """One row per (pair, measure) with the :class:`~imse.guidance.Guidance` scores."""
    rows = []
    costs = measures(dim)
    for kind, index, pair in pairs(dim, SETUPS[dim]["pairs_per_kind"]):
        reference = "fixed" if pair.fixed_contrast == "t1" else "moving"
        brain = pair.fixed_labels.array > 0
        for name, make_cost in costs.items():
            scores: Guidance = local_guidance(make_cost(reference), pair.fixed, pair.moving, pair.displacement, brain, radius=RADIUS[dim])
            rows.append({"dim": dim, "kind": kind, "pair": index, "measure": name, **scores.as_dict()})
        log(f"{dim}D {kind} #{index}: " + ", ".join(f"{r['measure']} gain {r['gain_mm']:+.2f} mm cos {r['cosine']:.2f}" for r in rows[-len(costs):]))
    return rows


def markdown(rows: list[dict], machine: str) -> str:
    lines = [
        "# Local guidance: does each voxel's cheapest shift point to its match?",
        "",
        f"Machine: {machine}. Registration benchmark pairs; scores inside the fixed brain, means over pairs.",
        "Sharpness: share of voxels whose cheapest shift is zero at the true alignment. From no registration: cosine between "
        "each moving voxel's cheapest shift and its true displacement, share of voxels that move, and the gain |u| - |u - s| "
        "(mm; positive: nearer the match).",
        "",
    ]
    for dim in sorted({row["dim"] for row in rows}):
        names = list(dict.fromkeys(row["measure"] for row in rows if row["dim"] == dim))
        lines += [f"## {dim}D", "", "| Measure | pairs | sharpness | cosine | moved | gain mm | gain mm per kind (" + ", ".join(KINDS) + ") |", "|---|---|---|---|---|---|---|"]
        for name in names:
            chosen = [row for row in rows if row["dim"] == dim and row["measure"] == name]
            means = [float(np.mean([row[score] for row in chosen])) for score in SCORES]
            per_kind = [float(np.mean([row["gain_mm"] for row in chosen if row["kind"] == kind])) for kind in KINDS]
            lines.append(f"| {name} | {len(chosen)} | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[3]:+.2f} | " + " / ".join(f"{g:+.2f}" for g in per_kind) + " |")
        lines.append("")
    return "\n".join(lines)


def run(out: Path, dims: tuple[int, ...] = (2, 3)) -> str:
    """Run for ``dims``; write results.md and pairs.csv under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    machine = f"{platform.processor() or platform.machine()}, 1 torch thread, CUDA: {torch.cuda.is_available()}"
    rows = []
    for dim in dims:
        rows += run_dimension(dim)
    write_csv(out / "pairs.csv", rows)
    text = markdown(rows, machine)
    (out / "results.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-output/guidance")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args()
    print(run(Path(args.out), tuple(args.dims)))


if __name__ == "__main__":
    main()
