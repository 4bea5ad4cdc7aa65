"""Boursier, Pesme & Dragomir, App. D.2 (Fig. 4): grokking of a diagonal linear network on sparse regression.

`python scripts/boursier_fig4_diagonal_sparse.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run boursier_fig4_diagonal_sparse` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.boursier_fig4_diagonal_sparse`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "boursier_fig4_diagonal_sparse", *sys.argv[1:]]))
