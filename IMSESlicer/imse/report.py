"""Report pictures: rows of labelled image panels, shown the way a radiologist expects.

Display convention (radiological): the patient's left is on the screen's right and anterior
(axial) or superior (coronal, sagittal) is up. A 2D image's axes are taken to be in-plane
LPS axes, as :func:`imse.data.slicing.extract_slice` keeps them; 3D images are shown by the
slice through their centre.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image import Image

#: Characters per line of a panel's title: a 3.2-inch panel holds about 45 at 9 points, so a
#: longer title is wrapped rather than run into its neighbour's.
TITLE_CHARACTERS = 40
#: For each plane, whether the second in-plane physical axis points up on the screen
#: (superior for coronal and sagittal) or down (posterior for axial).
SECOND_AXIS_UP = {"axial": False, "coronal": True, "sagittal": True}


@dataclass(frozen=True)
class Panel:
    """One picture in a report: a 2D or 3D scalar image and how to colour it."""

    title: str
    image: Image
    cmap: str = "gray"
    vmin: float | None = None
    vmax: float | None = None
    colorbar: str | None = None  # label of a colour bar, or None for no bar


def display_array(image: Image, plane: str = "axial") -> tuple[np.ndarray, float]:
    """A 2D array ready for ``imshow`` (rows top to bottom, columns left to right on the screen,
    radiological convention, see the module docstring) and its pixel aspect (row spacing over
    column spacing). 3D images give their central slice on ``plane``; grids must be
    axis-aligned (flips and permutations)."""
    from .data.slicing import extract_slice, plane_normal_axis

    if image.dim == 3:
        normal = plane_normal_axis(plane)
        low, high = image.physical_extent()
        image = extract_slice(image, plane, float(low[normal] + high[normal]) / 2)
    direction = image.geometry.direction_matrix
    spacing = np.asarray(image.geometry.spacing)
    array = image.array  # rows along index axis 1, columns along index axis 0
    if np.argmax(np.abs(direction[:, 0])) != 0:  # index axis 0 runs along physical axis 1
        array, direction, spacing = array.T, direction[:, ::-1], spacing[::-1]
    if direction[0, 0] < 0:
        array = array[:, ::-1]
    if (direction[1, 1] < 0) != SECOND_AXIS_UP[plane]:
        array = array[::-1, :]
    return np.ascontiguousarray(array), float(spacing[1] / spacing[0])


def wrapped_title(title: str) -> str:
    """``title`` in lines of at most :data:`TITLE_CHARACTERS` (broken between words)."""
    return textwrap.fill(title, TITLE_CHARACTERS)


def save_report(panels: list[list[Panel]], path: str | Path, title: str = "", plane: str = "axial") -> Path:
    """Save rows of panels as one PNG (150 dpi); pixel aspect follows the spacing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(panels), max(len(row) for row in panels)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for row_index, row in enumerate(panels):
        for column_index, panel in enumerate(row):
            axis = axes[row_index, column_index]
            array, aspect = display_array(panel.image, plane)
            shown = axis.imshow(array, cmap=panel.cmap, vmin=panel.vmin, vmax=panel.vmax, aspect=aspect, interpolation="nearest")
            axis.set_title(wrapped_title(panel.title), fontsize=9)
            if panel.colorbar:
                figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02).set_label(panel.colorbar, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path
