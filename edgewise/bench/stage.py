"""`edgewise bench`: several artifacts and backends timed side by side, with accuracy from the same run."""

from __future__ import annotations

import json
import math
import struct
from datetime import datetime, timezone
from pathlib import Path

from edgewise.bench.config import BenchConfig
from edgewise.core.artifact import Artifact
from edgewise.core.config import config_to_dict
from edgewise.core.env import measurement_environment
from edgewise.core.errors import EdgewiseError
from edgewise.core.progress import console, progress_bar
from edgewise.core.stage import stage
from edgewise.runtime.bench import current_rss_mb, result_row
from edgewise.runtime.runners import Unavailable, auto_backend, open_runner
from edgewise.runtime.sizes import model_size
from edgewise.runtime.targets import check_device_inputs, parse_target

# 2: rows carry ``scores`` (the task's metrics: accuracy and macro-F1, or STS Spearman, cosine and neighbour
# agreement) and ``quality`` (the gate metric's value); the report its ``task`` and ``quality_metric``.
REPORT_SCHEMA_VERSION = 2
# The task metrics a row also carries at its top level (what reports, compare and the plots read).
SCORE_FIELDS = ("accuracy", "macro_f1", "spearman", "cosine_mean", "cosine_p1", "cosine_min", "neighbour_overlap",
                "ndcg_at_10", "recall_at_10")
REPORT_FILE = "report.json"


def peak_rss_mb() -> float | None:
    """The most resident memory this process has held so far (Linux VmHWM, the high-water mark of VmRSS)."""
    return current_rss_mb("VmHWM:")


def _import_backend(backend: str) -> None:
    import importlib
    import importlib.util

    for module in (("torch", "transformers") if backend.startswith("torch") else ("onnxruntime", "tokenizers")):
        if importlib.util.find_spec(module) is not None:  # a missing one is the row's skip reason, from open_runner()
            importlib.import_module(module)


def _gpu_peak_mb(backend: str, reset: bool = False) -> float | None:
    """Peak CUDA memory torch allocated (torch-cuda rows only; ORT and TensorRT allocate outside torch)."""
    if backend != "torch-cuda" or not _cuda_available():
        return None
    import torch

    if reset:
        torch.cuda.reset_peak_memory_stats()
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def parameter_count(artifact: Artifact, depth: int = 3) -> int | None:
    """Parameters, read from the safetensors header or the ONNX initializers (no weights loaded).

    ORT-format models and bundles of them are counted through the ONNX model they came from.
    """
    if artifact.kind == "hf":
        total = 0
        for file in artifact.path.glob("*.safetensors"):
            with open(file, "rb") as f:
                header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
            total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
        return total or None
    onnx_path = artifact.path / "model.onnx"
    if onnx_path.is_file():
        import onnx

        model = onnx.load(str(onnx_path), load_external_data=False)
        return sum(math.prod(t.dims) for t in model.graph.initializer)
    parent = (artifact.manifest.parent or {}).get("path") if artifact.manifest else None
    if parent and depth > 0 and Path(parent).is_dir():
        try:
            return parameter_count(Artifact.load(Path(parent), verify=False), depth - 1)
        except EdgewiseError:
            return None
    return None


def _names(artifacts: list[Artifact]) -> list[str]:
    """Short unique names: the folder name, with its parent when two folders share a name."""
    names = [a.path.name for a in artifacts]
    return [f"{a.path.parent.name}/{a.path.name}" if names.count(a.path.name) > 1 else a.path.name
            for a in artifacts]


