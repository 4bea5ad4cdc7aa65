"""Lyu et al. (ICLR 2024) Fig. 3: grokking in the completion of the multiplication table (papers.md E3.5, A6).

`python scripts/lyu_fig3_matrix_completion.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run lyu_fig3_matrix_completion` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.lyu_fig3_matrix_completion`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "lyu_fig3_matrix_completion", *sys.argv[1:]]))
