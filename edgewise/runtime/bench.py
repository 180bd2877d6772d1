"""Latency of a bundle or ONNX artifact with onnxruntime alone, in the report schema `edgewise bench` uses."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.predictor import Predictor

RESULT_SCHEMA_VERSION = 1


def median_ci(samples, resamples: int = 1000, seed: int = 0) -> list[float]:
    """Bootstrap 95 % confidence interval of the median (percentile method)."""
    import numpy as np

    arr = np.asarray(samples, dtype=np.float64)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(arr, size=(resamples, arr.size), replace=True), axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def latency_stats(samples_ms: list[float]) -> dict:
    """Summary of raw latencies (milliseconds); the raw samples are kept alongside."""
    import numpy as np

    arr = np.asarray(samples_ms, dtype=np.float64)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    percentile = lambda q: float(np.percentile(arr, q))  # noqa: E731
    return {
        "runs": int(arr.size), "mean": mean, "std": std, "cv": std / mean if mean else 0.0,
        "min": float(arr.min()), "max": float(arr.max()),
        "p50": percentile(50), "p90": percentile(90), "p95": percentile(95), "p99": percentile(99),
        "p50_ci95": median_ci(arr),
        "samples": [round(float(x), 4) for x in arr],
    }


def synthetic_batch(predictor: Predictor, batch_size: int, seq_len: int, seed: int = 0) -> dict:
    """Token ids of the requested shape, [CLS]-like first and [SEP]-like last as real inputs have."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = predictor.tokenizer.get_vocab_size()
    ids = rng.integers(low=min(1000, vocab // 2), high=vocab, size=(batch_size, seq_len), dtype=np.int64)
    sample = predictor.tokenizer.encode("a")
    if len(sample.ids) >= 2:
        ids[:, 0], ids[:, -1] = sample.ids[0], sample.ids[-1]
    columns = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {name: columns[name].astype(dtype) for name, dtype in predictor.inputs.items()}


def measure(run, feed, warmup: int, min_runs: int, min_time_s: float) -> list[float]:
    """Warm up, then time ``run(feed)`` at least ``min_runs`` times and for at least ``min_time_s``."""
    for _ in range(warmup):
        run(feed)
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        run(feed)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return samples


def bench(folder, *, backend: str = "ort-cpu", threads: int | None = None, batch_sizes=(1,),
          seq_len: int | None = None, warmup: int = 10, min_runs: int = 50, min_time_s: float = 2.0) -> dict:
    """Model latency (tokenization excluded) per batch size at a fixed sequence length.

    Example:
        >>> bench("deploy/teacher", threads=1)["results"][0]["latency_ms"]["p50"]  # doctest: +SKIP
        7.4
    """
    from edgewise.core.env import fingerprint

    if warmup < 0 or min_runs < 1 or min_time_s < 0 or any(b < 1 for b in batch_sizes):
        raise EdgewiseError("warmup must be >= 0, min-runs >= 1, min-time >= 0 and batch sizes >= 1")
    predictor = Predictor(folder, backend=backend, threads=threads)
    seq_len = seq_len or predictor.max_length
    if not 2 <= seq_len <= predictor.max_length:
        raise EdgewiseError(f"--seq-len must be between 2 and the bundle's max_length {predictor.max_length}")
    results = []
    for batch_size in batch_sizes:
        samples = measure(predictor.run, synthetic_batch(predictor, batch_size, seq_len), warmup, min_runs, min_time_s)
        stats = latency_stats(samples)
        results.append({
            "artifact": predictor.folder.name,
            "path": str(predictor.folder),
            "status": "ok",
            "model_file": predictor.model_path.name,
            "backend": backend,
            "providers": predictor.providers(),
            "threads": threads,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "warmup": warmup,
            "latency_ms": stats,
            "throughput_items_per_s": batch_size * 1000.0 / stats["p50"],
        })
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "tool": "edgewise.runtime",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": fingerprint(),
        "results": results,
    }
