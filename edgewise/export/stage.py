"""`edgewise export`: an `hf` teacher or student to ONNX, and ONNX to the ORT format or TensorRT."""

from __future__ import annotations

import json
from pathlib import Path

from edgewise.core.artifact import Artifact, OutputDir, carry_forward
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest, now
from edgewise.core.progress import console
from edgewise.export.config import ExportConfig, ExportFormat


def parity_texts(data: str | None, config: ExportConfig) -> tuple[list[str], list[str] | None]:
    """Up to ``verify_samples`` texts from the data: test first, then validation, then train."""
    if not data:
        return [], None
    from edgewise.core.data import load_splits

    splits = load_splits(data, config.data)
    ordered = [splits[n] for n in ("test", "validation", "train") if n in splits]
    ordered += [s for n, s in splits.items() if n not in ("test", "validation", "train")]
    texts, pairs = [], [] if config.data.text_pair_column else None
    for split in ordered:
        take = config.verify_samples - len(texts)
        texts += split.texts[:take]
        if pairs is not None:
            pairs += split.pairs[:take]
    return texts, pairs


def _model_config(folder: Path) -> dict:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def model_limit(model_config: dict) -> int:
    """The longest input a model takes, from its config.json (RoBERTa-like models lose two positions)."""
    from edgewise.core.models import OFFSET_POSITIONS

    limit = int(model_config.get("max_position_embeddings") or 512)
    return limit - 2 if model_config.get("model_type") in OFFSET_POSITIONS else limit


def lengths(artifact: Artifact, config: ExportConfig) -> tuple[int, int]:
    """(the model's working max_length carried forward, the length the parity check uses)."""
    limit = model_limit(_model_config(artifact.path))
    recorded = (artifact.manifest.data or {}).get("max_length") if artifact.manifest else None
    working = int(recorded or min(limit, 512))
    parity = config.max_length or working
    if parity > limit:
        raise EdgewiseError(f"--max-length {parity} exceeds the model's limit of {limit} tokens; lower it")
    return working, parity


def export(src: Path, dst: Path, config: ExportConfig = ExportConfig(), *, data: str | None = None,
           overwrite: bool = False) -> Manifest:
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
    started = now()
    wanted = "hf" if config.format is ExportFormat.ONNX else "onnx"
    artifact = Artifact.load(Path(src))
    if artifact.kind != wanted:
        fix = (f"export it to ONNX first: edgewise export {src} -o {src}-onnx" if wanted == "onnx"
               else "pass the fine-tuned transformers folder it came from")
        raise EdgewiseError(
            f"--format {config.format.value} needs an {wanted!r} artifact, {src} is {artifact.kind!r}; {fix}"
        )
    if not artifact.labels:
        raise EdgewiseError(f"{artifact.path} names no labels (no id2label); it is not a classifier")
    if wanted == "hf":
        from edgewise.core.models import check_weights

        check_weights(artifact.path, config.allow_pickle)
        if config.optimize:
            from edgewise.export.onnx import check_optimizable

            check_optimizable(_model_config(artifact.path))
    out = OutputDir.prepare(Path(dst), sources=(artifact.path,), overwrite=overwrite)
    working_length, max_length = lengths(artifact, config)
    texts, pairs = parity_texts(data, config)

    out.begin()
    reason = None
    try:
        if config.format is ExportFormat.ONNX:
            from edgewise.export.onnx import export_onnx

            metrics = export_onnx(artifact, out, config, texts, pairs, max_length)
        else:
            metrics, reason = _convert(artifact, out, config, texts, pairs, max_length)
        carry_forward(artifact.path, out.artifact)
        manifest = Manifest.write(
            out.artifact,
            kind=config.format.value,
            stage="export",
            config=config,
            labels=artifact.labels,
            started_at=started,
            parent=artifact.manifest,
            source=None if artifact.manifest else {"model": artifact.describe()},
            data={"max_length": working_length, "max_positions": model_limit(_model_config(artifact.path)),
                  "parity_max_length": max_length, "parity_data": data, "parity_texts": len(texts)},
            metrics=metrics,
            expected_files=_expected_files(config, reason),
        )
        out.commit()
    except BaseException:
        out.abort()
        raise
    manifest.path = out.dst
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


def _convert(artifact: Artifact, out: OutputDir, config: ExportConfig, texts, pairs, max_length: int):
    from edgewise.core.models import ModelSource, load_tokenizer
    from edgewise.export.onnx import graph_summary, parity_inputs

    src_model = artifact.path / "model.onnx"
    summary = graph_summary(src_model)
    inputs = list(summary["inputs"])
    if config.format is ExportFormat.TENSORRT and summary["ort_only_ops"]:
        raise EdgewiseError(
            f"{src_model} uses operators only ONNX Runtime has ({', '.join(summary['ort_only_ops'])}), which "
            "TensorRT cannot parse: export the model without --optimize, and quantize for TensorRT with static "
            "QDQ INT8 (not dynamic)"
        )
    model_config = _model_config(artifact.path)
    tokenizer = load_tokenizer(ModelSource(str(artifact.path), str(artifact.path), True))
    batches = parity_inputs(tokenizer, texts, pairs, max_length, inputs,
                            int(model_config.get("vocab_size") or len(tokenizer)))
    if config.format is ExportFormat.ORT:
        from edgewise.export.ort_mobile import export_ort

        return export_ort(src_model, out, config, batches), None
    from edgewise.export.tensorrt import export_tensorrt

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return export_tensorrt(src_model, inputs, out, config, summary["qdq"], batches,
                           int(model_config.get("vocab_size") or len(tokenizer)), pad)
