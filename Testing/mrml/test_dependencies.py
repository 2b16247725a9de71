"""Installing the backend's packages inside Slicer: asked first, torch through the PyTorch
extension's utilities, the rest through Slicer's pip; nothing happens when the user says no."""

import sys
import types

import slicer.util

from IMSESlicerLib import dependencies


def _pretend_missing(monkeypatch, missing):
    installed = set()
    real_find_spec = dependencies.importlib.util.find_spec
    monkeypatch.setattr(
        dependencies.importlib.util,
        "find_spec",
        lambda name: None if name in missing and name not in installed else real_find_spec(name),
    )
    calls = []
    torch_utils = types.ModuleType("PyTorchUtils")

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=None):
            calls.append(("torch", askConfirmation, torchVersionRequirement))
            installed.add("torch")
            return types.SimpleNamespace(__version__="2.13.0")

    torch_utils.PyTorchUtilsLogic = PyTorchUtilsLogic
    monkeypatch.setitem(sys.modules, "PyTorchUtils", torch_utils)

    def pip_install(requirements):
        calls.append(("pip", list(requirements)))
        installed.update(name for name in missing if any(r.startswith(name) for r in requirements))

    monkeypatch.setattr(slicer.util, "pip_install", pip_install)
    return calls


def test_nothing_is_asked_when_everything_is_installed():
    assert dependencies.missing_packages() == []
    assert dependencies.ensure_backend(lambda question: (_ for _ in ()).throw(AssertionError("asked")))


def test_declining_installs_nothing(monkeypatch):
    calls = _pretend_missing(monkeypatch, {"torch", "safetensors"})
    questions = []
    assert not dependencies.ensure_backend(lambda question: questions.append(question) or False)
    assert calls == [] and "torch, safetensors" in questions[0]


def test_accepting_installs_torch_through_the_pytorch_extension_then_the_rest_with_pip(monkeypatch):
    calls = _pretend_missing(monkeypatch, {"torch", "safetensors"})
    assert dependencies.ensure_backend(lambda question: True)
    assert calls == [("torch", False, dependencies.TORCH_REQUIREMENT), ("pip", ["safetensors>=0.4"])]
