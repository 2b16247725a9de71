"""Built-in sample data, so that a new user can try every module in one click.

Everything is built from data that ships inside installed packages (:mod:`imse.data`,
:mod:`imse.phantom`); nothing is downloaded. :func:`load_sample` puts a sample into any scene;
:func:`register_sample_data` adds the samples to Slicer's Sample Data module. That module only
knows downloads, so each sample is registered with no file and a custom loader (the
``customDownloader`` that its buttons call); ``SampleData.downloadSample(name)`` therefore
returns nothing for these samples, and scripts and tests call :func:`load_sample` instead.
"""

from __future__ import annotations

import numpy as np
import slicer

from imse.errors import ImageError
from imse.image import Image

from .planar import as_single_slice, displacement_as_single_slice
from .sequences import add_synchronized_sequence, sequence_from_frames
from .tables import table_from_rows
from .transforms import grid_transform_from_displacement
from .volumes import RAS_FROM_LPS, update_volume_from_image, volume_from_image

SAMPLES = {
    "IMSE brain pair 2D": (
        "One axial slice of the MNI ICBM152 brain at 2 mm: a T1 fixed image and a T2-like moving "
        "image deformed by a known smooth field (up to 8 mm), the tissue labels of both and the "
        "true displacement as a transform. Fast; works with the shipped 2D evaluator."
    ),
    "IMSE brain pair 3D": (
        "The MNI ICBM152 brain at 3 mm: a T1 fixed volume and a T2-like moving volume deformed by "
        "a known smooth field (up to 8 mm), the tissue labels of both and the true displacement "
        "as a transform."
    ),
    "Echo cine": (
        "A real apical four-chamber echocardiography loop (pydicom-data): 120 grey-level frames "
        "of 0.51 mm pixels, 33.3 ms apart, as a sequence with a browser."
    ),
    "LV phantom cine": (
        "A synthetic short-axis left ventricle contracting and relaxing over 10 frames (1 mm "
        "pixels), with its analytic truth: myocardium label, LV centre, the true displacement "
        "from frame 0 to every frame (a transform sequence played with the cine) and the true "
        "mean radial and circumferential strain per frame (a table)."
    ),
}
CATEGORY = "IMSE"


def _labelmap(scene, labels: Image, name: str):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    node.CreateDefaultDisplayNodes()
    update_volume_from_image(node, as_single_slice(labels))
    return node


def _brain_pair(scene, dim: int) -> dict:
    """The MNI pair of :func:`imse.data.make_pair` (seed 0) as volumes, label maps and the true
    transform (from parent: fixed RAS point -> moving RAS point)."""
    from imse.data import make_pair

    pair = make_pair(dim=dim, seed=0)
    prefix = f"MNI {dim}D"
    return {
        "fixed": volume_from_image(scene, as_single_slice(pair.fixed), f"{prefix} T1 fixed"),
        "moving": volume_from_image(scene, as_single_slice(pair.moving), f"{prefix} T2 moving"),
        "fixed labels": _labelmap(scene, pair.fixed_labels, f"{prefix} fixed labels"),
        "moving labels": _labelmap(scene, pair.moving_labels, f"{prefix} moving labels"),
        "true transform": grid_transform_from_displacement(
            scene, displacement_as_single_slice(pair.displacement), f"{prefix} true transform"
        ),
    }


def _echo_cine(scene) -> dict:
    from imse.data import load_echo_cine

    cine = load_echo_cine()
    frames = [cine.frame(index) for index in range(cine.num_frames)]
    sequence, browser = sequence_from_frames(scene, frames, "Echo cine", cine.frame_time_ms)
    return {"cine": sequence, "browser": browser, "frame": browser.GetProxyNode(sequence)}


def _lv_truth_sequence(scene, phantom, cine_sequence):
    """The true displacement from frame 0 to each frame, one grid transform per frame, indexed
    like the cine."""
    truth = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "LV phantom true displacement")
    truth.SetIndexName(cine_sequence.GetIndexName())
    truth.SetIndexUnit(cine_sequence.GetIndexUnit())
    work = slicer.vtkMRMLScene()  # the sequence stores copies of these
    for index, vectors in enumerate(phantom.displacements):
        field = Image(np.moveaxis(vectors, 0, -1), phantom.geometry)
        node = grid_transform_from_displacement(work, displacement_as_single_slice(field), f"frame {index}")
        truth.SetDataNodeAtValue(node, cine_sequence.GetNthIndexValue(index))
    return truth


