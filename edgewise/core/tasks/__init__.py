"""Tasks as code: what a model does on top of its encoder, one module per task on one registry.

A task says what every stage would otherwise assume of a classifier:

- the head: the transformers class a model loads as, and what its forward gives (``load``, ``output``);
- what a teacher outputs for a student to learn, and the distillation loss (``distill_loss``);
- the loss whose gradients rank heads and neurons when pruning (``importance_loss``);
- the metrics, which one gates (``gate_metric``) and how a drop is counted (``quality_drop``);
- the export task and graph outputs (``export_task``, ``output_name``, ``finish_graph``);
- the runtime's post-processing (``postprocess``) and the report columns (``columns``).

An artifact's task is recorded in its manifest (``task``: the task's ``record()``, e.g.
``{"name": "embedding", "pooling": "mean", "normalize": true, "dimension": 384}``); a folder edgewise
did not write is read (``detect``): a sentence-transformers folder (modules.json) is an embedding model,
a folder with a label map a classifier. Stages ask ``task_of`` and refuse a task they cannot serve with
``refuse_unless``, in one Error line.

Adding a task: a module in this package with a ``Task`` subclass, its entry in ``TASKS``, and tests.
Nothing here imports torch at import time: the torch-free runtime post-processes through these modules.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgewise.core.config import setting
from edgewise.core.errors import EdgewiseError

# name -> "module:class", resolved when used (as the stage registry does).
TASKS = {
    "classification": "edgewise.core.tasks.classification:Classification",
    "embedding": "edgewise.core.tasks.embedding:Embedding",
    "token-classification": "edgewise.core.tasks.token_classification:TokenClassification",
}
# What users type for them (Hugging Face's and sentence-transformers' names).
ALIASES = {"sequence-classification": "classification", "text-classification": "classification",
           "sentence-embedding": "embedding", "feature-extraction": "embedding", "embeddings": "embedding",
           "ner": "token-classification", "token_classification": "token-classification"}
TASK_CHOICES = ("auto", *TASKS)
# The order folders are read in: a task's own files (a sentence-transformers modules.json) before a label map,
# which transformers writes into many configs (a bge model's config.json names LABEL_0 without any head).
DETECTION_ORDER = ("embedding", "token-classification", "classification")
POOLING_MODES = ("mean", "cls", "max")


class Task:
    """What a model does on top of its encoder (see the module docstring). Subclasses set the class
    attributes and implement the methods; an instance carries the artifact's own settings (a label map,
    a pooling mode)."""

    name: ClassVar[str]
    export_task: ClassVar[str]  # optimum's task for the encoder's export
    output_name: ClassVar[str]  # the graph output the runtime reads
    gate_metric: ClassVar[str]  # the metric a search gates on (a key of a bench row)
    quality_name: ClassVar[str]  # how people read the gate metric ("accuracy", "STS Spearman")
    metrics: ClassVar[tuple[str, ...]]  # the figures a bench row of this task can be plotted on (--metric)
    static: bool = False  # a model without an encoder (an embedding model's token table)
    labelled: ClassVar[bool]  # learns and is scored on labels (a label map, labelled data), or not
    default_reference: ClassVar[bool] = False  # evaluate compares it with its lineage's teacher by default
    self_targets: ClassVar[str]  # what pruning's importance loss targets without labels, for people
    pending: ClassVar[tuple[str, ...]] = ()  # protocol methods a task being built lacks (the stages refuse it)

    def labels_of(self, artifact) -> dict:
        """The label map a stage works with: a labelled task's (an EdgewiseError saying how to get one when the
        model names none), else {}."""
        return artifact.classifier_labels() if self.labelled else {}

    def output_width(self, labels: dict) -> int:
        """How wide a row of the model's output is (the width of an empty result)."""
        raise NotImplementedError

    def record(self) -> dict:
        """What the manifest records of the task."""
        return {"name": self.name}

    def describe(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:
        return isinstance(other, Task) and self.record() == other.record()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.record().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.record()})"

    # The report's columns of this task's scores: (header, bench row key, "pct" | "num").
    columns: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    column_notes: ClassVar[str] = ""  # what those columns mean, for the report's foot

    def write_files(self, folder: Path, max_length: int | None) -> list[str]:
        """Write the task's own files (besides weights and tokenizer) into ``folder`` (those missing); returns
        their names."""
        return []

    def finish_graph(self, path: Path) -> None:
        """Rewrite the exported encoder graph at ``path`` in place so that its first output is ``output_name``
        (nothing to do when the export task's head already gives it)."""

    def quality_drop(self, value: float | None, reference: float | None) -> float | None:
        """How far ``value`` of the gate metric falls below the reference's, in points."""
        raise NotImplementedError

    def gate_of(self, metrics: dict | None) -> str:
        """Which metric of ``metrics`` (a ``score`` result) gates: ``gate_metric`` unless the data decides."""
        return self.gate_metric


