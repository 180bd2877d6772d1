"""Do edgewise models predict the same on ARM (aarch64) as on x86? Logit parity under qemu user-mode emulation.

onnxruntime's ARM64 INT8 kernels are not the x86 ones: MLAS picks KleidiAI SME kernels, UMMLA/SMMLA
(i8mm), UDOT/SDOT (dot product) or widening NEON multiplies by what the CPU reports, and its float
kernels (exp, erf, GEMM blocking) differ too. This script runs each model folder through
`edgewise.runtime.Predictor` (1 thread) on the host (x86, the project's .venv) and on emulated aarch64
CPUs over the same evaluation texts, and reports per model and CPU: label agreement (identical
argmax), max and mean |logit difference| against x86, and accuracy on both. Emulated wall time is
reported only as the time the check took, never as latency (emulation says nothing about a board's speed).

The emulated device is built here, offline except for Debian's mirror and PyPI, and cached under --cache:
a Debian bookworm arm64 sysroot (debootstrap --foreign, then the downloaded .debs unpacked with
dpkg-deb, since the second stage would need binfmt_misc) with python3.11, and the aarch64 wheels
of onnxruntime, tokenizers and numpy at the host's versions, nothing else (no torch, click or rich):
the edgewise source goes on PYTHONPATH, so this also checks that `edgewise.runtime` imports with
only those three. Programs are started as `QEMU -cpu CPU -L SYSROOT SYSROOT/usr/bin/python3.11`.

The emulator matters. bookworm's qemu 7.2 (qemu-user-static) computes SME outer products wrongly:
on its `max` CPU (which has SME) onnxruntime routes DynamicQuantizeMatMul to a KleidiAI SME kernel and
a 16x384x384 dynamic-INT8 matmul came out with errors of 85 on values of 55, where qemu 10.0 gave 0.43
(x86: 0.55) for the same wheel. So by default (--qemu backports) qemu-user 10 is fetched from
bookworm-backports with apt-get (a private source list and state under --cache; nothing is
installed) and unpacked with dpkg-deb. Every emulated CPU first runs a kernel self-test (an integer
MatMul, which must be exact, and the dynamic-INT8 MatMul pattern against its FP32 product) so an
emulator fault shows as such rather than as a model that disagrees.

qemu 7.2 also shows guests the host's x86 /proc/cpuinfo, on which onnxruntime's CPU detection
(pytorch/cpuinfo) crashes at import (SIGSEGV). qemu opens a guest's absolute paths inside the -L
sysroot first, so SYSROOT/proc/cpuinfo is written for each CPU from its own MIDR_EL1 (read with
`mrs` under emulation) and HWCAP bits. (qemu 10 emulates /proc/cpuinfo itself and ignores the file.)

Default CPUs: `max` (SME, SVE2, i8mm: KleidiAI SME kernels, as on SME phones), `neoverse-n1` (dot
product, no i8mm: like Jetson Orin's Cortex-A78AE) and `cortex-a72` (neither: Raspberry Pi 4). Others
qemu knows, e.g. `neoverse-v1` (SVE and i8mm without SME: Graviton 3) or `max,sme=off`, can be added.

    nice -n 10 .venv/bin/python benchmarks/arm64_verify_ort_minilm.py MODEL_DIR [MODEL_DIR ...] \\
        [--samples N] [--fp32-samples N] [--cpus max neoverse-n1 cortex-a72] [--batch-sizes 1] \\
        [--qemu backports|PATH] [--cache DIR] [--out FILE]

Needs root (debootstrap), debootstrap, dpkg-deb and apt-get (or --qemu PATH to an aarch64 qemu-user).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# Everything above this line and the worker below must run on the emulated device too: stdlib only
# at module level (the device has onnxruntime, tokenizers and numpy, and the edgewise source).

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SUITE = "bookworm"
PYTHON = "python3.11"  # bookworm's; the aarch64 wheels are fetched for this version
DEVICE_PACKAGES = ("onnxruntime", "tokenizers", "numpy")
SYSTEM_QEMU = "/usr/bin/qemu-aarch64-static"
BACKPORTS = "bookworm-backports"
# Linux's arm64 HWCAP / HWCAP2 bit names (arch/arm64/include/uapi/asm/hwcap.h), by bit position.
HWCAP = ("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp", "cpuid",
         "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512", "sve", "asimdfhm",
         "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg")
HWCAP2 = ("dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2", "frint", "svei8mm",
          "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "rng", "bti", "mte", "ecv", "afp", "rpres",
          "mte3", "sme", "smei16i64", "smef64f64", "smei8i32", "smef16f32", "smeb16f32", "smef32f32", "smefa64",
          "wfxt", "ebf16", "sveebf16", "cssc", "rprfm", "sve2p1", "sme2", "sme2p1")
# Packages a runtime-only device must not need: the worker records whether any got imported.
HEAVY_MODULES = ("torch", "transformers", "click", "rich", "pandas", "sklearn", "onnx", "pydantic", "yaml")


# ---------------------------------------------------------------------------------------------
# The worker: runs on the host (.venv) and on the emulated device, with the same code.


def int8_kernels(features: list[str]) -> str:
    """The INT8 matmul kernels onnxruntime 1.32's MLAS dispatches to on an ARM64 CPU with these features."""
    if "sme" in features:
        return "KleidiAI SME (DynamicQuantizeMatMul), i8mm UMMLA/SMMLA (other integer MatMuls)"
    if "i8mm" in features:
        return "i8mm (UMMLA/SMMLA)"
    return "dot product (UDOT/SDOT)" if "asimddp" in features else "NEON widening multiply (no dot product)"


