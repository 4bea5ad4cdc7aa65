"""Tan, Gai & Zhang, Figs. 3 and 2: test loss with the stable rank, and the cyclic embeddings (AdamW, addition mod p).

`python scripts/tan_fig3_stable_rank.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run tan_fig3_stable_rank` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.tan_fig3_stable_rank`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "tan_fig3_stable_rank", *sys.argv[1:]]))
