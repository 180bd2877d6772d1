"""The one way edgewise runs a model: a backend list, a factory, and the Runner every backend returns.

Evaluate, quantize's measurements, bench and the device runtime all open models with
``open_runner``, so a figure one of them reports is what the others would compute.

A Runner (``Runner`` below holds the shared parts) has:

- ``backend``: the concrete backend it runs on (never "auto");
- ``max_length``: tokens per text (core.lengths decides it);
- ``id2label``: label id -> name;
- ``task``: what its outputs are (core.tasks: a classifier's logits, an embedding model's sentence vectors);
- ``info``: what bench records of it (providers and threads, or device and torch threads);
- ``encode(texts, pairs=None) -> feed``: model inputs for a batch, padded to its longest text;
- ``synthetic(batch_size, seq_len) -> feed``: token ids of that shape (latency without data);
- ``run(feed)``: one forward pass, its raw output not copied back (what latency measures);
- ``scores(feed) -> numpy``: the task's output (logits, vectors) of a feed;
- ``time_ms(feed) -> float``: milliseconds of one ``run`` (CUDA events on torch-cuda, else wall clock);
- ``outputs(texts, pairs=None, batch_size=32, progress=None) -> numpy``: the task's output for every text in
  input order, the texts batched by length so padding stays short (``progress(n)`` after each batch).

Backends: torch (CPU) and torch-cuda run `hf` and `inc` artifacts (runtime.pytorch); ort-cpu,
ort-cuda and ort-tensorrt run ONNX / ORT models with onnxruntime, and tensorrt a built engine
(runtime.predictor.Predictor). A backend that cannot run an artifact here raises ``Unavailable``.

Nothing here imports torch, transformers or onnxruntime at import time.
"""

from __future__ import annotations

from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.base import (
    ONNX_KINDS,
    ORT_BACKENDS,
    TORCH_BACKENDS,
    TORCH_KINDS,
    Runner,
    Unavailable,
    read_manifest,
)

__all__ = ["BACKENDS", "Runner", "Unavailable", "auto_backend", "check_backend", "check_runs", "onnx_scores",
           "open_runner", "read_manifest"]

BACKENDS = ("auto", "torch", "torch-cuda", "ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt")
def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise EdgewiseError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def auto_backend(kind: str | None) -> str:
    """The backend `auto` means for an artifact of ``kind``: torch (CPU) for hf and inc, tensorrt for
    tensorrt, else ort-cuda when onnxruntime has the CUDA provider and ort-cpu otherwise."""
    if kind in TORCH_KINDS:
        return "torch"
    if kind == "tensorrt":
        return "tensorrt"
    try:
        import onnxruntime
    except ImportError:
        return "ort-cpu"  # the runner then says which package is missing
    return "ort-cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "ort-cpu"


def check_runs(backend: str, kind: str | None) -> None:
    """Unavailable when ``backend`` does not run artifacts of ``kind`` at all."""
    if kind is None:
        return
    if backend in TORCH_BACKENDS and kind not in TORCH_KINDS:
        raise Unavailable(f"backend {backend} cannot run a {kind!r} artifact; {backend} runs hf and inc artifacts: "
                          "run this one with an ort-* backend (or tensorrt, for a tensorrt artifact's engine)")
    if backend == "tensorrt" and kind not in ("tensorrt", "bundle"):  # a jetson bundle builds its engine on the device
        raise Unavailable(f"backend tensorrt cannot run a {kind!r} artifact; the tensorrt backend runs tensorrt "
                          "artifacts and jetson bundles (their engine)")
    if backend in ORT_BACKENDS and kind == "hf":
        raise Unavailable(f"backend {backend} cannot run a 'hf' artifact; {backend} runs {' / '.join(ONNX_KINDS)} "
                          "artifacts: export this hf model first (edgewise export)")
    if backend in ORT_BACKENDS and kind == "inc":
        raise Unavailable(f"backend {backend} cannot run a 'inc' artifact; INC models run with --backend torch")


