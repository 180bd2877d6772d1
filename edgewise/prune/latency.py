"""The measured-latency budget of `edgewise prune --latency-budget`: candidate prunings exported to
ONNX and timed with onnxruntime on this machine (batch 1, --seq-len tokens, --threads), and the
largest FLOPs fraction whose measured latency fits the budget found by bisection. Latency is not
proportional to FLOPs (embeddings, LayerNorms and the classifier do not shrink), so it is measured,
not estimated."""

from __future__ import annotations

import copy
import statistics
from pathlib import Path

from edgewise.core.errors import EdgewiseError


def parse_budget(text: str) -> tuple[str, float]:
    """'4ms' / '4 ms' -> ("ms", 4.0); '60%' -> ("fraction", 0.6) of the unpruned model's latency."""
    value = str(text).strip().lower().replace(" ", "")
    try:
        if value.endswith("ms"):
            number, unit = float(value[:-2]), "ms"
        elif value.endswith("%"):
            number, unit = float(value[:-1]) / 100, "fraction"
        else:
            raise ValueError
    except ValueError:
        raise EdgewiseError(f"--latency-budget {text!r} is not a latency; write milliseconds (4ms) or a share of the "
                            "unpruned model's measured latency (60%)") from None
    if not number > 0 or (unit == "fraction" and number > 1):
        raise EdgewiseError(f"--latency-budget {text!r} must be > 0 ms, or a share in (0, 100] %")
    return unit, number


def onnx_latency_ms(model, work: Path, *, seq_len: int, threads: int, name: str, task=None) -> float:
    """Median batch-1 latency of ``model`` exported to ONNX (opset 17) and run by onnxruntime on this CPU
    (the session edgewise's runtime builds, with ``threads``)."""
    import numpy as np

    from edgewise.export.onnx import write_onnx
    from edgewise.runtime.bench import measure
    from edgewise.runtime.sessions import session

    if model.config.pad_token_id is None:  # on a copy: the model being pruned keeps its config as it is
        model = copy.deepcopy(model)
        model.config.pad_token_id = 0
    path = write_onnx(model, work / name, opset=17, work=work / "tmp", what=f"the {name} latency probe", task=task)
    loaded = session(path, "ort-cpu", threads)
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    ids = rng.integers(min(1000, vocab // 2), vocab, size=(1, seq_len), dtype=np.int64)
    columns = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {i.name: columns[i.name] for i in loaded.get_inputs()}
    rounds = [statistics.median(measure(lambda f: loaded.run(None, f), feed, 5 if r == 0 else 1, 15, 0.3))
              for r in range(3)]
    return float(statistics.median(rounds))


def fit_budget(model, plan_at, work: Path, *, budget: str, floor: float, seq_len: int, threads: int,
               iterations: int = 6, reference=None, say=print, task=None) -> tuple[dict, dict]:
    """The plan (from ``plan_at(flops_fraction)``) with the most FLOPs whose measured latency fits the
    budget, and a record of every probe. ``floor`` is the smallest FLOPs fraction pruning reaches;
    a share budget ("60%") is of ``reference``'s latency (default: ``model``'s; the model as given
    when layers were dropped before)."""
    from edgewise.prune.slicing import remove_units

    unit, value = parse_budget(budget)
    unpruned = onnx_latency_ms(model if reference is None else reference, work, seq_len=seq_len, threads=threads,
                               name="probe-unpruned", task=task)
    budget_ms = value if unit == "ms" else value * unpruned
    probes = []

    def probe(fraction: float):
        plan = plan_at(fraction)
        candidate = copy.deepcopy(model)
        remove_units(candidate, plan["heads"], plan["ffn"])
        ms = onnx_latency_ms(candidate, work, seq_len=seq_len, threads=threads, name=f"probe-{len(probes)}",
                             task=task)
        probes.append({"flops_fraction": round(fraction, 4), "flops_ratio": plan["flops_after"] / plan["flops_before"],
                       "latency_ms": ms})
        say(f"latency probe: {plan['flops_after'] / plan['flops_before']:.1%} of the FLOPs -> {ms:.2f} ms "
            f"(budget {budget_ms:.2f} ms)")
        return plan, ms

    best_plan, best_ms = probe(floor)
    if best_ms > budget_ms:
        raise EdgewiseError(
            f"--latency-budget {budget} ({budget_ms:.2f} ms) is below the fastest this model reaches by pruning here: "
            f"{best_ms:.2f} ms at {probes[0]['flops_ratio']:.0%} of its FLOPs (unpruned {unpruned:.2f} ms, batch 1, "
            f"{seq_len} tokens, {threads} thread(s)); ask for {best_ms * 1.05:.2f} ms or more, or distil to fewer "
            "layers first (edgewise distill --layers)"
        )
    low, high = floor, 1.0
    for _ in range(iterations):
        middle = (low + high) / 2
        plan, ms = probe(middle)
        if ms <= budget_ms:
            low, best_plan, best_ms = middle, plan, ms
        else:
            high = middle
    record = {"budget": budget, "budget_ms": budget_ms, "unpruned_ms": unpruned, "measured_ms": best_ms,
              "met": best_ms <= budget_ms, "threads": threads, "batch_size": 1, "seq_len": seq_len,
              "probes": probes, "backend": "ort-cpu"}
    return best_plan, record
