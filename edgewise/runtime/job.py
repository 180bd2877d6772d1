"""The measuring core of `edgewise bench` and `edgewise evaluate`: models opened, texts predicted at each
batch size, latency timed in interleaved rounds.

`edgewise bench` times local artifacts with ``feeds`` and ``time_interleaved``; a device target
(runtime.targets) sends the same work to the device as a job file, which ``run_job`` runs there under
`python -m edgewise.runtime job` with onnxruntime + tokenizers + numpy only. The device returns raw
figures (latency samples, predicted label ids or sentence vectors, its fingerprint); the host scores them
and writes the report, so a device row is computed exactly as a local one.

A job (JSON):

    {"schema_version": 1,
     "models": [{"name": "student", "path": "/remote/cache/student", "task": {"name": ...}}],  # task: optional
     "backends": ["auto"], "batch_sizes": [1, 8], "threads": 4,
     "seq_len": "data" | "max" | 128, "warmup": 10, "min_runs": 50, "min_time_s": 2.0, "rounds": 5,
     "time": true,                       # false: predictions only (evaluate)
     "texts": [...], "pairs": null,      # what is predicted (and timed with seq_len "data")
     "eval_batch_size": null,            # null: each row's own batch size
     "max_length": null, "verify": true}
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from edgewise.core.errors import EdgewiseError

JOB_SCHEMA_VERSION = 1
DATA_FEED_TEXTS = 256  # texts at most cut into timing feeds at their real lengths


def feeds(runner, texts: list[str] | None, pairs: list[str] | None, batch_size: int, seq_mode) -> list[tuple]:
    """Inputs to time: (feed, seq_len) pairs, cycled through during timing. ``seq_mode`` "data" cuts the
    first texts into batches at their real lengths; "max" or a number gives synthetic ids of that length."""
    if seq_mode == "data":
        texts = texts[: max(batch_size, min(len(texts), DATA_FEED_TEXTS))]
        pairs = pairs[: len(texts)] if pairs else None
        out = []
        for start in range(0, len(texts) - batch_size + 1, batch_size):
            feed = runner.encode(texts[start:start + batch_size], pairs[start:start + batch_size] if pairs else None)
            out.append((feed, int(next(iter(feed.values())).shape[1])))
        return out
    seq_len = runner.max_length if seq_mode == "max" else int(seq_mode)
    if seq_len > runner.max_length:
        raise EdgewiseError(f"--seq-len {seq_len} exceeds the model's max_length {runner.max_length}; lower it")
    return [(runner.synthetic(batch_size, seq_len), seq_len)]


def time_interleaved(slots: list[dict], *, rounds: int, min_runs: int, min_time_s: float, warmup: int,
                     advance=None) -> None:
    """Time the (already warmed) slots in rounds, A B C A B C ...: each slot holds a ``runner`` and its
    ``feeds``; its ``samples`` (ms) and ``rounds`` (the samples of each round) are filled in.
    ``advance(round_index)`` is called after each slot's turn."""
    if not slots:
        return
    per_round_runs = math.ceil(min_runs / rounds)
    per_round_time = min_time_s / rounds
    for slot in slots:  # the accuracy passes and later loads ran since the warm-up: warm up again
        slot.setdefault("samples", [])
        slot.setdefault("rounds", [])
        for i in range(min(warmup, 3)):
            slot["runner"].run(slot["feeds"][i % len(slot["feeds"])][0])
    for round_index in range(rounds):
        for slot in slots:
            runner, slot_feeds, samples = slot["runner"], slot["feeds"], slot["samples"]
            start, this_round = time.perf_counter(), []
            while len(this_round) < per_round_runs or time.perf_counter() - start < per_round_time:
                this_round.append(runner.time_ms(slot_feeds[(len(samples) + len(this_round)) % len(slot_feeds)][0]))
            samples.extend(this_round)
            slot["rounds"].append(this_round)
            if advance is not None:
                advance(round_index)


