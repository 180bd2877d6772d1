"""`onnx` -> `ort`: ONNX Runtime's mobile format plus the operator list for a minimal build."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.core.progress import console
from edgewise.export.onnx import graph_summary, working_directory
from edgewise.export.parity import check, compare, parity_line
from edgewise.runtime.runners import onnx_scores

OPERATORS_FILE = "required_operators.config"


def export_ort(src_model: Path, out, config, batches: list[dict]) -> dict:
    """Convert ``src_model`` (model.onnx) into ``out.artifact``/model.ort; check it matches the ONNX."""
    import onnxruntime
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    from edgewise.runtime.sessions import first_line, ort_errors

    staging = out.work / "ort"
    staging.mkdir(parents=True, exist_ok=True)
    # The converter prints its progress on stdout and logs at INFO; keep stdout for --json.
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    log = io.StringIO()
    with working_directory(out.work / "tmp"), contextlib.redirect_stdout(log):
        try:
            convert_onnx_models_to_ort(src_model, output_dir=staging, optimization_styles=[OptimizationStyle.Fixed],
                                       target_platform=config.ort_target.value)
        except ort_errors(onnxruntime) + (ValueError,) as e:
            raise EdgewiseError(
                f"onnxruntime could not convert {src_model} to the ORT format ({type(e).__name__}: "
                f"{first_line(e)}); check the model loads with onnxruntime"
            ) from None
    shutil.move(staging / "model.ort", out.artifact / "model.ort")
    operators = next(staging.glob("*.required_operators.config"))
    # The generated header names the absolute path of a temporary file; keep only the operator lines.
    lines = [line for line in operators.read_text().splitlines() if not line.startswith("#")]
    (out.artifact / OPERATORS_FILE).write_text(
        "# Operators model.ort needs; build onnxruntime with --include_ops_by_config this file\n"
        + "\n".join(lines) + "\n"
    )
    metrics = {
        "ort": {"target": config.ort_target.value, "size_bytes": (out.artifact / "model.ort").stat().st_size,
                "operators": lines},
    }
    if config.verify:
        metrics["parity"] = verify(src_model, out.artifact / "model.ort", batches, "ORT format vs ONNX", config.atol)
    return metrics


# The ORT-format model has onnxruntime's default fusions baked in at conversion, SkipLayerNormalization
# among them, which the runtime's ort-cpu sessions leave out of ONNX models (runtime.sessions): the same
# sums in another order. FP32 logits move by ~1e-6; INT8 ones by up to 0.02 (BBC 3-layer student, dynamic
# and static; identical to the ONNX run with that fusion on), as the rounding of the quantized activations
# shifts. Like TensorRT's reduced precision (export.tensorrt), INT8 is judged by label agreement.
ATOL = 1e-4
INT8_AGREEMENT = 0.98


def verify(reference: Path, candidate: Path, batches: list[dict], what: str, atol: float = ATOL) -> dict:
    """Logits of ``candidate`` against ``reference`` (an ONNX model) on ``batches``; an EdgewiseError when
    they differ beyond ``atol`` (FP32) or, for an INT8 reference, when labels agree on less than INT8_AGREEMENT."""
    summary = graph_summary(reference)
    int8 = summary["qdq"] or any(op in ("MatMulInteger", "DynamicQuantizeLinear") for op in summary["ort_only_ops"])
    result = compare(onnx_scores(reference), onnx_scores(candidate), batches)
    result["judged_by"] = f"label agreement >= {INT8_AGREEMENT:.0%} (INT8)" if int8 else f"max |diff| <= {atol:g}"
    console().print(parity_line(what, result))
    if not int8:
        check(result, atol, f"{candidate.name}")
        return result
    check(result, float("inf"), f"{candidate.name}")  # NaN / inf logits are never acceptable
    if result["label_agreement"] < INT8_AGREEMENT:
        raise EdgewiseError(
            f"{candidate.name} agrees with {reference} on only {result['label_agreement']:.1%} of {result['samples']} "
            f"inputs (at least {INT8_AGREEMENT:.0%} expected of an INT8 model, max |diff| "
            f"{result['max_abs_diff']:.3g}); bundle the FP32 model, or check the INT8 one with edgewise evaluate"
        )
    return result

