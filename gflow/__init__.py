"""gflow: gradient flow with weight decay, integrated as an ODE, for the study of grokking.

Time convention everywhere: F_λ = F + (λ/2)‖θ‖², dθ/dt = −∇F_λ(θ), t is ODE time and
τ = λt is slow time.
"""

import importlib.metadata

from . import models as models
from . import tasks as tasks
from ._gd import gd as gd
from ._problem import Problem as Problem
from ._problem import ProblemError as ProblemError
from ._simulate import (
    SOLVER_NAMES as SOLVER_NAMES,
)
from ._simulate import (
    choose_solver as choose_solver,
)
from ._simulate import (
    count_params as count_params,
)
from ._simulate import (
    log_times as log_times,
)
from ._simulate import (
    simulate as simulate,
)
from ._slow import (
    FlowLimit as FlowLimit,
)
from ._slow import (
    compare as compare,
)
from ._slow import (
    flow_limit as flow_limit,
)
from ._slow import (
    plot_slow_flow as plot_slow_flow,
)
from ._slow import (
    project_tangent as project_tangent,
)
from ._slow import (
    slow_flow as slow_flow,
)
from ._solution import RESULTS as RESULTS
from ._solution import Trajectory as Trajectory
from ._sweep import (
    SweepStoreError as SweepStoreError,
)
from ._sweep import (
    load_sweep as load_sweep,
)
from ._sweep import (
    log_range as log_range,
)
from ._sweep import (
    sweep as sweep,
)

try:
    __version__ = importlib.metadata.version("gflow")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
