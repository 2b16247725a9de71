"""Metrics into table nodes and curves into plot charts backed by tables."""

import pytest
from slicer import vtkMRMLScene

from IMSESlicerLib.tables import plot_from_curves, table_from_rows
from imse.errors import ImageError


def test_metrics_become_a_table_with_typed_columns():
    scene = vtkMRMLScene()
    node = table_from_rows(scene, [{"tissue": "GM", "dice": 0.9}, {"tissue": "WM", "dice": 0.93}], "metrics")
    table = node.GetTable()
    assert table.GetNumberOfRows() == 2 and table.GetNumberOfColumns() == 2
    assert table.GetColumnByName("tissue").GetValue(1) == "WM"
    assert table.GetColumnByName("dice").GetValue(0) == pytest.approx(0.9)
    with pytest.raises(ImageError, match="no rows"):
        table_from_rows(scene, [], "empty")


def test_curves_become_a_plot_chart_backed_by_a_table():
    scene = vtkMRMLScene()
    chart = plot_from_curves(scene, [0, 1, 2], {"radial": [0.0, 0.1, 0.2], "circumferential": [0.0, -0.05, -0.1]}, "strain", "frame", "strain")
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(1)
    table = series.GetTableNode().GetTable()
    assert series.GetYColumnName() == "circumferential"
    assert table.GetColumnByName("circumferential").GetValue(2) == pytest.approx(-0.1)
    assert chart.GetXAxisTitle() == "frame"
    with pytest.raises(ImageError, match="one value per x"):
        plot_from_curves(scene, [0, 1], {"a": [1.0]}, "bad", "x", "y")
