"""Runs ANTs SyN in the interpreter of its own environment (``make ants`` builds it): antspyx
0.6.3 pins numpy < 2.4 and scipy < 1.16, so it cannot share ours. This file imports nothing of
``imse``; :func:`imse.peers.ants_syn` runs it as a script:

    python ants_worker.py FIXED MOVING OUTPUT_PREFIX

It registers MOVING onto FIXED (an affine stage, then SyN, both with Mattes mutual
information: antspyx's ``SyN`` preset with ``aff_metric`` and ``syn_metric`` ``mattes``),
writes the composed fixed-to-moving displacement field (mm, LPS, on the fixed grid, ITK's
resampling convention) as OUTPUT_PREFIX + ``comptx.nii.gz``, and prints one JSON line:
``{"field": path, "seconds": seconds of the registration alone}``.
"""

import json
import sys
import time


def main(fixed_path: str, moving_path: str, output_prefix: str) -> None:
    import ants

    fixed, moving = ants.image_read(fixed_path), ants.image_read(moving_path)
    started = time.perf_counter()
    result = ants.registration(fixed, moving, type_of_transform="SyN", aff_metric="mattes", syn_metric="mattes")
    seconds = time.perf_counter() - started
    field = ants.apply_transforms(fixed, moving, result["fwdtransforms"], compose=output_prefix)
    print(json.dumps({"field": field, "seconds": seconds}))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python ants_worker.py FIXED MOVING OUTPUT_PREFIX")
    main(*sys.argv[1:])
