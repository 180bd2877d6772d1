"""Teacher fine-tuning: a pretrained encoder plus labelled text in, an `hf` classifier artifact out."""

from edgewise.finetune.config import BestMetric, FinetuneConfig
from edgewise.finetune.stage import finetune

__all__ = ["BestMetric", "FinetuneConfig", "finetune"]