def cpu_probe() -> dict:
    """What this CPU tells a program: MIDR_EL1 (aarch64 only) and the HWCAP feature names."""
    import ctypes

    info = {"machine": platform.machine()}
    if platform.machine() != "aarch64":
        return info
    import mmap
    import struct

    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    hw1, hw2 = libc.getauxval(16), libc.getauxval(26)  # AT_HWCAP, AT_HWCAP2
    # Linux lets EL0 read the ID registers (HWCAP_CPUID) and qemu-user emulates that: mrs x0, midr_el1; ret.
    code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(struct.pack("<II", 0xD5380000, 0xD65F03C0))
    midr = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(code)))()
    features = [n for i, n in enumerate(HWCAP) if hw1 >> i & 1] + [n for i, n in enumerate(HWCAP2) if hw2 >> i & 1]
    info.update(midr=f"0x{midr:08x}", hwcap=f"0x{hw1:x}", hwcap2=f"0x{hw2:x}", features=features,
                int8_kernels=int8_kernels(features))
    return info


def selftest_outputs(folder: Path) -> dict:
    """Run the self-test graphs (see build_selftest) with onnxruntime's default optimisations, 1 thread."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    outputs = {}
    for name, feed in (("matmulinteger", "A"), ("dynamic_matmul", "X")):
        session = ort.InferenceSession(str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
        outputs[name] = session.run(None, {feed: np.load(folder / f"{feed}.npy")})[0]
    return outputs


def worker(spec_path: Path) -> None:
    """Self-test outputs, then the logits of each model's texts per batch size, saved as .npy beside the spec."""
    spec = json.loads(spec_path.read_text())
    import numpy as np
    import onnxruntime
    import tokenizers

    from edgewise.runtime import Predictor

    texts = json.loads(Path(spec["texts"]).read_text())["texts"]
    out = Path(spec["out"])
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    report = {"cpu": cpu_probe(), "python": platform.python_version(),
              "proc_cpuinfo_part": next((line.split(":")[1].strip() for line in cpuinfo if line.startswith("CPU part")),
                                        None),
              "versions": {"onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
                           "numpy": np.__version__},
              "providers": onnxruntime.get_available_providers(), "selftest": {}, "models": []}
    for name, value in selftest_outputs(Path(spec["selftest"])).items():
        np.save(out / f"selftest-{name}.npy", value)
        report["selftest"][name] = str(out / f"selftest-{name}.npy")
    for i, (folder, count) in enumerate(zip(spec["models"], spec["counts"], strict=True)):
        start = time.perf_counter()
        predictor = Predictor(folder, threads=1)
        row = {"folder": folder, "texts": count, "max_length": predictor.max_length, "logits": {}}
        for batch_size in spec["batch_sizes"]:
            logits = predictor.logits(texts[:count], batch_size=batch_size)
            file = out / f"model{i}-b{batch_size}.npy"
            np.save(file, logits.astype(np.float32))
            row["logits"][str(batch_size)] = str(file)
        row["wall_s"] = round(time.perf_counter() - start, 1)
        report["models"].append(row)
        print(f"  [{spec['name']}] {Path(folder).name}: {count} texts in {row['wall_s']} s", flush=True)
    report["heavy_modules_imported"] = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_MODULES))
    (out / "worker.json").write_text(json.dumps(report, indent=2))


