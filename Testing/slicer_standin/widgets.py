"""Stand-ins for the CTK and qMRML widget classes our .ui files use, on real Qt (PySide6).

Written attribute-style, as the module code (see Testing/conftest.py). Each keeps the name,
the Qt properties (settable from Qt Designer files) and the signals of
the real class that our modules touch; behaviour that needs the Slicer application (node
creation dialogs, the subject hierarchy) is left out. Test scaffolding; never ships.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Property, Signal

import slicer


def _property(kind, attribute: str, default, on_change=None):
    """A Qt property stored in ``self.<attribute>`` (so .ui files and attribute style both work)."""

    def getter(self):
        return getattr(self, attribute, default)

    def setter(self, value):
        setattr(self, attribute, value)
        if on_change is not None:
            on_change(self)

    return Property(kind, getter, setter)


class qMRMLWidget(QtWidgets.QWidget):
    """A widget that hands its MRML scene to every descendant that takes one (the real .ui
    files connect ``mrmlSceneChanged(vtkMRMLScene*)`` to each child's ``setMRMLScene``)."""

    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        for child in self.findChildren(QtWidgets.QWidget):
            if hasattr(child, "setMRMLScene") and not isinstance(child, qMRMLWidget):
                child.setMRMLScene(scene)
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Lists the scene's nodes of ``nodeTypes`` (kept current as nodes come and go)."""

    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)
    nodeAddedByUser = Signal(object)

    nodeTypes = _property("QStringList", "_node_types", [], lambda self: self._refresh())
    noneEnabled = _property(bool, "_none_enabled", False, lambda self: self._refresh())
    addEnabled = _property(bool, "_add_enabled", False)
    removeEnabled = _property(bool, "_remove_enabled", False)
    renameEnabled = _property(bool, "_rename_enabled", False)
    editEnabled = _property(bool, "_edit_enabled", False)
    showChildNodeTypes = _property(bool, "_show_child_node_types", True, lambda self: self._refresh())
    selectNodeUponCreation = _property(bool, "_select_upon_creation", True)
    baseName = _property(str, "_base_name", "")
    noneDisplay = _property(str, "_none_display", "None")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._nodes: list = []
        self._observers: list[int] = []
        self._attribute_filters: dict[str, str] = {}
        super().currentIndexChanged.connect(self._index_changed)

    def setMRMLScene(self, scene) -> None:
        for tag in self._observers:
            self._scene.RemoveObserver(tag)
        self._scene = scene
        self._observers = [
            scene.AddObserver(event, lambda caller, event: QtCore.QTimer.singleShot(0, self._refresh))
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent)
        ] if scene is not None else []
        self._refresh()

    def mrmlScene(self):
        return self._scene

    def addAttribute(self, nodeType: str, name: str, value: str = "") -> None:
        self._attribute_filters[name] = value
        self._refresh()

    def _matches(self, node) -> bool:
        if node.GetHideFromEditors():
            return False
        if not any(node.IsA(kind) for kind in self._node_types):
            return False
        if not self.showChildNodeTypes and node.GetClassName() not in self._node_types:
            return False
        return all(node.GetAttribute(name) == value for name, value in self._attribute_filters.items())

    def _refresh(self) -> None:
        current = self.currentNode() if self._nodes else None
        nodes = []
        if self._scene is not None:
            nodes = [self._scene.GetNthNode(i) for i in range(self._scene.GetNumberOfNodes())]
            nodes = [node for node in nodes if self._matches(node)]
        blocked = self.blockSignals(True)
        self.clear()
        self._nodes = ([None] if self.noneEnabled else []) + nodes
        for node in self._nodes:
            self.addItem(self.noneDisplay if node is None else node.GetName())
        self.blockSignals(blocked)
        if current in self._nodes:
            self.currentIndex = self._nodes.index(current)
        elif self._nodes:
            self.currentIndex = 0
            self._index_changed(0)

    def _index_changed(self, index: int) -> None:
        node = self.currentNode()
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(node.GetID() if node else "")

    def nodes(self) -> list:
        return [node for node in self._nodes if node is not None]

    def currentNode(self):
        index = self.currentIndex
        return self._nodes[index] if 0 <= index < len(self._nodes) else None

    def currentNodeID(self) -> str:
        node = self.currentNode()
        return node.GetID() if node else ""

    def setCurrentNode(self, node) -> None:
        if node is not None and node not in self._nodes:
            self._refresh()
        if node in self._nodes:
            self.currentIndex = self._nodes.index(node)

    def setCurrentNodeID(self, node_id: str) -> None:
        self.setCurrentNode(self._scene.GetNodeByID(node_id) if node_id else None)

    def addNode(self, nodeType: str = ""):
        """What the user's "Create new ..." entry does."""
        kind = nodeType or self._node_types[0]
        node = self._scene.AddNewNodeByClass(kind, self._scene.GenerateUniqueName(self.baseName or kind.removeprefix("vtkMRML")))
        self._refresh()
        self.setCurrentNode(node)
        self.nodeAddedByUser.emit(node)
        return node


