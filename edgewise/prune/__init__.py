"""Structured pruning: attention heads and FFN neurons removed by Fisher importance to a FLOPs budget."""

from edgewise.prune.config import PruneConfig
from edgewise.prune.stage import prune

__all__ = ["PruneConfig", "prune"]
