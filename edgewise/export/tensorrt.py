"""`onnx` -> `tensorrt`: an engine built with TensorRT's Python API, or a trtexec script for the device.

Engines are specific to the TensorRT version and GPU that built them, so the manifest records both;
loading and running one (and refusing it elsewhere) is edgewise.runtime.tensorrt's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.tensorrt import (
    ENGINE,
    SCRIPT,
    TIMING_CACHE,
    EngineRunner,
    build_script,
    device_info,
    probe,
    trtexec_args,
)

SEQ_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def trtexec_command(inputs, config, int8: bool, onnx: str = "model.onnx") -> list[str]:
    """The trtexec command that builds the same engine as ``build_engine`` (precision, profiles, limits)."""
    return trtexec_args(inputs, config.batch, config.seq, workspace_mb=config.workspace_mb, fp16=config.fp16,
                        int8=int8, onnx=onnx)


def build_engine(trt, onnx_path: Path, out_dir: Path, inputs, config, int8: bool) -> dict:
    """Parse the ONNX, build and save the engine and timing cache; returns what the manifest records."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # TensorRT 10 networks are always explicit-batch; 8.x needs the flag.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgewiseError(f"TensorRT cannot parse {onnx_path}: {errors[:500]}; try another --opset when exporting")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mb << 20)
    if config.fp16:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        builder_config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    (bmin, bopt, bmax), (smin, sopt, smax) = config.batch, config.seq
    for name in inputs:
        profile.set_shape(name, (bmin, smin), (bopt, sopt), (bmax, smax))
    builder_config.add_optimization_profile(profile)
    cache_path = out_dir / TIMING_CACHE  # export copies --timing-cache here first, so earlier timings are reused
    cache = builder_config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise EdgewiseError("TensorRT failed to build the engine (see its log above); try a larger --workspace-mb")
    (out_dir / ENGINE).write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(builder_config.get_timing_cache().serialize()))
    return {"tensorrt_version": trt.__version__, **device_info()}


def check_buildable(model: Path) -> dict:
    """The graph summary of ``model`` (export.onnx.graph_summary); an EdgewiseError for what TensorRT cannot
    build: dynamic INT8, ONNX Runtime's own fused operators, asymmetric or uint8 Q/DQ (export --format tensorrt
    and bundle --target jetson alike)."""
    from edgewise.export.onnx import DYNAMIC_INT8_OPS, graph_summary

    summary = graph_summary(model)
    if summary["dynamic_int8"]:
        dynamic = [op for op in summary["ort_only_ops"] if op in DYNAMIC_INT8_OPS]
        raise EdgewiseError(
            f"{model} is dynamically quantized ({', '.join(dynamic)} operators), which TensorRT cannot build; "
            "use the FP32 model or a static INT8 (QDQ) one instead, e.g. edgewise quantize FP32_ONNX -o OUT "
            "--method static --activation-type int8"
        )
    if summary["ort_only_ops"]:
        raise EdgewiseError(
            f"{model} uses operators only ONNX Runtime has ({', '.join(summary['ort_only_ops'])}), which TensorRT "
            "cannot parse; use the model exported without --optimize"
        )
    if summary["asymmetric_qdq"]:
        raise EdgewiseError(
            f"{summary['asymmetric_qdq']} Q/DQ nodes of {model} use uint8 or non-zero zero points; TensorRT takes "
            "symmetric signed INT8 only (zero point 0); re-quantize the FP32 model with edgewise quantize "
            "FP32_ONNX -o OUT --method static --activation-type int8, or use the FP32 model"
        )
    return summary


def profile_batches(inputs, vocab_size: int, pad_id: int, config) -> list[dict]:
    """Generated inputs at the profile's min, opt and max shapes: the engine must take all three."""
    import numpy as np

    from edgewise.export.parity import token_batch

    rng = np.random.default_rng(0)
    batches = []
    for batch, seq in zip(config.batch, config.seq, strict=True):
        last = seq // 2 if batch > 1 and seq > 2 else seq  # the last row padded after half its tokens
        batches.append(token_batch(rng, inputs, vocab_size, pad_id, seq, [seq] * (batch - 1) + [last]))
    return batches


def fits(batch: dict, config) -> bool:
    b, s = next(iter(batch.values())).shape
    return config.batch[0] <= b <= config.batch[2] and config.seq[0] <= s <= config.seq[2]


def export_tensorrt(src_model: Path, inputs, out, config, int8: bool, batches: list[dict], vocab_size: int,
                    pad_id: int) -> tuple[dict, str | None]:
    """Write model.onnx + build_engine.sh; build the engine when TensorRT and a GPU are here.

    Returns the metrics and, when no engine could be built, the reason (the caller reports it as an
    Error after the artifact, which holds everything needed to build on the device, is in place).
    """
    from edgewise.core.manifest import sha256_file
    from edgewise.export.parity import check, check_agreement, compare
    from edgewise.runtime.runners import onnx_scores
    from edgewise.runtime.sizes import model_files

    for file in model_files(src_model):
        shutil.copy2(file, out.artifact / file.name)  # model.onnx and its external data
    if config.timing_cache:
        cache = Path(config.timing_cache).expanduser()
        if not cache.is_file():
            raise EdgewiseError(f"--timing-cache {cache} does not exist; drop the option to start a new cache")
        shutil.copy2(cache, out.artifact / TIMING_CACHE)
    command = trtexec_command(inputs, config, int8)
    script = out.artifact / SCRIPT
    script.write_text(build_script(command))
    script.chmod(0o755)
    metrics = {"tensorrt": {"trtexec": " ".join(command), "fp16": config.fp16, "int8": int8,
                            "batch": list(config.batch), "seq": list(config.seq), "engine_built": False}}
    trt, reason = probe()
    if trt is None:
        metrics["tensorrt"]["reason"] = reason
        return metrics, reason
    metrics["tensorrt"].update(build_engine(trt, out.artifact / src_model.name, out.artifact, inputs, config, int8))
    metrics["tensorrt"]["engine_built"] = True
    metrics["tensorrt"]["engine_sha256"] = sha256_file(out.artifact / ENGINE)
    if config.verify:
        checked = [b for b in batches if fits(b, config)] + profile_batches(inputs, vocab_size, pad_id, config)
        metrics["parity"] = compare(onnx_scores(src_model), EngineRunner(trt, out.artifact / ENGINE), checked)
        if config.fp16 or int8:  # reduced precision differs by design: judged by label agreement
            check_agreement(metrics["parity"], f"the {'INT8' if int8 else 'FP16'} engine",
                            "build without reduced precision or keep the fragile layers in FP32")
        else:
            check(metrics["parity"], config.atol, "the TensorRT engine")
    return metrics, None
