"""`onnx` -> `ort`: ONNX Runtime's mobile format plus the operator list for a minimal build."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.core.progress import console
from edgewise.export.onnx import working_directory
from edgewise.export.parity import (
    REDUCED_PRECISION_AGREEMENT,
    REDUCED_PRECISION_COSINE,
    check,
    check_agreement,
    compare,
    parity_line,
)
from edgewise.runtime.runners import onnx_scores

OPERATORS_FILE = "required_operators.config"


def convert_ort(src_model: Path, artifact: Path, work: Path, target: str) -> dict:
    """Convert ``src_model`` (model.onnx) into ``artifact``/model.ort optimised for ``target`` (arm, amd64), with
    ``artifact``/required_operators.config; ``work`` holds the converter's files. Returns what the manifest records."""
    import onnxruntime
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    from edgewise.runtime.sessions import first_line, ort_errors

    staging = work / "ort"
    staging.mkdir(parents=True, exist_ok=True)
    # The converter prints its progress on stdout and logs at INFO; keep stdout for --json.
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    log = io.StringIO()
    with working_directory(work / "tmp"), contextlib.redirect_stdout(log):
        try:
            convert_onnx_models_to_ort(src_model, output_dir=staging, optimization_styles=[OptimizationStyle.Fixed],
                                       target_platform=target)
        except ort_errors(onnxruntime) + (ValueError,) as e:
            raise EdgewiseError(
                f"onnxruntime could not convert {src_model} to the ORT format ({type(e).__name__}: "
                f"{first_line(e)}); check the model loads with onnxruntime"
            ) from None
    shutil.move(staging / "model.ort", artifact / "model.ort")
    operators = next(staging.glob("*.required_operators.config"))
    # The generated header names the absolute path of a temporary file; keep only the operator lines.
    lines = [line for line in operators.read_text().splitlines() if not line.startswith("#")]
    (artifact / OPERATORS_FILE).write_text(
        "# Operators model.ort needs; build onnxruntime with --include_ops_by_config this file\n"
        + "\n".join(lines) + "\n"
    )
    return {"target": target, "size_bytes": (artifact / "model.ort").stat().st_size, "operators": lines}


def export_ort(src_model: Path, out, config, batches: list[dict], int8: bool) -> dict:
    """`export --format ort`: ``src_model`` (``int8``: a quantized one) converted into ``out.artifact``/model.ort
    and checked against it."""
    metrics = {"ort": convert_ort(src_model, out.artifact, out.work, config.ort_target.value)}
    if config.verify:
        metrics["parity"] = verify(onnx_scores(src_model), out.artifact / "model.ort", batches, "ORT format vs ONNX",
                                   config.atol, int8=int8)
    return metrics


# The ORT-format model has onnxruntime's default fusions baked in at conversion, SkipLayerNormalization
# among them, which the runtime's ort-cpu sessions leave out of ONNX models (runtime.sessions): the same
# sums in another order. FP32 logits move by ~1e-6; INT8 ones more, as the rounding of the quantized
# activations shifts (BBC 3-layer student, per-channel dynamic INT8: 0.005, benchmarks/results/
# phone_bundles_minilm_bbc.json; about 0.02 with per-tensor scales). So an INT8 model is judged by label
# agreement, as reduced precision is (export.parity).
def verify(reference, candidate: Path, batches: list[dict], what: str, atol: float, int8: bool) -> dict:
    """Outputs (logits, vectors) of the ORT-format ``candidate`` against ``reference`` (the source's scorer,
    runtime.runners.onnx_scores) on ``batches``; an EdgewiseError when they differ beyond ``atol`` (FP32) or,
    ``int8``, when labels (vectors) agree too rarely (export.parity.check_agreement)."""
    result = compare(reference, onnx_scores(candidate, output=getattr(reference, "output", None)), batches)
    agreement = (f"cosine >= {REDUCED_PRECISION_COSINE} on every input" if "cosine_min" in result else
                 f"label agreement >= {REDUCED_PRECISION_AGREEMENT:.0%}")
    result["judged_by"] = f"{agreement} (INT8)" if int8 else f"max |diff| <= {atol:g}"
    console().print(parity_line(what, result))
    if int8:
        check_agreement(result, candidate.name, "use the FP32 model, or check the INT8 one with edgewise evaluate")
    else:
        check(result, atol, candidate.name)
    return result
