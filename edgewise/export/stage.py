"""`edgewise export`: an `hf` teacher or student to ONNX, and ONNX to the ORT format or TensorRT."""

from __future__ import annotations

from pathlib import Path

from edgewise.core.artifact import Artifact, read_json
from edgewise.core.errors import EdgewiseError
from edgewise.core.lengths import artifact_lengths, known_limit, working_length
from edgewise.core.manifest import Manifest
from edgewise.core.progress import console
from edgewise.core.stage import StageOutput
from edgewise.core.tasks import refuse_unless
from edgewise.export.config import ExportConfig, ExportFormat


def parity_texts(data: str | None, config: ExportConfig) -> tuple[list[str], list[str] | None]:
    """Up to ``verify_samples`` texts from the data: test first, then validation, then train."""
    if not data:
        return [], None
    from edgewise.core.data import load_splits
    from edgewise.core.tasks.token_classification import is_tagged, load_tagged

    splits = load_tagged(data, config.data.encoding) if is_tagged(data) else load_splits(data, config.data)
    ordered = [splits[n] for n in ("test", "validation", "train") if n in splits]
    ordered += [s for n, s in splits.items() if n not in ("test", "validation", "train")]
    texts, pairs = [], [] if config.data.text_pair_column else None
    for split in ordered:
        take = config.verify_samples - len(texts)
        texts += split.texts[:take]
        if pairs is not None:
            pairs += split.pairs[:take]
    return texts, pairs


def lengths(artifact: Artifact, config: ExportConfig) -> tuple[int, int, int | None]:
    """(the model's working max_length carried forward, the length the parity check uses, its limit)."""
    recorded = (artifact.manifest.data or {}) if artifact.manifest else {}
    working, limit = artifact_lengths(artifact.path, recorded)
    return working, working_length(limit, requested=config.max_length or working, what="--max-length"), limit


def export(src: Path, dst: Path, config: ExportConfig = ExportConfig(), *, data: str | None = None,
           overwrite: bool = False, resume: bool = False) -> Manifest:
    """Export the classifier in ``src`` to ``dst`` in ``config.format``, verified against its source.

    `onnx` takes an `hf` artifact (or any transformers folder); `ort` and `tensorrt` take an `onnx`
    artifact. Texts from ``data`` drive the parity check; without it, generated inputs do.
    Where TensorRT or a GPU is missing, `tensorrt` still writes model.onnx and build_engine.sh, then
    raises an EdgewiseError saying so.

    Example:
        >>> export(Path("runs/teacher"), Path("runs/teacher-onnx"), ExportConfig())  # doctest: +SKIP
    """
    from edgewise.core.deps import require_full

    require_full("torch", "transformers", "onnx", "onnxruntime", "optimum.exporters.onnx")
    wanted = "hf" if config.format is ExportFormat.ONNX else "onnx"
    artifact = Artifact.load(Path(src))
    if artifact.kind != wanted:
        fix = (f"export it to ONNX first: edgewise export {src} -o {src}-onnx" if wanted == "onnx"
               else "pass the fine-tuned transformers folder it came from")
        raise EdgewiseError(
            f"--format {config.format.value} needs an {wanted!r} artifact, {src} is {artifact.kind!r}; {fix}"
        )
    task = refuse_unless(artifact.task_for(config.task), ("classification", "embedding", "token-classification"),
                         str(artifact.path), "export")
    task.labels_of(artifact)  # a labelled task's model must name its labels
    if wanted == "hf":
        from edgewise.core.models import check_weights

        check_weights(artifact.path, config.allow_pickle)
        if config.optimize:
            from edgewise.export.onnx import check_optimizable

            check_optimizable(read_json(artifact.path / "config.json"))
    out = StageOutput("export", dst, parent=artifact, overwrite=overwrite, resume=resume)
    working, max_length, limit = lengths(artifact, config)
    texts, pairs = parity_texts(data, config)

    reason = None
    with out:
        if config.format is ExportFormat.ONNX:
            from edgewise.export.onnx import export_onnx

            metrics = export_onnx(artifact, out, config, texts, pairs, max_length, task)
        else:
            metrics, reason = _convert(artifact, out, config, texts, pairs, max_length, task)
        manifest = out.commit(
            kind=config.format.value, config=config, metrics=metrics, expected_files=_expected_files(config, reason),
            task=task,
            data={"max_length": working, "max_positions": known_limit(limit),
                  "parity_max_length": max_length, "parity_data": data, "parity_texts": len(texts)},
        )
    if reason:
        raise EdgewiseError(
            f"no TensorRT engine was built here: {reason}. {out.dst} holds model.onnx and build_engine.sh "
            "(same precision and shape profiles): copy the folder to the device and run bash build_engine.sh there"
        )
    console().print(f"wrote {out.dst}")
    return manifest


def _expected_files(config: ExportConfig, reason: str | None) -> list[str]:
    """The engine and timing cache may be (re)built on the device by build_engine.sh."""
    if config.format is not ExportFormat.TENSORRT:
        return []
    from edgewise.export.tensorrt import ENGINE, TIMING_CACHE

    return [ENGINE, TIMING_CACHE]


def _convert(artifact: Artifact, out: StageOutput, config: ExportConfig, texts, pairs, max_length: int, task):
    from edgewise.core.models import ModelSource, load_tokenizer
    from edgewise.export.onnx import graph_summary, parity_inputs

    src_model = artifact.path / "model.onnx"
    if config.format is ExportFormat.TENSORRT:
        from edgewise.export.tensorrt import check_buildable

        summary = check_buildable(src_model)
    else:
        summary = graph_summary(src_model)
    inputs = list(summary["inputs"])
    model_config = read_json(artifact.path / "config.json")
    tokenizer = load_tokenizer(ModelSource(str(artifact.path), str(artifact.path), True))
    batches = parity_inputs(tokenizer, texts, pairs, max_length, inputs,
                            int(model_config.get("vocab_size") or len(tokenizer)))
    if config.format is ExportFormat.ORT:
        from edgewise.export.ort_mobile import export_ort

        return export_ort(src_model, out, config, batches, int8=summary["qdq"] or summary["dynamic_int8"]), None
    from edgewise.export.tensorrt import export_tensorrt

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return export_tensorrt(src_model, inputs, out, config, summary["qdq"], batches,
                           int(model_config.get("vocab_size") or len(tokenizer)), pad)