# ---------------------------------------------------------------------------------------------
# The host: builds the emulated device, runs the worker on both, compares.


class Steps:
    """Prints each step's elapsed time as it ends (the run is long) and keeps them for the JSON."""

    def __init__(self):
        self.start, self.seconds = time.perf_counter(), {}

    def run(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {self.seconds[name]} s "
              f"(total {time.perf_counter() - self.start:.0f} s)", flush=True)
        return result


def check(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))[:300]} exited {done.returncode}:\n{(done.stderr or done.stdout)[-3000:]}")
    return done


def build_sysroot(cache: Path, mirror: str) -> dict:
    """An arm64 Debian sysroot with python3.11, built once into cache/sysroot (written aside, then renamed)."""
    root = cache / "sysroot"
    if (root / "usr" / "bin" / PYTHON).is_file():
        return {"path": str(root), "built": False}
    for tool in ("debootstrap", "dpkg-deb"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install debootstrap")
    if os.geteuid() != 0:
        sys.exit("debootstrap needs root to build the arm64 sysroot; run as root once (later runs use the cache)")
    scratch = cache / "sysroot.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    # First stage only: it downloads every package and unpacks the required ones; the second stage would
    # run arm64 maintainer scripts in a chroot, which needs binfmt_misc. Unpacking the rest is enough for Python.
    check(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
           f"--include={PYTHON}-minimal,lib{PYTHON}-stdlib", SUITE, scratch, mirror])
    debs = sorted((scratch / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    for deb in debs:
        check(["dpkg-deb", "-x", deb, scratch])
    for deb in debs:
        deb.unlink()  # about 40 MB nobody reads again
    scratch.rename(root)
    return {"path": str(root), "built": True}


def fetch_qemu(cache: Path, mirror: str) -> dict:
    """qemu-user from bookworm-backports, downloaded with apt-get (a private source list and state under
    cache/apt, so the system's apt is untouched) and unpacked with dpkg-deb; its binaries are static."""
    root = cache / "qemu-backports"
    binary = root / "usr" / "bin" / "qemu-aarch64"
    if not binary.is_file():
        apt = cache / "apt"
        for sub in ("lists/partial", "archives/partial"):
            (apt / sub).mkdir(parents=True, exist_ok=True)
        (apt / "sources.list").write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                                          f"{mirror} {BACKPORTS} main\n")
        options = ["-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
                   "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt}",
                   "-o", "APT::Sandbox::User=root"]
        check(["apt-get", *options, "update"])
        check(["apt-get", *options, "download", f"qemu-user/{BACKPORTS}"], cwd=apt)
        deb = next(apt.glob("qemu-user_*.deb"))
        scratch = root.with_name(root.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        check(["dpkg-deb", "-x", deb, scratch])
        deb.unlink()
        for other in (scratch / "usr" / "bin").iterdir():  # every qemu-user target: keep aarch64's (14 of 350 MB)
            if other.name != "qemu-aarch64":
                other.unlink()
        shutil.rmtree(scratch / "usr" / "libexec", ignore_errors=True)
        scratch.rename(root)
    return {"path": str(binary), "source": f"qemu-user from Debian {BACKPORTS}"}


def host_version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def install_wheels(cache: Path) -> dict:
    """The aarch64 wheels of DEVICE_PACKAGES at the host's versions, without their dependencies."""
    pins = [f"{p}=={host_version(p)}" for p in DEVICE_PACKAGES]
    site = cache / ("site-" + "-".join(p.replace("==", "") for p in pins))
    if not site.is_dir():
        scratch = site.with_name(site.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        platforms = [a for tag in ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                                   "manylinux2014_aarch64") for a in ("--platform", tag)]
        # --no-deps: onnxruntime's own requirements (protobuf, sympy, flatbuffers, packaging) and tokenizers'
        # (huggingface_hub) are not needed to run a model; leaving them out shows that.
        check([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", scratch, *platforms,
               "--python-version", PYTHON.removeprefix("python"), "--implementation", "cp", "--only-binary=:all:",
               *pins])
        scratch.rename(site)
    return {"path": str(site), "pins": pins}


def emulated(qemu: str, sysroot: Path, cpu: str) -> list[str]:
    """The command line that starts the device's python on an emulated ``cpu``."""
    return [qemu, "-cpu", cpu, "-L", str(sysroot), str(sysroot / "usr" / "bin" / PYTHON)]


def device_env(site: Path, cache: Path) -> dict:
    """A clean environment for the device's python: its wheels and the edgewise source, nothing of the host's."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(cache), "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": f"{site}:{REPO}", "PYTHONPYCACHEPREFIX": str(cache / "pycache-aarch64"),
            "OMP_NUM_THREADS": "1"}


def fake_cpuinfo(qemu: str, sysroot: Path, site: Path, cpu: str, cache: Path) -> dict:
    """Probe the emulated CPU, then write SYSROOT/proc/cpuinfo from its MIDR and features (see the docstring)."""
    probe = check(emulated(qemu, sysroot, cpu) + [__file__, "--probe"], env=device_env(site, cache))
    info = json.loads(probe.stdout)
    midr = int(info["midr"], 16)
    possible = Path("/sys/devices/system/cpu/possible").read_text().strip()  # what cpuinfo counts, e.g. 0-1
    last = max(int(part.split("-")[-1]) for part in possible.split(","))
    block = ["BogoMIPS\t: 50.00", f"Features\t: {' '.join(info['features'])}",
             f"CPU implementer\t: 0x{midr >> 24:02x}", f"CPU architecture: {8 if (midr >> 16 & 0xF) == 0xF else 7}",
             f"CPU variant\t: 0x{midr >> 20 & 0xF:x}", f"CPU part\t: 0x{midr >> 4 & 0xFFF:03x}",
             f"CPU revision\t: {midr & 0xF}"]
    text = "".join(f"processor\t: {n}\n" + "\n".join(block) + "\n\n" for n in range(last + 1))
    (sysroot / "proc").mkdir(exist_ok=True)
    (sysroot / "proc" / "cpuinfo").write_text(text)
    return info


def build_selftest(work: Path) -> Path:
    """Two one-layer graphs that tell an emulator fault from a model difference: an integer MatMul
    (uint8 x int8, zero points 131 and 3), exact on any correct CPU, and the dynamic-INT8 pattern
    edgewise's dynamic quantization writes (DynamicQuantizeLinear, MatMulInteger, Cast, Mul), which
    onnxruntime fuses, against the FP32 product it approximates. MiniLM's 384 x 384 shape, 16 rows."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = work / "selftest"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, k, n = 16, 384, 384
    weight = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
    a, x = rng.integers(0, 256, size=(rows, k), dtype=np.uint8), rng.standard_normal((rows, k)).astype(np.float32)
    scale = np.float32(0.01)
    np.save(folder / "A.npy", a)
    np.save(folder / "X.npy", x)
    np.save(folder / "matmulinteger-expected.npy", (a.astype(np.int64) - 131) @ (weight.astype(np.int64) - 3))
    np.save(folder / "dynamic_matmul-expected.npy", x.astype(np.float64) @ (weight.astype(np.float64) * scale))

    def save(name, nodes, inputs, outputs, initializers):
        graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(folder / f"{name}.onnx"))

    w = numpy_helper.from_array(weight, "W")
    save("matmulinteger", [helper.make_node("MatMulInteger", ["A", "W", "azp", "wzp"], ["Y"])],
         [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, k])],
         [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, n])],
         [w, numpy_helper.from_array(np.array(131, np.uint8), "azp"),
          numpy_helper.from_array(np.array(3, np.int8), "wzp")])
    save("dynamic_matmul", [
        helper.make_node("DynamicQuantizeLinear", ["X"], ["Xq", "xs", "xzp"]),
        helper.make_node("MatMulInteger", ["Xq", "W", "xzp", "wzp"], ["Yi"]),
        helper.make_node("Cast", ["Yi"], ["Yf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["s"]),
        helper.make_node("Mul", ["Yf", "s"], ["Y"]),
    ], [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])],
        [w, numpy_helper.from_array(np.array(0, np.int8), "wzp"), numpy_helper.from_array(np.array(scale), "ws")])
    return folder


