"""Latency of a bundle or ONNX artifact with onnxruntime alone, in the report schema `edgewise bench` uses
(its rows are built here, by ``result_row``, for both)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from edgewise.core.errors import EdgewiseError

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


def measure(run, feed, warmup: int, min_runs: int, min_time_s: float) -> list[float]:
    """Warm up, then time ``run(feed)`` at least ``min_runs`` times and for at least ``min_time_s``;
    ``feed`` may be a list of feeds, run in turn (inputs of several lengths)."""
    feeds = feed if isinstance(feed, list) else [feed]
    for i in range(max(warmup, len(feeds)) if warmup else 0):  # every shape once before timing
        run(feeds[i % len(feeds)])
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - start < min_time_s:
        current = feeds[len(samples) % len(feeds)]
        t0 = time.perf_counter()
        run(current)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return samples


def recorded_lengths(manifest: dict, max_length: int) -> list[int] | None:
    """The token lengths a bundle's training texts had (their 5th-100th percentiles, cut at max_length),
    as its manifest records them; None when it records none."""
    quantiles = ((manifest.get("data") or {}).get("token_lengths") or {}).get("quantiles")
    if not quantiles:
        return None
    return [min(max(int(q), 2), max_length) for q in quantiles[1:]]


def result_row(artifact: str, path, kind: str | None, backend: str, batch_size: int, seq_len, threads: int | None,
               *, samples: list[float] | None = None, rounds: list[list[float]] | None = None,
               memory: dict | None = None, reason: str | None = None, **fields) -> dict:
    """One row of a bench report, for `edgewise bench` and `python -m edgewise.runtime bench` alike.

    A row with ``reason`` is skipped (the backend cannot run the artifact here): it names the reason
    and has no seq_len. Otherwise ``samples`` (milliseconds; ``rounds`` the samples of each timing
    round) give its latency statistics and throughput, ``memory`` its figures in MiB, and ``fields``
    what each tool records besides (the runner's info; the model file, providers and warm-up runs).
    """
    row = {"artifact": artifact, "path": str(path), "kind": kind, "status": "ok" if reason is None else "skipped"}
    if reason is not None:
        return {**row, "reason": reason, "backend": backend, "batch_size": batch_size, "seq_len": None,
                "threads": threads}
    stats = latency_stats(samples, rounds)
    return {**row, "backend": backend, "batch_size": batch_size, "seq_len": seq_len, "threads": threads, **fields,
            # Items over the total timed time (batch / mean latency): batch / p50 overstated it 10-30 % at real
            # text lengths, where the latency's spread is the spread of the texts' lengths.
            "latency_ms": stats, "throughput_items_per_s": batch_size * 1000.0 / stats["mean"], "memory_mb": memory}


def row_line(row: dict) -> str:
    """A timed row as one line for people (`python -m edgewise.runtime bench` and `build-engine`)."""
    lat = row["latency_ms"]
    shape = "real lengths" if row["seq_len"] == "data" else f"{row['seq_len']} tokens"
    return (f"batch {row['batch_size']} x {shape}, {row['backend']}, threads {row['threads']}: "
            f"p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  cv {lat['cv']:.3f}  "
            f"({lat['runs']} runs, {row['throughput_items_per_s']:.1f} items/s)")


def bench(folder, *, backend: str = "ort-cpu", threads: int | None = None, batch_sizes=(1,),
          seq_len: int | str | None = None, warmup: int = 10, min_runs: int = 50, min_time_s: float = 2.0,
          verify: bool = True) -> dict:
    """Model latency (tokenization excluded) per batch size, at the real token lengths the bundle records
    (``seq_len`` "data": its training texts' 5th-100th percentiles, timed in turn; the default when they are
    recorded) or at a fixed length (a number; the default otherwise: the bundle's max_length).

    ``backend`` is ort-cpu (default), ort-cuda, ort-tensorrt or tensorrt; ``verify=False`` skips the
    check of the folder's files against the hashes in its edgewise.json.

    Example:
        >>> bench("deploy/teacher", threads=1)["results"][0]["latency_ms"]["p50"]  # doctest: +SKIP
        7.4
    """
    from edgewise.core.env import fingerprint
    from edgewise.runtime.predictor import BACKENDS
    from edgewise.runtime.runners import open_runner, read_manifest
    from edgewise.runtime.sizes import model_size

    wrong = [f"--{flag} must be >= {low}, got {value}" for flag, value, low in (
        ("warmup", warmup, 0), ("min-runs", min_runs, 1), ("min-time", min_time_s, 0),
        ("batch-sizes", min(batch_sizes, default=0), 1)) if value < low]
    if wrong:
        raise EdgewiseError("; ".join(wrong))
    if backend not in BACKENDS:
        raise EdgewiseError(f"the runtime runs backends {', '.join(BACKENDS)}, not {backend!r}")
    kind = read_manifest(folder).get("kind")
    runner = open_runner(folder, kind, backend, threads=threads, verify=verify)
    lengths = recorded_lengths(read_manifest(folder), runner.max_length)
    if seq_len is None:
        seq_len = "data" if lengths else runner.max_length
    if seq_len == "data" and not lengths:
        raise EdgewiseError(f"{runner.folder} records no token lengths of its training texts (made by an older "
                            "edgewise or from a model edgewise did not train); pass --seq-len N to time N tokens")
    if seq_len != "data":
        try:
            seq_len = int(seq_len)
        except ValueError:
            raise EdgewiseError(f"--seq-len must be 'data' or a number, got {seq_len!r}") from None
        if not 2 <= seq_len <= runner.max_length:
            raise EdgewiseError(f"--seq-len must be between 2 and the bundle's max_length {runner.max_length}")
    name, path = runner.folder.name, runner.folder
    results = []
    for batch_size in dict.fromkeys(batch_sizes):
        feeds = ([runner.synthetic(batch_size, length) for length in lengths]
                 if seq_len == "data" else runner.synthetic(batch_size, seq_len))
        samples = measure(runner.run, feeds, warmup, min_runs, min_time_s)
        results.append(result_row(name, path, kind, backend, batch_size, seq_len, threads, samples=samples,
                                  memory={"rss_now": current_rss_mb()}, model_file=runner.model_path.name,
                                  providers=runner.providers(), warmup=warmup))
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "tool": "edgewise.runtime",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"backend": backend, "threads": threads, "batch_sizes": list(dict.fromkeys(batch_sizes)),
                   "seq_len": seq_len, "lengths": lengths if seq_len == "data" else None, "warmup": warmup,
                   "min_runs": min_runs, "min_time_s": min_time_s},
        "data": None,
        "reference": name,
        "artifacts": [{"name": name, "path": str(path), "kind": kind, "size_bytes": model_size(runner.model_path),
                       "parameters": None}],
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
