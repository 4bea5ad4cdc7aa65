"""Lyu et al. (ICLR 2024) Fig. 2a–c: grokking of modular addition by a two-layer ReLU MLP (papers.md E3.1).

`python scripts/lyu_fig2_modular_addition.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run lyu_fig2_modular_addition` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.lyu_fig2_modular_addition`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "lyu_fig2_modular_addition", *sys.argv[1:]]))
