"""Stand-ins for ``slicer.ScriptedLoadableModule``'s four base classes.

They follow Base/Python/slicer/ScriptedLoadableModule.py of real Slicer in what our modules
rely on: the module object filling ``parent`` (title, categories, help, ...), the widget
building into ``self.parent``'s layout, the logic's singleton parameter node (a
``vtkMRMLScriptedModuleNode`` tagged with the module name), and the test case's
``delayDisplay``. Test scaffolding; never ships.
"""

from __future__ import annotations

import importlib
import unittest

import slicer

__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest"]


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = type(self).__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def runTest(self, msec=100, **kwargs):
        module = importlib.import_module(type(self).__module__)
        test_case = getattr(module, self.moduleName + "Test")()
        test_case.messageDelay = msec
        test_case.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        import qt

        self.moduleName = type(self).__name__.removesuffix("Widget")
        self.developerMode = False
        if parent is None:
            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(qt.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if parent is None:
            self.setup()
            self.parent.show()

    def setup(self):
        pass

    def cleanup(self):
        pass

    def enter(self):
        pass

    def exit(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__.removesuffix("Logic")
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            return node
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.messageDelay = 0
        self.displayed: list[str] = []

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        self.displayed.append(message)
        slicer.app.processEvents()
