"""A simulated Ideogram upstream for tests and benchmarks (``python -m ideohub.sim`` to run it alone)."""

from .faults import FAULT_KINDS, Fault
from .runner import SimulatedUpstream
from .upstream import RecordedRequest, SimConfig, SimState, create_sim_app

__all__ = ["FAULT_KINDS", "Fault", "RecordedRequest", "SimConfig", "SimState", "SimulatedUpstream", "create_sim_app"]