def selftest_verdict(report: dict, folder: Path) -> dict:
    """The self-test's figures for one worker: integer MatMul exact or not, dynamic-INT8 error vs FP32."""
    import numpy as np

    exact = np.array_equal(np.load(report["selftest"]["matmulinteger"]),
                           np.load(folder / "matmulinteger-expected.npy"))
    expected = np.load(folder / "dynamic_matmul-expected.npy")
    error = np.abs(np.load(report["selftest"]["dynamic_matmul"]) - expected)
    return {"matmulinteger_exact": bool(exact), "dynamic_int8_max_err_vs_fp32": round(float(error.max()), 4),
            "dynamic_int8_mean_err_vs_fp32": round(float(error.mean()), 4),
            "fp32_product_max_abs": round(float(np.abs(expected).max()), 2)}


def run_worker(name: str, command: list[str], env: dict | None, models: list[Path], counts: list[int], texts: Path,
               batch_sizes: list[int], selftest: Path, work: Path) -> dict:
    out = work / name.replace(",", "_").replace("=", "-")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    spec = {"name": name, "models": [str(m) for m in models], "counts": counts, "texts": str(texts),
            "batch_sizes": batch_sizes, "selftest": str(selftest), "out": str(out)}
    (out / "spec.json").write_text(json.dumps(spec))
    start = time.perf_counter()
    done = subprocess.run(command + [__file__, "--worker", str(out / "spec.json")], env=env, text=True,
                          stderr=subprocess.PIPE)
    if done.returncode != 0:
        sys.exit(f"the {name} worker exited {done.returncode}:\n{done.stderr[-3000:]}")
    report = json.loads((out / "worker.json").read_text())
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["selftest"] = selftest_verdict(report, selftest)
    return report


