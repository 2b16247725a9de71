"""IMSESlicerLib: the bridge between MRML nodes and the ``imse`` backend.

Volume nodes <-> ``imse.image.Image`` (RAS <-> LPS), displacement fields <-> grid-transform
nodes, maps <-> coloured scalar volumes, metrics <-> tables, curves <-> plots, and the job
runner that runs long ``imse`` commands outside the GUI thread. It imports slicer/vtk but
never qt at import time, so that it is testable with the ``slicer-core`` package. The
modules that use it arrive with the Slicer-extension issue.
"""
