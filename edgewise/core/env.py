"""Environment fingerprint: recorded in every manifest and printed by `edgewise env`."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from edgewise.core.deps import dist_version

# ISA features that decide which kernels and quantization formats are fast.
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    # Arm (Jetson, phones): dot product and fp16 arithmetic.
    "asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16",
)

PACKAGES = (
    "edgewise", "torch", "transformers", "optimum", "optimum_onnx", "onnx", "onnxruntime",
    "onnxscript", "neural_compressor", "accelerate", "datasets", "tokenizers", "tensorrt",
)


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """CPU model, logical core count and the ISA flags in ISA_FLAGS that the CPU has."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
    }


# Any of these makes INT8 dot products accumulate in int32 on x86 (no int16 saturation).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_family(cpu: dict) -> str:
    """How a CPU (as cpu_info describes it) computes INT8 dot products: arm, x86-vnni or x86
    (no VNNI: pairs of u8 x s8 products are added in int16, which saturates)."""
    arch = str(cpu.get("arch", "")).lower()
    if arch in ("aarch64", "arm64") or arch.startswith("arm"):
        return "arm"
    return "x86-vnni" if set(cpu.get("isa", ())) & set(VNNI_FLAGS) else "x86"


def gpu_info() -> list[dict]:
    """GPUs visible to torch, without importing torch when it is not loaded already."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append({
            "name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
        })
    return gpus


def fingerprint() -> dict:
    """What a benchmark figure or artifact depends on: versions, CPU, GPU, OS."""
    return {
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "packages": {name: dist_version(name) for name in PACKAGES},
        "cpu": cpu_info(),
        "gpu": gpu_info(),
    }


def full_report() -> dict:
    """Everything `edgewise env` prints: the fingerprint plus probes that import packages."""
    import importlib

    report = fingerprint()
    # A broken install fails in many ways (missing shared library, CUDA mismatch); `env` exists
    # to report exactly that, so every failure is recorded rather than raised.
    try:
        ort = importlib.import_module("onnxruntime")
        report["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as e:  # noqa: BLE001
        report["onnxruntime_providers"] = f"not importable: {type(e).__name__}: {e}"
    try:
        trt = importlib.import_module("tensorrt")
        report["tensorrt"] = f"importable ({getattr(trt, '__version__', '?')})"
    except Exception as e:  # noqa: BLE001
        report["tensorrt"] = f"not importable: {type(e).__name__}: {e}"
    try:
        importlib.import_module("torch")
        report["gpu"] = gpu_info()
        report["torch_threads"] = sys.modules["torch"].get_num_threads()
    except Exception as e:  # noqa: BLE001
        report["gpu"] = f"torch not usable: {type(e).__name__}: {e}"
    return report
