"""What every runtime module shares: the backend families, ``Unavailable``, the ``Runner`` base and
the file checks. It imports nothing from the other runtime modules, so they all import it freely
(and runners.py, which imports them, sits above them: no import circle at any level).

Nothing here imports torch, transformers or onnxruntime.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgewise.core.artifact import read_json
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import MANIFEST_NAME
from edgewise.core.tasks import Task
from edgewise.core.tasks.classification import Classification

TORCH_BACKENDS = ("torch", "torch-cuda")
ORT_BACKENDS = ("ort-cpu", "ort-cuda", "ort-tensorrt")  # onnxruntime sessions (runtime.sessions)
# The artifact kinds each family of backends runs.
TORCH_KINDS = ("hf", "inc")
ONNX_KINDS = ("onnx", "ort", "bundle", "tensorrt")  # a tensorrt artifact carries its model.onnx


class Unavailable(EdgewiseError):
    """This backend cannot run this artifact here (wrong kind, missing package, GPU or provider); the
    message says why. Bench turns it into a skipped row; elsewhere it is an ordinary `Error:`."""


def read_manifest(folder: Path) -> dict:
    """The edgewise.json of ``folder`` as a dict ({} when there is none or it is unreadable)."""
    return read_json(Path(folder) / MANIFEST_NAME)


def folder_task(folder: Path, manifest: dict, labels: dict, given: Task | None = None) -> Task | None:
    """The task of the model in ``folder``: ``given`` (a stage resolved it: --task for a folder that does not say),
    else as its edgewise.json records it, else read from its files (modules.json: an embedding model; a label
    map: a classifier); None when nothing says (a plain encoder)."""
    from edgewise.core.tasks import detect, from_record

    if given is not None:
        return given
    if manifest.get("task") is not None:
        return from_record(manifest["task"], f"{folder}/edgewise.json")
    return detect(folder, labels)


MAX_LISTED_PROBLEMS = 5


def verify_folder(folder: Path) -> None:
    """Refuse a folder whose files differ from the sha256 hashes its edgewise.json recorded.

    A folder without edgewise.json (a foreign ONNX folder) has nothing to check against and passes.
    Files the manifest expects to be (re)built on the device, such as a TensorRT artifact's
    model.engine, are not hashed there, so they pass whatever they hold.
    """
    from edgewise.core.manifest import MANIFEST_NAME, Manifest

    if not (folder / MANIFEST_NAME).is_file():
        return
    manifest = Manifest.read(folder)
    problems = manifest.verify()  # each file hashed once per process while unchanged (core.manifest)
    if not problems:
        return
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed += f"; and {len(problems) - MAX_LISTED_PROBLEMS} more"
    what = "bundle" if manifest.kind == "bundle" else "artifact"
    raise EdgewiseError(
        f"{folder} changed since edgewise wrote it ({listed}), so the model would run on unchecked files; "
        f"re-create the {what} with `edgewise {manifest.stage}`, or pass --no-verify (Predictor(..., verify=False)) "
        "if you changed it on purpose"
    )


class Runner:
    """What every backend's runner shares: ``scores``, wall-clock ``time_ms`` and the batching of
    ``outputs``. Subclasses set backend, max_length, id2label, task and info, and define encode,
    synthetic and run (see runners' module docstring)."""

    backend: str
    max_length: int
    id2label: dict[int, str]
    task: Task = Classification()  # what the outputs are (logits per label, a sentence vector); a classifier unless
    # the runner says otherwise
    info: dict

    def encode(self, texts: list[str], pairs: list[str] | None = None):
        raise NotImplementedError

    def synthetic(self, batch_size: int, seq_len: int):
        raise NotImplementedError

    def run(self, feed):
        raise NotImplementedError

    def scores(self, feed):
        """The task's output of ``feed`` (logits, sentence vectors) as a numpy array."""
        import numpy as np

        return np.asarray(self.run(feed))

    def time_ms(self, feed) -> float:
        """Milliseconds of one ``run(feed)``, wall clock."""
        start = time.perf_counter()
        self.run(feed)
        return (time.perf_counter() - start) * 1000.0

    def token_offsets(self, texts: list[str]) -> list[tuple[list, list]]:
        """Per text, as ``encode`` tokenizes it: each token's (start, end) characters and whether it is special."""
        raise NotImplementedError

    def outputs(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32, progress=None):
        """The task's output for every text, in order (logits per label, a sentence vector, or a token classifier's
        logits per word: ``task.word_outputs``); texts are batched by length so padding stays short."""
        import numpy as np

        order = np.argsort([len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)], kind="stable")
        parts = []
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = [texts[i] for i in idx]
            scores = self.scores(self.encode(batch, [pairs[i] for i in idx] if pairs else None))
            if scores.ndim == 3:  # a row per token: the task reads one per word, by the tokens' character offsets
                scores = self.task.word_outputs(scores, batch, self.token_offsets(batch))
            parts.append((idx, scores))
            if progress is not None:
                progress(len(idx))
        if not parts:
            return np.zeros((0, self.task.output_width(self.id2label)), dtype=np.float32)
        shape = np.max([scores.shape[1:] for _, scores in parts], axis=0)  # words per text differ per batch
        out = np.full((len(texts), *shape), np.nan if len(shape) > 1 else 0.0, dtype=np.float32)
        for idx, scores in parts:
            out[(idx, *(slice(0, n) for n in scores.shape[1:]))] = scores
        self.task.check_outputs(out, self.id2label, str(getattr(self, "folder", "the model")))
        return out
