"""Boursier, Pesme & Dragomir, Fig. 3: grokking of a two-layer ReLU network on 1-D regression.

`python scripts/boursier_fig3_relu_regression.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run boursier_fig3_relu_regression` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.boursier_fig3_relu_regression`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "boursier_fig3_relu_regression", *sys.argv[1:]]))
