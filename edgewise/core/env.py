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


def cache_dir() -> Path:
    """Where edgewise keeps per-user state (teacher logits, the native-code key): $EDGEWISE_CACHE, else
    ~/.cache/edgewise."""
    return Path(os.environ.get("EDGEWISE_CACHE") or Path.home() / ".cache" / "edgewise").expanduser().absolute()


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


def measurement_environment(device: bool = False) -> dict:
    """What a measurement ran on: fingerprint() and onnxruntime's providers; with ``device``, the device's
    facts too (governor, clocks, memory, Jetson power mode: device_facts())."""
    env = fingerprint()
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        env["onnxruntime_providers"] = []
    if device:
        env["device"] = device_facts()
    return env


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def device_facts(root: Path = Path("/")) -> dict:
    """What a latency figure on a device depends on beyond the fingerprint: CPU frequency governor and
    limits, memory, the OS release and, on an NVIDIA Jetson, its power mode (nvpmodel) and whether the
    clocks are pinned at their maximum (what `jetson_clocks` does). Read from /proc, /sys and /etc;
    ``root`` lets tests point it at a fake tree."""
    import re
    import shutil
    import subprocess

    facts: dict = {"logical_cores": os.cpu_count()}
    cpus = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    governors = sorted({g for g in (_read(c / "scaling_governor") for c in cpus) if g})
    facts["cpu_governor"] = governors[0] if len(governors) == 1 else (governors or None)
    limits = [(_read(c / "scaling_min_freq"), _read(c / "scaling_max_freq"), _read(c / "cpuinfo_max_freq"))
              for c in cpus]
    if limits and all(all(v and v.isdigit() for v in triple) for triple in limits):
        facts["cpu_max_mhz"] = max(int(t[1]) for t in limits) // 1000
        # jetson_clocks (and `cpupower frequency-set -d max`) pin min = max = the hardware maximum.
        facts["cpu_clocks_pinned"] = all(t[0] == t[1] == t[2] for t in limits)
    meminfo = _read(root / "proc/meminfo") or ""
    total = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    facts["memory_gib"] = round(int(total.group(1)) / 2**20, 1) if total else None
    release = _read(root / "etc/os-release") or ""
    name = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', release, re.M)
    facts["os_release"] = name.group(1) if name else None
    tegra = _read(root / "etc/nv_tegra_release")
    if tegra is not None:
        facts["jetson"] = {"l4t": tegra.splitlines()[0] if tegra else None, "model": _read(
            root / "proc/device-tree/model")}
    tool = shutil.which("nvpmodel")
    if tool is not None:
        try:
            shown = subprocess.run([tool, "-q"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            shown = f"unreadable: {e}"
        mode = re.search(r"NV Power Mode:\s*(\S+)", shown)
        facts.setdefault("jetson", {})["nvpmodel"] = mode.group(1) if mode else shown.strip()[:200] or None
    if "jetson" in facts:
        facts["jetson"]["jetson_clocks"] = facts.get("cpu_clocks_pinned")
    return facts


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