@dataclass
class EvalSet:
    """What a model is scored on: the texts it reads (``texts``, ``pairs`` as the runner takes them), the truth
    they are scored against (label ids, gold similarity scores, or None: agreement with a reference only) and
    where they came from. Built by a task's ``eval_set``, scored by its ``score``."""

    name: str  # the split
    texts: list[str]
    pairs: list[str] | None
    truth: Any
    source: str
    parts: dict  # how ``texts`` divide (embedding: {"corpus": n, "pairs": n}); {} for a classifier
    digest: str | None = None  # the sha256 of the split it was made of (core.data.Split.sha256), when one

    def __len__(self) -> int:
        return len(self.texts)

    def sha256(self) -> str:
        import hashlib
        import json

        return self.digest or hashlib.sha256(json.dumps([self.texts, self.pairs, self.truth], ensure_ascii=False,
                                                        default=str).encode()).hexdigest()

    def describe(self) -> dict:
        return {"spec": self.source, "split": self.name, "rows": len(self.texts), "sha256": self.sha256(),
                **self.parts}


@dataclass(frozen=True)
class TaskConfig:
    """Which task a model is, for a model whose folder does not say (a plain encoder), and its pooling."""

    SCHEMA_VERSION = 1

    task: str = setting("auto", "What the model does: auto (as its edgewise.json records, a sentence-transformers "
                                "folder's modules.json says, or a classifier's label map), classification, "
                                "embedding (sentence vectors) or token-classification (a tag per word).",
                          choices=TASK_CHOICES)
    pooling: str | None = setting(None, "Embedding, a plain encoder: how its token vectors become one: mean, cls or "
                                        "max (a sentence-transformers folder's own Pooling module is read as it is).",
                                  choices=POOLING_MODES)
    normalize: bool | None = setting(None, "Embedding, a plain encoder: L2-normalise the pooled vector (default: "
                                           "off, as sentence-transformers without a Normalize module).")

    def __post_init__(self) -> None:
        name = ALIASES.get(self.task, self.task)
        if name not in TASK_CHOICES:
            raise EdgewiseError(f"task must be one of {', '.join(TASK_CHOICES)}, got {self.task!r}")
        object.__setattr__(self, "task", name)
        if self.pooling is not None and self.pooling not in POOLING_MODES:
            raise EdgewiseError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {self.pooling!r}")
        if self.task in ("classification", "token-classification") and (self.pooling is not None
                                                                          or self.normalize is not None):
            raise EdgewiseError("--pooling and --normalize describe an embedding model; drop them for "
                                f"--task {self.task}")


def task_class(name: str) -> type[Task]:
    """The Task subclass registered as ``name`` (or an alias of it)."""
    canonical = ALIASES.get(name, name)
    if canonical not in TASKS:
        raise EdgewiseError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}")
    module, _, cls = TASKS[canonical].partition(":")
    return getattr(importlib.import_module(module), cls)


def from_record(record: Any, where: str = "the manifest") -> Task:
    """The task a manifest recorded (``record()`` of a Task)."""
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise EdgewiseError(f"{where} records its task as {record!r}, not a mapping with a name; re-create the "
                            "artifact with the stage that made it")
    return task_class(record["name"]).from_record(record, where)


def detect(folder: Path, labels: dict | None = None) -> Task | None:
    """The task of a model folder edgewise did not write: an embedding model when it is a sentence-transformers
    folder (modules.json), a classifier when it names labels; None for a plain encoder (the caller decides)."""
    folder = Path(folder)
    for name in DETECTION_ORDER:
        found = task_class(name).detect(folder, labels)
        if found is not None:
            return found
    return None


def resolve(folder: Path, recorded: Any = None, labels: dict | None = None, config: TaskConfig | None = None,
            what: str | None = None) -> Task | None:
    """The task of the model in ``folder``: as its manifest ``recorded`` it, else read from the folder, else as
    ``config`` (--task, --pooling) says. A ``config`` that contradicts what the folder says is an error; None
    when nothing says (a plain encoder and --task auto)."""
    config = config or TaskConfig()
    what = what or str(folder)
    found = from_record(recorded, f"{what}/edgewise.json") if recorded is not None else detect(folder, labels)
    if found is not None:
        if config.task not in ("auto", found.name):
            raise EdgewiseError(f"{what} is a {found.describe()} model, not {config.task}; drop --task (or pass "
                                f"--task {found.name})")
        if recorded is None:  # --pooling / --normalize describe a folder that does not say; one edgewise wrote does
            found.check_options(config, what)
        return found
    if config.task == "auto":
        return None
    return task_class(config.task).from_options(folder, config, labels)


def refuse_unless(task: Task | None, accepted: tuple[str, ...], what: str, doing: str, fix: str = "") -> Task:
    """``task`` when it is one of ``accepted``; else the one Error line that says what the step serves."""
    if task is not None and task.name in accepted:
        return task
    serves = " and ".join(accepted)
    if task is None:  # a plain encoder: neither a label map nor a pooling module
        raise EdgewiseError(
            f"{what} names no labels (no id2label in its config) and no pooling (no modules.json): it is an encoder, "
            f"not a classifier or a sentence-embedding model, and {doing} serves {serves} models: fine-tune it into "
            f"a classifier first: edgewise finetune {what} DATA -o TEACHER, or pass --task embedding --pooling mean "
            "to use it as a sentence-embedding model")
    raise EdgewiseError(f"{what} is a {task.describe()} model; {doing} serves {serves} models" + (f": {fix}" if fix
                                                                                                 else ""))