def open_runner(folder, kind: str | None, backend: str, *, threads: int | None = None,
                max_length: int | None = None, model=None, verify: bool = True, allow_pickle: bool = False,
                task=None):
    """The Runner for the artifact in ``folder`` on ``backend``.

    Args:
        folder: the artifact folder.
        kind: its kind (hf, inc, onnx, ort, bundle, tensorrt); None reads it from the folder.
        backend: one of BACKENDS; auto picks with ``auto_backend``.
        threads: intra-op threads, pinned (torch.set_num_threads for torch); None lets the engine choose.
        max_length: tokens per text; default: the length the manifest records, else the model's limit
            (at most 512), per core.lengths.
        model: another ONNX file to run with the folder's tokenizer and settings (a quantize candidate).
        verify: check the folder's files against the hashes its edgewise.json records (default True).
        allow_pickle: let torch load pytorch_model.bin pickle weights (default False).
        task: what the model is (core.tasks), as a stage resolved it (--task for a folder that does not say);
            default: as its edgewise.json records it, else read from its files.

    Raises Unavailable when the backend cannot run the artifact here (its kind, a missing package,
    GPU or execution provider, onnxruntime falling back to another provider, or an ONNX / ORT folder
    onnxruntime or the tokenizer cannot open), EdgewiseError for an unknown backend or a broken
    `hf` artifact.

    Example:
        >>> open_runner("runs/teacher-onnx", "onnx", "ort-cpu").outputs(["a gripping film"])  # doctest: +SKIP
        array([[ 2.1, -0.7, -1.3]], dtype=float32)
    """
    check_backend(backend)
    folder = Path(folder).expanduser().resolve()
    if kind is None:
        kind = _folder_kind(folder)
    if backend == "auto":
        backend = auto_backend(kind)
    check_runs(backend, kind)
    if backend in TORCH_BACKENDS:
        if model is not None:
            raise EdgewiseError(f"model= (an ONNX file run with the folder's tokenizer) needs an ort-* backend, "
                                f"not {backend}")
        from edgewise.runtime.pytorch import open_torch

        return open_torch(folder, kind, backend, threads=threads, max_length=max_length, verify=verify,
                          allow_pickle=allow_pickle, task=task)
    from edgewise.runtime.predictor import Predictor
    from edgewise.runtime.sessions import PROVIDERS

    try:
        runner = Predictor(folder, backend=backend, threads=threads, max_length=max_length, model=model,
                           verify=verify, task=task)
    except Unavailable:
        raise
    except EdgewiseError as e:
        # A model onnxruntime cannot load, a folder without tokenizer.json or with changed files: this
        # artifact cannot run on this backend (bench reports a skipped row; evaluate says it as an Error).
        raise Unavailable(str(e)) from None
    wanted = PROVIDERS.get(backend, [])[:1]
    if wanted and runner.providers()[0] != wanted[0]:
        # onnxruntime falls back to the next provider when one fails to start: that is not this backend.
        raise Unavailable(f"{wanted[0]} did not start (onnxruntime fell back to {runner.providers()[0]})")
    return runner


def _folder_kind(folder: Path) -> str | None:
    kind = read_manifest(folder).get("kind")
    if kind:
        return kind
    from edgewise.core.artifact import detect_kind

    return detect_kind(folder)


def onnx_scores(path, backend: str = "ort-cpu", threads: int | None = None, output: str | None = None):
    """``feed -> output`` (``output``: a graph output's name, default the first: a classifier's logits, an
    embedding model's sentence_embedding) for the ONNX / ORT model file at ``path``, through the one session
    factory (runtime.sessions), inputs the graph lacks dropped: what export's parity checks run. The scorer's
    ``output`` names what it returns."""
    from edgewise.runtime.sessions import session

    loaded = session(path, backend, threads)
    names = {i.name for i in loaded.get_inputs()}
    outputs = [o.name for o in loaded.get_outputs()]
    if output is not None and output not in outputs:
        raise EdgewiseError(f"{path} has no output {output!r} (it has {', '.join(outputs)}); re-export it with "
                            "edgewise export")
    return OutputScorer(lambda feed, name: loaded.run([name], {k: v for k, v in feed.items() if k in names})[0],
                        output or outputs[0])


class OutputScorer:
    """``feed -> the graph output`` ``output`` (what onnx_scores returns)."""

    def __init__(self, run, output: str):
        self._run, self.output = run, output

    def __call__(self, feed):
        return self._run(feed, self.output)
