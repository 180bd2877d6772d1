"""Accuracy-aware search: the fastest INT8 model whose validation accuracy stays within a drop.

Candidates: dynamic per-tensor and per-channel; static QDQ calibrated with minmax, entropy and
percentile; then the most accurate of those with its most sensitive layers left in FP32, found by
a per-layer scan (each layer quantized alone; its effect on the logits measured against the
source). All candidates and the source are then timed side by side, and the fastest within the
drop is kept.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import EvalSet
from edgewise.quantize.config import CalibrationMethod, QuantizeConfig
from edgewise.quantize.measure import predict, score, time_side_by_side
from edgewise.quantize.ort import TextBatches, quantizable_nodes, quantize_dynamic, quantize_static
from edgewise.runtime.sizes import model_size


@dataclass
class Candidate:
    name: str
    method: str  # dynamic | static
    per_channel: bool
    calibration: CalibrationMethod | None = None
    fp32_nodes: tuple[str, ...] = ()
    path: Path | None = None
    metrics: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {"name": self.name, "method": self.method, "per_channel": self.per_channel,
                "calibration": self.calibration.value if self.calibration else None,
                "fp32_nodes": list(self.fp32_nodes), **self.metrics}


def _build(candidate: Candidate, pre: Path, scratch: Path, settings: dict, config: QuantizeConfig,
           batches: TextBatches | None, only_nodes: tuple[str, ...] | None = None, suffix: str = "") -> Path:
    path = scratch / f"{candidate.name}{suffix}.onnx"
    variant = {**settings, "per_channel": candidate.per_channel}
    if candidate.method == "dynamic":
        quantize_dynamic(pre, path, variant, config, exclude_node=candidate.fp32_nodes, only_nodes=only_nodes)
    else:
        cache = scratch / f"calibration-{candidate.calibration.value}.json"
        quantize_static(pre, path, variant, config, batches, cache, candidate.calibration,
                        exclude_node=candidate.fp32_nodes, only_nodes=only_nodes)
    return path


def sensitivity(best: Candidate, layers: list[dict], pre: Path, scratch: Path, settings: dict,
                config: QuantizeConfig, batches: TextBatches | None, folder: Path, probe: EvalSet, reference,
                advance, task=None) -> list[dict]:
    """Each of ``layers`` quantized alone: mean squared output error (logits, vectors) against the source,
    worst first."""
    import numpy as np

    scores = []
    for layer in layers:
        path = _build(best, pre, scratch, settings, config, batches, only_nodes=(layer["name"],), suffix="-probe")
        logits = predict(folder, path, probe, config.eval_batch_size, task=task)
        scores.append({**layer, "logit_mse": float(np.mean((logits - reference) ** 2))})
        path.unlink()
        advance()
    return sorted(scores, key=lambda s: -s["logit_mse"])


TIE = 0.03  # candidates within 3 % of the fastest count as equally fast (timing noise)


def search(pre: Path, source_model: Path, scratch: Path, folder: Path, settings: dict, config: QuantizeConfig,
           batches: TextBatches | None, validation: EvalSet, id2label: dict[int, str], kind) -> tuple[Path, dict]:
    """Run the search; return the chosen model file and the search record for the manifest.

    ``pre`` is the pre-processed model the candidates are made from; ``source_model`` the model
    as given, which every candidate is measured and timed against.
    """
    import random

    from edgewise.core.progress import console, progress_bar

    candidates = [Candidate("dynamic", "dynamic", False), Candidate("dynamic-pc", "dynamic", True)]
    if batches is not None:
        candidates += [Candidate(f"static-{m.value}", "static", True, m) for m in CalibrationMethod]
    layers = [n for n in quantizable_nodes(pre, config.op_types, config.exclude_op)
              if n["name"] not in config.exclude_node]
    steps = len(candidates) + len(layers) + len(config.fallback_layers) + 3

    def timed(names: dict[str, Path], session: int) -> None:
        bar.update(task, info=f"timing {len(names)} models side by side")
        result = time_side_by_side(folder, {"source": source_model, **names}, threads=config.threads,
                                   seq_len=config.seq_len, task=kind)
        base = result["source"]["p50"]
        sessions.append({"session": session, "source_p50_ms": base, "seq_len": result["source"]["seq_len"]})
        for candidate in candidates:
            if candidate.name in result:
                row = result[candidate.name]
                candidate.metrics.update({"latency_p50_ms": row["p50"], "latency_p50_ci95": row["p50_ci95"],
                                          "speedup_vs_source": base / row["p50"], "timing_session": session})
        bar.advance(task)

    sessions: list[dict] = []
    with progress_bar(transient=True) as bar:
        task = bar.add_task("quantization search", total=steps, info="source")
        source_logits = predict(folder, source_model, validation, config.eval_batch_size, task=kind)
        source = score(kind, source_logits, validation, id2label)
        if source["quality"] is None:  # gated on agreement: the source agrees with itself fully
            source = score(kind, source_logits, validation, id2label, source_logits)
        bar.advance(task)

        def evaluate(candidate: Candidate) -> None:
            bar.update(task, info=candidate.name)
            candidate.path = _build(candidate, pre, scratch, settings, config, batches)
            logits = predict(folder, candidate.path, validation, config.eval_batch_size, task=kind)
            result = score(kind, logits, validation, id2label, source_logits)
            drop = kind.quality_drop(result["quality"], source["quality"])
            candidate.metrics = {
                **{k: result[k] for k in SEARCH_FIELDS if k in result},
                "drop_points": round(drop, 4) if drop is not None else float("inf"),
                "size_bytes": model_size(candidate.path), "nonfinite_logits": result["nonfinite_logits"],
            }
            bar.advance(task)

        def passes(candidate: Candidate) -> bool:
            return (candidate.metrics["drop_points"] <= config.max_accuracy_drop + 1e-9
                    and not candidate.metrics.get("nonfinite_logits"))

        for candidate in candidates:
            evaluate(candidate)
        base = list(candidates)
        timed({c.name: c.path for c in base}, 1)
        # Leaving layers in FP32 can only help a candidate that misses the drop: the fastest such one.
        failing = sorted((c for c in candidates if not passes(c)), key=lambda c: c.metrics["latency_p50_ms"])
        scan, rescued = [], None
        if failing:
            rescued = failing[0]
            pick = random.Random(0).sample(range(len(validation.texts)), min(config.sensitivity_samples,
                                                                             len(validation.texts)))
            probe = EvalSet(validation.name, [validation.texts[i] for i in pick],
                            [validation.pairs[i] for i in pick] if validation.pairs else None, None, validation.source,
                            {})
            bar.update(task, info=f"per-layer scan of {rescued.name}")
            scan = sensitivity(rescued, layers, pre, scratch, settings, config, batches, folder, probe,
                               source_logits[pick], lambda: bar.advance(task), kind)
            fallbacks = []
            for count in config.fallback_layers:
                if count <= len(scan):
                    fallbacks.append(Candidate(f"{rescued.name}+fp32x{count}", rescued.method, rescued.per_channel,
                                               rescued.calibration, tuple(s["name"] for s in scan[:count])))
                    candidates.append(fallbacks[-1])
                    evaluate(fallbacks[-1])
            # Time the fallbacks against the fastest candidate that already passes, in a second session.
            passing = sorted((c for c in base if passes(c)), key=lambda c: c.metrics["latency_p50_ms"])
            if fallbacks:
                timed({c.name: c.path for c in fallbacks + passing[:1]}, 2)
        bar.update(task, completed=steps)

    record = {
        "max_accuracy_drop_points": config.max_accuracy_drop,
        "split": validation.name, "samples": len(validation.texts), "labelled": kind.labelled,
        "quality": kind.gate_of(source) + (" (points)" if kind.labelled else
                                           " (points of its share of the source's)"),
        "source": {**{k: source[k] for k in SEARCH_FIELDS if k in source},
                   "latency_p50_ms": sessions[0]["source_p50_ms"], "size_bytes": model_size(source_model)},
        "timing": {"threads": config.threads, "batch_size": 1, "seq_len": sessions[0]["seq_len"], "sessions": sessions,
                   "method": "each session times its models and the source interleaved in 5 rounds; speed-ups "
                             "are against the source of the same session",
                   "tie": f"within {TIE:.0%} of the fastest counts as a tie: fewer FP32 layers, then the smaller "
                          "file wins"},
        "sensitivity": ({"of": rescued.name, "probe_samples": min(config.sensitivity_samples, len(validation.texts)),
                         "layers": scan[:10]} if rescued else
                        {"skipped": "every candidate is within the drop: no layer needs to stay in FP32"}),
        "candidates": [c.row() for c in candidates],
    }
    passing = [c for c in candidates if passes(c)]
    if not passing:
        closest = min(candidates, key=lambda c: c.metrics["drop_points"])
        console().print(candidate_table(record))
        raise EdgewiseError(
            f"no candidate stays within {config.max_accuracy_drop:g} {kind.gate_of(source)} points of the source "
            f"({source['quality']:.4f} on {validation.name}); the closest is {closest.name} at "
            f"{closest.metrics.get('quality') or 0:.4f} (drop {closest.metrics['drop_points']:.2f} points). Allow a "
            "larger --max-accuracy-drop, calibrate on more --samples, leave more layers in FP32 (--fallback-layers), "
            "or use --method fp16"
        )
    fastest = max(c.metrics["speedup_vs_source"] for c in passing)
    tied = [c for c in passing if c.metrics["speedup_vs_source"] >= fastest * (1 - TIE)]
    pick = min(tied, key=lambda c: (len(c.fp32_nodes), c.metrics["size_bytes"], -c.metrics["speedup_vs_source"]))
    record["pick"] = pick.name
    if pick.metrics["speedup_vs_source"] < 1:
        record["warning"] = "the pick is slower than the source on this machine"
        console().print(f"[yellow]warning:[/] every candidate within the drop is slower than the source here; "
                        f"kept {pick.name} ({pick.metrics['speedup_vs_source']:.2f}x)")
    chosen = scratch / "chosen.onnx"
    shutil.move(pick.path, chosen)
    return chosen, {**record, "picked": pick.row()}


# The figures of a candidate the search records: a classifier's, then an embedding model's (core.tasks).
SEARCH_FIELDS = ("quality", "accuracy", "macro_f1", "agreement_with_source", "spearman", "cosine_mean", "cosine_p1",
                 "neighbour_overlap")


def candidate_table(record: dict):
    """The search's candidates as a rich table (the pick marked): the gate metric, its drop, the agreement with the
    source (labels; an embedding model's mean cosine)."""
    from rich.table import Table

    table = Table(title=f"quantization candidates (validation, {record['samples']} texts; batch 1, "
                        f"{record['timing']['seq_len']} tokens, {record['timing']['threads']} thread(s)); "
                        "pc = per-channel, * = kept")
    source = record["source"]
    classifier = record.get("labelled", "accuracy" in source)  # records before "labelled": a classifier's has accuracy
    gate = "accuracy" if classifier else record.get("quality", "quality").split(" ")[0]
    for column in ("candidate", gate, "drop", "agree" if classifier else "cosine", "p50 ms", "speedup", "MB"):
        table.add_column(column, justify="left" if column == "candidate" else "right", no_wrap=True)
    shown = (lambda v: f"{v:.2%}") if classifier else (lambda v: f"{v:.4f}")  # noqa: E731
    table.add_row("source (fp32)", shown(source["quality"]), "", "", f"{source['latency_p50_ms']:.2f}", "1.00x",
                  f"{source['size_bytes'] / 1e6:.1f}")
    for row in record["candidates"]:
        mark = " *" if row["name"] == record.get("pick") else ""
        agree = f"{row['agreement_with_source']:.1%}" if classifier else f"{row.get('cosine_mean', 0):.4f}"
        table.add_row(row["name"] + mark, shown(row["quality"]), f"{row['drop_points']:.2f}", agree,
                      f"{row['latency_p50_ms']:.2f}", f"{row['speedup_vs_source']:.2f}x",
                      f"{row['size_bytes'] / 1e6:.1f}")
    return table
