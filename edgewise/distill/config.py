"""Settings of distillation (no torch imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgewise.core.config import setting
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import TaskConfig
from edgewise.finetune.config import TrainerConfig, upgrade_trainer_settings

STUDENT_CONFIG_KEYS = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
                       "ffn": "intermediate_size"}


def parse_layer_map(text: str | tuple | None) -> tuple[int, ...] | None:
    """`0,2,5` -> (0, 2, 5): the teacher layers a student keeps, in order."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in (text if isinstance(text, (tuple, list)) else str(text).split(",")))
    except (TypeError, ValueError):
        raise EdgewiseError(
            f"--layer-map {text!r} is not a comma-separated list of layer numbers, e.g. 0,2,5"
        ) from None
    if any(v < 0 for v in values) or list(values) != sorted(set(values)):
        raise EdgewiseError(f"--layer-map {text!r} must list distinct teacher layers in increasing order")
    return values


def parse_student_config(text: str | None) -> dict[str, int] | None:
    """`layers=4,hidden=256,heads=4,ffn=1024` -> the config fields of a fresh student."""
    if not text:
        return None
    values = {}
    for part in str(text).split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in STUDENT_CONFIG_KEYS or not value.strip().isdigit() or int(value) < 1:
            raise EdgewiseError(
                f"--student-config {text!r}: write KEY=N pairs with KEY one of {', '.join(STUDENT_CONFIG_KEYS)}, "
                "e.g. layers=4,hidden=256,heads=4,ffn=1024"
            )
        values[key] = int(value)
    if "hidden" in values and values["hidden"] % values.get("heads", 1):
        raise EdgewiseError(f"--student-config {text!r}: hidden must be a multiple of heads")
    return values


@dataclass(frozen=True)
class DistillTrainerConfig(TrainerConfig):
    """TrainerConfig with distillation's defaults: a student learns from soft targets at a higher rate
    and in larger batches than a teacher fine-tunes.

    Example:
        >>> DistillTrainerConfig(epochs=1).learning_rate
        0.0001
    """

    learning_rate: float = setting(1e-4, "Peak AdamW learning rate, reached after warm-up.", aliases=("--lr",))
    batch_size: int = setting(32, "Training examples per step and process.")
    group_by_length: bool | None = setting(
        None, "Batch texts of similar length together (shuffled in groups of 50 batches, as transformers' "
              "group_by_length), so that a batch pads to its own texts' length. Default: on for an embedding "
              "student, whose corpus mixes sentences and documents; off for a classifier (as before).",
        flag="--group-by-length/--no-group-by-length")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation of a fine-tuned teacher into a smaller student.

    The student is one of: the teacher's own layers (`layers` evenly spaced, or `layer_map`), a given
    pretrained encoder (`student`), or a fresh configuration (`student_config`). A classifier's loss is
    `alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)`; an embedding model's the squared
    distance to the teacher's sentence vector (+ `cosine_weight` x (1 - cosine)); both with optional
    hidden-state and attention-distribution terms.

    Example:
        >>> DistillConfig(layers=3, temperature=4, alpha=0.7).trainer.learning_rate
        0.0001
    """

    # 2: the Trainer settings moved into `trainer`; `seed` is the data's; `unlabeled` joined the config.
    SCHEMA_VERSION = 2

    layers: int | None = setting(None, "Student from the teacher's own layers: this many, evenly spaced "
                                       "(first and last kept), with its embeddings, pooler and classifier.")
    layer_map: tuple[int, ...] | None = setting(None, "Student from exactly these teacher layers, e.g. 0,2,5.",
                                                sep=",")
    student: str | None = setting(None, "A pretrained encoder to use as the student (folder or Hub id); it keeps "
                                        "its own tokenizer, the teacher reads its own tokenization.")
    student_config: str | None = setting(None, "A fresh student from the teacher's config with these changes, "
                                               "e.g. layers=4,hidden=256,heads=4,ffn=1024.")
    static: bool = setting(False, "Embedding models: a static student, no attention at all: each vocabulary token "
                                  "embedded once by the teacher, reduced by PCA and SIF-weighted (model2vec's "
                                  "method); a text's vector is the mean of its tokens'. Written as ONNX; no training.")
    static_dims: int = setting(256, "--static: dimensions kept by the PCA (at most the teacher's).")
    temperature: float = setting(4.0, "Classifiers: softmax temperature of the soft targets (the KL term is scaled "
                                      "by T^2).")
    alpha: float = setting(0.7, "Classifiers: weight of the soft-target KL term; 1 - alpha weighs the label "
                                "cross-entropy. 0 trains on labels only.")
    cosine_weight: float = setting(0.0, "Embedding models: weight of 1 - cosine to the teacher's vector, beside the "
                                        "squared distance to it (weight 1).")
    hidden_weight: float = setting(0.0, "Weight of the hidden-state MSE between mapped student and teacher "
                                        "layers (a learned projection when widths differ).")
    attention_weight: float = setting(0.0, "Weight of the attention-distribution KL (MiniLM-style) between "
                                           "mapped layers, heads averaged.")
    cache_logits: bool = setting(True, "Compute the teacher's outputs (logits, sentence vectors) once and reuse them "
                                       "(every epoch and later runs); off: a teacher forward pass every step.",
                                 flag="--cache-logits/--no-cache-logits")
    unlabeled: str | None = setting(None, "Extra texts (a .txt file, one per line, or any DATA spec) the teacher "
                                          "labels with soft targets (an embedding teacher: with its vectors).")
    trainer: DistillTrainerConfig = field(default_factory=DistillTrainerConfig)
    max_length: int | None = setting(None, "Tokens per text. Default: the length the teacher was trained with.")
    allow_pickle: bool = setting(False, "Allow pytorch_model.bin pickle weights (loading them can run code).")
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)

    upgrade = staticmethod(upgrade_trainer_settings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_map", parse_layer_map(self.layer_map))
        problems = []
        chosen = [n for n in ("layers", "layer_map", "student", "student_config", "static") if getattr(self, n)]
        if len(chosen) > 1:
            problems.append(f"choose one kind of student (--layers, --layer-map, --student, --student-config or "
                            f"--static), not {' and '.join(chosen)}")
        if self.static_dims < 1:
            problems.append(f"static_dims must be >= 1, got {self.static_dims}")
        if self.layers is not None and self.layers < 1:
            problems.append(f"layers must be >= 1, got {self.layers}")
        parse_student_config(self.student_config)
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            problems.append(f"alpha must be in [0, 1], got {self.alpha}")
        if self.hidden_weight < 0 or self.attention_weight < 0 or self.cosine_weight < 0:
            problems.append("hidden_weight, attention_weight and cosine_weight must be >= 0")
        if self.max_length is not None and self.max_length < 8:
            problems.append(f"max_length must be >= 8 tokens or unset, got {self.max_length}")
        if problems:
            raise EdgewiseError("; ".join(problems))

    @property
    def teacher_forward_each_step(self) -> bool:
        """Hidden-state and attention terms need the teacher's internals every step; its outputs alone do not."""
        return self.hidden_weight > 0 or self.attention_weight > 0 or not self.cache_logits