def bench(src: list[Path], dst: Path | None = None, config: BenchConfig = BenchConfig(), *, data: str | None = None,
          overwrite: bool = False, resume: bool = False) -> dict:
    """Time every artifact on every backend and batch size, interleaved in rounds; score accuracy.

    Args:
        src: the artifact folders; the first is the reference for latency ratios and label agreement
            (``config.reference``, when set, is put before them).
        dst: a folder for report.json, report.md, pareto.png and latency_cdf.png (default: none written).
        config: backends, batch sizes, threads, timing (default: BenchConfig()).
        data: labelled data for accuracy (and ``seq_len="data"``); default: none.
        overwrite: replace an existing report folder ``dst``.
        resume: bench cannot resume (an EdgewiseError when True).

    Returns the report (the JSON of report.json).

    Example:
        >>> bench([Path("runs/teacher"), Path("runs/teacher-onnx")], Path("reports/today"),
        ...       BenchConfig(backends=("auto",), threads=1), data="builtin:bbc-news")  # doctest: +SKIP
    """
    from edgewise.core.deps import require_full

    require_full("onnxruntime", "onnx", "sklearn", "matplotlib")
    if not src:
        raise EdgewiseError("name at least one artifact to benchmark")
    if config.reference:
        src = [config.reference, *src]
    loaded = [Artifact.load(Path(p), kind=stage("bench").inputs) for p in src]
    paths = [a.path for a in loaded]
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        also = " (--reference names it too)" if config.reference and twice == paths[0] else ""
        raise EdgewiseError(f"{twice} is given twice{also}; name each artifact once")
    names = _names(loaded)
    tasks = _tasks(loaded, config)
    task = tasks[0]
    target = parse_target(config.target)
    if target is not None:
        check_device_inputs(target, loaded, config.backends)
    out = None
    if dst is not None:  # checked before any heavy work
        from edgewise.core.stage import StageOutput

        out = StageOutput("bench", dst, sources=tuple(paths), overwrite=overwrite, resume=resume, marker=REPORT_FILE)
    elif resume:
        raise EdgewiseError("bench cannot resume an interrupted run; run it again without --resume")
    seq_mode = config.seq_len if config.seq_len != "auto" else ("data" if data else "max")
    if seq_mode == "data" and not data:
        raise EdgewiseError("--seq-len data times the evaluation texts: pass --data, or a number such as 128")
    if config.metric not in ("auto", *task.metrics):
        raise EdgewiseError(f"--metric {config.metric} is not a figure of {task.describe()} models; theirs are "
                            f"{', '.join(task.metrics)} (or auto)")
    if (config.pairs or config.retrieval) and task.name != "embedding":
        raise EdgewiseError("--pairs and --retrieval score sentence-embedding models (gold similarity scores, "
                            f"relevant documents); these are {task.describe()} models: drop them")
    split = None
    if data or config.pairs or config.retrieval:
        labels = loaded[0].labels if task.labelled else {}
        extra = {"retrieval": config.retrieval} if config.retrieval else {}
        split, _ = task.eval_data(data, config.split, config.data, paths[0], labels, pairs=config.pairs,
                                  samples=config.accuracy_samples, **extra)
    if seq_mode == "data" and len(split) < max(config.batch_sizes):
        raise EdgewiseError(
            f"--seq-len data needs at least {max(config.batch_sizes)} evaluation texts for batch size "
            f"{max(config.batch_sizes)}; the split has {len(split)}: lower the batch size or use more texts"
        )

    if target is None:
        slots, rows, predictions = _measure_here(loaded, names, tasks, split, seq_mode, config)
        environment, peak = measurement_environment(), peak_rss_mb()
    else:
        slots, rows, predictions, environment, peak = _measure_on(target, loaded, names, tasks, split, seq_mode,
                                                                  config)
    rows += [_row(slot, config) for slot in slots]
    _relate(rows, names[0], predictions, task, split)
    metric = _quality(rows, task)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "tool": "edgewise bench",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config_to_dict(config),
        "task": task.record(),
        "quality_metric": metric,
        "plot_metric": metric if config.metric == "auto" else config.metric,
        "data": None if split is None else {**split.describe(), "spec": data, "pairs_spec": config.pairs},
        "reference": names[0],
        "artifacts": [_describe(a, n) for a, n in zip(loaded, names, strict=True)],
        "results": _ordered(rows, names, config),
        "process_peak_rss_mb": peak,  # of the process that ran the models: this one, or the device's job
        "environment": environment,
    }
    if target is not None:
        report["target"] = str(target)
    if out is not None:
        _write(report, out)
    return report


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _tasks(loaded: list[Artifact], config: BenchConfig) -> list:
    """Each artifact's task (--task for a folder that does not say); artifacts of two tasks cannot stand in one
    bench."""
    from edgewise.core.tasks import refuse_unless

    tasks = [refuse_unless(a.task_for(config.task), ("classification", "embedding"), str(a.path), "bench")
             for a in loaded]
    other = next((a for a, t in zip(loaded, tasks, strict=True) if t.name != tasks[0].name), None)
    if other is not None:
        raise EdgewiseError(f"{other.path} is a {tasks[loaded.index(other)].describe()} model and {loaded[0].path} a "
                            f"{tasks[0].describe()} model; bench compares models of one task: bench them apart")
    return tasks


def _quality(rows: list[dict], task) -> str | None:
    """Each timed row's ``quality``: its value of the task's gate metric (accuracy; an embedding model's STS
    Spearman, else its neighbour overlap with the reference), which gates choices (compress, recipes); --metric
    only picks the Pareto plot's axis. Returns the metric's name (None without data)."""
    scored = [r for r in rows if r.get("status") == "ok" and r.get("scores")]
    if not scored:
        return None
    metric = task.gate_of(scored[0]["scores"])
    for row in scored:
        row["quality"] = row["scores"].get(metric)
    return metric


