"""A stand-in for the 3D Slicer application, for GUI tests of our modules (never ships).

Real Qt widgets (PySide6, offscreen), the real MRML scene and ``slicer.util`` of the
``slicer-core`` package, and minimal stand-ins for what only the application provides:
the ``qt`` and ``ctk`` Python modules, ``slicer.app``, ``slicer.mrmlScene``,
``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``slicer.i18n`` and the
CTK/qMRML widget classes of our .ui files. The module code is written for Slicer's PythonQt;
this package adapts to it, never the other way round: all of it, like the module code, uses
Qt properties attribute-style (Testing/conftest.py selects PySide6's ``true_property`` feature
for these modules before torch loads).

Use::

    import slicer_standin
    slicer_standin.install()
    widget = slicer_standin.open_module("IMSEQuality")   # the module's Widget (its "self")
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

MODULES_FOLDER = Path(__file__).resolve().parents[2] / "IMSESlicer"


class Messages:
    """What ``slicer.util``'s message boxes would have shown; ``confirm_answer`` answers the
    OK/Cancel and Yes/No questions."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []
        self.confirm_answer = True

    def record(self, kind: str):
        def show(text, *args, **kwargs):
            self.shown.append((kind, str(text)))
            return self.confirm_answer if kind == "confirm" else None

        return show

    def of_kind(self, kind: str) -> list[str]:
        return [text for shown_kind, text in self.shown if shown_kind == kind]


messages = Messages()


class _Application(QtCore.QObject):
    """``slicer.app``: event processing, settings and the startup signal modules hook into."""

    def __init__(self) -> None:
        super().__init__()
        self._qt = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
        self.startup_callbacks: list = []
        self.commandOptions = lambda: types.SimpleNamespace(testingEnabled=True)

    def connect(self, signal: str, callback) -> None:  # PythonQt's string-signal style
        if signal == "startupCompleted()":
            self.startup_callbacks.append(callback)

    def processEvents(self) -> None:
        self._qt.processEvents()

    def layoutManager(self):
        return None

    def setOverrideCursor(self, cursor) -> None:
        self._qt.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        self._qt.restoreOverrideCursor()

    def settings(self):
        return QtCore.QSettings()


def _qt_module() -> types.ModuleType:
    """PythonQt's ``qt`` module: QtCore, QtGui, QtWidgets and QUiLoader in one namespace."""
    module = types.ModuleType("qt")
    for source in (QtCore, QtGui, QtWidgets, QtUiTools):
        for name in dir(source):
            if name.startswith("Q") or name in ("Qt", "Signal", "Slot"):
                setattr(module, name, getattr(source, name))
    return module


def _load_ui(path):
    """``slicer.util.loadUI`` with our custom widget classes registered."""
    from . import widgets

    file = QtCore.QFile(str(path))
    if not file.exists():
        raise RuntimeError(f"Could not load UI file: file not found {path}")
    file.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
    loader = QtUiTools.QUiLoader()
    for cls in widgets.CUSTOM_WIDGETS:
        loader.registerCustomWidget(cls)
    widget = loader.load(file)
    file.close()
    if widget is None:
        raise RuntimeError(f"Could not load UI file: {path}: {loader.errorString()}")
    return widget


def _child_widget_variables(widget):
    """``slicer.util.childWidgetVariables``: PythonQt names a child by ``name``, PySide6 by
    ``objectName``."""
    ui = types.SimpleNamespace()
    for child in widget.findChildren(QtCore.QObject):
        if child.objectName:
            setattr(ui, child.objectName, child)
    return ui


def _add_slice_views(scene) -> None:
    """Red, Yellow and Green slice nodes with their composite nodes, as the layout creates."""
    for name in ("Red", "Yellow", "Green"):
        if scene.GetFirstNode(name, "vtkMRMLSliceCompositeNode") is None:
            composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", name)
            composite.SetLayoutName(name)
            composite.SetSingletonTag(name)


