"""The engines `edgewise bench` times: PyTorch, ONNX Runtime (CPU / CUDA / TensorRT EP) and TensorRT.

Each backend loads an artifact into a `Runner`: tokenization into that engine's inputs, one timed
forward pass, and logits for the accuracy pass. A backend that cannot run here raises `Skip` with
the reason, which becomes a skipped row of the report instead of a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgewise.core.errors import EdgewiseError


class Skip(Exception):
    """This backend cannot run this artifact here; the message says why."""


@dataclass
class Runner:
    backend: str
    max_length: int
    encode: Callable  # (texts, pairs) -> feed
    synthetic: Callable  # (batch_size, seq_len) -> feed
    forward: Callable  # feed -> raw output (not copied back)
    logits: Callable  # feed -> numpy logits
    time_ms: Callable  # feed -> milliseconds of one forward pass
    info: dict = field(default_factory=dict)


def resolve(backend: str, kind: str) -> str:
    """The concrete backend for `auto`."""
    if backend != "auto":
        return backend
    if kind in ("hf", "inc"):
        return "torch"
    if kind == "tensorrt":
        return "tensorrt"
    try:
        import onnxruntime

        return "ort-cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "ort-cpu"
    except ImportError:
        return "ort-cpu"


def _wall_timer(forward: Callable) -> Callable:
    def time_ms(feed) -> float:
        start = time.perf_counter()
        forward(feed)
        return (time.perf_counter() - start) * 1000.0

    return time_ms


def load(artifact, backend: str, threads: int | None) -> Runner:
    """A runner for ``artifact`` on ``backend``, or `Skip`."""
    if backend in ("torch", "torch-cuda"):
        return _torch(artifact, backend, threads)
    if artifact.kind in ("hf", "inc"):
        raise Skip(f"{backend} runs onnx / ort / bundle / tensorrt artifacts; export this {artifact.kind} model first"
                   if artifact.kind == "hf" else f"{backend} cannot run INC models; they run with --backend torch")
    if backend == "tensorrt" and artifact.kind != "tensorrt":
        raise Skip("the tensorrt backend runs tensorrt artifacts (their engine)")
    return _onnxruntime(artifact, backend, threads)


def _torch(artifact, backend: str, threads: int | None) -> Runner:
    if artifact.kind not in ("hf", "inc"):
        raise Skip(f"{backend} runs hf and inc artifacts; this one is {artifact.kind}")
    try:
        import torch
    except ImportError:
        raise Skip("torch is not installed: pip install 'edgewise[full]'") from None
    cuda = backend == "torch-cuda"
    if cuda and not torch.cuda.is_available():
        raise Skip("no CUDA GPU is visible to torch")
    if cuda and artifact.kind == "inc":
        raise Skip("INC INT8 models run on the CPU (oneDNN kernels)")
    from edgewise.core.models import ModelSource, load_classifier, load_tokenizer, max_positions, model_inputs

    if threads:
        torch.set_num_threads(threads)
    source = ModelSource(str(artifact.path), str(artifact.path), True)
    tokenizer = load_tokenizer(source)
    device = "cuda" if cuda else "cpu"
    if artifact.kind == "inc":
        from edgewise.quantize.inc import QuantizedClassifier

        model = QuantizedClassifier(artifact.path)
    else:
        model = load_classifier(source).to(device).eval()
    limit = max_positions(model.config, tokenizer)
    recorded = (artifact.manifest.data or {}).get("max_length") if artifact.manifest else None
    max_length = min(int(recorded or limit), limit)
    vocab = model.config.vocab_size

    def encode(texts, pairs):
        batch = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return {k: v.to(device) for k, v in model_inputs(model, batch).items()}

    def synthetic(batch_size, seq_len):
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(min(1000, vocab // 2), vocab, (batch_size, seq_len), generator=generator)
        feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        return {k: v.to(device) for k, v in model_inputs(model, feed).items()}

    def forward(feed):
        with torch.inference_mode():
            return model(**feed).logits

    def logits(feed):
        return forward(feed).float().cpu().numpy()

    if cuda:
        def time_ms(feed) -> float:
            # Kernels run asynchronously: CUDA events measure the GPU's time, not the launch's.
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            forward(feed)
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
    else:
        time_ms = _wall_timer(forward)
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch_threads": torch.get_num_threads()}
    return Runner(backend, max_length, encode, synthetic, forward, logits, time_ms, info)


def _onnxruntime(artifact, backend: str, threads: int | None) -> Runner:
    from edgewise.runtime.bench import synthetic_batch
    from edgewise.runtime.predictor import BACKENDS, Predictor

    try:
        predictor = Predictor(artifact.path, backend=backend, threads=threads)
    except EdgewiseError as e:
        raise Skip(str(e)) from None
    wanted = BACKENDS[backend][:1]
    if wanted and predictor.providers()[0] != wanted[0]:
        # onnxruntime falls back to the next provider when one fails to start: do not time that as this backend.
        raise Skip(f"{wanted[0]} did not start (onnxruntime fell back to {predictor.providers()[0]})")
    forward = predictor.run
    return Runner(
        backend, predictor.max_length, predictor.encode, lambda b, s: synthetic_batch(predictor, b, s),
        forward, forward, _wall_timer(forward),
        {"providers": predictor.providers(), "threads": threads,
         "disabled_optimizers": getattr(predictor, "disabled_optimizers", [])},
    )