def load_texts(data: str, split_name: str, samples: int | None, work: Path) -> Path:
    from edgewise.core.data import load_splits, select_split

    split = select_split(load_splits(data), split_name, data)
    if samples:
        split = split.subset(range(min(samples, len(split))), split.name)
    path = work / "texts.json"
    path.write_text(json.dumps({"data": data, "split": split.name, "texts": split.texts, "labels": split.labels}))
    return path


def quantization(folder: Path) -> dict:
    """How the graph is quantized: integer ops, and per quantized tensor its integer type and granularity."""
    import collections

    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    ops = collections.Counter(n.op_type for n in graph.node)
    integer_ops = {op: n for op, n in sorted(ops.items()) if op in {
        "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QuantizeLinear",
        "DequantizeLinear", "QLinearMatMul", "QGemm", "QAttention", "QEmbedLayerNormalization"}}
    kinds = collections.Counter()
    for node in graph.node:
        if node.op_type == "MatMulInteger":  # A, B, a_zero_point, b_zero_point
            weight = inits.get(node.input[1])
            zero = inits.get(node.input[3]) if len(node.input) > 3 else None
            if weight is not None:
                per = "per-channel" if zero is not None and len(zero.dims) and zero.dims[0] > 1 else "per-tensor"
                kinds[f"MatMulInteger weight {onnx.TensorProto.DataType.Name(weight.data_type).lower()} {per}"] += 1
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = inits.get(node.input[2])
            if zero is not None:
                per = "per-channel" if len(zero.dims) and zero.dims[0] > 1 else "per-tensor"
                what = "weight" if node.input[0] in inits else "activation"
                kinds[f"{node.op_type} {what} {onnx.TensorProto.DataType.Name(zero.data_type).lower()} {per}"] += 1
    if ops.get("DynamicQuantizeLinear"):
        kinds["DynamicQuantizeLinear activation uint8 per-tensor"] = ops["DynamicQuantizeLinear"]
    return {"nodes": len(graph.node), "integer_ops": integer_ops, "quantized_tensors": dict(sorted(kinds.items()))}


