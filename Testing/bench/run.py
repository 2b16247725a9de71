"""`make bench`: every benchmark, each writing Markdown and CSV under bench-output/.

Speed figures are medians and ratios against a peer measured in the same run; the machine
is printed with them.
"""

import argparse
import platform
from pathlib import Path

import torch

import bench_adacs
import bench_evaluator
import bench_guidance
import echo_adacs
import bench_registration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench-output")
    args = parser.parse_args()
    out = Path(args.out)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CUDA: {torch.cuda.is_available()}")
    print(bench_evaluator.run(out / "evaluator"))
    print(bench_evaluator.run(out / "evaluator-3d", model="mni-t1-light-3d", paper_recipe_model=None, timings=False))
    print(bench_evaluator.run(out / "evaluator-3d-slicewise", paper_recipe_model=None, timings=False, dim=3))  # the 2D one, for comparison
    print(bench_registration.run(out / "registration"))
    print(bench_guidance.run(out / "guidance"))
    print(bench_adacs.run(out / "adacs"))
    print(echo_adacs.run(out / "adacs"))


if __name__ == "__main__":
    main()
