"""Full flows θ^λ(τ/λ) collapse onto the slow flow θ°(τ) as λ → 0, at rate O(λ) (papers.md A2).

`python scripts/slow_flow_convergence.py [--smoke | --full] [--out DIR] [--set figure.FIELD=VALUE]` is
`gflow run slow_flow_convergence` with the same arguments; the experiment, its sizes and the choices it makes
are in `gflow.papers.slow_flow_convergence`.
"""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "slow_flow_convergence", *sys.argv[1:]]))
