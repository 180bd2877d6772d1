"""Teacher fine-tuning: a pretrained encoder plus labelled text in, an `hf` classifier artifact out."""

from edgewise.finetune.config import BestMetric, FinetuneConfig, TrainerConfig
from edgewise.finetune.stage import finetune

__all__ = ["BestMetric", "FinetuneConfig", "TrainerConfig", "finetune"]
