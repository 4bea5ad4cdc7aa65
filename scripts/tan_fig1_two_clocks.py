"""Tan, Gai & Zhang, Fig. 1: grokking of addition mod p with full-batch AdamW at five weight decays.

`python scripts/tan_fig1_two_clocks.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run tan_fig1_two_clocks` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.tan_fig1_two_clocks`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "tan_fig1_two_clocks", *sys.argv[1:]]))
