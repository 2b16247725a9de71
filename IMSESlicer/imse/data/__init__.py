"""Built-in data sets, all shipped inside installed packages (nothing is downloaded):

* the MNI ICBM152 brain atlas (nilearn) with synthetic T1/T2/PD/CT contrasts,
* registration pairs with a known deformation, built from it,
* a cardiac ultrasound cine loop (pydicom-data) and a coronal T1 slice (dipy),

plus the SimpleITK tools that build the pairs: random smooth displacement fields, warping and
inversion. Needs the optional packages ``pip install 'imse[data]'``.
"""

from .brain import LABELS, TISSUES, BrainAtlas, load_mni_atlas
from .contrasts import CONTRASTS, synthesize_contrast
from .coronal_slice import load_t1_coronal_slice
from .deformation import invert_displacement, random_displacement, warp_image
from .echo import EchoCine, load_echo_cine
from .pairs import Pair, make_pair

__all__ = [
    "CONTRASTS",
    "LABELS",
    "TISSUES",
    "BrainAtlas",
    "EchoCine",
    "Pair",
    "invert_displacement",
    "load_echo_cine",
    "load_mni_atlas",
    "load_t1_coronal_slice",
    "make_pair",
    "random_displacement",
    "synthesize_contrast",
    "warp_image",
]
