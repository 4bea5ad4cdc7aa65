"""Lyu et al. (ICLR 2024) Fig. 1b: misgrokking, test accuracy falls from ≈ 100% to ≈ 50% at t ≈ (1/λ) ln α.

`python scripts/lyu_fig1b_misgrokking.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run lyu_fig1b_misgrokking` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.lyu_fig1b_misgrokking`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "lyu_fig1b_misgrokking", *sys.argv[1:]]))
