"""INT8 PyTorch models with Intel Neural Compressor 3.x (neural-compressor-pt), via PT2E.

The model is captured with torch.export (dynamic batch and sequence), quantized with INC's
X86-Inductor recipe (static: calibrated activations; dynamic: per-channel weights, activations
at run time), and written twice: INC's own portable save (quantized_weight.pt + qconfig.json),
and an AOTInductor package (model.pt2) compiled here, in which the INT8 linears are oneDNN
kernels. The Q/DQ graph alone runs slower than FP32 in eager mode; the package is what is fast.
Loading the package needs neither INC nor transformers; where it cannot load (another CPU or
torch), the portable save is loaded instead and a warning says it is the slow path.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.trust import seal_native_code
from edgewise.quantize.config import IncApproach, QuantizeConfig
from edgewise.runtime.inc import CODE_FILES, INFO, PACKAGE, QuantizedClassifier, int8_kernel_problem, quiet_inc

# quantize.stage checks the CPU with int8_kernel_problem before quantizing, and mutes INC with quiet_inc.
__all__ = ["QuantizedClassifier", "int8_kernel_problem", "quantize_inc", "quiet_inc"]

INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")  # positional order of BERT-like forwards
MAX_BATCH = 1024


def _example(model, names: list[str], batch: int = 2, seq: int = 16):
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab // 2), vocab, (batch, seq), generator=generator)
    columns = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return tuple(columns[n] for n in names)


def quantize_inc(artifact: Artifact, out: Path, scratch: Path, config: QuantizeConfig, evaluation: dict,
                 calibration: dict | None) -> dict:
    """Quantize the `hf` model in ``artifact`` into ``out``; returns the stage's metrics."""
    import time

    import torch

    from edgewise.core.lengths import artifact_lengths, known_limit
    from edgewise.core.models import ModelSource, load_classifier, load_tokenizer, model_inputs
    from edgewise.core.progress import console
    from edgewise.runtime.sizes import model_size

    source = ModelSource(str(artifact.path), str(artifact.path), True)
    tokenizer = load_tokenizer(source)
    model = load_classifier(source, config.allow_pickle).eval()
    accepted = model_inputs(model, dict.fromkeys(INPUT_ORDER))
    names = [n for n in INPUT_ORDER if n in accepted]
    max_length, limit = artifact_lengths(artifact.path, (artifact.manifest.data or {}) if artifact.manifest else {})
    limit = known_limit(limit)  # the longest sequence the compiled graph takes
    example = _example(model, names)
    model.config.return_dict = False  # tuple outputs: the saved graph then needs no transformers classes

    record: dict = {"method": "inc", "approach": config.inc_approach.value, "inputs": names}
    with quiet_inc():
        from torch.export import Dim

        from edgewise.core.deps import dist_version

        export_inc = importlib.import_module("neural_compressor.torch.export").export
        inc_q = importlib.import_module("neural_compressor.torch.quantization")
        dims = {0: Dim("batch", min=1, max=MAX_BATCH), 1: Dim("seq", min=2, max=limit)}
        shapes = tuple(dims for _ in names)
        started = time.perf_counter()
        with console().status("capturing the model with torch.export"), torch.no_grad():
            try:
                exported = export_inc(model, example, dynamic_shapes=shapes)
            except Exception as e:  # noqa: BLE001 - torch.export raises many types for untraceable code
                raise EdgewiseError(
                    f"torch.export could not capture {artifact.path} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0][:300]}); INC's PT2E quantization needs an exportable model: quantize "
                    "its ONNX export with --method dynamic / static instead"
                ) from None
        if config.inc_approach is IncApproach.STATIC:
            recipe = inc_q.INT8StaticQuantConfig()
        else:  # per-tensor weights never reach the INT8 kernels (no speed-up); per-channel ones do
            recipe = inc_q.DynamicQuantConfig(w_granularity="per_channel")
        prepared = inc_q.prepare(exported, recipe, example_inputs=example)
        batches = _calibration_batches(tokenizer, calibration, names, max_length, config.calibration_batch_size)
        with console().status(f"calibrating on {len(batches) or 1} batch(es)"), torch.no_grad():
            # Dynamic quantization still needs one pass: it is what runs the weight observers.
            for batch in batches or [example]:
                prepared(*batch)
        quantized = inc_q.convert(prepared)
        quantized.save(example_inputs=example, output_dir=str(out))
        record["quantize_s"] = round(time.perf_counter() - started, 1)
        record["neural_compressor"] = dist_version("neural_compressor")
        started = time.perf_counter()
        with console().status("compiling the INT8 model (AOTInductor)"):
            record["package"] = _package(quantized, example, shapes, out / PACKAGE, scratch)
        record["compile_s"] = round(time.perf_counter() - started, 1)
    (out / INFO).write_text(json.dumps({"inputs": names, "max_batch": MAX_BATCH, "max_seq": limit,
                                        "approach": config.inc_approach.value}, indent=2) + "\n")
    seal_native_code(out, CODE_FILES)  # compiled here: this user's edgewise may load it without asking
    if calibration is not None:
        record["calibration"] = {"data": calibration["spec"], "split": calibration["split"],
                                 "samples": len(calibration["texts"]), "batches": len(batches)}

    source_bytes, size = model_size(artifact.path, "hf"), model_size(out, "inc")  # the package, else the portable save
    metrics = {"quantization": record,
               "size": {"source_bytes": source_bytes, "bytes": size,
                        "ratio": size / source_bytes if source_bytes else None,
                        "files": {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}}}
    metrics.update(_accuracy(model, out, tokenizer, evaluation, config, max_length))
    return metrics


def _calibration_batches(tokenizer, calibration: dict | None, names: list[str], max_length: int, batch_size: int):
    if calibration is None:
        return []
    texts, pairs = calibration["texts"], calibration["pairs"]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        encoded = tokenizer([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None, truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
        if encoded["input_ids"].shape[1] < 2:
            continue
        batches.append(tuple(encoded[n] if n in encoded else encoded["input_ids"] * 0 for n in names))
    return batches


def _package(quantized, example, shapes, path: Path, scratch: Path) -> dict:
    """Compile the quantized graph into an AOTInductor package; None (with the reason) if this machine cannot."""
    import torch
    import torch._inductor.config as inductor_config

    previous = inductor_config.freezing
    inductor_config.freezing = True  # constant weights: lets Inductor fold them into oneDNN INT8 kernels
    try:
        with torch.no_grad():
            program = torch.export.export(quantized, example, dynamic_shapes=shapes)
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        return {"file": path.name, "built": True}
    except Exception as e:  # noqa: BLE001 - no C++ compiler, unsupported op...: the portable save still works
        return {"file": None, "built": False, "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    finally:
        inductor_config.freezing = previous


def _accuracy(source_model, out: Path, tokenizer, evaluation: dict, config: QuantizeConfig, max_length: int) -> dict:
    from edgewise.core.tasks.classification import Classification
    from edgewise.quantize.measure import compare_splits
    from edgewise.runtime.pytorch import TorchRunner

    id2label = {int(k): v for k, v in source_model.config.id2label.items()}
    source_model.config.return_dict = True
    quantized = QuantizedClassifier(out)
    source, result = (TorchRunner(model, tokenizer, max_length=max_length) for model in (source_model, quantized))
    batch = config.eval_batch_size
    return {"accuracy": compare_splits(Classification(), evaluation["splits"],
                                       lambda texts, pairs: source.outputs(texts, pairs, batch),
                                       lambda texts, pairs: result.outputs(texts, pairs, batch), id2label),
            "data": evaluation["spec"], "runs_with": quantized.runs_with}