def _measure_here(loaded: list[Artifact], names: list[str], tasks: list, split, seq_mode, config: BenchConfig):
    """Open, warm, score and time every artifact on every backend in this process: (slots, skipped rows,
    the task's outputs (logits, vectors) by (name, backend, accuracy batch size))."""
    from edgewise.runtime.job import feeds, time_interleaved

    slots, rows, predictions = [], [], {}
    for artifact, name, task in zip(loaded, names, tasks, strict=True):
        for backend in dict.fromkeys(auto_backend(artifact.kind) if wanted == "auto" else wanted
                                     for wanted in config.backends):
            _import_backend(backend)  # so the memory figures hold the model, not the library's import
            before = current_rss_mb()
            try:
                _gpu_peak_mb(backend, reset=True)
                # Artifact.load verified the folder already.
                runner = open_runner(artifact.path, artifact.kind, backend, threads=config.threads, verify=False,
                                     allow_pickle=config.allow_pickle, task=task)
            except Unavailable as skip:
                console().print(f"[yellow]skipped[/yellow] {name} on {backend}: {skip}")
                rows += [result_row(name, artifact.path, artifact.kind, backend, b, None, config.threads,
                                    reason=str(skip)) for b in config.batch_sizes]
                continue
            new_slots = []
            for batch_size in config.batch_sizes:
                slot_feeds = feeds(runner, split.texts if split else None, split.pairs if split else None,
                                   batch_size, seq_mode)
                for i in range(config.warmup):
                    runner.run(slot_feeds[i % len(slot_feeds)][0])
                # Memory the model and its runs at this batch size added, before anything else loads.
                after = current_rss_mb()
                new_slots.append({"name": name, "artifact": artifact, "backend": backend, "batch_size": batch_size,
                                  "runner": runner, "feeds": slot_feeds, "info": runner.info,
                                  "memory": {"rss_delta": _delta(before, after), "rss_now": after,
                                             "gpu_peak": _gpu_peak_mb(backend)},
                                  "seq_len": "data" if seq_mode == "data" else slot_feeds[0][1]})
            # Each row is scored at its own batch size (dynamic INT8 scales activations per batch, so the
            # batch changes predictions); one pass per distinct accuracy batch size, shared by its rows.
            passes = {}
            for slot in new_slots:
                eval_batch = config.eval_batch_size or slot["batch_size"]
                if split is not None and eval_batch not in passes:
                    predicted = _predict(runner, split, eval_batch)
                    predictions[(name, backend, eval_batch)] = predicted
                    passes[eval_batch] = task.score(split, predicted, artifact.labels)
                slot["accuracy"] = passes.get(eval_batch)
                slot["accuracy_batch_size"] = eval_batch if split is not None else None
            slots += new_slots
    with progress_bar() as bar:
        task = bar.add_task("timing", total=config.rounds * len(slots), info="")
        time_interleaved(slots, rounds=config.rounds, min_runs=config.min_runs, min_time_s=config.min_time_s,
                         warmup=config.warmup,
                         advance=lambda r: bar.update(task, advance=1, info=f"round {r + 1}/{config.rounds}"))
    return slots, rows, predictions


def _measure_on(target, loaded: list[Artifact], names: list[str], tasks: list, split, seq_mode, config: BenchConfig):
    """The same measurement run on a device (runtime.targets): the device predicts and times, this host
    scores its predictions against the labels. (slots, skipped rows, predictions, the device's environment and
    its job's peak RSS)."""
    from edgewise.runtime.job import new_job

    job = new_job(names, split.texts if split else [], split.pairs if split else None, backends=list(config.backends),
                  batch_sizes=list(config.batch_sizes), threads=config.threads, seq_len=seq_mode,
                  warmup=config.warmup, min_runs=config.min_runs, min_time_s=config.min_time_s, rounds=config.rounds,
                  eval_batch_size=config.eval_batch_size, tasks=[t.record() for t in tasks])
    result = target.run_job([a.path for a in loaded], job, log=lambda line: console().print(line, markup=False))
    by_name = dict(zip(names, loaded, strict=True))
    task_of = dict(zip(names, tasks, strict=True))
    rows = [result_row(s["name"], by_name[s["name"]].path, by_name[s["name"]].kind, s["backend"], b, None,
                       config.threads, reason=f"on {target.url}: {s['reason']}")
            for s in result["skipped"] for b in config.batch_sizes]
    for skip in result["skipped"]:
        console().print(f"[yellow]skipped[/yellow] {skip['name']} on {skip['backend']} ({target.url}): "
                        f"{skip['reason']}")
    slots, predictions, scored = [], {}, {}
    for slot in result["slots"]:
        artifact, task = by_name[slot["name"]], task_of[slot["name"]]
        key = (slot["name"], slot["backend"], slot["accuracy_batch_size"])
        if split is not None and slot.get("predictions") is not None and key not in scored:
            predictions[key] = task.expand(slot["predictions"], artifact.labels)
            scored[key] = task.score(split, predictions[key], artifact.labels)
        slots.append({**slot, "artifact": artifact, "accuracy": scored.get(key),
                      "memory": {"rss_delta": _delta(slot.get("rss_before"), slot.get("rss_after")),
                                 "rss_now": slot.get("rss_after"), "gpu_peak": None}})
    environment = result["environment"]
    if result.get("power"):
        environment["power"] = result["power"]
    return slots, rows, predictions, environment, result.get("process_peak_rss_mb")


