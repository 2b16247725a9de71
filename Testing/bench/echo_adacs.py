"""AdaCS on the real echo cine (pydicom-data's apical four-chamber loop, issue 5): the shipped
model (trained on this loop with every frame paired to end-diastole, ED) registers the frames
after ED, and strain about a user-given LV centre is followed over the rest of the loop (about
two and a half cycles).

Two ways to the Lagrangian displacement from ED to frame ``t`` are compared: registering
frame ``t`` onto ED directly, and composing the frame-to-frame fields ``u(t-1 -> t)`` back to
ED (:func:`imse.strain.strain_curve`); composition accumulates every step's error (drift).

Writes ``echo.md`` (residual left by registration, score, peak strains, drift one cycle later)
and a figure: the ED and peak-contraction frames, their score maps, the displacement between
them, radial and circumferential strain maps, and the strain curves.

Reading the loop (frames 33.3 ms apart): the LV cavity is smallest at frames 4, 31, 59, 86
and 114 (mitral valve closed: end-systole) and starts to shrink after frames 23, 50, 77 and
104 (end-diastole), about 66 beats per minute; frame 0 is near end-systole, so ED is given
here. In this apical view the LV centre lies between the septum and the lateral wall, so
"radial" (away from the centre) runs across the walls there, and "circumferential" (about the
centre) runs along them: for the septal and lateral walls it is the longitudinal strain that
echocardiography reports (GLS). The myocardium is approximated by the bright tissue (Otsu
threshold of the smoothed ED frame) in an annulus around the centre, without the valve
sector; its near-field apex includes static clutter.

Regenerate the README figure: ``python Testing/bench/echo_adacs.py --figure
Resources/Screenshots/AdaCS-echo.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from imse.adacs import load_adacs, register_frames
from imse.data import load_echo_cine
from imse.geometry import Geometry
from imse.image import Image, resample_to_spacing, to_sitk
from imse.models import find_model
from imse.strain import accumulate_displacements, radial_circumferential_strain, strain_tensor

MODEL = "echo-a4c-adacs-2d-ed"
CENTRE_MM = (148.0, 85.0)  # the LV centre (mm, LPS), read off the ED frame by eye: the user's input
END_DIASTOLE = 50  # the user's reference frame (see the module notes)
ANNULUS_MM = (20.0, 40.0)  # the region searched for myocardium around the centre
VALVE_SECTOR_DEG = (40.0, 140.0)  # left out: the mitral valve, below the centre (angles from +x towards +y)
CYCLE_FRAMES = 27  # one beat, read off the cavity size (module notes); places the next ED


def echo_frames(spacing_mm: float) -> tuple[np.ndarray, Geometry, float]:
    """The built-in cine resampled to the model's spacing: frames ``[T, H, W]`` in [0, 1],
    their grid, and the time between frames (ms)."""
    cine = load_echo_cine()
    resampled = [resample_to_spacing(Image(frame, cine.geometry), spacing_mm) for frame in cine.frames]
    return np.stack([image.array for image in resampled]), resampled[0].geometry, cine.frame_time_ms


def register_pairs(model, frames: np.ndarray, geometry: Geometry, pairs: list[tuple[int, int]]) -> dict:
    """``(target, source)`` frame pairs: the displacements (mm, ``[1, 2, H, W]``, on the target
    grid), the score maps of the targets ``[H, W]``, and the mean squared residual over the
    sector (pixels above 0 in the target) before and after registration, ``NaN`` before for
    repeated frames (the loop repeats a frame now and then)."""
    displacements, scores, ratios = [], [], []
    for target, source in pairs:
        displacement, warped, score = register_frames(model, frames[source], frames[target], geometry)
        inside = frames[target] > 0
        before = np.square(frames[target] - frames[source])[inside].mean()
        after = np.square(frames[target] - warped[0, 0].numpy())[inside].mean()
        displacements.append(displacement)
        scores.append(score[0, 0].numpy())
        ratios.append(after / before if before > 0 else np.nan)
    return {"displacements": displacements, "scores": np.stack(scores), "ratios": np.array(ratios)}


def myocardium(reference: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Bright tissue around the LV centre: pixels of the annulus ``ANNULUS_MM`` outside the
    valve sector that lie above the Otsu threshold (computed there) of the reference frame
    smoothed by 2 mm."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in reference.shape], indexing="ij"), axis=-1)[..., ::-1]
    offsets = geometry.index_to_physical(index) - np.asarray(CENTRE_MM)
    radius = np.linalg.norm(offsets, axis=-1)
    angle = np.rad2deg(np.arctan2(offsets[..., 1], offsets[..., 0])) % 360.0
    valve = (angle >= VALVE_SECTOR_DEG[0]) & (angle <= VALVE_SECTOR_DEG[1])
    annulus = (radius >= ANNULUS_MM[0]) & (radius <= ANNULUS_MM[1]) & ~valve
    smoothed = sitk.SmoothingRecursiveGaussian(to_sitk(Image(reference, geometry)), 2.0)
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetMaskValue(1)
    otsu.Execute(smoothed, to_sitk(Image(annulus.astype(np.uint8), geometry)))
    return annulus & (sitk.GetArrayFromImage(smoothed) > otsu.GetThreshold())


def strain_maps(displacements: list[torch.Tensor], geometry: Geometry, mask: np.ndarray) -> dict:
    """Radial and circumferential Green-Lagrange strain maps ``[T, H, W]`` of Lagrangian
    displacements from the reference frame, and their means over ``mask`` (``[T]``)."""
    maps = {"radial": [], "circumferential": []}
    for displacement in displacements:
        components = radial_circumferential_strain(strain_tensor(displacement.double(), geometry), geometry, CENTRE_MM)
        for name, values in zip(maps, components):
            maps[name].append(values[0].numpy())
    maps = {name: np.stack(values) for name, values in maps.items()}
    return {"maps": maps, "curves": {name: values[:, mask].mean(1) for name, values in maps.items()}}


def run(out: Path, figure: Path | None = None, model: str = MODEL) -> str:
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_adacs(find_model(model, task="adacs"))
    spacing = loaded.network.spacing_mm[0]
    frames, geometry, frame_ms = echo_frames(spacing)
    later = range(END_DIASTOLE, len(frames))
    direct = register_pairs(loaded.network, frames, geometry, [(END_DIASTOLE, t) for t in later])
    stepwise = register_pairs(loaded.network, frames, geometry, [(t - 1, t) for t in range(1, len(frames))])
    mask = myocardium(frames[END_DIASTOLE], geometry)
    strains = {
        "direct": strain_maps(direct["displacements"], geometry, mask),
        "composed": strain_maps(accumulate_displacements(stepwise["displacements"][END_DIASTOLE:], geometry), geometry, mask),
    }
    curves = strains["direct"]["curves"]
    peak = int(np.argmax(curves["radial"][:CYCLE_FRAMES]))  # frames after ED
    again = CYCLE_FRAMES  # the next ED, one beat later
    training = loaded.card.training
    config = training["config"]
    composed = strains["composed"]["curves"]
    lines = [
        f"# AdaCS on the echo cine ({loaded.card.name})",
        "",
        f"Model: {config['pairing']} pairing, {training['iterations']} steps in {training['seconds']:.0f} s ({training['device']}), "
        f"trained on this same loop (unsupervised, no held-out frames). {len(frames)} frames of {frames.shape[1]}x{frames.shape[2]} "
        f"at {spacing} mm, {frame_ms:.1f} ms apart; ED = frame {END_DIASTOLE}, LV centre {CENTRE_MM} mm, myocardium: "
        f"{int(mask.sum())} pixels of bright tissue {ANNULUS_MM[0]:.0f}-{ANNULUS_MM[1]:.0f} mm from the centre.",
        "",
        "| | value |",
        "|---|---|",
        f"| residual after / before, frame t onto ED (median, {np.isfinite(direct['ratios'][1:]).sum()} frames) | {np.nanmedian(direct['ratios'][1:]):.3f} |",
        f"| residual after / before, frame t onto t-1 (median, {np.isfinite(stepwise['ratios']).sum()} pairs) | {np.nanmedian(stepwise['ratios']):.3f} |",
        f"| mean score of the ED frame: myocardium / elsewhere in the sector | {direct['scores'][0][mask].mean():.3f} / "
        f"{direct['scores'][0][~mask & (frames[END_DIASTOLE] > 0)].mean():.3f} |",
        f"| peak radial strain (direct), frame | {curves['radial'][peak]:.3f}, frame {END_DIASTOLE + peak} ({peak * frame_ms:.0f} ms after ED) |",
        f"| circumferential (along-wall) strain there: direct / composed | {curves['circumferential'][peak]:.3f} / {composed['circumferential'][peak]:.3f} |",
        f"| radial strain there, composed | {composed['radial'][peak]:.3f} |",
        f"| strongest circumferential (along-wall) shortening in the first beat, direct | {curves['circumferential'][:CYCLE_FRAMES].min():.3f}, "
        f"{int(np.argmin(curves['circumferential'][:CYCLE_FRAMES])) * frame_ms:.0f} ms after ED |",
        f"| strain at the next ED (frame {END_DIASTOLE + again}), direct: radial / circ. | {curves['radial'][again]:.3f} / {curves['circumferential'][again]:.3f} |",
        f"| strain at the next ED, composed (drift): radial / circ. | {composed['radial'][again]:.3f} / {composed['circumferential'][again]:.3f} |",
    ]
    text = "\n".join(lines)
    (out / "echo.md").write_text(text)
    scores = (direct["scores"][0], stepwise["scores"][END_DIASTOLE + peak])  # a pair's score map is its target's
    _figure(frames, geometry, direct["displacements"][peak], scores, strains, mask, peak, frame_ms, figure or out / "echo.png")
    return text


def _figure(frames, geometry, displacement, scores, strains, mask, peak, frame_ms, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = frames.shape[1:]
    (x0, y0), spacing = geometry.origin, geometry.spacing
    extent = (x0 - spacing[0] / 2, x0 + (width - 0.5) * spacing[0], y0 + (height - 0.5) * spacing[1], y0 - spacing[1] / 2)
    xs, ys = x0 + np.arange(width) * spacing[0], y0 + np.arange(height) * spacing[1]
    es = END_DIASTOLE + peak
    figure, axes = plt.subplots(2, 4, figsize=(17, 8.5))

    def show(axis, image, title, **style):
        shown = axis.imshow(image, extent=extent, interpolation="nearest", **style)
        axis.set_xlim(CENTRE_MM[0] - 60, CENTRE_MM[0] + 60)
        axis.set_ylim(CENTRE_MM[1] + 60, CENTRE_MM[1] - 60)  # apex up, as echo is shown
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("x (mm)", fontsize=8)
        axis.tick_params(labelsize=7)
        return shown

    def bar(shown, axis, label):
        figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02).set_label(label, fontsize=8)

    show(axes[0, 0], frames[END_DIASTOLE], f"frame {END_DIASTOLE}: end-diastole, centre and region", cmap="gray", vmin=0, vmax=0.8)
    axes[0, 0].contour(xs, ys, mask, levels=[0.5], colors="y", linewidths=0.6)
    axes[0, 0].plot(*CENTRE_MM, "r+", markersize=10)
    show(axes[0, 1], frames[es], f"frame {es}: peak radial strain", cmap="gray", vmin=0, vmax=0.8)
    for axis, t, score in ((axes[0, 2], END_DIASTOLE, scores[0]), (axes[0, 3], es, scores[1])):
        bar(show(axis, score, f"AdaCS score S of frame {t}", cmap="viridis", vmin=0, vmax=1), axis, "score (1: trusted)")

    displacement = displacement[0].numpy()
    axis = axes[1, 0]
    show(axis, frames[END_DIASTOLE], f"displacement, frame {END_DIASTOLE} -> {es}", cmap="gray", vmin=0, vmax=0.8)
    step = max(1, int(round(6.0 / spacing[0])))
    grid_x, grid_y = np.meshgrid(xs, ys)
    keep = (slice(None, None, step), slice(None, None, step))
    arrows = axis.quiver(
        grid_x[keep], grid_y[keep], displacement[0][keep], displacement[1][keep], np.linalg.norm(displacement, axis=0)[keep],
        cmap="autumn", angles="xy", scale_units="xy", scale=1.0, width=0.004,
    )  # fmt: skip
    bar(arrows, axis, "|u| (mm); arrows to scale")
    for axis, name in ((axes[1, 1], "radial"), (axes[1, 2], "circumferential")):
        show(axis, frames[END_DIASTOLE], f"{name} strain, frame {es} (direct)", cmap="gray", vmin=0, vmax=0.8)
        values = np.ma.masked_where(~mask, strains["direct"]["maps"][name][peak])
        bar(axis.imshow(values, extent=extent, cmap="RdBu_r", vmin=-0.4, vmax=0.4, interpolation="nearest"), axis, "Green-Lagrange strain")

    axis = axes[1, 3]
    seconds = np.arange(len(strains["direct"]["curves"]["radial"])) * frame_ms / 1000.0
    for (method, style), (name, colour) in ((m, n) for m in (("direct", "-"), ("composed", "--")) for n in (("radial", "C0"), ("circumferential", "C1"))):
        axis.plot(seconds, 100 * strains[method]["curves"][name], style, color=colour, label=f"{name}, {method}")
    for frames_after in range(0, len(seconds), CYCLE_FRAMES):
        axis.axvline(frames_after * frame_ms / 1000.0, color="grey", linestyle=":", linewidth=0.8)
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set_ylim(-40, 80)
    axis.set_xlabel(f"time after ED, frame {END_DIASTOLE} (s); dotted: later EDs", fontsize=8)
    axis.set_ylabel("mean strain in the region (%)", fontsize=8)
    axis.set_title("strain curves: onto ED directly vs composed", fontsize=10)
    axis.legend(fontsize=7, loc="upper left")
    axis.tick_params(labelsize=7)
    figure.suptitle("AdaCS on the apical four-chamber echo loop (circumferential about the LV centre = along the walls)", fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench-output/adacs")
    parser.add_argument("--figure", type=Path, help="where the figure goes (default: OUT/echo.png)")
    parser.add_argument("--model", default=MODEL, help="AdaCS model name or path (default: %(default)s)")
    arguments = parser.parse_args()
    print(run(Path(arguments.out), arguments.figure, arguments.model))
