"""MRML tests run against the real MRML library of the slicer-core package (no Slicer
application). IMSESlicerLib is imported from the source tree, as Slicer would."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "IMSESlicer"))
