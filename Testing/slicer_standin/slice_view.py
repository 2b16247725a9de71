"""What the Red slice view would show, drawn with Matplotlib for a person to look at.

The stand-in has no slice views, so this reads the Red slice composite node (background,
foreground, foreground opacity) and each volume's display node (colour node, window/level,
threshold, legend title) and draws the central axial slice the way Slicer composes it, with
the colour legend as a colour bar. Test scaffolding; never ships.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from imse.report import display_array  # noqa: E402
from IMSESlicerLib.volumes import image_from_volume  # noqa: E402


def _colormap(color_node) -> ListedColormap:
    colors = []
    for index in range(color_node.GetNumberOfColors()):
        rgba = [0.0, 0.0, 0.0, 0.0]
        color_node.GetColor(index, rgba)
        colors.append(rgba[:3])
    return ListedColormap(colors)


def render_red_slice_view(scene, path: Path, title: str = "") -> Path:
    composite = next(
        scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))
        if scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode").GetLayoutName() == "Red"
    )
    background = scene.GetNodeByID(composite.GetBackgroundVolumeID())
    foreground = scene.GetNodeByID(composite.GetForegroundVolumeID() or "")
    figure, axes = plt.subplots(figsize=(5.2, 4.6))
    pixels, aspect = display_array(image_from_volume(background))
    low, high = np.percentile(pixels, (1, 99.5))
    axes.imshow(pixels, cmap="gray", vmin=low, vmax=high, aspect=aspect)
    if foreground is not None:
        display = foreground.GetDisplayNode()
        values, _ = display_array(image_from_volume(foreground))
        shown = np.ma.masked_less(values, display.GetLowerThreshold()) if display.GetApplyThreshold() else values
        mapped = axes.imshow(
            shown,
            cmap=_colormap(display.GetColorNode()),
            vmin=display.GetWindowLevelMin(),
            vmax=display.GetWindowLevelMax(),
            alpha=composite.GetForegroundOpacity(),
            aspect=aspect,
        )
        legend = next(
            (foreground.GetNthDisplayNode(i) for i in range(foreground.GetNumberOfDisplayNodes())
             if foreground.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode")),
            None,
        )
        bar = figure.colorbar(mapped, ax=axes, fraction=0.046, pad=0.04)
        bar.solids.set_alpha(1.0)
        if legend is not None:
            bar.set_label(legend.GetTitleText())
    axes.set_title(title or f"{background.GetName()}" + (f" + {foreground.GetName()}" if foreground else ""), fontsize=9)
    axes.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
