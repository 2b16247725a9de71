"""The Slicer extension's build and description files agree with the source tree.

No Slicer build runs here, so these checks stand in for CMake's own: every module file has
its slicerMacroBuildScriptedModule (with the generic tests), every backend and bridge file is
installed, every resource a module needs exists and is installed, the .s4ext has every field,
and every control of every panel has a tooltip.
"""

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES_FOLDER = ROOT / "IMSESlicer"
MODULES = sorted(path.stem for path in MODULES_FOLDER.glob("*.py"))
CONTROLS = {
    "QComboBox", "qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget", "QSpinBox", "QDoubleSpinBox", "ctkSliderWidget",
    "QCheckBox", "QPushButton", "ctkPathLineEdit", "QLineEdit", "QTableWidget", "QPlainTextEdit", "QProgressBar",
}


def _cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set"
    return match.group(1).split()


def test_there_are_five_modules():
    assert MODULES == ["AdaCSCardiac", "IMSEQuality", "IMSERegistration", "IMSETraining", "IMSETranslation"]


def test_every_backend_and_bridge_file_is_installed_and_nothing_else():
    listed = _cmake_list((MODULES_FOLDER / "CMakeLists.txt").read_text(), "IMSE_LIBRARY_SCRIPTS")
    on_disk = sorted(
        str(path.relative_to(MODULES_FOLDER))
        for folder in ("imse", "IMSESlicerLib")
        for path in (MODULES_FOLDER / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert sorted(listed) == on_disk


@pytest.mark.parametrize("module", MODULES)
def test_each_module_is_built_with_generic_tests_and_has_its_resources(module):
    text = (MODULES_FOLDER / "CMakeLists.txt").read_text()
    call = re.search(rf"slicerMacroBuildScriptedModule\(\s*NAME {module}\s+SCRIPTS {module}\.py.*?\)", text, re.S)
    assert call and "WITH_GENERIC_TESTS" in call.group(0)
    resources = _cmake_list((ROOT / "CMakeLists.txt").read_text(), "IMSESlicer_RESOURCES")
    for resource in (f"Resources/UI/{module}.ui", f"Resources/Icons/{module}.png"):
        assert resource in resources and (ROOT / resource).is_file()


def test_every_installed_resource_exists_and_every_shipped_model_is_installed():
    resources = _cmake_list((ROOT / "CMakeLists.txt").read_text(), "IMSESlicer_RESOURCES")
    assert all((ROOT / resource).is_file() for resource in resources)
    models = sorted(f"Resources/Models/{path.name}" for path in (ROOT / "Resources/Models").iterdir() if path.suffix in (".json", ".safetensors"))
    assert models == sorted(resource for resource in resources if resource.startswith("Resources/Models/"))


def test_extension_description_has_every_field():
    fields = {}
    for line in (ROOT / "IMSESlicer.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    for key in ("scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
                "category", "iconurl", "status", "description", "screenshoturls", "enabled"):
        assert fields.get(key), f"{key} is missing from IMSESlicer.s4ext"
    assert fields["depends"] == "PyTorch" and fields["category"] == "Registration"
    top = (ROOT / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in top and "add_subdirectory(IMSESlicer)" in top


@pytest.mark.parametrize("module", MODULES)
def test_every_control_has_a_tooltip(module):
    tree = ElementTree.parse(ROOT / "Resources/UI" / f"{module}.ui")
    top = tree.getroot().find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == module
    missing = [
        widget.get("name")
        for widget in tree.iter("widget")
        if widget.get("class") in CONTROLS and not any(p.get("name") == "toolTip" for p in widget.findall("property"))
    ]
    assert not missing, f"controls without a tooltip in {module}.ui: {missing}"
