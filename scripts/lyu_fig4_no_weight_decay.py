"""Lyu et al. (ICLR 2024) Fig. 4 (App. B.1): grokking without weight decay, on a log-log time axis (papers.md E3.2).

`python scripts/lyu_fig4_no_weight_decay.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run lyu_fig4_no_weight_decay` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.lyu_fig4_no_weight_decay`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "lyu_fig4_no_weight_decay", *sys.argv[1:]]))
