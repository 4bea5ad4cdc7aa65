"""Two training clocks in gradient flow: a depth-3 linear network with cross-entropy (Tan, Gai & Zhang; papers.md A13).

`python scripts/tan_deep_linear_two_clocks.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run tan_deep_linear_two_clocks` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.tan_deep_linear_two_clocks`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "tan_deep_linear_two_clocks", *sys.argv[1:]]))
