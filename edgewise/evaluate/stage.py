"""Score a classifier artifact on labelled data: accuracy, macro-F1, per-class figures, confusion."""

from __future__ import annotations

import time
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.data import encode_labels, load_splits, select_split
from edgewise.core.errors import EdgewiseError
from edgewise.evaluate.config import EvaluateConfig

RESULT_SCHEMA_VERSION = 1


def evaluate(model_dir: Path, data: str, config: EvaluateConfig = EvaluateConfig()) -> dict:
    """Predict every text of the chosen split with the model in ``model_dir`` and score it.

    Returns a JSON-ready dict: the artifact, data, split, backend, max_length, timing and the
    metrics of ``edgewise.core.metrics.classification_metrics``.

    Example:
        >>> result = evaluate(Path("runs/teacher"), "builtin:bbc-news", EvaluateConfig(split="test"))  # doctest: +SKIP
        >>> result["accuracy"]  # doctest: +SKIP
        0.97
    """
    from edgewise.core.metrics import classification_metrics
    from edgewise.core.models import (
        ModelSource,
        check_weights,
        load_classifier,
        load_tokenizer,
        max_positions,
        predict_logits,
    )
    from edgewise.core.progress import progress_bar

    artifact = Artifact.load(Path(model_dir), kind="hf")
    id2label = artifact.labels
    if not id2label:
        raise EdgewiseError(f"{artifact.path} names no labels (no id2label in config.json); it is not a classifier")
    check_weights(artifact.path, config.allow_pickle)
    split = select_split(load_splits(data, config.data), config.split, data)
    truth = encode_labels(split, id2label, config.data.label_column)

    source = ModelSource(str(artifact.path), str(artifact.path), True)
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, config.allow_pickle)
    if model.config.num_labels != len(id2label):
        raise EdgewiseError(
            f"{artifact.path}: the model has {model.config.num_labels} outputs but names {len(id2label)} labels; "
            "fix id2label in its config.json"
        )
    trained_length = (artifact.manifest.data or {}).get("max_length") if artifact.manifest else None
    limit = max_positions(model.config, tokenizer)
    max_length = config.max_length or trained_length or limit
    if max_length > limit:
        raise EdgewiseError(f"max_length {max_length} exceeds the model's limit of {limit} tokens; lower it")

    start = time.perf_counter()
    with progress_bar(transient=True) as bar:
        task = bar.add_task(f"evaluating {split.name}", total=len(split), info="")
        logits = predict_logits(
            model, tokenizer, split.texts, split.pairs, batch_size=config.batch_size, max_length=max_length,
            progress=lambda n: bar.advance(task, n),
        )
    elapsed = time.perf_counter() - start
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "artifact": str(artifact.path),
        "kind": artifact.kind,
        "backend": "torch-" + str(next(model.parameters()).device.type),
        "data": data,
        "split": split.name,
        "split_sha256": split.sha256(),
        "max_length": max_length,
        "runtime_s": round(elapsed, 2),
        **classification_metrics(truth, logits.argmax(-1).tolist(), id2label),
    }
