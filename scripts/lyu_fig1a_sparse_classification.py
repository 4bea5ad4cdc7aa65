"""Lyu et al. (ICLR 2024) Fig. 1a: a diagonal net on sparse ±1 classification groks at t ≈ (1/λ) ln α.

`python scripts/lyu_fig1a_sparse_classification.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run lyu_fig1a_sparse_classification` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.lyu_fig1a_sparse_classification`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "lyu_fig1a_sparse_classification", *sys.argv[1:]]))
