"""Give the module code PythonQt's attribute-style Qt properties before anything imports torch.

Slicer's PythonQt exposes Qt properties as attributes (``button.enabled = False``). PySide6
offers the same through its ``true_property`` feature, which it selects per importing module
(keyed by the module's ``__name__``) and which must be selected before torch is imported in
the process (DESIGN.md, "Testing without the Slicer application"). This root conftest is the
first test code pytest imports, so it selects the feature here, by name, for our module files,
the IMSESlicerLib bridge, the Slicer stand-in (Testing/slicer_standin) and the module tests.
"""

import sys
from pathlib import Path

import PySide6  # noqa: F401  (makes the __feature__ module importable)

TESTING = Path(__file__).resolve().parent
MODULES = TESTING.parent / "IMSESlicer"

names = [path.stem for path in MODULES.glob("*.py")]
names += [f"IMSESlicerLib.{path.stem}" for path in (MODULES / "IMSESlicerLib").glob("*.py")]
names += ["slicer_standin"] + [f"slicer_standin.{path.stem}" for path in (TESTING / "slicer_standin").glob("*.py")]
names += [path.stem for path in (TESTING / "modules").glob("*.py")]
for name in names:
    exec("from __feature__ import true_property", {"__name__": name})

sys.path.insert(0, str(TESTING))  # for slicer_standin
