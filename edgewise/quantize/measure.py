"""What a quantized model is worth: accuracy and agreement against its source, size, and latency
measured side by side with the source (interleaved rounds, medians)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgewise.runtime.runners import open_runner


@dataclass
class EvalSplit:
    """Labelled texts of one split, with the label ids in the model's id2label."""

    name: str
    texts: list[str]
    pairs: list[str] | None
    truth: list[int]


def eval_splits(splits: dict, id2label: dict[int, str], label_column: str, names=("validation", "test"),
                limit: int | None = None) -> list[EvalSplit]:
    """The validation and test splits that carry labels (at most ``limit`` texts each, drawn with a
    fixed seed so that a file sorted by label still gives every class)."""
    import random

    from edgewise.core.data import encode_labels

    chosen = []
    for name in names:
        split = splits.get(name)
        if split is None or split.labels is None or not len(split):
            continue
        if limit is not None and len(split) > limit:
            split = split.subset(sorted(random.Random(0).sample(range(len(split)), limit)), name)
        chosen.append(EvalSplit(name, split.texts, split.pairs, encode_labels(split, id2label, label_column)))
    return chosen


def predict(folder: Path, model: Path, split: EvalSplit, batch_size: int, threads: int | None = None):
    """Logits of the ONNX file ``model`` (run with ``folder``'s tokenizer and settings) on ``split``."""
    runner = open_runner(folder, "onnx", "ort-cpu", model=model, threads=threads)
    return runner.logits(split.texts, split.pairs, batch_size=batch_size)


def score(logits, split: EvalSplit, id2label: dict[int, str], reference=None) -> dict:
    """Accuracy and macro-F1 of ``logits``; with ``reference`` logits, agreement and |difference| too."""
    import numpy as np

    from edgewise.core.metrics import classification_metrics

    predicted = logits.argmax(-1)
    metrics = classification_metrics(split.truth, predicted.tolist(), id2label)
    result = {"samples": len(split.truth), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    if reference is not None:
        values = np.asarray(logits, dtype=np.float64)
        diff = np.abs(np.asarray(reference, dtype=np.float64) - values)
        # NaN would vanish from a max() and read as agreement through argmax: count it, and make the
        # difference infinite so no tolerance accepts it.
        nonfinite = int((~np.isfinite(values)).sum())
        diff[~np.isfinite(diff)] = np.inf
        result.update({
            "agreement_with_source": float((reference.argmax(-1) == predicted).mean()) if len(predicted) else 1.0,
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "nonfinite_logits": nonfinite,
        })
    return result


def compare_splits(splits: list[EvalSplit], source, result, id2label: dict[int, str]) -> dict:
    """Accuracy of source and result on every split, their agreement, logit differences and the drop
    in points. ``source`` and ``result`` map (texts, pairs) to logits; each is called once per split."""
    from edgewise.core.progress import progress_bar

    results = {}
    with progress_bar(transient=True) as bar:
        task = bar.add_task("measuring accuracy", total=2 * len(splits), info="")
        for split in splits:
            logits = []
            for model in (source, result):
                logits.append(model(split.texts, split.pairs))
                bar.advance(task)
            row = {"source": score(logits[0], split, id2label), "quantized": score(logits[1], split, id2label,
                                                                                   logits[0])}
            if row["quantized"]["nonfinite_logits"]:
                import numpy as np

                from edgewise.core.errors import EdgewiseError

                bad = row["quantized"]["nonfinite_logits"]
                found = f"NaN or infinite logits ({bad} of {logits[1].size} values on the {split.name} split)"
                source_bad = int((~np.isfinite(np.asarray(logits[0], dtype=np.float64))).sum())
                if source_bad:
                    raise EdgewiseError(
                        f"the source model itself produces NaN or infinite logits ({source_bad} of {logits[0].size} "
                        f"values on the {split.name} split), so its quantized version cannot be judged: fix or "
                        "re-create the source (weights with NaN, or an overflow)")
                raise EdgewiseError(
                    f"the quantized model produces {found} where its source does not; keep more operators in FP32 "
                    "(--exclude-op / --exclude-node) or use another --method"
                )
            row["drop_points"] = round((row["source"]["accuracy"] - row["quantized"]["accuracy"]) * 100, 4)
            results[split.name] = row
    return results


def time_side_by_side(folder: Path, models: dict[str, Path], *, threads: int, seq_len: int, rounds: int = 5,
                      seconds_per_round: float = 0.3, warmup: int = 5) -> dict[str, dict]:
    """Batch-1 latency of each model at ``seq_len`` tokens, the models interleaved round by round so
    that drift of a noisy machine falls on all of them alike. Returns latency stats per name."""
    from edgewise.runtime.bench import latency_stats, measure

    runners = {name: open_runner(folder, "onnx", "ort-cpu", model=path, threads=threads)
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
