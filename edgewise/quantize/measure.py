"""What a quantized model is worth: its task's quality (accuracy; STS Spearman) and agreement against its
source, size, and latency measured side by side with the source (interleaved rounds, medians)."""

from __future__ import annotations

from pathlib import Path

from edgewise.core.tasks import EvalSet
from edgewise.runtime.runners import open_runner


def eval_sets(task, splits: dict, labels: dict[int, str], config, names=("validation", "test"),
              limit: int | None = None, pairs: dict | None = None) -> list[EvalSet]:
    """The validation and test splits a quantized (or pruned) model is measured on, as the task scores them: a
    classifier's labelled splits (at most ``limit`` texts each, drawn with a fixed seed so that a file sorted by
    label still gives every class); an embedding model's corpus splits with the scored ``pairs`` of the same
    split (one file of pairs serves both)."""
    import random

    chosen = []
    classifier = task.labelled
    for name in names:
        split = splits.get(name)
        if split is not None and limit is not None and len(split) > limit:
            split = split.subset(sorted(random.Random(0).sample(range(len(split)), limit)), name)
        if classifier:
            if split is not None and len(split) and split.labels is not None:
                chosen.append(task.eval_set(split, labels, config.label_column))
            continue
        scored = pairs.get(name) if pairs and len(pairs) > 1 else next(iter(pairs.values())) if pairs else None
        if (split is not None and len(split)) or scored is not None:  # the corpus's split, the pairs' split, or both
            chosen.append(task.eval_set(split if split is not None and len(split) else None, scored))
    return chosen


def predict(folder: Path, model: Path, eval_set: EvalSet, batch_size: int, threads: int | None = None, task=None):
    """Outputs (logits, vectors) of the ONNX file ``model`` (run with ``folder``'s tokenizer and settings, as a model
    of ``task``) on ``eval_set``."""
    runner = open_runner(folder, "onnx", "ort-cpu", model=model, threads=threads, task=task)
    return runner.outputs(eval_set.texts, eval_set.pairs, batch_size=batch_size)


def score(task, outputs, eval_set: EvalSet, labels: dict[int, str], reference=None) -> dict:
    """The task's figures of ``outputs`` (a classifier's accuracy and macro-F1; an embedding model's STS Spearman)
    and ``quality``, the gate metric's value; with ``reference`` outputs, agreement (labels; cosine and neighbours)
    and |difference| too. An embedding model without scored pairs is gated on its agreement with ``reference``:
    the source is scored against itself."""
    import numpy as np

    result = {"samples": len(eval_set.texts)}
    result.update(task.score(eval_set, outputs, labels) or {})
    if reference is not None:
        values = np.asarray(outputs, dtype=np.float64)
        diff = np.abs(np.asarray(reference, dtype=np.float64) - values)
        # NaN would vanish from a max() and read as agreement through argmax: count it, and make the
        # difference infinite so no tolerance accepts it.
        nonfinite = int((~np.isfinite(values)).sum())
        diff[~np.isfinite(diff)] = np.inf
        agreement = task.agreement_on(eval_set, outputs, reference)
        if "label_agreement" in agreement:
            agreement = {"agreement_with_source": agreement["label_agreement"] if len(values) else 1.0}
        result.update({
            **agreement,
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "nonfinite_logits": nonfinite,
        })
    result["quality"] = task.quality(result)
    return result


def compare_splits(task, splits: list[EvalSet], source, result, labels: dict[int, str]) -> dict:
    """The task's figures of source and result on every split, their agreement, output differences and the drop
    in points (core.tasks: accuracy points, or points of the share of the source's Spearman / neighbour overlap).
    ``source`` and ``result`` map (texts, pairs) to outputs; each is called once per split."""
    from edgewise.core.progress import progress_bar

    results = {}
    with progress_bar(transient=True) as bar:
        step = bar.add_task("measuring quality", total=2 * len(splits), info="")
        for split in splits:
            outputs = []
            for model in (source, result):
                outputs.append(model(split.texts, split.pairs))
                bar.advance(step)
            own = score(task, outputs[0], split, labels)
            if own["quality"] is None:  # gated on agreement: the source agrees with itself fully
                own = score(task, outputs[0], split, labels, reference=outputs[0])
                for key in ("max_abs_diff", "mean_abs_diff", "nonfinite_logits"):
                    own.pop(key)
            row = {"source": own, "quantized": score(task, outputs[1], split, labels, outputs[0])}
            if row["quantized"]["nonfinite_logits"]:
                import numpy as np

                from edgewise.core.errors import EdgewiseError

                bad = row["quantized"]["nonfinite_logits"]
                found = f"NaN or infinite logits ({bad} of {outputs[1].size} values on the {split.name} split)"
                source_bad = int((~np.isfinite(np.asarray(outputs[0], dtype=np.float64))).sum())
                if source_bad:
                    raise EdgewiseError(
                        f"the source model itself produces NaN or infinite logits ({source_bad} of {outputs[0].size} "
                        f"values on the {split.name} split), so its quantized version cannot be judged: fix or "
                        "re-create the source (weights with NaN, or an overflow)")
                raise EdgewiseError(
                    f"the quantized model produces {found} where its source does not; keep more operators in FP32 "
                    "(--exclude-op / --exclude-node) or use another --method"
                )
            drop = task.quality_drop(row["quantized"]["quality"], row["source"]["quality"])
            row["drop_points"] = None if drop is None else round(drop, 4)
            results[split.name] = row
    return results


def time_side_by_side(folder: Path, models: dict[str, Path], *, threads: int, seq_len: int, rounds: int = 5,
                      seconds_per_round: float = 0.3, warmup: int = 5, task=None) -> dict[str, dict]:
    """Batch-1 latency of each model at ``seq_len`` tokens, the models interleaved round by round so
    that drift of a noisy machine falls on all of them alike. Returns latency stats per name."""
    from edgewise.runtime.bench import latency_stats, measure

    runners = {name: open_runner(folder, "onnx", "ort-cpu", model=path, threads=threads, task=task)
               for name, path in models.items()}
    any_runner = next(iter(runners.values()))
    seq_len = min(seq_len, any_runner.max_length)
    feed = any_runner.synthetic(1, seq_len)
    samples: dict[str, list[list[float]]] = {name: [] for name in runners}
    for round_index in range(rounds):
        for name, runner in runners.items():
            samples[name].append(measure(runner.run, feed, warmup if round_index == 0 else 1, 5, seconds_per_round))
    out = {}
    for name, blocks in samples.items():
        stats = latency_stats([s for block in blocks for s in block], blocks)
        stats.pop("samples")
        out[name] = {**stats, "seq_len": seq_len, "batch_size": 1, "threads": threads}
    return out