def install() -> None:
    """Put the stand-in in place (idempotent): after this, module files import as in Slicer."""
    import slicer
    import slicer.util

    if getattr(slicer, "standin_installed", False):
        return
    import vtk

    from . import parameter_node, scripted_module, widgets

    app = _Application()
    qt = _qt_module()
    ctk = types.ModuleType("ctk")
    for cls in widgets.CUSTOM_WIDGETS:
        if cls.__name__.startswith("ctk"):
            setattr(ctk, cls.__name__, cls)
    sys.modules["qt"] = qt
    sys.modules["ctk"] = ctk

    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    for name in ("parameterNodeWrapper", "WithinRange", "Choice", "Default", "Decimals"):
        setattr(wrapper, name, getattr(parameter_node, name))
    for name, module in (("i18n", i18n), ("parameterNodeWrapper", wrapper), ("ScriptedLoadableModule", scripted_module)):
        sys.modules[f"slicer.{name}"] = module
        setattr(slicer, name, module)

    widgets.register_in_slicer_namespace()
    slicer.app = app
    slicer.mrmlScene = slicer.vtkMRMLScene()
    _add_slice_views(slicer.mrmlScene)
    slicer.modules = types.SimpleNamespace()
    slicer.util.loadUI = _load_ui
    slicer.util.childWidgetVariables = _child_widget_variables
    for kind in ("error", "warning", "info"):
        setattr(slicer.util, f"{kind}Display", messages.record(kind))
    slicer.util.confirmOkCancelDisplay = messages.record("confirm")
    slicer.util.confirmYesNoDisplay = messages.record("confirm")
    slicer.util.delayDisplay = lambda *args, **kwargs: app.processEvents()
    slicer.util.modulePath = lambda name: str(MODULES_FOLDER / f"{name}.py")
    slicer.vtk = vtk
    if str(MODULES_FOLDER) not in sys.path:
        sys.path.insert(0, str(MODULES_FOLDER))
    slicer.standin_installed = True


def clear_scene() -> None:
    """``slicer.mrmlScene.Clear()`` keeping the slice views, as File > Close Scene does."""
    import slicer

    slicer.mrmlScene.Clear(0)
    _add_slice_views(slicer.mrmlScene)
    messages.shown.clear()
    messages.confirm_answer = True


def open_module(name: str):
    """Load module ``name`` as Slicer does (module object, then its panel), enter it, and
    return the module's Widget object (what ``widgetRepresentation().self()`` gives)."""
    import qt
    import slicer

    module_file = importlib.import_module(name)
    parent = types.SimpleNamespace(path=str(MODULES_FOLDER / f"{name}.py"))
    getattr(module_file, name)(parent)
    setattr(slicer.modules, name.lower(), parent)
    panel = slicer.qMRMLWidget()
    panel.setLayout(qt.QVBoxLayout())
    panel.setMRMLScene(slicer.mrmlScene)
    panel.windowTitle = parent.title
    panel.size = QtCore.QSize(460, 900)
    widget = getattr(module_file, f"{name}Widget")(panel)
    widget.setup()
    widget.enter()
    panel.show()
    app_process_events()
    widget.module = parent
    return widget


def wait_for_run(widget, seconds: float = 600.0) -> None:
    """Process events until the panel's run has ended, as the user waits while the panel's
    timer polls it (``widget.controller``: an IMSESlicerLib.panel.RunController)."""
    import time

    deadline = time.monotonic() + seconds
    while widget.controller.running and time.monotonic() < deadline:
        app_process_events(1)
        time.sleep(0.05)
    if widget.controller.running:
        raise TimeoutError(f"The run did not end within {seconds} s.")


def app_process_events(rounds: int = 3) -> None:
    import slicer

    for _ in range(rounds):
        slicer.app.processEvents()


def screenshot(widget, path: Path) -> Path:
    """Save a PNG of a module panel (``widget.parent``) for a person to look at."""
    app_process_events()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.parent.grab().save(str(path)):
        raise RuntimeError(f"Could not save the screenshot {path}")
    return path
