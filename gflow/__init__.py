"""gflow: gradient flow with weight decay, integrated as an ODE, for the study of grokking.

Time convention everywhere: F_λ = F + (λ/2)‖θ‖², dθ/dt = −∇F_λ(θ), t is ODE time and
τ = λt is slow time.
"""

import importlib.metadata

from . import models as models, tasks as tasks
from ._chebyshev import RKC as RKC, RKC1 as RKC1
from ._gd import gd as gd
from ._losses import (
    MSE as MSE,
    AbstractGaussNewtonLoss as AbstractGaussNewtonLoss,
    AbstractLoss as AbstractLoss,
    AbstractResidualLoss as AbstractResidualLoss,
    CrossEntropy as CrossEntropy,
    Logistic as Logistic,
    Residuals as Residuals,
    Scalar as Scalar,
)
from ._problem import GflowError as GflowError, Problem as Problem, ProblemError as ProblemError
from ._simulate import (
    SOLVER_NAMES as SOLVER_NAMES,
    choose_solver as choose_solver,
    count_params as count_params,
    join as join,
    log_times as log_times,
    simulate as simulate,
)
from ._slow import (
    FlowLimit as FlowLimit,
    compare as compare,
    flow_limit as flow_limit,
    project_tangent as project_tangent,
    slow_flow as slow_flow,
)
from ._smoothness import nonsmooth_operations as nonsmooth_operations
from ._solution import RESULTS as RESULTS, Trajectory as Trajectory
from ._sweep import (
    SweepStoreError as SweepStoreError,
    load_sweep as load_sweep,
    log_range as log_range,
    sweep as sweep,
)


def __getattr__(name):
    # `gflow.plot` and `gflow.analysis` are reachable after `import gflow`, but imported on first
    # use: matplotlib and SciPy's optimisers cost seconds a solve-only user need not pay.
    if name in ("plot", "analysis"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name == "plot_slow_flow":  # lives in gflow.plot (matplotlib), reachable from the top too
        from .plot import plot_slow_flow

        return plot_slow_flow
    raise AttributeError(f"module 'gflow' has no attribute {name!r}")


try:
    __version__ = importlib.metadata.version("gflow")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
