"""`edgewise bundle --target jetson`: model.onnx with the trtexec script that builds its engine on the Jetson.

TensorRT engines only run on the TensorRT version and GPU that built them, so the bundle carries the
ONNX model and the build command (runtime.tensorrt.trtexec_args, shared with export's
build_engine.sh and `python -m edgewise.runtime build-engine`), never an engine built here.
"""

from __future__ import annotations

from pathlib import Path

from edgewise.export.config import ExportConfig
from edgewise.runtime.tensorrt import ENGINE, SCRIPT, TIMING_CACHE, TRTEXEC_DEFAULT, build_script, trtexec_args

# The builder's scratch limit (not an allocation), as `export --format tensorrt` sets it: an Orin Nano shares
# 8 GB with the CPU.
WORKSPACE_MB = ExportConfig().workspace_mb
# The index of NVIDIA's Jetson AI Lab with onnxruntime-gpu (and torch) for JetPack 6 / CUDA 12.6 (2025-2026;
# the README says it may move).
JETSON_INDEX = "https://pypi.jetson-ai-lab.io/jp6/cu126"


def opt_tokens(recorded: dict, max_length: int) -> tuple[int, str]:
    """The profile's OPT token count: the median token length of the training texts when the manifest
    records it (TensorRT tunes its kernels for OPT), else max_length; and where it came from."""
    median = ((recorded.get("token_lengths") or {}).get("p50"))
    if isinstance(median, int) and median > 0:
        return min(max(median, 2), max_length), "the training texts' median length"
    return max_length, "max_length: no token lengths recorded"


def write_jetson(out, summary: dict, config, max_length: int, recorded: dict) -> dict:
    """build_engine.sh in the bundle; what the manifest records (the metrics' ``tensorrt`` entry, as export's
    tensorrt artifacts have it) and the profile the README describes."""
    inputs = list(summary["inputs"])
    int8 = bool(summary["qdq"])
    fp16 = not int8  # an FP32 model builds in FP16; a QDQ model in INT8 with the rest kept FP32 (exact)
    opt, opt_from = opt_tokens(recorded, max_length)
    batch, seq = (1, 1, config.engine_max_batch), (2, opt, max_length)
    command = trtexec_args(inputs, batch, seq, workspace_mb=WORKSPACE_MB, fp16=fp16, int8=int8)
    script = out.artifact / SCRIPT
    script.write_text(build_script(command, made_by="edgewise bundle --target jetson"))
    script.chmod(0o755)
    return {
        "tensorrt": {"trtexec": " ".join(command), "fp16": fp16, "int8": int8, "batch": list(batch),
                     "seq": list(seq), "workspace_mb": WORKSPACE_MB, "opt_tokens_from": opt_from,
                     "inputs": inputs, "engine_built": False},
    }


# What build_engine.sh / build-engine add to the bundle on the device: expected, not hashed.
BUILT_ON_DEVICE = (ENGINE, TIMING_CACHE)


README = """edgewise bundle for NVIDIA Jetson (JetPack 6): {name}
Model model.onnx ({precision}), from {source}.
{what}; up to {max_length} tokens per text.

1. Install (JetPack 6.x: L4T 36, Ubuntu 22.04, CUDA 12.6, Python 3.10)

   TensorRT comes with JetPack: trtexec is {trtexec}, its Python module
   the apt package python3-libnvinfer (`sudo apt install nvidia-jetpack` installs both). onnxruntime with the CUDA and
   TensorRT providers for Jetson is not on PyPI; NVIDIA's Jetson AI Lab index has it (this address
   was current in 2026 and may change: look for "onnxruntime-gpu" on https://pypi.jetson-ai-lab.io or
   the Jetson Zoo if it moved):

       python3 -m venv --system-site-packages ~/edgewise-venv   # sees JetPack's tensorrt module
       . ~/edgewise-venv/bin/activate
       pip install onnxruntime-gpu --index-url {index}
       pip install edgewise tokenizers      # the runtime without onnxruntime

   Do not `pip install "edgewise[runtime]"` here: it adds PyPI's CPU-only onnxruntime, which hides
   onnxruntime-gpu. The `tensorrt` backend (the engine of step 3) also needs torch with CUDA, whose
   tensors are the engine's buffers: pip install torch --index-url {index}

2. Record the power mode with every figure (latency depends on it):

       sudo nvpmodel -q            # the current mode: write it down
       sudo nvpmodel -m 0          # mode 0 is MAXN on most modules (nvpmodel -q --verbose lists them)
       sudo jetson_clocks          # clocks at the mode's maximum, not ramping up under load
       sudo tegrastats             # power, clocks and GPU load while you bench (Ctrl-C stops it)

3. Build the TensorRT engine on the Jetson (an engine runs only on the TensorRT version and GPU that
   built it):

       python -m edgewise.runtime build-engine {name}   # trtexec, then times the engine
       bash {name}/build_engine.sh                      # the same build without Python

   {precision_line}
   Shapes: min 1 x 2 tokens, opt 1 x {opt} tokens ({opt_from}), max {max_batch} x {max_length}.
   Texts longer than the bundle's {max_length} tokens are cut; batches above {max_batch} need a rebuild
   (edgewise bundle --target jetson --max-batch N). model.engine and timing.cache land in this folder.

4. Run and time it:

       python -m edgewise.runtime {check} {name} "some text" --backend ort-cuda
       python -m edgewise.runtime bench {name} --backend tensorrt       # the engine of step 3
       python -m edgewise.runtime bench {name} --backend ort-tensorrt   # onnxruntime's TensorRT provider
       python -m edgewise.runtime bench {name} --backend ort-cuda

   ort-tensorrt builds its own engine when a session starts and again for longer inputs than it has
   seen (minutes each time on a Jetson); ORT_TENSORRT_ENGINE_CACHE_ENABLE=1 with
   ORT_TENSORRT_CACHE_PATH=DIR keeps them, ORT_TENSORRT_FP16_ENABLE=1 allows FP16 as the engine does.

From Python: Predictor("{name}", backend="tensorrt") (or "ort-tensorrt", "ort-cuda"), then
predictor.predict(["some text to classify"]).
"""


def readme(name: str, metrics: dict, source: Path, labels: str, max_length: int, task=None) -> str:
    """The jetson kit's README.txt (``labels``: a classifier's, joined; ``task``: an embedding model's says
    vectors instead)."""
    vectors = task is not None and task.name == "embedding"
    what = (f"A {task.describe()} model: one {task.dimension}-dimension vector per text" if vectors
            else f"Labels: {labels}")
    trt = metrics["tensorrt"]
    if trt["int8"]:
        precision = "static INT8 (QDQ)"
        precision_line = ("Precision: --int8 from the model's Q/DQ scales; the layers outside them stay FP32. "
                          "Adding --fp16\n   (bash build_engine.sh --fp16) lets those run in FP16: check "
                          "accuracy if you do.")
    else:
        precision = "FP32"
        precision_line = "Precision: --fp16 (TensorRT keeps a layer in FP32 where FP16 is not faster)."
    return README.format(name=name, precision=precision, source=source, what=what, max_length=max_length,
                         check="embed" if vectors else "predict",
                         trtexec=TRTEXEC_DEFAULT, index=JETSON_INDEX, precision_line=precision_line,
                         opt=trt["seq"][1], opt_from=trt["opt_tokens_from"], max_batch=trt["batch"][2])
