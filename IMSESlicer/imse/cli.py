"""The ``imse`` command: thin subcommands over the Python API.

Every subcommand reports bad input as one line ``imse: error: ...`` on stderr and exits with
status 2, leaving no partial output behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from tqdm import tqdm

from . import metrics
from .device import resolve_device
from .errors import ImageError
from .networks import ARCHITECTURES
from .presets import PRESETS
from .register import OPTIMIZERS, RegistrationSettings
from .regularization import REGULARIZERS
from .similarity import ORIENTATIONS, RESIDUAL_SIMILARITIES, SIMILARITIES, SLICE_AXES, VOXEL_SIMILARITIES
from .train_evaluator import RECIPES, EvaluatorTrainingConfig

#: The similarities on offer: each of the library's, and MIND plus the IMSE evaluator.
SIMILARITY_NAMES = sorted(SIMILARITIES) + ["mind+imse"]
OUT_OF_MEMORY_STATUS = 3  # exit status when CUDA runs out of memory (the Slicer job runner then retries on the CPU)


def _info(args: argparse.Namespace) -> None:
    from .image import read_image

    image = read_image(args.image, dtype=None)
    geometry = image.geometry
    values = image.array
    components = f", {values.shape[-1]} components" if image.is_vector else ""
    print(f"{args.image}: {image.dim}D, size {image.shape[::-1]} (x, y[, z]){components}, type {values.dtype}")
    print(f"  spacing (mm): {tuple(round(v, 4) for v in geometry.spacing)}")
    print(f"  origin (mm, LPS): {tuple(round(v, 3) for v in geometry.origin)}")
    print(f"  direction: {np.round(geometry.direction_matrix, 4).tolist()}")
    print(f"  intensity: min {values.min():.4g}, max {values.max():.4g}, mean {values.mean():.4g}")


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), seed=args.seed)


def _train_evaluator(args: argparse.Namespace) -> None:
    from .train_evaluator import train_evaluator

    config = EvaluatorTrainingConfig(
        out=Path(args.out),
        name=args.name,
        dim=args.dim,
        architecture=args.architecture,
        images=args.images,
        modality=args.modality,
        spacing_mm=args.spacing,
        patch_size=tuple(args.patch_size) if args.patch_size else None,
        batch_size=args.batch_size,
        iterations=args.iterations,
        max_minutes=args.max_minutes,
        learning_rate=args.learning_rate,
        recipe=args.recipe,
        aligned_fraction=args.aligned_fraction,
        remap=args.remap,
        elastic_sigma_voxels=tuple(args.elastic_sigma),
        noise_probability=args.noise_probability,
        noise_std=args.noise_std,
        random_noise_std=args.random_noise_std,
        flip_augment=args.flip_augment,
        rotation_augment_degrees=args.rotation_augment,
        adversarial_fraction=args.adversarial_fraction,
        adversarial_steps=args.adversarial_steps,
        initial_model=args.initial_model,
        validation_every=args.validation_every,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
    )
    weights = _train(train_evaluator, config, args.progress)
    if weights is not None:
        print(f"model written: {weights} (card: {weights.with_suffix('.json')})")


def _train_registration(args: argparse.Namespace) -> None:
    from .registration_network import RegistrationTrainingConfig, train_registration_network

    config = RegistrationTrainingConfig(
        out=Path(args.out),
        name=args.name,
        dim=args.dim,
        similarity=args.similarity,
        evaluator=args.evaluator,
        both_orders=args.both_orders,
        both_directions=args.both_directions,
        regularization=args.regularization,
        regularization_weight=args.regularization_weight,
        diffeomorphic=args.diffeomorphic,
        spacing_mm=args.spacing,
        patch_size=tuple(args.patch_size) if args.patch_size else None,
        contrasts=tuple(args.contrasts),
        max_displacement_mm=tuple(args.max_displacement),
        pool_size=args.pool_size,
        batch_size=args.batch_size,
        iterations=args.iterations,
        max_minutes=args.max_minutes,
        learning_rate=args.learning_rate,
        teacher=args.teacher,
        validation_every=args.validation_every,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
    )
    weights = _train(train_registration_network, config, args.progress)
    print(f"model written: {weights} (card: {weights.with_suffix('.json')})")


def _load_evaluator(args: argparse.Namespace, image):
    """The evaluator named by ``--model``, else the installed default for ``image`` (see
    :func:`~imse.evaluator.evaluator_dimension`; a volume gets the default 2D evaluator, applied
    slice by slice, when no 3D evaluator is installed); a clear error when there is none."""
    from .evaluator import evaluator_dimension, load_evaluator

    return load_evaluator(args.model, evaluator_dimension(image), str(resolve_device(args.device)))


def _error_map(args: argparse.Namespace) -> None:
    from .image import read_image, write_image

    fixed, moving = read_image(args.fixed), read_image(args.moving)
    mask = read_image(args.mask).array > 0.5 if args.mask else None
    result = _load_evaluator(args, fixed).error_map(fixed, moving, reference=args.reference, mask=mask, tile=args.tile)
    out = Path(args.out)
    write_image(result.magnitude, out)
    statistics_path = out.with_name(out.name.split(".")[0] + "-statistics.json")
    statistics_path.write_text(json.dumps(result.statistics, indent=2))
    for region, values in result.statistics.items():
        print(f"{region}: " + ", ".join(f"{key} {value:.4f}" for key, value in values.items()))
    print(f"error map written: {out} (statistics: {statistics_path})")


def _translate(args: argparse.Namespace) -> None:
    from .image import read_image, resample_to, write_image

    source, reference = read_image(args.source), read_image(args.reference)
    translated = _load_evaluator(args, source).translate(source, reference, tile=args.tile)
    scores = {}
    if args.truth:  # the translation and, for comparison, the two inputs as given, against the truth
        truth = resample_to(read_image(args.truth), source)
        compared = {"translated": translated, "source": source, "reference": resample_to(reference, source, default_value=float(reference.array.min()))}
        scores = {
            name: {"nmae": metrics.nmae(image, truth), "psnr_db": metrics.psnr(image, truth), "ssim": metrics.ssim(image, truth)}
            for name, image in compared.items()
        }
    out = write_image(translated, args.out)
    print(f"translation written: {out}")
    if scores:
        scores_path = out.with_name(out.name.split(".")[0] + "-metrics.json")
        scores_path.write_text(json.dumps(scores, indent=2))
        for name, values in scores.items():
            print(f"{name}: NMAE {values['nmae']:.4f}, PSNR {values['psnr_db']:.2f} dB, SSIM {values['ssim']:.4f}")
        print(f"metrics written: {scores_path}")


PROGRESS_PREFIX = "IMSE-PROGRESS "


def _train(train, config, style: str):
    """``train(config)``; with ``--progress json`` its progress goes out as IMSE-PROGRESS lines
    (otherwise the training draws its own bar). Returns what ``train`` returns."""
    if style != "json":
        return train(config)
    with _progress_reporter("json", "training") as progress:
        return train(config, progress=progress)


@contextlib.contextmanager
def _progress_reporter(style: str, description: str):
    """A ``progress(done, total, values)`` callback: a progress bar on stderr (``bar``) or one
    machine-readable line per update on stdout (``json``: ``IMSE-PROGRESS {"done": ...,
    "total": ..., "values": {...}}``, read by the Slicer job runner)."""
    if style == "json":

        def report(done: int, total: int, values: dict) -> None:
            print(PROGRESS_PREFIX + json.dumps({"done": done, "total": total, "values": values}), flush=True)

        yield report
        return
    with tqdm(total=1, unit="it", desc=description) as bar:

        def update(done: int, total: int, values: dict) -> None:
            bar.total, bar.n = total, done
            bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in values.items() if k in ("level", "total", "loss")}, refresh=False)
            bar.refresh()

        yield update


@contextlib.contextmanager
def _staged_folder(out: Path):
    """Write into a hidden folder beside ``out`` and move its files into ``out`` only when
    everything succeeded, so a failed run never leaves half a result among good files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-partial-", dir=out.parent))
    try:
        yield staging
        out.mkdir(exist_ok=True)
        for item in staging.iterdir():
            item.replace(out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


AUTO_MASK = "auto"


def _registration_mask(option: str | None, image):
    """The mask an ``--*-mask`` option names: none, the image's automatic foreground
    (``auto``, :func:`imse.foreground.foreground_mask`), or the mask file."""
    from .foreground import foreground_mask
    from .image import read_image

    if not option:
        return None
    return foreground_mask(image) if option == AUTO_MASK else read_image(option)


def _register(args: argparse.Namespace) -> None:
    from .image import read_image, write_image
    from .register import RegistrationSettings, register_pair
    from .registration_network import is_registration_model, load_registration_network, refinement_settings, register_with_network
    from .transforms import write_displacement_transform

    fixed, moving = read_image(args.fixed), read_image(args.moving)
    fixed_mask, moving_mask = _registration_mask(args.fixed_mask, fixed), _registration_mask(args.moving_mask, moving)
    network = load_registration_network(args.model, resolve_device(args.device)) if args.model and is_registration_model(args.model) else None
    if network is not None and args.preset and not args.refine_iterations:
        raise ImageError(
            f"With a registration network ('{args.model}') a preset sets how its result is refined: give --refine-iterations N, "
            "or leave out --preset."
        )
    if network is None and args.refine_iterations:
        raise ImageError("--refine-iterations refines a registration network's result: give --model with a registration model.")
    similarity = args.similarity or (network.card.training.get("similarity", "mind") if network else "mind")
    levels = args.levels if args.levels is not None else (3 if network is None else 1)
    settings = RegistrationSettings.from_options({**vars(args), "similarity": similarity, "levels": levels}, args.reference, args.device)
    if network is not None and args.refine_iterations:
        settings = refinement_settings(settings, args.refine_iterations)  # as the refinement will run them, for metrics.json
    if network is not None:  # --model named the network: error maps (and an imse refinement) use the default evaluator
        evaluator = _optional_evaluator(argparse.Namespace(model=None, device=args.device), fixed, required=settings.uses_evaluator)
        with _progress_reporter(args.progress, "registering") as progress:
            result = register_with_network(
                fixed, moving, network, args.refine_iterations, settings, fixed_mask, moving_mask, evaluator, progress, device=args.device
            )
    else:
        evaluator = _optional_evaluator(args, fixed, required=settings.uses_evaluator)
        with _progress_reporter(args.progress, "registering") as progress:
            result = register_pair(fixed, moving, settings, fixed_mask, moving_mask, evaluator, progress=progress)
    optimised = network is None or bool(args.refine_iterations)  # a per-pair optimisation ran
    demons = optimised and settings.optimizer == "demons"
    summary = {
        **({"preset": args.preset} if args.preset else {}),
        "mode": "optimisation" if network is None else f"network {network.card.name}" + (f" + {args.refine_iterations} refinement iterations" if args.refine_iterations else ""),
        "similarity": similarity,
        "optimizer": settings.optimizer if optimised else None,
        "grid_spacing_mm": args.grid_spacing if optimised else None,
        "flip_average": settings.similarity_options.get("flip_average") if optimised else None,
        "evaluator_zoom": settings.similarity_options.get("zoom") if optimised else None,
        "evaluator_rotation_deg": settings.similarity_options.get("rotation") if optimised else None,
        "evaluator_orientations": settings.similarity_options.get("orientations") if optimised else None,
        "evaluator_slice_axes": settings.similarity_options.get("slice_axes") if optimised else None,
        "demons_iterations": settings.demons_iterations if demons else None,
        "demons_max_step_voxels": settings.demons_max_step_voxels if demons else None,
        "demons_average_last": settings.demons_average_last if demons else None,
        "equalize_tissue": settings.equalize_tissue,
        "fixed_mask": args.fixed_mask,
        "moving_mask": args.moving_mask,
        "seconds": round(result.seconds, 2),
        "folding_percent": metrics.folding_percentage(result.displacement),
        "mean_gradient_magnitude": metrics.mean_gradient_magnitude(result.displacement),
        "final_loss": result.loss_curve[-1]["total"] if result.loss_curve else None,
    }
    with _staged_folder(Path(args.out)) as folder:
        write_image(result.warped, folder / "warped.nii.gz")
        write_image(result.displacement, folder / "displacement_mm.nii.gz")
        write_displacement_transform(result.displacement, folder / "transform.h5")
        write_image(result.jacobian_determinant, folder / "jacobian_determinant.nii.gz")
        for name, option, mask in (("fixed", args.fixed_mask, fixed_mask), ("moving", args.moving_mask, moving_mask)):
            if option == AUTO_MASK:
                write_image(mask, folder / f"{name}_mask_auto.nii.gz")
        if evaluator is not None:
            for name, image in (("before", moving), ("after", result.warped)):
                error = evaluator.error_map(fixed, image, reference=args.reference)
                write_image(error.magnitude, folder / f"error_map_{name}.nii.gz")
                summary[f"imse_mean_error_{name}"] = error.statistics["image"]["mean"]
        (folder / "loss_curve.json").write_text(json.dumps(result.loss_curve))
        (folder / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"outputs written to {Path(args.out).resolve()} (transform.h5 loads in 3D Slicer and ITK as a displacement-field transform)")


def _adacs_register(args: argparse.Namespace) -> None:
    from .adacs import AdaCSPairSettings, adacs_pair, load_adacs, register_frames
    from .image import from_tensor, read_image, resample_to, write_image
    from .models import find_model
    from .transforms import write_displacement_transform

    target = read_image(args.target)
    source = resample_to(read_image(args.source), target)  # AdaCS compares frames on one grid
    if args.model:
        model = load_adacs(find_model(args.model, task="adacs"), device=str(resolve_device(args.device))).network
        displacement, warped, score = register_frames(model, source.array, target.array, target.geometry)
    else:
        settings = AdaCSPairSettings.for_iterations(args.iterations, scoring=args.scoring, device=args.device)
        with _progress_reporter(args.progress, "AdaCS") as progress:
            result = adacs_pair(source.array, target.array, target.geometry, settings, progress=progress)
        displacement, warped, score = result.displacement, result.warped, result.score
    with _staged_folder(Path(args.out)) as folder:
        field = from_tensor(displacement, target.geometry)
        write_image(field, folder / "displacement_mm.nii.gz")
        write_displacement_transform(field, folder / "transform.h5")
        write_image(from_tensor(warped, target.geometry), folder / "warped.nii.gz")
        write_image(from_tensor(score, target.geometry), folder / "score.nii.gz")
    print(f"outputs written to {Path(args.out).resolve()} (displacement, transform, warped source, score map)")


def _adacs_register_cine(args: argparse.Namespace) -> None:
    """Every frame of a cine onto its reference frame, in one process: ``displacement_mm_<t>``
    (the Lagrangian displacement u(ref -> t), mm, on the reference grid) and ``score_<t>`` per
    frame ``t`` (zero and one for the reference itself). Warm-ups scale with --iterations
    (1/3 and 1/6, the per-pair defaults at 300)."""
    from .adacs import AdaCSPairSettings, adacs_pair, load_adacs, register_frames
    from .image import Image, write_image
    from .models import find_model

    frames, geometry = _read_cine(args.cine, args.spacing)
    reference = args.reference_frame
    if not 0 <= reference < len(frames):
        raise ImageError(f"The reference frame {reference} is outside the cine's {len(frames)} frames (0 to {len(frames) - 1}).")
    model = load_adacs(find_model(args.model, task="adacs"), device=str(resolve_device(args.device))).network if args.model else None
    settings = AdaCSPairSettings.for_iterations(args.iterations, scoring=args.scoring, device=args.device)
    steps = 1 if model is not None else args.iterations
    with _progress_reporter(args.progress, "AdaCS cine") as progress, _staged_folder(Path(args.out)) as folder:
        for index, source in enumerate(frames):

            def report(done: int, total: int, values: dict, index: int = index) -> None:
                progress(index * steps + done, len(frames) * steps, {"frame": index, "phase": values.get("phase", ""), "loss": values.get("total", 0.0)})

            if index == reference:
                displacement, score = np.zeros((*source.shape, geometry.dim), np.float32), np.ones(source.shape, np.float32)
            elif model is not None:
                field, _, score_map = register_frames(model, source, frames[reference], geometry)
                displacement, score = np.moveaxis(field[0].cpu().numpy(), 0, -1), score_map[0, 0].cpu().numpy()
            else:
                result = adacs_pair(source, frames[reference], geometry, settings, progress=report)
                displacement, score = np.moveaxis(result.displacement[0].numpy(), 0, -1), result.score[0, 0].numpy()
            if index == reference or model is not None:
                report(steps, steps, {})
            write_image(Image(displacement, geometry), folder / f"displacement_mm_{index:04d}.nii.gz")
            write_image(Image(score, geometry), folder / f"score_{index:04d}.nii.gz")
    print(f"outputs written to {Path(args.out).resolve()} ({len(frames)} frames: displacement from frame {reference}, score map)")


def _read_cine(source: str, spacing_mm: float | None):
    """Frames ``[T, H, W]`` and their 2D geometry: ``echo`` is the built-in echo cine; a file is
    a 3D image whose third axis is time (its first two axes give the in-plane geometry).
    ``spacing_mm`` resamples every frame."""
    from .data import load_echo_cine
    from .geometry import Geometry
    from .image import Image, read_image, resample_to_spacing

    if source == "echo":
        cine = load_echo_cine()
        frames, geometry = cine.frames, cine.geometry
    else:
        volume = read_image(source)
        if volume.dim != 3 or volume.is_vector:
            raise ImageError(f"'{source}' is not a cine: give a 3D image whose third axis is time (one frame per slice).")
        spacing, origin, direction = volume.geometry.spacing, volume.geometry.origin, volume.geometry.direction_matrix
        frames, geometry = volume.array, Geometry(spacing[:2], origin[:2], tuple(direction[:2, :2].ravel()))
    if spacing_mm:
        resampled = [resample_to_spacing(Image(frame, geometry), spacing_mm) for frame in frames]
        frames, geometry = np.stack([frame.array for frame in resampled]), resampled[0].geometry
    return frames, geometry


def _adacs_train(args: argparse.Namespace) -> None:
    from .adacs import AdaCSConfig, save_adacs, train_adacs

    frames, geometry = _read_cine(args.cine, args.spacing)
    config = AdaCSConfig(
        iterations=args.iterations,
        displacement_warmup=args.displacement_warmup,
        scoring_warmup=args.scoring_warmup,
        displacement_learning_rate=args.learning_rate,
        scoring_learning_rate=args.learning_rate,
        scoring=args.scoring,
        pairing=args.pairing,
        reference_frame=args.reference_frame,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        time_limit_minutes=args.time_limit,
    )
    with _progress_reporter(args.progress, "AdaCS training") as progress:
        training = train_adacs(frames, geometry, config, progress=progress)
    weights = save_adacs(training.model, args.out, args.name, training=training.summary)
    print(f"model written: {weights} (card: {weights.with_suffix('.json')})")


def _strain(args: argparse.Namespace) -> None:
    from .image import from_tensor, read_image, to_tensor, write_image
    from .strain import radial_circumferential_strain, segment_means, strain_tensor

    displacement = read_image(args.displacement)
    if not displacement.is_vector:
        raise ImageError(f"'{args.displacement}' is not a displacement field (a vector image in mm).")
    geometry = displacement.geometry
    tensor = strain_tensor(to_tensor(displacement).double(), geometry, args.measure)
    maps = radial_circumferential_strain(tensor, geometry, args.centre, args.long_axis)
    names = ("radial", "circumferential", "longitudinal")[: len(maps)]
    summary = {"measure": args.measure, "centre_mm": args.centre}
    with _staged_folder(Path(args.out)) as folder:
        for name, values in zip(names, maps):
            write_image(from_tensor(values[:, None].float(), geometry), folder / f"{name}_strain.nii.gz")
        if args.mask:
            mask = read_image(args.mask).array > 0.5
            for name, values in zip(names, maps):
                means = segment_means(values, geometry, args.centre, mask, args.reference_angle, long_axis=args.long_axis)
                summary[f"{name}_segments"] = [round(float(v), 5) for v in means[0]]
                summary[f"{name}_mean"] = float(values[0][torch.as_tensor(mask)].mean())
        (folder / "strain.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def _optional_evaluator(args: argparse.Namespace, image, required: bool):
    """The evaluator for error maps (and the imse similarity) of pairs on ``image``'s grid:
    the one named by ``--model`` (which must load), else the installed default (see
    :func:`_load_evaluator`), else None when none is required."""
    from .evaluator import evaluator_dimension, installed_evaluator

    if args.model or required:
        return _load_evaluator(args, image)
    return installed_evaluator(evaluator_dimension(image), str(resolve_device(args.device)), slicewise=True)


def _models(args: argparse.Namespace) -> None:
    from .models import list_models, model_directories

    print("model folders: " + ", ".join(str(folder) for folder in model_directories()))
    for weights, card in list_models():
        print(f"{card.name}: {card.task}, {card.dim}D {card.architecture}, modality {card.modality}, {card.spacing_mm} mm ({weights})")


def _add_reference_option(parser: argparse.ArgumentParser, use: str = "") -> None:
    parser.add_argument(
        "--reference",
        choices=("fixed", "moving"),
        default="fixed",
        help=f"which image is in the evaluator's trained modality{use} (default: %(default)s)",
    )


def _add_evaluator_options(parser: argparse.ArgumentParser, model_help: str = "evaluator name or path") -> None:
    parser.add_argument("--model", help=f"{model_help} (default: the first installed evaluator of the image's dimension)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (default: %(default)s)")
    parser.add_argument("--tile", type=int, default=128, help="tile size in voxels for large volumes (default: %(default)s)")


def build_parser(register_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The ``imse`` command line; ``register_defaults`` replaces the defaults of ``register``'s
    options (a preset's, :mod:`imse.presets`), which options given on the command line override."""
    parser = argparse.ArgumentParser(
        prog="imse",
        description="IMSE spatial-error evaluation and multi-modal registration (the IMSESlicer backend).",
    )
    parser.add_argument(
        "--progress",
        choices=("bar", "json"),
        default="bar",
        help="progress as a bar on stderr, or as JSON lines on stdout for programs (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print an image's geometry (mm, LPS) and intensity range")
    info.add_argument("image", help="image file (NIfTI, NRRD, MHA, ...) or a folder with one DICOM series")
    info.set_defaults(handler=_info)

    train = commands.add_parser(
        "train-evaluator",
        help="train an IMSE evaluator on images of one modality (default: the built-in MNI T1)",
    )
    train.add_argument("images", nargs="*", help="training images of ONE modality (default: the built-in MNI T1)")
    train.add_argument("--out", required=True, help="output folder for the model and its checkpoints")
    train.add_argument("--name", default="evaluator", help="model name (file stem) (default: %(default)s)")
    train.add_argument("--dim", type=int, choices=(2, 3), default=2, help="2D slices or 3D patches (default: %(default)s)")
    train.add_argument("--architecture", choices=ARCHITECTURES, default="light", help="network (default: %(default)s)")
    train.add_argument("--modality", default="T1", help="the modality of the training images (default: %(default)s)")
    train.add_argument("--spacing", type=float, help="resample to this spacing in mm (default: 2 in 2D, 3 in 3D)")
    train.add_argument("--patch-size", type=int, nargs="+", help="patch size in voxels (default: 96 96 / 64 64 64)")
    train.add_argument("--batch-size", type=int, default=8, help="(default: %(default)s)")
    train.add_argument("--iterations", type=int, default=2000, help="(default: %(default)s)")
    train.add_argument("--max-minutes", type=float, help="stop after this many minutes and write the model")
    train.add_argument("--learning-rate", type=float, default=1e-4, help="Adam learning rate (default: %(default)s)")
    train.add_argument("--recipe", choices=RECIPES, default="ours", help="pair misalignments (default: %(default)s)")
    train.add_argument("--aligned-fraction", type=float, default=0.25, help="share of aligned pairs, recipe 'ours' (default: %(default)s)")
    train.add_argument("--no-remap", dest="remap", action="store_false", help="no Shuffle Remap: an evaluator for same-modality pairs only")
    train.add_argument(
        "--elastic-sigma",
        type=float,
        nargs=2,
        default=list(EvaluatorTrainingConfig.elastic_sigma_voxels),
        metavar=("LOW", "HIGH"),
        help="width range (voxels) of the random elastic warps, drawn per batch; the displacement keeps the paper's size (default: the paper's, %(default)s)",
    )
    train.add_argument("--noise-probability", type=float, default=EvaluatorTrainingConfig.noise_probability, help="share of remapped images given Gaussian noise (default: %(default)s)")
    train.add_argument("--noise-std", type=float, default=EvaluatorTrainingConfig.noise_std, help="its standard deviation, in [-1, 1] units (default: %(default)s)")
    train.add_argument("--random-noise-std", action="store_true", help="draw each noisy image's standard deviation uniformly in [0, --noise-std]")
    train.add_argument("--flip-augment", action="store_true", help="flip each training image along each axis with probability 1/2")
    train.add_argument("--rotation-augment", type=float, default=0.0, metavar="DEG", help="turn each training image about its centre by a random angle in +/- DEG degrees (in 3D about each axis), as register's --evaluator-rotation does at test time (default: 0, none)")
    train.add_argument(
        "--adversarial-fraction",
        type=float,
        default=0.0,
        help="share of batches first warped to fool the network, as a registration optimising it would; it learns their true error (default: %(default)s)",
    )
    train.add_argument("--adversarial-steps", type=int, default=8, help="optimisation steps of each such warp (default: %(default)s)")
    train.add_argument(
        "--initial-model",
        help="start from this evaluator's weights (name or path): fine-tuning; a 2D light evaluator starts a 3D light one inflated",
    )
    train.add_argument("--validation-every", type=int, default=100, help="(default: %(default)s)")
    train.add_argument("--checkpoint-every", type=int, default=200, help="(default: %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    train.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    train.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (default: %(default)s)")
    train.set_defaults(handler=_train_evaluator)

    error_map = commands.add_parser("error-map", help="IMSE spatial-error map |E| of two images, on the fixed grid")
    error_map.add_argument("fixed", help="fixed image")
    error_map.add_argument("moving", help="moving image (resampled onto the fixed grid)")
    error_map.add_argument("--out", required=True, help="output image of |E| (e.g. error.nii.gz); statistics go beside it")
    _add_reference_option(error_map)
    error_map.add_argument("--mask", help="mask on the fixed grid for in-mask statistics")
    _add_evaluator_options(error_map)
    error_map.set_defaults(handler=_error_map)

    translate = commands.add_parser("translate", help="reference-guided translation: SOURCE's layout in REFERENCE's modality (a 2D evaluator maps 3D images slice by slice)")
    translate.add_argument("source", help="image whose spatial layout is wanted")
    translate.add_argument("reference", help="image in the modality wanted (the evaluator's trained modality)")
    translate.add_argument("--out", required=True, help="output image, on the source's grid")
    translate.add_argument(
        "--truth",
        help="the source's layout in the reference's modality, if known: NMAE, PSNR and SSIM of the translation "
        "(and of both inputs as given) go to OUT's stem + '-metrics.json'",
    )
    _add_evaluator_options(translate)
    translate.set_defaults(handler=_translate)

    train_registration = commands.add_parser(
        "train-registration",
        help="train a registration network (one-shot displacement) on built-in MNI pairs with the IMSE or MIND loss",
    )
    train_registration.add_argument("--out", required=True, help="output folder for the model and its checkpoints")
    train_registration.add_argument("--name", default="registration", help="model name (file stem) (default: %(default)s)")
    train_registration.add_argument("--dim", type=int, choices=(2, 3), default=2, help="2D slices or 3D volumes (default: %(default)s)")
    train_registration.add_argument("--similarity", choices=("imse", "mind"), default="imse", help="training loss (default: %(default)s)")
    train_registration.add_argument("--evaluator", help="frozen evaluator for the imse loss, name or path (default: the shipped one)")
    train_registration.add_argument(
        "--teacher",
        metavar="PRESET",
        help="learn what this registration preset (e.g. imse-2d) finds on each training pair, once per pair, instead of the similarity's loss",
    )
    train_registration.add_argument("--one-order", dest="both_orders", action="store_false", help="imse: only the order [other, T1], not both")
    train_registration.add_argument("--one-direction", dest="both_directions", action="store_false", help="only register other contrasts onto T1")
    train_registration.add_argument("--regularization", choices=REGULARIZERS, default="diffusion", help="(default: %(default)s)")
    train_registration.add_argument("--regularization-weight", type=float, help="(default: 0.1 for imse, 0.3 for mind)")
    train_registration.add_argument("--diffeomorphic", action="store_true", help="predict a stationary velocity (invertible result)")
    train_registration.add_argument("--spacing", type=float, help="training spacing in mm (default: 2 in 2D, 3 in 3D)")
    train_registration.add_argument("--patch-size", type=int, nargs="+", help="voxels, NumPy order (default: 112 96 / 32 80 64)")
    train_registration.add_argument("--contrasts", nargs="+", default=["t2", "pd"], help="moving contrasts of the pairs (default: %(default)s)")
    train_registration.add_argument("--max-displacement", type=float, nargs=2, default=[2.0, 10.0], metavar=("LOW", "HIGH"), help="mm (default: %(default)s)")
    train_registration.add_argument("--pool-size", type=int, default=512, help="training pairs generated once (default: %(default)s)")
    train_registration.add_argument("--batch-size", type=int, default=8, help="(default: %(default)s)")
    train_registration.add_argument("--iterations", type=int, default=2000, help="(default: %(default)s)")
    train_registration.add_argument("--max-minutes", type=float, help="stop after this many minutes and write the model")
    train_registration.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    train_registration.add_argument("--validation-every", type=int, default=100, help="(default: %(default)s)")
    train_registration.add_argument("--checkpoint-every", type=int, default=200, help="(default: %(default)s)")
    train_registration.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    train_registration.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    train_registration.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (default: %(default)s)")
    train_registration.set_defaults(handler=_train_registration)

    register = commands.add_parser("register", help="register MOVING onto FIXED by optimisation or with a registration network (writes warped image, transform, maps, metrics)")
    register.add_argument("fixed", help="fixed image")
    register.add_argument("moving", help="moving image")
    register.add_argument("--out", required=True, help="output folder")
    register.add_argument(
        "--similarity", choices=SIMILARITY_NAMES, help="(default: mind; with a registration network, its training loss; mind+imse: their sum)"
    )
    _add_reference_option(register, " (imse similarity and error maps)")
    register.add_argument("--levels", type=int, help="pyramid levels (default: 3; 1 when refining a network's result)")
    register.add_argument(
        "--grid-spacing",
        type=float,
        help="register on a grid of this spacing (mm) over the fixed image; the outputs stay on the fixed grid (default: the fixed image's grid)",
    )
    register.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adam",
        help=(
            f"adam: gradient descent; discrete: a gradient-free search over shifts, for voxel-wise similarities ({', '.join(VOXEL_SIMILARITIES)}); "
            f"demons: driven by the similarity's residual ({', '.join(RESIDUAL_SIMILARITIES)}; for imse, the evaluator's output) (default: %(default)s)"
        ),
    )
    register.add_argument("--iterations", type=int, default=150, help="Adam iterations per level at most (default: %(default)s)")
    register.add_argument("--demons-iterations", type=int, default=RegistrationSettings.demons_iterations, help="demons steps per level (default: %(default)s)")
    register.add_argument(
        "--demons-max-step",
        type=float,
        default=RegistrationSettings.demons_max_step_voxels,
        help="the longest step (voxels) of a demons iteration; longer regularises less (imse with --evaluator-zoom 2: 1.0) (default: %(default)s)",
    )
    register.add_argument(
        "--demons-average-last",
        type=int,
        default=RegistrationSettings.demons_average_last,
        metavar="N",
        help="the demons' result on each level is the mean of the field over their last N steps (with --evaluator-orientations cycle: evens out each step's orientation) (default: %(default)s, the last step's field)",
    )
    register.add_argument(
        "--flip-average",
        action="store_true",
        help="imse: average the evaluator over the flips of the image axes (4 times the work in 2D, 8 in 3D; 2D pairs register better)",
    )
    register.add_argument(
        "--evaluator-zoom",
        type=float,
        default=1.0,
        help=(
            "imse: show the evaluator the images zoomed by this factor on the registration grid (about factor^2 times the work in 2D); "
            "use it with --flip-average (alone it registered worse): with it, 2 on a 2 mm grid registered 2D pairs best (default: %(default)s, no zoom)"
        ),
    )
    register.add_argument(
        "--evaluator-rotation",
        type=float,
        default=0.0,
        metavar="DEG",
        help=(
            "imse: also average the evaluator over in-plane rotations of the images by +-DEG degrees (3 times the work); "
            "with --flip-average and --evaluator-zoom 2, 60 registered 2D pairs best (default: %(default)s, no rotation)"
        ),
    )
    register.add_argument(
        "--evaluator-orientations",
        choices=ORIENTATIONS,
        default="average",
        help=(
            "imse with --optimizer demons: show the evaluator the flips and turns above all at every step and average them, or one a "
            "step in turn (cycle: the work of one pass, the demons average them over their steps) (default: %(default)s)"
        ),
    )
    register.add_argument(
        "--evaluator-slice-axes",
        choices=tuple(SLICE_AXES),
        default="first",
        help=(
            "imse with a 2D evaluator on volumes: show it their slices across the first array axis only, or across each of the three "
            "(all: their mean, 3 times the work, or one axis a demons step with --evaluator-orientations cycle; for isotropic grids) "
            "(default: %(default)s)"
        ),
    )
    register.add_argument(
        "--equalize-tissue",
        action="store_true",
        help="an image whose background lies far below its tissue (a CT) is compared with its tissue histogram-equalised instead of windowed (imse: CT-like 2D pairs registered better)",
    )
    register.add_argument("--regularization", choices=REGULARIZERS, default="diffusion", help="(default: %(default)s)")
    register.add_argument("--regularization-weight", type=float, help="(default: a weight suited to the similarity)")
    register.add_argument("--diffeomorphic", action="store_true", help="optimise a stationary velocity field (invertible result)")
    register.add_argument("--affine", action="store_true", help="affine pre-alignment first")
    register.add_argument("--fixed-mask", help="mask on the fixed grid, or 'auto': the fixed image's foreground (written as fixed_mask_auto.nii.gz)")
    register.add_argument("--moving-mask", help="mask on the moving grid, or 'auto': the moving image's foreground")
    register.add_argument("--refine-iterations", type=int, default=0, help="with a registration network: optimisation steps after it (default: %(default)s)")
    _add_evaluator_options(register, "a registration network's name or path (one-shot registration), or an evaluator's (error maps, imse similarity)")
    register.add_argument(
        "--preset",
        choices=PRESETS,
        help="start from the best measured settings of a similarity; options given here override them: "
        + "; ".join(f"{name}: {preset.measured}" for name, preset in PRESETS.items()),
    )
    register.set_defaults(handler=_register, **(register_defaults or {}))

    adacs = commands.add_parser("adacs", help="AdaCS registration with correspondence scoring (cardiac frames)")
    adacs_commands = adacs.add_subparsers(dest="adacs_command", required=True, metavar="ACTION")
    adacs_register = adacs_commands.add_parser("register", help="register SOURCE frame onto TARGET frame; writes displacement, score map")
    adacs_register.add_argument("source", help="source (moving) frame")
    adacs_register.add_argument("target", help="target (fixed, reference) frame")
    adacs_register.add_argument("--out", required=True, help="output folder")
    adacs_register.add_argument("--model", help="trained AdaCS model (name or path); default: optimise this pair alone")
    adacs_register.add_argument("--iterations", type=int, default=300, help="per-pair optimisation steps (default: %(default)s)")
    adacs_register.add_argument("--no-scoring", dest="scoring", action="store_false", help="the plain-MSE baseline (score 1 everywhere)")
    adacs_register.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (default: %(default)s)")
    adacs_register.set_defaults(handler=_adacs_register)

    adacs_cine = adacs_commands.add_parser("register-cine", help="register every frame of a cine onto its reference frame; writes displacements, score maps")
    adacs_cine.add_argument("cine", help="'echo' (the built-in echo cine) or a 3D image whose third axis is time")
    adacs_cine.add_argument("--out", required=True, help="output folder: displacement_mm_<t>.nii.gz and score_<t>.nii.gz per frame t")
    adacs_cine.add_argument("--reference-frame", type=int, default=0, help="the frame every other one is registered onto, e.g. end-diastole (default: %(default)s)")
    adacs_cine.add_argument("--spacing", type=float, help="resample the frames to this spacing in mm (outputs on that grid)")
    adacs_cine.add_argument("--model", help="trained AdaCS model (name or path); default: optimise each pair alone")
    adacs_cine.add_argument("--iterations", type=int, default=300, help="per-pair optimisation steps (default: %(default)s)")
    adacs_cine.add_argument("--no-scoring", dest="scoring", action="store_false", help="the plain-MSE baseline (score 1 everywhere)")
    adacs_cine.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (default: %(default)s)")
    adacs_cine.set_defaults(handler=_adacs_register_cine)

    adacs_train = adacs_commands.add_parser("train", help="train AdaCS networks on a cine (frame pairs)")
    adacs_train.add_argument("cine", help="'echo' (the built-in echo cine) or a 3D image whose third axis is time")
    adacs_train.add_argument("--out", required=True, help="output folder for the model")
    adacs_train.add_argument("--name", default="adacs", help="model name (default: %(default)s)")
    adacs_train.add_argument("--spacing", type=float, help="resample the frames to this spacing in mm")
    adacs_train.add_argument("--iterations", type=int, default=6000, help="steps in all, warm-ups included (default: %(default)s)")
    adacs_train.add_argument("--displacement-warmup", type=int, default=1000, help="(default: %(default)s)")
    adacs_train.add_argument("--scoring-warmup", type=int, default=1000, help="(default: %(default)s)")
    adacs_train.add_argument("--learning-rate", type=float, default=1e-4, help="Adam, both networks (default: %(default)s)")
    adacs_train.add_argument("--pairing", choices=("reference", "consecutive"), default="reference", help="(default: %(default)s)")
    adacs_train.add_argument("--reference-frame", type=int, default=0, help="target of the reference pairing, e.g. end-diastole (default: %(default)s)")
    adacs_train.add_argument("--batch-size", type=int, default=4, help="(default: %(default)s)")
    adacs_train.add_argument("--no-scoring", dest="scoring", action="store_false", help="train the plain-MSE baseline")
    adacs_train.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    adacs_train.add_argument("--time-limit", type=float, metavar="MINUTES", help="stop after this wall time and keep the model")
    adacs_train.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu (default: %(default)s)")
    adacs_train.set_defaults(handler=_adacs_train)

    strain = commands.add_parser("strain", help="strain maps from a displacement (mm) about an LV centre")
    strain.add_argument("displacement", help="displacement field from the reference frame (vector image, mm)")
    strain.add_argument("--centre", type=float, nargs="+", required=True, help="LV centre in mm (LPS); in 3D a point on the long axis")
    strain.add_argument("--long-axis", type=float, nargs=3, help="long-axis direction (3D only)")
    strain.add_argument("--mask", help="myocardium mask on the displacement's grid (segment means)")
    strain.add_argument("--measure", choices=("green_lagrange", "infinitesimal"), default="green_lagrange", help="(default: %(default)s)")
    strain.add_argument("--reference-angle", type=float, default=0.0, help="start of segment 1, degrees from +x towards +y (default: %(default)s)")
    strain.add_argument("--out", required=True, help="output folder")
    strain.set_defaults(handler=_strain)

    models = commands.add_parser("models", help="list the installed models and where they are looked for")
    models.set_defaults(handler=_models)

    demo = commands.add_parser("demo", help="run the main job on built-in data and write its outputs")
    demo.add_argument("--out", default="demo-output", help="output folder (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic pair (default: %(default)s)")
    demo.set_defaults(handler=_demo)
    return parser


def _exit_on_terminate(signal_number, frame) -> None:
    """SIGTERM (a cancel from the Slicer job runner) unwinds like an exception, so staged
    outputs are removed and nothing partial is left."""
    raise SystemExit(128 + signal_number)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "preset", None):  # parse again, the preset's options as the defaults
        parser = build_parser(PRESETS[args.preset].options)
        args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _exit_on_terminate)
    try:
        args.handler(args)
    except ImageError as error:
        parser.exit(2, f"imse: error: {error}\n")
    except torch.cuda.OutOfMemoryError:
        parser.exit(
            OUT_OF_MEMORY_STATUS,
            "imse: error: the GPU ran out of memory: run again with --device cpu, or on smaller images (larger spacing)\n",
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
