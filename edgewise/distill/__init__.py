"""Distillation: a fine-tuned teacher taught into a smaller student."""

from edgewise.distill.config import DistillConfig, DistillTrainerConfig
from edgewise.distill.stage import distill

__all__ = ["DistillConfig", "DistillTrainerConfig", "distill"]
