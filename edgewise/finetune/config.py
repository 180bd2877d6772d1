"""Settings of teacher fine-tuning (no torch imports here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgewise.core.config import setting
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError


class BestMetric(str, enum.Enum):
    ACCURACY = "accuracy"
    MACRO_F1 = "macro_f1"


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning a pretrained encoder into a sequence classifier (the teacher).

    Each field's help (and default) is shown by `edgewise finetune --help`.

    Example:
        >>> FinetuneConfig(epochs=2, max_length=128).epochs
        2.0
    """

    SCHEMA_VERSION = 1

    epochs: float = setting(3.0, "Passes over the training split.")
    learning_rate: float = setting(5e-5, "Peak AdamW learning rate, reached after warm-up.")
    batch_size: int = setting(16, "Training examples per step and process.")
    eval_batch_size: int = setting(64, "Examples per evaluation step.")
    warmup_ratio: float = setting(0.1, "Share of steps spent warming the learning rate up linearly.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    seed: int = setting(42, "Seed of initialisation, shuffling, dropout and the validation carve-out.")
    max_length: int | None = setting(
        None, "Tokens per text. Default: the --length-percentile of the training texts' token lengths, "
              "rounded up to a multiple of 8 and capped at the model's limit.")
    length_percentile: float = setting(99.0, "Percentile of token lengths the automatic --max-length covers.")
    dynamic_padding: bool = setting(True, "Pad each batch to its longest text, or every text to --max-length.")
    best_metric: BestMetric = setting(BestMetric.MACRO_F1, "Validation metric that selects the checkpoint kept.")
    gradient_accumulation_steps: int = setting(1, "Steps whose gradients are summed before an update.")
    save_total_limit: int = setting(2, "Checkpoints kept for --resume besides the best.")
    allow_pickle: bool = setting(False, "Allow pytorch_model.bin pickle weights (loading them can run code).")
    train_split: str = setting("train", "Split to train on; validation is the data's validation split, else "
                                        "carved from it with --validation-fraction.")
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "epochs", float(self.epochs))
        object.__setattr__(self, "best_metric", BestMetric(self.best_metric))
        problems = []
        if self.epochs <= 0:
            problems.append(f"epochs must be > 0, got {self.epochs}")
        if not 0 < self.learning_rate < 1:
            problems.append(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_length is not None and self.max_length < 8:
            problems.append(f"max_length must be >= 8 tokens or unset (auto), got {self.max_length}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if not 50 <= self.length_percentile <= 100:
            problems.append(f"length_percentile must be in [50, 100], got {self.length_percentile}")
        if problems:
            raise EdgewiseError("; ".join(problems))
