"""The ``imse`` command: thin subcommands over the Python API.

Every subcommand reports bad input as one line ``imse: error: ...`` on stderr and exits with
status 2, leaving no partial output behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .errors import ImageError


def _info(args: argparse.Namespace) -> None:
    from .image import read_image

    image = read_image(args.image, dtype=None)
    geometry = image.geometry
    values = image.array
    components = f", {values.shape[-1]} components" if image.is_vector else ""
    print(f"{args.image}: {image.dim}D, size {image.shape[::-1]} (x, y[, z]){components}, type {values.dtype}")
    print(f"  spacing (mm): {tuple(round(v, 4) for v in geometry.spacing)}")
    print(f"  origin (mm, LPS): {tuple(round(v, 3) for v in geometry.origin)}")
    print(f"  direction: {np.round(geometry.direction_matrix, 4).tolist()}")
    print(f"  intensity: min {values.min():.4g}, max {values.max():.4g}, mean {values.mean():.4g}")


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imse",
        description="IMSE spatial-error evaluation and multi-modal registration (the IMSESlicer backend).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print an image's geometry (mm, LPS) and intensity range")
    info.add_argument("image", help="image file (NIfTI, NRRD, MHA, ...) or a folder with one DICOM series")
    info.set_defaults(handler=_info)

    demo = commands.add_parser("demo", help="run the main job on built-in data and write its outputs")
    demo.add_argument("--out", default="demo-output", help="output folder (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic pair (default: %(default)s)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except ImageError as error:
        parser.exit(2, f"imse: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
