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

REPORT_SCHEMA_VERSION = 1
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
        src: the artifact folders; the first is the reference for latency ratios and label agreement.
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
    loaded = [Artifact.load(Path(p), kind=stage("bench").inputs) for p in src]
    paths = [a.path for a in loaded]
    if len(set(paths)) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise EdgewiseError(f"{twice} is given twice; name each artifact once")
    names = _names(loaded)
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
    split = _eval_split(data, config, paths[0]) if data else None
    if seq_mode == "data" and len(split) < max(config.batch_sizes):
        raise EdgewiseError(
            f"--seq-len data needs at least {max(config.batch_sizes)} evaluation texts for batch size "
            f"{max(config.batch_sizes)}; the split has {len(split)}: lower the batch size or use more texts"
        )

    if target is None:
        slots, rows, predictions = _measure_here(loaded, names, split, seq_mode, config)
        environment, peak = measurement_environment(), peak_rss_mb()
    else:
        slots, rows, predictions, environment, peak = _measure_on(target, loaded, names, split, seq_mode, config)
    rows += [_row(slot, config) for slot in slots]
    _relate(rows, names[0], predictions)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "tool": "edgewise bench",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config_to_dict(config),
        "data": None if split is None else {"spec": data, "split": split.name, "rows": len(split),
                                            "sha256": split.sha256()},
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


def _eval_split(data: str, config: BenchConfig, reference: Path):
    from edgewise.core.data import SPLIT_ALIASES, load_splits, select_split

    splits = load_splits(data, config.data)
    if config.split is not None and config.split.lower() in SPLIT_ALIASES["validation"]:
        from edgewise.core.lineage import carve_validation

        # The texts the reference's training held out, when the data has no validation split, so that a
        # choice made on validation (edgewise compress) never sees the test split.
        splits, _ = carve_validation(splits, data, reference, config.data)
    split = select_split(splits, config.split, data)
    if config.accuracy_samples:
        split = split.subset(range(min(len(split), config.accuracy_samples)), split.name)
    return split


def _measure_here(loaded: list[Artifact], names: list[str], split, seq_mode, config: BenchConfig):
    """Open, warm, score and time every artifact on every backend in this process: (slots, skipped rows,
    predictions by (name, backend, accuracy batch size))."""
    from edgewise.runtime.job import feeds, time_interleaved

    slots, rows, predictions = [], [], {}
    for artifact, name in zip(loaded, names, strict=True):
        for backend in dict.fromkeys(auto_backend(artifact.kind) if wanted == "auto" else wanted
                                     for wanted in config.backends):
            _import_backend(backend)  # so the memory figures hold the model, not the library's import
            before = current_rss_mb()
            try:
                _gpu_peak_mb(backend, reset=True)
                # Artifact.load verified the folder already.
                runner = open_runner(artifact.path, artifact.kind, backend, threads=config.threads, verify=False,
                                     allow_pickle=config.allow_pickle)
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
                    passes[eval_batch] = _score(predicted, artifact, split, config)
                slot["accuracy"] = passes.get(eval_batch)
                slot["accuracy_batch_size"] = eval_batch if split is not None else None
            slots += new_slots
    with progress_bar() as bar:
        task = bar.add_task("timing", total=config.rounds * len(slots), info="")
        time_interleaved(slots, rounds=config.rounds, min_runs=config.min_runs, min_time_s=config.min_time_s,
                         warmup=config.warmup,
                         advance=lambda r: bar.update(task, advance=1, info=f"round {r + 1}/{config.rounds}"))
    return slots, rows, predictions


