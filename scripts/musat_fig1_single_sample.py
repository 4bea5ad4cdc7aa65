"""A linear model groks addition from the single sample 1 + 1 = 2 (Musat, Fig. 1; papers.md E2.1, A9).

`python scripts/musat_fig1_single_sample.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run musat_fig1_single_sample` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.musat_fig1_single_sample`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "musat_fig1_single_sample", *sys.argv[1:]]))
