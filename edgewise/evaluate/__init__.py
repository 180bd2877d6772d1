"""Accuracy of an artifact on labelled data."""

from edgewise.evaluate.config import EvaluateConfig
from edgewise.evaluate.stage import evaluate

__all__ = ["EvaluateConfig", "evaluate"]
