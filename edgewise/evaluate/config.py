"""Settings of `edgewise evaluate` (no torch imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgewise.core.config import setting
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import TaskConfig
from edgewise.runtime.runners import BACKENDS
from edgewise.runtime.targets import parse_target


@dataclass(frozen=True)
class EvaluateConfig:
    """Quality of an artifact on a split: a classifier's accuracy on labelled texts, an embedding model's STS
    Spearman on scored pairs and its agreement with a reference model.

    Example:
        >>> EvaluateConfig(split="test").batch_size
        32
    """

    SCHEMA_VERSION = 1

    split: str | None = setting(None, "Split to score. Default: test, else validation, else the only one.")
    batch_size: int = setting(32, "Texts per forward pass; batches are grouped by length.")
    max_length: int | None = setting(None, "Tokens per text. Default: the length the model was trained with, "
                                           "else the model's limit (at most 512).")
    backend: str = setting("auto", "Engine that runs the model: auto (torch-cuda for hf artifacts when torch sees a "
                                   "GPU, else torch, the CPU, as for inc; ort-cuda when onnxruntime has CUDA, else "
                                   "ort-cpu, for onnx / ort / bundle; tensorrt for tensorrt), torch, torch-cuda, "
                                   "ort-cpu, ort-cuda, ort-tensorrt or tensorrt.",
                           choices=BACKENDS)
    target: str = setting("local", "Where the model runs: local, ssh://[user@]host[:port] or adb://SERIAL (as for "
                                   "edgewise bench: the device predicts, this machine scores).")
    reference: str | None = setting(None, "A model to compare this one with on the same texts: its own figures and "
                                          "their agreement (a classifier's labels; an embedding model's cosine and "
                                          "top-10 neighbours). Default: none for a classifier; for an embedding "
                                          "model, the teacher its lineage names.")
    retrieval: str | None = setting(None, "Embedding models: a retrieval set in BEIR's layout (corpus.jsonl, "
                                          "queries.jsonl, qrels/test.tsv) whose NDCG@10 and recall@10 are measured.")
    allow_pickle: bool = setting(False, "Allow pytorch_model.bin pickle weights (loading them can run code).")
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise EdgewiseError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.batch_size < 1:
            raise EdgewiseError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise EdgewiseError(f"max_length must be >= 2 tokens or unset, got {self.max_length}")
        parse_target(self.target)