# A job's settings where it does not say (new_job writes them all; run_job reads older or hand-made jobs so).
JOB_DEFAULTS = {"backends": ["auto"], "batch_sizes": [1], "threads": None, "seq_len": "max", "warmup": 10,
                "min_runs": 50, "min_time_s": 2.0, "rounds": 5, "time": True, "pairs": None, "eval_batch_size": None,
                "max_length": None, "verify": True}


def new_job(names: list[str], texts: list[str], pairs: list[str] | None, tasks: list[dict] | None = None,
            **settings) -> dict:
    """A job for the models ``names`` (their paths are filled in where it runs; ``tasks``: each one's task record,
    for a folder that does not say what it is) over ``texts``: the keys of the module docstring, ``settings``
    overriding JOB_DEFAULTS."""
    models = [{"name": n, **({"task": t} if t else {})} for n, t in zip(names, tasks or [None] * len(names),
                                                                      strict=True)]
    return {"schema_version": JOB_SCHEMA_VERSION, **JOB_DEFAULTS, "models": models,
            "texts": list(texts), "pairs": list(pairs) if pairs else None, **settings}


def check_job(job: dict) -> None:
    """Refuse a job this runtime cannot read (a newer host's, or a hand-edited file)."""
    if not isinstance(job, dict) or job.get("schema_version") != JOB_SCHEMA_VERSION:
        found = job.get("schema_version") if isinstance(job, dict) else type(job).__name__
        raise EdgewiseError(f"this runtime reads job schema {JOB_SCHEMA_VERSION}, the job has {found!r}; run the "
                            "job with the edgewise that wrote it")
    missing = [k for k in ("models", "backends", "batch_sizes", "texts") if k not in job]
    if missing:
        raise EdgewiseError(f"the job lacks {', '.join(missing)}; write it with edgewise (runtime.targets)")


def run_job(job: dict, log=None) -> dict:
    """Run ``job`` (see the module docstring) here; returns the raw figures as JSON-ready data.

    Every model is opened on every backend (one that cannot run here is a skipped entry with its reason),
    warmed up at each batch size, asked for the labels of the job's texts, then all are timed together in
    interleaved rounds. ``log(line)`` receives a progress line per step.
    """
    from edgewise.core.env import measurement_environment
    from edgewise.core.tasks import from_record
    from edgewise.runtime.bench import current_rss_mb
    from edgewise.runtime.runners import Unavailable, auto_backend, open_runner, read_manifest

    check_job(job)
    job = {**JOB_DEFAULTS, **job}
    log = log or (lambda line: None)
    started = time.perf_counter()
    texts, pairs = job["texts"], job["pairs"]
    timed = job["time"]
    seq_mode = job["seq_len"]
    warmup = int(job["warmup"])
    import onnxruntime  # noqa: F401  # imported before the first reading, so memory figures hold models only
    import tokenizers  # noqa: F401

    slots, skipped, unloadable = [], [], []
    for model in job["models"]:
        kind = read_manifest(model["path"]).get("kind")
        for backend in dict.fromkeys(auto_backend(kind) if b == "auto" else b for b in job["backends"]):
            before = current_rss_mb()
            try:
                runner = open_runner(model["path"], kind, backend, threads=job["threads"],
                                     max_length=job["max_length"], verify=job["verify"],
                                     task=from_record(model["task"], "the job") if model.get("task") else None)
            except Unavailable as skip:
                log(f"skipped {model['name']} on {backend}: {skip}")
                skipped.append({"name": model["name"], "backend": backend, "reason": str(skip)})
                if backend == "ort-cpu":  # the CPU provider is always there: the model itself does not load
                    unloadable.append(f"{model['name']} cannot run here: {skip}")
                continue
            log(f"{model['name']} on {backend}: loaded ({time.perf_counter() - started:.1f} s)")
            predictions: dict[int, list] = {}
            for batch_size in job["batch_sizes"]:
                slot_feeds = feeds(runner, texts, pairs, batch_size, seq_mode) if timed else []
                for i in range(warmup if timed else 0):
                    runner.run(slot_feeds[i % len(slot_feeds)][0])
                after = current_rss_mb()  # as bench reads it locally: the model and its runs, before scoring
                eval_batch = job["eval_batch_size"] or batch_size
                if texts and eval_batch not in predictions:
                    # What the host scores: a classifier's label ids, an embedding model's vectors (runner.task).
                    outputs = runner.outputs(texts, pairs, batch_size=eval_batch)
                    predictions[eval_batch] = runner.task.compact(outputs)
                    log(f"{model['name']} on {backend}: {len(texts)} texts predicted at batch {eval_batch} "
                        f"({time.perf_counter() - started:.1f} s)")
                slots.append({
                    "name": model["name"], "backend": runner.backend, "batch_size": batch_size,
                    "runner": runner, "feeds": slot_feeds, "rss_before": before, "rss_after": after,
                    "seq_len": "data" if seq_mode == "data" else (slot_feeds[0][1] if slot_feeds else None),
                    "accuracy_batch_size": eval_batch if texts else None, "max_length": runner.max_length,
                    "predictions": predictions.get(eval_batch),
                })
    if unloadable and not slots:
        raise EdgewiseError("; ".join(unloadable))
    if timed:
        total = int(job["rounds"]) * len(slots)
        done = [0]

        def advance(round_index):
            done[0] += 1
            if done[0] % max(1, len(slots)) == 0:
                log(f"timing round {round_index + 1}/{job['rounds']} ({done[0]}/{total}, "
                    f"{time.perf_counter() - started:.1f} s)")

        with PowerSampler() as power:
            time_interleaved(slots, rounds=int(job["rounds"]), min_runs=int(job["min_runs"]),
                             min_time_s=float(job["min_time_s"]), warmup=warmup, advance=advance)
    else:
        power = None
    return {
        "schema_version": JOB_SCHEMA_VERSION,
        "edgewise_code": str(Path(__file__).resolve().parents[1]),  # which copy ran (the host's, sent along)
        "process_peak_rss_mb": current_rss_mb("VmHWM:"),
        "environment": measurement_environment(device=True),
        "power": power.summary() if power is not None else None,
        "slots": [{k: v for k, v in slot.items() if k not in ("runner", "feeds")} | {"info": slot["runner"].info}
                  for slot in slots],
        "skipped": skipped,
    }


