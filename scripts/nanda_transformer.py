"""Nanda et al. (ICLR 2023): the one-layer transformer on a + b mod p as a gradient flow, beside GD and AdamW.

`python scripts/nanda_transformer.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run nanda_transformer` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.nanda_transformer`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "nanda_transformer", *sys.argv[1:]]))