class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):
    """Several nodes chosen at once by check marks (unchecked by default); the check states live
    in the combo box only, and the box shows the checked nodes' names."""

    checkedNodesChanged = Signal()

    def __init__(self, parent=None):
        self._checked_ids: set[str] = set()
        super().__init__(parent)

    def checkedNodes(self) -> list:
        return [node for node in self.nodes() if node.GetID() in self._checked_ids]

    def uncheckedNodes(self) -> list:
        return [node for node in self.nodes() if node.GetID() not in self._checked_ids]

    def allChecked(self) -> bool:
        return not self.uncheckedNodes()

    def noneChecked(self) -> bool:
        return not self.checkedNodes()

    def checkState(self, node):
        checked = node is not None and node in self.nodes() and node.GetID() in self._checked_ids
        return QtCore.Qt.CheckState.Checked if checked else QtCore.Qt.CheckState.Unchecked

    def setCheckState(self, node, state) -> None:
        if node is None or node not in self.nodes() or state == self.checkState(node):
            return
        if state == QtCore.Qt.CheckState.Checked:
            self._checked_ids.add(node.GetID())
        else:
            self._checked_ids.discard(node.GetID())
        self._show_checks()
        self.checkedNodesChanged.emit()

    def check(self, node) -> None:
        self.setCheckState(node, QtCore.Qt.CheckState.Checked)

    def uncheck(self, node) -> None:
        self.setCheckState(node, QtCore.Qt.CheckState.Unchecked)

    def _refresh(self) -> None:
        super()._refresh()
        present = {node.GetID() for node in self.nodes()}
        if self._checked_ids - present:
            self._checked_ids &= present
            self.checkedNodesChanged.emit()
        self._show_checks()

    def _show_checks(self) -> None:
        for index, node in enumerate(self._nodes):
            if node is not None:
                self.model().item(index).setCheckState(self.checkState(node))
        self.update()

    def paintEvent(self, event) -> None:
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = ", ".join(node.GetName() for node in self.checkedNodes()) or "None"
        painter.drawComplexControl(QtWidgets.QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QtWidgets.QStyle.ControlElement.CE_ComboBoxLabel, option)


class qMRMLSegmentSelectorWidget(qMRMLNodeComboBox):
    """Segmentation node choice; the segment is taken by ID (first segment by default)."""

    def currentSegmentID(self) -> str:
        node = self.currentNode()
        if node is None or node.GetSegmentation().GetNumberOfSegments() == 0:
            return ""
        return node.GetSegmentation().GetNthSegmentID(0)


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    """A titled section (the real one folds; here it only shows its title)."""

    text = _property(str, "_text", "", lambda self: setattr(self, 'title', self._text))
    collapsed = _property(bool, "_collapsed", False)


class ctkSliderWidget(QtWidgets.QDoubleSpinBox):
    """A slider with a spin box; its value, range, step and decimals are a double spin box's."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.keyboardTracking = False


class ctkPathLineEdit(QtWidgets.QLineEdit):
    """A path field; ``currentPath`` is the text."""

    currentPathChanged = Signal(str)
    filters = _property(int, "_filters", 0)
    nameFilters = _property("QStringList", "_name_filters", [])

    def __init__(self, parent=None):
        super().__init__(parent)
        self.textChanged.connect(self.currentPathChanged.emit)

    def _get_path(self):
        return self.text

    def _set_path(self, value):
        self.text = value

    currentPath = Property(str, _get_path, _set_path)


CUSTOM_WIDGETS = [qMRMLWidget, qMRMLNodeComboBox, qMRMLCheckableNodeComboBox, qMRMLSegmentSelectorWidget, ctkCollapsibleButton, ctkSliderWidget, ctkPathLineEdit]


def register_in_slicer_namespace() -> None:
    for cls in (qMRMLWidget, qMRMLNodeComboBox, qMRMLCheckableNodeComboBox, qMRMLSegmentSelectorWidget):
        setattr(slicer, cls.__name__, cls)
