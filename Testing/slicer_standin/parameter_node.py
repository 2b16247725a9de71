"""A stand-in for ``slicer.parameterNodeWrapper``: the subset of its API our modules use.

Real Slicer (Base/Python/slicer/parameterNodeWrapper) turns a class of annotated fields into a
typed view of a ``vtkMRMLScriptedModuleNode``: plain values are stored as node parameters, MRML
node fields as node references, and ``connectGui(ui)`` binds every widget whose dynamic
property ``SlicerParameterName`` names a field, both ways. This stand-in keeps those
semantics (defaults written on first wrap, ``WithinRange``/``Choice``/``Default``
annotations, the widget kinds listed in ``_connector``) so that module code written for real
Slicer runs unchanged here. It is test scaffolding and never ships.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import vtk

import slicer

PARAMETER_PROPERTY = "SlicerParameterName"


@dataclasses.dataclass(frozen=True)
class WithinRange:
    minimum: float
    maximum: float


@dataclasses.dataclass(frozen=True)
class Choice:
    choices: tuple

    def __init__(self, choices):
        object.__setattr__(self, "choices", tuple(choices))


@dataclasses.dataclass(frozen=True)
class Default:
    value: object


@dataclasses.dataclass(frozen=True)
class Decimals:
    value: int


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    type: type
    annotations: tuple
    default: object
    node_types: tuple = ()  # every node class of a union such as ``vtkMRMLLabelMapVolumeNode | vtkMRMLSegmentationNode | None``

    @property
    def is_node(self) -> bool:
        return isinstance(self.type, type) and issubclass(self.type, slicer.vtkMRMLNode)

    @property
    def node_class_names(self) -> list[str]:
        """What the real wrapper's ``getNodeTypes`` gives a node combo box."""
        return [kind.__name__ for kind in self.node_types or (self.type,)]

    def annotation(self, kind):
        return next((a for a in self.annotations if isinstance(a, kind)), None)

    def encode(self, value) -> str:
        return str(value)

    def decode(self, text: str):
        if self.type is bool:
            return text == "True"
        if self.type is Path:
            return Path(text) if text else None
        return self.type(text)

    def validate(self, value):
        limits = self.annotation(WithinRange)
        if limits and not limits.minimum <= value <= limits.maximum:
            raise ValueError(f"{self.name} must lie in [{limits.minimum}, {limits.maximum}], got {value}.")
        choice = self.annotation(Choice)
        if choice and value not in choice.choices:
            raise ValueError(f"{self.name} must be one of {choice.choices}, got {value!r}.")


def _fields(cls) -> dict[str, _Field]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        annotations: tuple = ()
        if typing.get_origin(hint) is typing.Annotated:
            hint, *rest = typing.get_args(hint)
            annotations = tuple(rest)
        node_types: tuple = ()
        if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            node_types = tuple(arg for arg in members if isinstance(arg, type) and issubclass(arg, slicer.vtkMRMLNode))
            hint = members[0]
        default = next((a.value for a in annotations if isinstance(a, Default)), getattr(cls, name, None))
        if default is None and not (isinstance(hint, type) and issubclass(hint, slicer.vtkMRMLNode)) and hint is not Path:
            default = {bool: False, int: 0, float: 0.0, str: ""}.get(hint)
            choice = next((a for a in annotations if isinstance(a, Choice)), None)
            if choice:
                default = choice.choices[0]
        fields[name] = _Field(name, hint, annotations, default, node_types)
    return fields


class _Connector:
    """Two-way binding between one widget and one field."""

    def __init__(self, widget, field: _Field) -> None:
        self.widget = widget
        self.field = field
        self.callback = None
        if field.annotation(Choice) and hasattr(widget, "addItem"):
            widget.clear()
            for value in field.annotation(Choice).choices:
                widget.addItem(str(value))
        limits = field.annotation(WithinRange)
        if limits and hasattr(widget, "minimum"):
            widget.minimum, widget.maximum = limits.minimum, limits.maximum
        self.signal = self._signal()
        self.signal.connect(self._changed)

    def _signal(self):
        widget = self.widget
        if self.field.is_node:
            widget.nodeTypes = self.field.node_class_names
            return widget.currentNodeChanged
        if hasattr(widget, "currentPathChanged"):
            return widget.currentPathChanged
        if self.field.annotation(Choice):
            return widget.currentIndexChanged
        if hasattr(widget, "toggled"):
            return widget.toggled
        if hasattr(widget, "valueChanged"):
            return widget.valueChanged
        if hasattr(widget, "textChanged"):
            return widget.textChanged
        raise TypeError(f"The stand-in cannot bind a {type(widget).__name__} to parameter {self.field.name}.")

    def _changed(self, *args) -> None:
        if self.callback is not None:
            self.callback(self.read())

    def read(self):
        widget, field = self.widget, self.field
        if field.is_node:
            return widget.currentNode()
        if hasattr(widget, "currentPathChanged"):
            return Path(widget.currentPath) if widget.currentPath else None
        if field.annotation(Choice):
            return field.annotation(Choice).choices[widget.currentIndex]
        if hasattr(widget, "toggled"):
            return widget.checked
        if hasattr(widget, "valueChanged"):
            return field.type(widget.value)
        return widget.text

    def write(self, value) -> None:
        widget, field = self.widget, self.field
        blocked = widget.blockSignals(True)
        try:
            if field.is_node:
                widget.setCurrentNode(value)
            elif hasattr(widget, "currentPathChanged"):
                widget.currentPath = str(value) if value else ""
            elif field.annotation(Choice):
                widget.currentIndex = list(field.annotation(Choice).choices).index(value)
            elif hasattr(widget, "toggled"):
                widget.checked = bool(value)
            elif hasattr(widget, "valueChanged"):
                widget.value = value
            else:
                widget.text = str(value)
        finally:
            widget.blockSignals(blocked)


