"""Isolated first-layer dynamics grok modular addition and grow Fourier circles (Musat Fig. 6; papers.md E2.5, A10).

`python scripts/musat_fig6_embedding_dynamics.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run musat_fig6_embedding_dynamics` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.musat_fig6_embedding_dynamics`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "musat_fig6_embedding_dynamics", *sys.argv[1:]]))
