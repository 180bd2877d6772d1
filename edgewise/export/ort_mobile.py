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
        metrics["parity"] = compare(onnx_scores(src_model), onnx_scores(out.artifact / "model.ort"), batches)
        console().print(parity_line("ORT format vs ONNX", metrics["parity"]))
        check(metrics["parity"], config.atol, "the ORT-format model")
    return metrics