def _measure_on(target, loaded: list[Artifact], names: list[str], split, seq_mode, config: BenchConfig):
    """The same measurement run on a device (runtime.targets): the device predicts and times, this host
    scores its predictions against the labels. (slots, skipped rows, predictions, the device's environment and
    its job's peak RSS)."""
    from edgewise.runtime.job import new_job

    job = new_job(names, split.texts if split else [], split.pairs if split else None, backends=list(config.backends),
                  batch_sizes=list(config.batch_sizes), threads=config.threads, seq_len=seq_mode,
                  warmup=config.warmup, min_runs=config.min_runs, min_time_s=config.min_time_s, rounds=config.rounds,
                  eval_batch_size=config.eval_batch_size)
    result = target.run_job([a.path for a in loaded], job, log=lambda line: console().print(line, markup=False))
    by_name = dict(zip(names, loaded, strict=True))
    rows = [result_row(s["name"], by_name[s["name"]].path, by_name[s["name"]].kind, s["backend"], b, None,
                       config.threads, reason=f"on {target.url}: {s['reason']}")
            for s in result["skipped"] for b in config.batch_sizes]
    for skip in result["skipped"]:
        console().print(f"[yellow]skipped[/yellow] {skip['name']} on {skip['backend']} ({target.url}): "
                        f"{skip['reason']}")
    slots, predictions, scored = [], {}, {}
    for slot in result["slots"]:
        artifact = by_name[slot["name"]]
        key = (slot["name"], slot["backend"], slot["accuracy_batch_size"])
        if split is not None and slot.get("predictions") is not None and key not in scored:
            predictions[key] = _label_ids(slot["predictions"])
            scored[key] = _score(predictions[key], artifact, split, config)
        slots.append({**slot, "artifact": artifact, "accuracy": scored.get(key),
                      "memory": {"rss_delta": _delta(slot.get("rss_before"), slot.get("rss_after")),
                                 "rss_now": slot.get("rss_after"), "gpu_peak": None}})
    environment = result["environment"]
    if result.get("power"):
        environment["power"] = result["power"]
    return slots, rows, predictions, environment, result.get("process_peak_rss_mb")


def _label_ids(values):
    import numpy as np

    return np.asarray(values, dtype=np.int64)


def _predict(runner, split, batch_size: int):
    """Labels predicted through the backend that is timed, in batches of ``batch_size`` (texts sorted by
    length, as evaluate batches them)."""
    import numpy as np

    with progress_bar(transient=True) as bar:
        task = bar.add_task(f"accuracy {runner.backend}, batch {batch_size}", total=len(split), info="")
        logits = runner.logits(split.texts, split.pairs, batch_size=batch_size, progress=lambda n: bar.advance(task, n))
    return np.asarray(logits).argmax(-1).astype(np.int64)


def _score(predicted, artifact: Artifact, split, config: BenchConfig) -> dict | None:
    """Accuracy and macro-F1 of ``predicted`` when the split is labelled."""
    from edgewise.core.data import encode_labels
    from edgewise.core.metrics import classification_metrics

    if split.labels is None:
        return None
    truth = encode_labels(split, artifact.labels, config.data.label_column)
    metrics = classification_metrics(truth, [int(p) for p in predicted], artifact.labels)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def _row(slot: dict, config: BenchConfig) -> dict:
    artifact = slot["artifact"]
    row = result_row(slot["name"], artifact.path, artifact.kind, slot["backend"], slot["batch_size"], slot["seq_len"],
                     config.threads, samples=slot["samples"], rounds=slot["rounds"], memory=slot["memory"],
                     info=slot["info"])
    accuracy = slot["accuracy"] or {}
    if "accuracy" in accuracy:
        row["accuracy"], row["macro_f1"] = accuracy["accuracy"], accuracy["macro_f1"]
    if slot.get("accuracy_batch_size") is not None:  # the batch size the predictions (accuracy, agreement) came from
        row["accuracy_batch_size"] = slot["accuracy_batch_size"]
    return row


def _delta(before, after):
    return None if before is None or after is None else round(after - before, 1)


def _relate(rows: list[dict], reference: str, predictions: dict) -> None:
    """Latency ratio and label agreement of every row against the reference artifact.

    Agreement compares predictions made at the same batch size (the row's accuracy batch size).
    """
    import numpy as np

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
            row["label_agreement"] = float(np.mean(mine == theirs))


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
        plot_pareto(report, out.artifact / "pareto.png", metric=(report.get("config") or {}).get("metric", "accuracy"))
        plot_latency_cdf(report, out.artifact / "latency_cdf.png")
        out.publish()
    console().print(f"wrote {out.dst}: report.json, report.md, pareto.png, latency_cdf.png")
