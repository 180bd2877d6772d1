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


# The settings finetune and distill share; they live in `TrainerConfig`, nested as `trainer`.
TRAINER_FIELDS = ("epochs", "learning_rate", "batch_size", "eval_batch_size", "warmup_ratio", "weight_decay",
                  "gradient_accumulation_steps", "dynamic_padding", "best_metric", "save_total_limit", "train_split")


@dataclass(frozen=True)
class TrainerConfig:
    """How a stage trains with Hugging Face's Trainer (fine-tuning, distillation).

    The seed is the data's (``DataConfig.seed``): one number seeds the validation carve-out,
    initialisation, shuffling and dropout.

    Example:
        >>> TrainerConfig(epochs=2).learning_rate
        5e-05
    """

    SCHEMA_VERSION = 1

    epochs: float = setting(3.0, "Passes over the training data.")
    learning_rate: float = setting(5e-5, "Peak AdamW learning rate, reached after warm-up.", aliases=("--lr",))
    batch_size: int = setting(16, "Training examples per step and process.")
    eval_batch_size: int = setting(64, "Examples per evaluation step.")
    warmup_ratio: float = setting(0.1, "Share of steps spent warming the learning rate up linearly.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    gradient_accumulation_steps: int = setting(1, "Steps whose gradients are summed before an update.")
    dynamic_padding: bool = setting(True, "Pad each batch to its longest text, or every text to --max-length.",
                                    flag="--dynamic-padding/--pad-to-max-length")
    best_metric: BestMetric = setting(BestMetric.MACRO_F1, "Validation metric that selects the checkpoint kept.")
    save_total_limit: int = setting(2, "Checkpoints kept for --resume besides the best.")
    train_split: str = setting("train", "Split to train on; validation is the data's validation split, else "
                                        "carved from it with --validation-fraction.", flag="--split")

    def __post_init__(self) -> None:
        object.__setattr__(self, "epochs", float(self.epochs))
        try:
            object.__setattr__(self, "best_metric", BestMetric(self.best_metric))
        except ValueError:
            raise EdgewiseError(f"best_metric must be one of {', '.join(m.value for m in BestMetric)}, got "
                                f"{self.best_metric!r}") from None
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
        if problems:
            raise EdgewiseError("; ".join(problems))


def upgrade_trainer_settings(values: dict, version: int) -> dict:
    """Schema 1 (flat trainer settings, a second `seed`) -> schema 2 (`trainer` nested, the data's seed)."""
    if version >= 2:
        return values
    trainer = {k: values.pop(k) for k in TRAINER_FIELDS if k in values}
    seed = values.pop("seed", None)
    data = dict(values.get("data") or {})
    if seed is not None:
        data["seed"] = seed
    return {**values, "trainer": trainer, "data": data}


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning a pretrained encoder into a sequence or token classifier (the teacher).

    Each field's help (and default) is shown by `edgewise finetune --help`.

    Example:
        >>> FinetuneConfig(trainer=TrainerConfig(epochs=2), max_length=128).trainer.epochs
        2.0
    """

    # 2: the Trainer settings moved into `trainer`; `seed` is the data's.
    SCHEMA_VERSION = 2

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task: str = setting("auto", "The head to train: classification (a label per text), token-classification (a tag "
                                "per word: named entities) or auto (token-classification for word-tagged data: "
                                "CoNLL files, JSONL with tokens / entities; else classification).",
                        choices=("auto", "classification", "token-classification"))
    max_length: int | None = setting(
        None, "Tokens per text. Default: the --length-percentile of the training texts' token lengths, "
              "rounded up to a multiple of 8 and capped at the model's limit.")
    length_percentile: float = setting(99.0, "Percentile of token lengths the automatic --max-length covers.")
    allow_pickle: bool = setting(False, "Allow pytorch_model.bin pickle weights (loading them can run code).")
    data: DataConfig = field(default_factory=DataConfig)

    upgrade = staticmethod(upgrade_trainer_settings)

    def __post_init__(self) -> None:
        from edgewise.core.tasks import ALIASES

        object.__setattr__(self, "task", ALIASES.get(self.task, self.task))
        problems = []
        if self.task not in ("auto", "classification", "token-classification"):
            problems.append(f"task must be auto, classification or token-classification, got {self.task!r}")
        if self.max_length is not None and self.max_length < 8:
            problems.append(f"max_length must be >= 8 tokens or unset (auto), got {self.max_length}")
        if not 50 <= self.length_percentile <= 100:
            problems.append(f"length_percentile must be in [50, 100], got {self.length_percentile}")
        if problems:
            raise EdgewiseError("; ".join(problems))
