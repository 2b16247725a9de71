"""imse: the IMSESlicer backend.

Learned spatial-error evaluation (IMSE), multi-modal registration and AdaCS cardiac motion on
torch, NumPy and SimpleITK. It never imports Slicer or Qt. Geometry and units follow one
convention, stated in :mod:`imse.geometry`.
"""

__version__ = "0.1.0"