def _predict(runner, split, batch_size: int):
    """The task's outputs (logits, vectors) through the backend that is timed, in batches of ``batch_size`` (texts
    sorted by length, as evaluate batches them)."""
    with progress_bar(transient=True) as bar:
        task = bar.add_task(f"outputs {runner.backend}, batch {batch_size}", total=len(split), info="")
        return runner.outputs(split.texts, split.pairs, batch_size=batch_size,
                              progress=lambda n: bar.advance(task, n))


def _row(slot: dict, config: BenchConfig) -> dict:
    artifact = slot["artifact"]
    row = result_row(slot["name"], artifact.path, artifact.kind, slot["backend"], slot["batch_size"], slot["seq_len"],
                     config.threads, samples=slot["samples"], rounds=slot["rounds"], memory=slot["memory"],
                     info=slot["info"])
    scores = slot["accuracy"] or {}
    if scores:
        row["scores"] = scores
        row.update({k: v for k, v in scores.items() if k in SCORE_FIELDS})
    if slot.get("accuracy_batch_size") is not None:  # the batch size the predictions (accuracy, agreement) came from
        row["accuracy_batch_size"] = slot["accuracy_batch_size"]
    return row


def _delta(before, after):
    return None if before is None or after is None else round(after - before, 1)


def _relate(rows: list[dict], reference: str, predictions: dict, task, split) -> None:
    """Latency ratio and agreement (a classifier's labels; an embedding model's cosine and top-10 neighbours) of
    every row against the reference artifact.

    Agreement compares outputs made at the same batch size (the row's accuracy batch size).
    """
    ok = [r for r in rows if r["status"] == "ok"]
    for row in ok:
        same = [r for r in ok if r["artifact"] == reference and r["batch_size"] == row["batch_size"]]
        ref = next((r for r in same if r["backend"] == row["backend"]), same[0] if same else None)
        if ref is None:
            continue
        row["reference"] = {"backend": ref["backend"], "p50_ratio": row["latency_ms"]["p50"] / ref["latency_ms"]["p50"]}
        mine = predictions.get((row["artifact"], row["backend"], row.get("accuracy_batch_size")))
        theirs = predictions.get((reference, ref["backend"], row.get("accuracy_batch_size")))
        if mine is not None and theirs is not None:
            agreement = task.agreement_on(split, mine, theirs)
            if row.get("spearman") is not None and ref.get("spearman"):  # STS as a share of the reference's
                agreement["spearman_share"] = row["spearman"] / ref["spearman"]
            row.update(agreement)
            row.setdefault("scores", {}).update(agreement)


def _ordered(rows: list[dict], names: list[str], config: BenchConfig) -> list[dict]:
    order = {n: i for i, n in enumerate(names)}
    return sorted(rows, key=lambda r: (order[r["artifact"]], r["backend"], r["batch_size"]))


def _describe(artifact: Artifact, name: str) -> dict:
    return {"name": name, "path": str(artifact.path), "kind": artifact.kind,
            "stage": artifact.manifest.stage if artifact.manifest else None,
            "manifest_sha256": artifact.manifest.sha256 if artifact.manifest else None,
            "size_bytes": model_size(artifact.path, artifact.kind), "parameters": parameter_count(artifact)}


def _write(report: dict, out) -> None:
    from edgewise.bench.plots import plot_latency_cdf, plot_pareto
    from edgewise.bench.report import markdown

    with out:
        (out.artifact / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        (out.artifact / "report.md").write_text(markdown(report))
        plot_pareto(report, out.artifact / "pareto.png", metric=report.get("plot_metric") or "accuracy")
        plot_latency_cdf(report, out.artifact / "latency_cdf.png")
        out.publish()
    console().print(f"wrote {out.dst}: report.json, report.md, pareto.png, latency_cdf.png")
