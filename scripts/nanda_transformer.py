"""Nanda et al. (ICLR 2023): the one-layer transformer on a + b mod p as a gradient flow, beside GD and AdamW.

A thin entry point: the experiment lives in the package (`gflow.papers.nanda_transformer`), and
this script is `gflow run nanda_transformer` with the same arguments (`--smoke`, `--full`,
`--out DIR`, `--set figure.FIELD=VALUE`, `--overwrite`, `--quiet`). It writes `figure.png`,
`figure.nc` (xarray, `engine="scipy"`), `summary.md`, `config.toml` and `metadata.json` into
`--out` (default: a new `gflow-runs/nanda_transformer-<timestamp>`).

    python scripts/nanda_transformer.py            # quick size: p = 31, GELU, float32 (minutes on 2 cores)
    python scripts/nanda_transformer.py --full     # Nanda's p = 113, 128/4/512, ReLU (GPU)
    python scripts/nanda_transformer.py --smoke    # seconds
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "nanda_transformer", *sys.argv[1:]]))
