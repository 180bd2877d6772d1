"""Settings of `edgewise bench` and `edgewise bench compare` (no torch / onnx imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgewise.core.config import setting
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import TaskConfig
from edgewise.runtime.runners import BACKENDS  # auto: runners.auto_backend per artifact kind
from edgewise.runtime.targets import parse_target

# What a row's quality can be read as: a classifier's, then an embedding model's metrics (core.tasks).
METRICS = ("auto", "accuracy", "macro_f1", "spearman", "neighbour_overlap", "cosine_mean", "ndcg_at_10")


@dataclass(frozen=True)
class BenchConfig:
    """Latency, throughput, memory, size and accuracy of one or more artifacts, measured side by side.

    Example:
        >>> BenchConfig(backends=("torch", "ort-cpu"), batch_sizes=(1, 8), threads=1).rounds
        5
    """

    SCHEMA_VERSION = 1

    backends: tuple[str, ...] = setting(("auto",), "Backends to run every artifact on (repeat the flag); one "
                                                   "that cannot run an artifact here is a skipped row.",
                                        flag="--backend", multiple=True, choices=BACKENDS)
    batch_sizes: tuple[int, ...] = setting((1,), "Batch sizes to time, e.g. 1,8.", flag="--batch-sizes", sep=",")
    threads: int | None = setting(None, "Threads for torch and ONNX Runtime alike (pinned); default: theirs.")
    seq_len: str = setting("auto", "Tokens per input: a number (synthetic inputs of that length), 'data' (the "
                                   "evaluation texts at their real length) or auto (data with --data, else the "
                                   "model's max length).")
    warmup: int = setting(10, "Untimed runs before timing, per artifact, backend and batch size.")
    min_runs: int = setting(50, "Timed runs at least, per artifact, backend and batch size.")
    min_time_s: float = setting(2.0, "Seconds of timed runs at least, per artifact, backend and batch size.",
                                flag="--min-time")
    rounds: int = setting(5, "Timing rounds: every artifact runs once per round (A B C A B C ...) so machine "
                             "drift hits all alike.")
    split: str | None = setting(None, "Split whose texts give accuracy (and real lengths). Default: test, else "
                                      "validation, else the only one.")
    accuracy_samples: int | None = setting(None, "Texts scored for accuracy (default: the whole split).")
    eval_batch_size: int | None = setting(
        None, "Batch size of the accuracy pass. Default: each row's own batch size, so every row's accuracy is "
              "what that batch size will give when deployed (dynamic INT8 scales activations per batch, pads "
              "included, so predictions can change with the batch); a number scores every row in batches of that "
              "size instead (one pass per artifact and backend, faster).")
    target: str = setting("local", "Where the models run: local (this machine), ssh://[user@]host[:port] (the system's "
                                   "ssh, your ~/.ssh/config and keys) or adb://SERIAL. A device needs Python "
                                   ">= 3.10 with onnxruntime, tokenizers and numpy; edgewise copies its own runtime "
                                   "code and the models there (unchanged files once). Settings after '?': "
                                   "python=PATH, cache=DIR, timeout=SECONDS, wheels=DIR (wheels to unpack there "
                                   "when it lacks those packages), e.g. ssh://pi@raspberrypi?python="
                                   "/home/pi/venv/bin/python3.")
    metric: str = setting("auto", "What the Pareto plot (pareto.png) weighs against latency: auto (the task's gate: "
                                  "accuracy; an embedding model's STS Spearman with --pairs, else its top-10 neighbour "
                                  "overlap with the reference), accuracy, macro_f1 (better for unbalanced classes); "
                                  "spearman, neighbour_overlap, cosine_mean or ndcg_at_10.", choices=METRICS)
    pairs: str | None = setting(None, "Embedding models: scored sentence pairs (columns sentence1, sentence2, score, "
                                      "e.g. STS-B) whose STS Spearman is measured, from the --split split.")
    retrieval: str | None = setting(None, "Embedding models: a retrieval set in BEIR's layout (corpus.jsonl, "
                                          "queries.jsonl, qrels/SPLIT.tsv) whose NDCG@10 and recall@10 are measured.")
    reference: str | None = setting(None, "A model the artifacts are compared with (speed ratio, label agreement, "
                                          "cosine and share of its Spearman), benched with them as the first: the "
                                          "same as naming it first (e.g. the teacher).")
    allow_pickle: bool = setting(False, "Allow pytorch_model.bin pickle weights (loading them can run code).")
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", tuple(self.backends))
        object.__setattr__(self, "batch_sizes", tuple(dict.fromkeys(int(b) for b in self.batch_sizes)))
        object.__setattr__(self, "backends", tuple(dict.fromkeys(self.backends)))
        problems = []
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            problems.append(f"backend(s) {', '.join(unknown) or '(none)'} unknown; choose from {', '.join(BACKENDS)}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            problems.append(f"batch sizes must be >= 1, got {list(self.batch_sizes)}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads}")
        if self.seq_len not in ("auto", "data") and not (str(self.seq_len).isdigit() and int(self.seq_len) >= 2):
            problems.append(f"seq_len must be a number >= 2, 'data' or 'auto', got {self.seq_len!r}")
        for name, low in (("warmup", 0), ("min_runs", 1), ("min_time_s", 0), ("rounds", 1)):
            if getattr(self, name) < low:
                problems.append(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.accuracy_samples is not None and self.accuracy_samples < 1:
            problems.append(f"accuracy_samples must be >= 1, got {self.accuracy_samples}")
        batch = self.eval_batch_size
        if batch is not None and not (isinstance(batch, int) and batch >= 1):
            problems.append(f"eval_batch_size must be a whole number >= 1 (or unset: each row's batch size), "
                            f"got {self.eval_batch_size!r}")
        try:
            parse_target(self.target)
        except EdgewiseError as e:
            problems.append(str(e))
        if self.metric not in METRICS:
            problems.append(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if problems:
            raise EdgewiseError("; ".join(problems))


def parse_percent(text: str, what: str) -> float:
    """'10%' or '10' -> 0.10."""
    value = str(text).strip().removesuffix("%")
    try:
        number = float(value)
    except ValueError:
        raise EdgewiseError(f"{what} {text!r} is not a percentage; write e.g. 10%") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise EdgewiseError(f"{what} {text!r} is not a finite percentage; write e.g. 10%")
    if number < 0:
        raise EdgewiseError(f"{what} must be >= 0, got {text!r}")
    return number / 100.0


@dataclass(frozen=True)
class CompareConfig:
    """The CI gate: what counts as a regression of a report against a baseline.

    Example:
        >>> CompareConfig(max_latency_regression=0.1).max_accuracy_drop
        0.5
    """

    SCHEMA_VERSION = 1

    max_latency_regression: float = setting(0.10, "Largest p50 slow-down tolerated (10% = 0.10); a slower "
                                                   "row fails only when the confidence intervals also separate.")
    max_accuracy_drop: float = setting(0.5, "Largest accuracy drop tolerated, in percentage points.")
    allow_missing: bool = setting(False, "Pass when rows of the baseline are missing or skipped in the report "
                                         "(by default that fails: a backend that broke must not pass silently).")

    def __post_init__(self) -> None:
        if self.max_latency_regression < 0 or self.max_accuracy_drop < 0:
            raise EdgewiseError("max_latency_regression and max_accuracy_drop must be >= 0")
