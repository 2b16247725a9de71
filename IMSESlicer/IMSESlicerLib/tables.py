"""Metrics -> table nodes, curves -> plot chart nodes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import vtk

from imse.errors import ImageError


def table_from_rows(scene, rows: Sequence[Mapping[str, object]], name: str):
    """A new table node with one row per mapping; columns are the keys of the first row, in
    order (numbers become double columns, anything else text)."""
    if not rows:
        raise ImageError("There are no rows to put in a table.")
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    columns = list(rows[0])
    for column in columns:
        numeric = all(isinstance(row.get(column), (int, float)) for row in rows)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(column)
        for row in rows:
            value = row.get(column)
            array.InsertNextValue(float(value) if numeric else str(value))
        table.AddColumn(array)
    node.Modified()
    return node


def append_row(node, row: Mapping[str, object]) -> None:
    """Add one row to a table node (e.g. one made by :func:`table_from_rows`), by column name:
    a column the row lacks gets NaN (numbers) or empty text; keys without a column are ignored.
    Plots that show the table follow it (for live curves)."""
    table = node.GetTable()
    for index in range(table.GetNumberOfColumns()):
        column = table.GetColumn(index)
        value = row.get(column.GetName())
        if isinstance(column, vtk.vtkStringArray):
            column.InsertNextValue("" if value is None else str(value))
        else:
            column.InsertNextValue(math.nan if value is None else float(value))
    table.Modified()
    node.Modified()


def plot_from_curves(scene, x_values: Sequence[float], curves: Mapping[str, Sequence[float]], name: str, x_label: str, y_label: str):
    """A plot chart node with one line series per curve over ``x_values``, backed by a table
    node (so the numbers can be exported). Returns the chart node."""
    if any(len(values) != len(x_values) for values in curves.values()):
        raise ImageError("Every curve needs one value per x value.")
    rows = [{x_label: x, **{label: float(values[i]) for label, values in curves.items()}} for i, x in enumerate(x_values)]
    table = table_from_rows(scene, rows, f"{name} table")
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetXAxisTitle(x_label)
    chart.SetYAxisTitle(y_label)
    for label in curves:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", label)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(x_label)
        series.SetYColumnName(label)
        series.SetPlotType(series.PlotTypeScatter)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart
