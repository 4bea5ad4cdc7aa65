"""Toy landscapes and gradient orthogonality near the zero-loss set (Musat Figs. 3, 4; papers.md E2.3, claim 3.4(a)).

`python scripts/musat_fig3_landscapes.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run musat_fig3_landscapes` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.musat_fig3_landscapes`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "musat_fig3_landscapes", *sys.argv[1:]]))