def _lv_phantom(scene) -> dict:
    from imse.phantom import lv_phantom_2d

    phantom = lv_phantom_2d()
    frames = [Image(frame, phantom.geometry) for frame in phantom.frames]
    sequence, browser = sequence_from_frames(scene, frames, "LV phantom cine", None)
    truth = _lv_truth_sequence(scene, phantom, sequence)
    centre = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "LV centre")
    centre.AddControlPoint(*(RAS_FROM_LPS @ np.array([*phantom.centre_mm, 0.0])), "LV centre")
    myocardium = phantom.myocardium_masks[0]
    radial, circumferential = phantom.analytic_strain()
    rows = [
        {"frame": index, "radial strain (%)": 100.0 * float(radial[index][myocardium].mean()),
         "circumferential strain (%)": 100.0 * float(circumferential[index][myocardium].mean())}
        for index in range(len(frames))
    ]
    return {
        "cine": sequence,
        "browser": browser,
        "frame": browser.GetProxyNode(sequence),
        "myocardium": _labelmap(scene, Image(myocardium.astype(np.uint8), phantom.geometry), "LV phantom myocardium"),
        "LV centre": centre,
        "true displacement": truth,
        "true transform": add_synchronized_sequence(browser, truth),
        "true strain": table_from_rows(scene, rows, "LV phantom true strain (Green-Lagrange)"),
    }


_LOADERS = {
    "IMSE brain pair 2D": lambda scene: _brain_pair(scene, 2),
    "IMSE brain pair 3D": lambda scene: _brain_pair(scene, 3),
    "Echo cine": _echo_cine,
    "LV phantom cine": _lv_phantom,
}


def load_sample(scene, name: str) -> dict:
    """Add sample ``name`` (a key of :data:`SAMPLES`) to ``scene``; returns its nodes by role.

    * brain pairs: ``fixed``, ``moving`` (scalar volumes; the 2D pair as single slices),
      ``fixed labels``, ``moving labels`` (label maps: 1 CSF, 2 GM, 3 WM) and
      ``true transform`` (grid transform whose transform from parent maps each fixed RAS point
      to the moving point of the same anatomy: set on the moving volume it aligns it);
    * ``Echo cine``: ``cine`` (sequence, time in s), ``browser`` and ``frame`` (its proxy volume);
    * ``LV phantom cine``: as the echo (index: frame number), plus ``myocardium`` (frame-0 label
      map), ``LV centre`` (markups point), ``true displacement`` (sequence of grid transforms,
      frame 0 -> frame t), ``true transform`` (its proxy) and ``true strain`` (table, %).
    """
    if name not in _LOADERS:
        raise ImageError(f"Unknown sample '{name}'; choose one of {sorted(SAMPLES)}.")
    return _LOADERS[name](scene)


def _load_from_sample_data_module(source) -> list:
    """The Sample Data module's ``customDownloader`` for every IMSE sample: load it into
    Slicer's scene and show its first volume."""
    nodes = load_sample(slicer.mrmlScene, source.sampleName)
    first_volume = nodes.get("fixed") or nodes.get("frame")
    slicer.util.setSliceViewerLayers(background=first_volume, fit=True)
    return list(nodes.values())


def register_sample_data() -> None:
    """Add the :data:`SAMPLES` to Slicer's Sample Data module, in category ``IMSE`` (inside
    Slicer only). Calling it again replaces the earlier registration."""
    import SampleData

    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):  # Slicer since March 2026
        logic.registerCustomSampleDataCategory(CATEGORY, "IMSE")
    registered = logic.sampleDataSourcesByCategory(CATEGORY)
    registered[:] = [source for source in registered if source.sampleName not in SAMPLES]
    for name in SAMPLES:
        logic.registerCustomSampleDataSource(
            category=CATEGORY, sampleName=name, uris=[], fileNames=[], nodeNames=[],
            customDownloader=_load_from_sample_data_module,
        )