def compare(x86, arm, truth):
    import numpy as np

    diff = np.abs(x86 - arm)
    px, pa = x86.argmax(-1), arm.argmax(-1)
    flips = np.flatnonzero(px != pa)
    top2 = np.sort(x86, axis=-1)[:, -2:]
    return {
        "agreement": float((px == pa).mean()),
        "disagreements": int(len(flips)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "bitwise_identical": bool((x86 == arm).all()),
        "accuracy_x86": float((px == truth).mean()) if truth is not None else None,
        "accuracy_arm": float((pa == truth).mean()) if truth is not None else None,
        # How close the x86 decision was where ARM decided otherwise (logit gap of x86's top two).
        "x86_margin_at_disagreements": [round(float(top2[i, 1] - top2[i, 0]), 4) for i in flips],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="ONNX artifact folders or bundles")
    parser.add_argument("--data", default="builtin:bbc-news")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=None, help="first N texts of the split (default: all)")
    parser.add_argument("--fp32-samples", type=int, default=None,
                        help="at most N texts for models without integer ops, which emulate 3-4x slower than INT8 "
                             "(default: as --samples)")
    parser.add_argument("--cpus", nargs="+", default=["max", "neoverse-n1", "cortex-a72"],
                        help="qemu -cpu models (qemu properties allowed, e.g. max,sme=off)")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated, e.g. 1,8")
    parser.add_argument("--qemu", default="backports",
                        help=f"`backports` (qemu-user from Debian {BACKPORTS}, fetched into --cache) or the path of "
                             f"an aarch64 qemu-user binary, e.g. {SYSTEM_QEMU} (bookworm's 7.2: wrong SME results)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgewise-arm64")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "arm64_verify_minilm_bbc.json")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)  # device side
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # host and device side
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(cpu_probe()))
        return
    if args.worker:
        worker(args.worker)
        return
    if not args.models:
        parser.error("pass at least one model folder")
    models = [m.expanduser().resolve() for m in args.models]
    for m in models:
        if not ((m / "model.onnx").is_file() or (m / "model.ort").is_file()):
            sys.exit(f"{m} holds no model.onnx or model.ort: pass ONNX artifact folders or bundles")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    cache = args.cache.expanduser().resolve()
    work = cache / "run"
    work.mkdir(parents=True, exist_ok=True)

    steps = Steps()
    sysroot = steps.run("sysroot", build_sysroot, cache, args.mirror)
    wheels = steps.run("wheels", install_wheels, cache)
    emulator = (steps.run("qemu", fetch_qemu, cache, args.mirror) if args.qemu == "backports"
                else {"path": args.qemu, "source": "given"})
    qemu, root, site = emulator["path"], Path(sysroot["path"]), Path(wheels["path"])
    texts = steps.run("texts", load_texts, args.data, args.split, args.samples, work)
    corpus = json.loads(texts.read_text())
    graphs = [quantization(m) if (m / "model.onnx").is_file() else None for m in models]  # None: an .ort bundle
    counts = [len(corpus["texts"]) if g is None or g["integer_ops"] or args.fp32_samples is None
              else min(args.fp32_samples, len(corpus["texts"])) for g in graphs]
    selftest = build_selftest(work)
    x86 = steps.run("x86", run_worker, "x86", [sys.executable], {**os.environ, "OMP_NUM_THREADS": "1"}, models,
                    counts, texts, batch_sizes, selftest, work)
    runs = {}
    for cpu in args.cpus:
        steps.run(f"probe {cpu}", fake_cpuinfo, qemu, root, site, cpu, cache)
        runs[cpu] = steps.run(f"arm64 {cpu}", run_worker, f"arm64-{cpu}", emulated(qemu, root, cpu),
                              device_env(site, cache), models, counts, texts, batch_sizes, selftest, work)

    import numpy as np

    from edgewise.core.artifact import Artifact
    from edgewise.core.data import Split, encode_labels

    split = Split(name=corpus["split"], texts=corpus["texts"], pairs=None, labels=corpus["labels"])
    results = []
    for i, folder in enumerate(models):
        labels = Artifact.load(folder, verify=False).labels
        truth = np.asarray(encode_labels(split, labels))[: counts[i]] if labels and corpus["labels"] else None
        row = {"model": str(folder), "texts": counts[i], "max_length": x86["models"][i]["max_length"],
               "quantization": graphs[i], "checks": []}
        for b in batch_sizes:
            ref = np.load(x86["models"][i]["logits"][str(b)])
            for cpu, run in runs.items():
                arm = np.load(run["models"][i]["logits"][str(b)])
                row["checks"].append({"cpu": cpu, "batch_size": b, **compare(ref, arm, truth),
                                      "arm_wall_s": run["models"][i]["wall_s"]})
        results.append(row)

    host = subprocess.run([str(Path(sys.executable).parent / "edgewise"), "env", "--json"], capture_output=True,
                          text=True)
    host_env = json.loads(host.stdout) if host.returncode == 0 else {"error": host.stderr[-500:]}
    version = check([qemu, "--version"]).stdout.splitlines()[0]
    first = next(iter(runs.values()))
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "what": "logits of each model on emulated aarch64 vs x86 (host), onnxruntime CPU, 1 thread",
        "data": {"spec": args.data, "split": corpus["split"], "texts": len(corpus["texts"]),
                 "samples_limit": args.samples, "fp32_samples_limit": args.fp32_samples},
        "batch_sizes": batch_sizes,
        "x86": {"cpu": host_env.get("cpu"), "python": platform.python_version(),
                "versions": x86["versions"], "selftest": x86["selftest"]},
        "arm64": {"qemu": version, "qemu_binary": emulator, "sysroot": f"Debian {SUITE} arm64, {PYTHON}",
                  "python": first["python"], "versions": first["versions"], "wheels": wheels["pins"],
                  "heavy_modules_imported": sorted({m for r in runs.values() for m in r["heavy_modules_imported"]}),
                  "cpus": {cpu: {**run["cpu"], "proc_cpuinfo_part": run["proc_cpuinfo_part"],
                                 "selftest": run["selftest"]} for cpu, run in runs.items()}},
        "sysroot_built_this_run": sysroot["built"],
        "results": results,
        "step_seconds": steps.seconds,
        "total_s": round(time.perf_counter() - steps.start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    cpu = host_env.get("cpu") or {}
    print(f"\nx86: {cpu.get('model')} ({' '.join(cpu.get('isa', []))}) | arm64: {version}\n"
          f"onnxruntime x86 {x86['versions']['onnxruntime']}, arm64 {first['versions']['onnxruntime']} | "
          f"{corpus['split']} texts: {len(corpus['texts'])}")
    header = (f"{'model':28} {'cpu':12} {'b':>2} {'texts':>5} {'agree':>7} {'max|d|':>8} {'mean|d|':>9} "
              f"{'acc x86':>8} {'acc arm':>8} {'arm s':>6}")
    print(header)
    print("-" * len(header))
    for row in results:
        for c in row["checks"]:
            print(f"{Path(row['model']).name[:28]:28} {c['cpu'][:12]:12} {c['batch_size']:>2} {row['texts']:>5} "
                  f"{c['agreement']:>7.2%} {c['max_abs_diff']:>8.4f} {c['mean_abs_diff']:>9.5f} "
                  f"{c['accuracy_x86'] or 0:>8.2%} {c['accuracy_arm'] or 0:>8.2%} {c['arm_wall_s']:>6.0f}")
    print(f"self-test x86: {x86['selftest']}")
    for cpu, info in result["arm64"]["cpus"].items():
        print(f"{cpu}: MIDR {info.get('midr')}, {info.get('int8_kernels')}; self-test {info['selftest']}")
    print(f"heavy modules imported on the device: {result['arm64']['heavy_modules_imported'] or 'none'}")
    print(f"wrote {args.out} ({result['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
