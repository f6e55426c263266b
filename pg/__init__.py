"""pg: run, sweep, track and reproduce policy-gradient (REINFORCE) experiments."""

__version__ = "0.1.0"
