"""Score a classifier artifact on labelled data: accuracy, macro-F1, per-class figures, confusion."""

from __future__ import annotations

import time
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.data import SPLIT_ALIASES, encode_labels, load_splits, select_split
from edgewise.core.errors import EdgewiseError
from edgewise.evaluate.config import EvaluateConfig

RESULT_SCHEMA_VERSION = 1


def evaluate(model_dir: Path, data: str, config: EvaluateConfig = EvaluateConfig()) -> dict:
    """Predict every text of the chosen split with the model in ``model_dir`` and score it.

    `hf` artifacts run in PyTorch; `onnx`, `ort` and `bundle` artifacts in ONNX Runtime (the same
    code the device runtime uses). Returns a JSON-ready dict: the artifact, data, split, backend,
    max_length, timing and the metrics of ``edgewise.core.metrics.classification_metrics``.

    Example:
        >>> result = evaluate(Path("runs/teacher"), "builtin:bbc-news", EvaluateConfig(split="test"))  # doctest: +SKIP
        >>> result["accuracy"]  # doctest: +SKIP
    """
    from edgewise.core.metrics import classification_metrics
    from edgewise.core.progress import progress_bar

    artifact = Artifact.load(Path(model_dir), kind=("hf", "inc", "onnx", "ort", "bundle", "tensorrt"))
    backend = config.backend if config.backend != "auto" else _auto_backend(artifact.kind)
    runs = {"torch": ("hf", "inc"), "tensorrt": ("tensorrt",)}.get(backend, ("onnx", "ort", "bundle", "tensorrt"))
    if artifact.kind not in runs:
        raise EdgewiseError(
            f"backend {backend} cannot run a {artifact.kind!r} artifact; torch runs hf and inc artifacts, tensorrt "
            "runs tensorrt artifacts (their engine), ort-* run onnx / ort / bundle / tensorrt (its model.onnx) "
            "artifacts"
        )
    id2label = artifact.labels
    if not id2label:
        raise EdgewiseError(f"{artifact.path} names no labels (no id2label in config.json); it is not a classifier")
    splits = load_splits(data, config.data)
    carved = None
    if config.split is not None and config.split.lower() in SPLIT_ALIASES["validation"]:
        from edgewise.core.lineage import carve_validation

        splits, carved = carve_validation(splits, data, artifact.path, config.data)
    split = select_split(splits, config.split, data)
    truth = encode_labels(split, id2label, config.data.label_column)
    predict, max_length, backend_name = (_torch_predictor if backend == "torch" else _ort_predictor)(
        artifact, config, backend)

    start = time.perf_counter()
    with progress_bar(transient=True) as bar:
        task = bar.add_task(f"evaluating {split.name}", total=len(split), info="")
        logits = predict(split.texts, split.pairs, lambda n: bar.advance(task, n))
    elapsed = time.perf_counter() - start
    if logits.shape[-1] != len(id2label):
        raise EdgewiseError(f"{artifact.path}: the model has {logits.shape[-1]} outputs but names "
                            f"{len(id2label)} labels; fix its label map")
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "artifact": str(artifact.path),
        "kind": artifact.kind,
        "backend": backend_name,
        "data": data,
        "split": split.name,
        "split_sha256": split.sha256(),
        "carved_validation": carved,
        "max_length": max_length,
        "runtime_s": round(elapsed, 2),
        **classification_metrics(truth, logits.argmax(-1).tolist(), id2label),
    }


def _auto_backend(kind: str) -> str:
    if kind in ("hf", "inc"):
        return "torch"
    if kind == "tensorrt":
        return "tensorrt"
    try:
        import onnxruntime

        return "ort-cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "ort-cpu"
    except ImportError:
        return "ort-cpu"  # the predictor then says which package is missing


def _trained_length(artifact: Artifact) -> int | None:
    return (artifact.manifest.data or {}).get("max_length") if artifact.manifest else None


def _torch_predictor(artifact: Artifact, config: EvaluateConfig, backend: str):
    from edgewise.core.deps import require_full

    require_full("torch", "transformers")
    import torch

    from edgewise.core.models import (
        ModelSource,
        check_weights,
        load_classifier,
        load_tokenizer,
        max_positions,
        predict_logits,
    )

    source = ModelSource(str(artifact.path), str(artifact.path), True)
    tokenizer = load_tokenizer(source)
    if artifact.kind == "inc":
        from edgewise.quantize.inc import QuantizedClassifier

        model = QuantizedClassifier(artifact.path)  # INT8 oneDNN kernels: CPU only
    else:
        check_weights(artifact.path, config.allow_pickle)
        model = load_classifier(source, config.allow_pickle)
        if torch.cuda.is_available():
            model = model.to("cuda")
    limit = max_positions(model.config, tokenizer)
    max_length = config.max_length or _trained_length(artifact) or limit
    if max_length > limit:
        raise EdgewiseError(f"max_length {max_length} exceeds the model's limit of {limit} tokens; lower it")

    def predict(texts, pairs, progress):
        return predict_logits(model, tokenizer, texts, pairs, batch_size=config.batch_size, max_length=max_length,
                              progress=progress)

    return predict, max_length, "torch-" + model.device.type


def _ort_predictor(artifact: Artifact, config: EvaluateConfig, backend: str):
    from edgewise.runtime.predictor import Predictor

    predictor = Predictor(artifact.path, backend=backend, max_length=config.max_length)

    def predict(texts, pairs, progress):
        return predictor.logits(texts, pairs, batch_size=config.batch_size, progress=progress)

    return predict, predictor.max_length, backend
