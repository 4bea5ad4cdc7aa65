"""After memorisation GD follows the norm-minimising tangent direction (Musat Figs. 5, 7; papers.md E2.4, A11).

`python scripts/musat_fig5_alignment.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run musat_fig5_alignment` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.musat_fig5_alignment`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "musat_fig5_alignment", *sys.argv[1:]]))
