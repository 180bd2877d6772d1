"""Latency of a bundle or ONNX artifact with onnxruntime alone, in the report schema `edgewise bench` uses."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.predictor import Predictor

RESULT_SCHEMA_VERSION = 1


ROUNDS_FOR_CI = 5  # a runtime bench (one block of runs) is cut into this many consecutive rounds


def median_ci(round_medians: list[float]) -> tuple[list[float], float]:
    """Distribution-free ~95 % interval of the typical round median, and its exact coverage.

    Samples within a run are not independent of each other (the machine drifts, caches warm), so
    an interval from them alone is far too narrow. The rounds are: the interval is a pair of order
    statistics of the round medians chosen by the binomial (sign-test) rule, the widest at >= 95 %
    coverage; with 5 rounds that is their min..max (93.75 %), with 6 or more at least 95 %.
    """
    from math import comb

    values = sorted(float(v) for v in round_medians)
    n = len(values)
    if n < 2:
        return [values[0], values[0]], 0.0
    coverage = lambda k: 1 - 2 * sum(comb(n, i) for i in range(k)) / 2**n  # noqa: E731  # (x_k, x_n-k+1)
    k = 1
    while k + 1 <= n // 2 and coverage(k + 1) >= 0.95:
        k += 1
    return [values[k - 1], values[n - k]], coverage(k)


def latency_stats(samples_ms: list[float], rounds: list[list[float]] | None = None) -> dict:
    """Summary of raw latencies (milliseconds), the raw samples kept alongside.

    ``rounds`` are the samples of each timing round; without them the samples are cut into
    ROUNDS_FOR_CI consecutive blocks. The p50 interval comes from the round medians.
    """
    import numpy as np

    arr = np.asarray(samples_ms, dtype=np.float64)
    if rounds is None:
        rounds = [list(block) for block in np.array_split(arr, min(ROUNDS_FOR_CI, arr.size))]
    round_p50 = [float(np.median(r)) for r in rounds if len(r)]
    interval, coverage = median_ci(round_p50)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    percentile = lambda q: float(np.percentile(arr, q))  # noqa: E731
    return {
        "runs": int(arr.size), "mean": mean, "std": std, "cv": std / mean if mean else 0.0,
        "min": float(arr.min()), "max": float(arr.max()),
        "p50": percentile(50), "p90": percentile(90), "p95": percentile(95), "p99": percentile(99),
        "p50_ci95": interval,
        "p50_ci_coverage": coverage,
        "round_p50": round_p50,
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
          seq_len: int | None = None, warmup: int = 10, min_runs: int = 50, min_time_s: float = 2.0,
          verify: bool = True) -> dict:
    """Model latency (tokenization excluded) per batch size at a fixed sequence length.

    ``verify=False`` skips the check of the folder's files against the hashes in its edgewise.json.

    Example:
        >>> bench("deploy/teacher", threads=1)["results"][0]["latency_ms"]["p50"]  # doctest: +SKIP
        7.4
    """
    from edgewise.core.env import fingerprint
    from edgewise.core.manifest import MANIFEST_NAME
    from edgewise.runtime.predictor import _read_json

    if warmup < 0 or min_runs < 1 or min_time_s < 0 or any(b < 1 for b in batch_sizes):
        raise EdgewiseError("warmup must be >= 0, min-runs >= 1, min-time >= 0 and batch sizes >= 1")
    predictor = Predictor(folder, backend=backend, threads=threads, verify=verify)
    seq_len = predictor.max_length if seq_len is None else seq_len
    if not 2 <= seq_len <= predictor.max_length:
        raise EdgewiseError(f"--seq-len must be between 2 and the bundle's max_length {predictor.max_length}")
    manifest = _read_json(predictor.folder / MANIFEST_NAME)
    kind = manifest.get("kind")
    results = []
    for batch_size in dict.fromkeys(batch_sizes):
        samples = measure(predictor.run, synthetic_batch(predictor, batch_size, seq_len), warmup, min_runs, min_time_s)
        stats = latency_stats(samples)
        results.append({
            "artifact": predictor.folder.name,
            "path": str(predictor.folder),
            "kind": kind,
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
            "memory_mb": {"rss_now": current_rss_mb()},
        })
    size = sum(p.stat().st_size for p in predictor.folder.iterdir() if p.name.startswith(predictor.model_path.name))
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "tool": "edgewise.runtime",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"backend": backend, "threads": threads, "batch_sizes": list(dict.fromkeys(batch_sizes)),
                   "seq_len": seq_len, "warmup": warmup, "min_runs": min_runs, "min_time_s": min_time_s},
        "data": None,
        "reference": predictor.folder.name,
        "artifacts": [{"name": predictor.folder.name, "path": str(predictor.folder), "kind": kind,
                       "size_bytes": size, "parameters": None}],
        "environment": fingerprint(),
        "results": results,
    }


def current_rss_mb(field: str = "VmRSS:") -> float | None:
    """Resident memory of this process now (Linux /proc; VmHWM: its peak so far), in MiB."""
    from pathlib import Path

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None
