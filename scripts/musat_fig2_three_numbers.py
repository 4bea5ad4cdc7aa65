"""Grokking 1 + 1 + 1 = 3: onto the zero-loss plane, then straight to (1, 1, 1) (Musat Fig. 2; papers.md E2.2).

`python scripts/musat_fig2_three_numbers.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run musat_fig2_three_numbers` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.musat_fig2_three_numbers`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "musat_fig2_three_numbers", *sys.argv[1:]]))