class PowerSampler:
    """tegrastats (NVIDIA Jetson) running beside the timing, its power rails averaged; nothing elsewhere."""

    INTERVAL_MS = 500

    def __enter__(self):
        import shutil
        import subprocess

        self.process, self.lines = None, []
        tool = shutil.which("tegrastats")
        if tool is not None:
            try:
                self.process = subprocess.Popen([tool, "--interval", str(self.INTERVAL_MS)], stdout=subprocess.PIPE,
                                                stderr=subprocess.DEVNULL, text=True)
            except OSError:  # not executable for this user: the report simply has no power figures
                self.process = None
        return self

    def __exit__(self, *exc):
        import subprocess

        if self.process is not None:
            self.process.terminate()
            try:
                out, _ = self.process.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a tegrastats that ignores SIGTERM is killed
                self.process.kill()
                out, _ = self.process.communicate()
            self.lines = out.splitlines()
        return False

    def summary(self) -> dict | None:
        if self.process is None:
            return None
        return {"tool": "tegrastats", "interval_ms": self.INTERVAL_MS, "samples": len(self.lines),
                "mean_mw": tegrastats_power(self.lines)}


def tegrastats_power(lines: list[str]) -> dict[str, float]:
    """Mean instantaneous power per rail (mW) in tegrastats lines: JetPack 5/6 print
    ``VDD_GPU_SOC 2345mW/2100mW`` (now/average), older releases ``POM_5V_GPU 1234/1200``."""
    import re

    pattern = re.compile(r"\b((?:VDD|VIN|POM)_[A-Z0-9_]+) (\d+)(?:mW)?/(\d+)(?:mW)?")
    readings: dict[str, list[int]] = {}
    for line in lines:
        for rail, now, _average in pattern.findall(line):
            readings.setdefault(rail, []).append(int(now))
    return {rail: round(sum(values) / len(values), 1) for rail, values in readings.items()}
