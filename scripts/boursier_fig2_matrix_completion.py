"""Boursier, Pesme & Dragomir, Fig. 2: grokking in low-rank matrix completion with W = UVᵀ.

`python scripts/boursier_fig2_matrix_completion.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run boursier_fig2_matrix_completion` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.boursier_fig2_matrix_completion`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "boursier_fig2_matrix_completion", *sys.argv[1:]]))