class _Wrapper:
    """Base of every wrapped class: typed attributes backed by the parameter node."""

    _fields: dict[str, _Field] = {}

    def __init__(self, parameterNode) -> None:
        object.__setattr__(self, "parameterNode", parameterNode)
        object.__setattr__(self, "_guis", {})
        object.__setattr__(self, "_next_tag", 0)
        object.__setattr__(self, "_updating_gui", False)
        for field in self._fields.values():
            if not field.is_node and not parameterNode.GetParameter(field.name) and field.default is not None:
                parameterNode.SetParameter(field.name, field.encode(field.default))

    def __getattr__(self, name):
        fields = type(self)._fields
        if name not in fields:
            raise AttributeError(name)
        field = fields[name]
        if field.is_node:
            return self.parameterNode.GetNodeReference(name)
        text = self.parameterNode.GetParameter(name)
        return field.decode(text) if text else field.default

    def __setattr__(self, name, value) -> None:
        fields = type(self)._fields
        if name not in fields:
            raise AttributeError(f"{type(self).__name__} has no parameter '{name}'.")
        field = fields[name]
        if field.is_node:
            self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        else:
            field.validate(value)
            self.parameterNode.SetParameter(name, field.encode(value))

    # vtkObject-like delegation, as the real wrapper offers, for VTKObservationMixin and NodeModify
    def AddObserver(self, event, callback, priority=0.0):
        return self.parameterNode.AddObserver(event, callback, priority)

    def RemoveObserver(self, tag):
        self.parameterNode.RemoveObserver(tag)

    def StartModify(self):
        return self.parameterNode.StartModify()

    def EndModify(self, previous):
        return self.parameterNode.EndModify(previous)

    def connectGui(self, ui) -> int:
        widgets = ui.findChildren(slicer_qt().QWidget) if hasattr(ui, "findChildren") else list(vars(ui).values())
        connectors = {}
        for widget in widgets:
            name = widget.property(PARAMETER_PROPERTY)
            if name:
                if name not in self._fields:
                    raise ValueError(f"The .ui binds widget '{widget.objectName}' to unknown parameter '{name}'.")
                connectors[name] = _Connector(widget, self._fields[name])
        tag = self._next_tag
        object.__setattr__(self, "_next_tag", tag + 1)
        for name, connector in connectors.items():
            connector.write(getattr(self, name))
            connector.callback = lambda value, name=name: self._from_gui(name, value)
        observer = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self._to_gui())
        self._guis[tag] = (connectors, observer)
        return tag

    def disconnectGui(self, tag) -> None:
        connectors, observer = self._guis.pop(tag, ({}, None))
        for connector in connectors.values():
            connector.callback = None
        if observer is not None:
            self.parameterNode.RemoveObserver(observer)

    def _from_gui(self, name, value) -> None:
        if not self._updating_gui:
            setattr(self, name, value)

    def _to_gui(self) -> None:
        if self._updating_gui:
            return
        object.__setattr__(self, "_updating_gui", True)
        try:
            for connectors, _ in self._guis.values():
                for name, connector in connectors.items():
                    connector.write(getattr(self, name))
        finally:
            object.__setattr__(self, "_updating_gui", False)


def slicer_qt():
    import qt

    return qt


def parameterNodeWrapper(cls):
    """Class decorator: ``Wrapped(parameterNode)`` gives typed access to the node's values."""
    wrapped = type(cls.__name__, (_Wrapper,), {"__doc__": cls.__doc__, "__module__": cls.__module__})
    wrapped._fields = _fields(cls)
    return wrapped
