"""Running a TensorRT engine (model.engine of a `tensorrt` artifact or a jetson bundle), and the trtexec
command that builds one on the device (export's build_engine.sh, the jetson bundle's, and
`python -m edgewise.runtime build-engine` all come from ``trtexec_args``, so they build the same engine).

Engines are specific to the TensorRT version and GPU that built them: the manifest records both,
and loading an engine elsewhere is refused with the command that rebuilds it. tensorrt and torch
(whose CUDA tensors are the engine's buffers) are imported only when an engine is loaded.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.base import Unavailable

ENGINE = "model.engine"
TIMING_CACHE = "timing.cache"
SCRIPT = "build_engine.sh"
# Where JetPack (and NVIDIA's TensorRT packages for Linux) install trtexec, which is not on PATH there.
TRTEXEC_DEFAULT = "/usr/src/tensorrt/bin/trtexec"
TRTEXEC = "$TRTEXEC"  # the first word of a command: the trtexec binary, found when the command runs


def shapes(inputs, batch: int, seq: int) -> str:
    """trtexec's shape syntax: name:BxS,name:BxS."""
    return ",".join(f"{name}:{batch}x{seq}" for name in inputs)


def trtexec_args(inputs, batch: tuple[int, int, int], seq: tuple[int, int, int], *, workspace_mb: int, fp16: bool,
                 int8: bool, onnx: str = "model.onnx") -> list[str]:
    """The trtexec command (first word ``TRTEXEC``) that builds model.engine from ``onnx`` with the
    MIN:OPT:MAX profiles ``batch`` x ``seq`` for every input, the timing cache beside it and the precision."""
    (bmin, bopt, bmax), (smin, sopt, smax) = batch, seq
    command = [
        TRTEXEC, f"--onnx={onnx}", f"--saveEngine={ENGINE}",
        f"--minShapes={shapes(inputs, bmin, smin)}",
        f"--optShapes={shapes(inputs, bopt, sopt)}",
        f"--maxShapes={shapes(inputs, bmax, smax)}",
        f"--memPoolSize=workspace:{workspace_mb}",  # MiB
        f"--timingCacheFile={TIMING_CACHE}",
    ]
    if fp16:
        command.append("--fp16")
    if int8:
        command.append("--int8")  # explicit quantization: the scales come from the model's Q/DQ nodes
    return command


def build_script(command: list[str], made_by: str = "edgewise export --format tensorrt") -> str:
    """A bash script running ``command`` in its own folder; extra arguments are passed on to trtexec."""
    lines = " \\\n    ".join('"$TRTEXEC"' if part == TRTEXEC else shlex.quote(part) for part in command)
    return (
        "#!/usr/bin/env bash\n"
        "# Builds model.engine from model.onnx on the machine that will run it (a Jetson, a GPU server):\n"
        "# TensorRT engines only run on the TensorRT version and GPU that built them.\n"
        f"# Written by `{made_by}` with the same precision and shape profiles.\n"
        "set -euo pipefail\n"
        'cd "$(dirname "$0")"\n'
        f'TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo {TRTEXEC_DEFAULT})}}"\n'
        f'{lines} "$@"\n'
    )


def probe() -> tuple[object | None, str | None]:
    """(tensorrt module, None) when an engine can be built or run here, else (None, the reason)."""
    import importlib

    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as e:
        return None, (f"the tensorrt Python package is not installed ({e}): on a Jetson it comes with JetPack (sudo "
                      "apt install python3-libnvinfer; a venv sees it when made with python3 -m venv "
                      "--system-site-packages), elsewhere pip install tensorrt (edgewise[tensorrt]) on a CUDA machine")
    try:
        import torch
    except ImportError:
        return None, "torch is needed to drive the GPU: pip install 'edgewise[full]'"
    if not torch.cuda.is_available():
        return None, "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return trt, None


def device_info() -> dict:
    """The GPU an engine is built for: its name and compute capability."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}


def check_compatible(recorded: dict, current: dict, folder: Path) -> None:
    """An engine runs only where its TensorRT major.minor and GPU compute capability match."""
    version = lambda v: ".".join(str(v).split(".")[:2])  # noqa: E731
    built, here = recorded, current
    problems = []
    if version(built.get("tensorrt_version")) != version(here.get("tensorrt_version")):
        problems.append(f"TensorRT {built.get('tensorrt_version')} built it, this is {here.get('tensorrt_version')}")
    if built.get("compute_capability") != here.get("compute_capability"):
        problems.append(f"it was built for compute capability {built.get('compute_capability')} "
                        f"({built.get('gpu')}), this GPU is {here.get('compute_capability')} ({here.get('gpu')})")
    if problems:
        raise Unavailable(
            f"the engine in {folder} cannot run here: {'; '.join(problems)}; rebuild it on this machine with "
            f"bash {folder / SCRIPT}"
        )


class EngineRunner:
    """Runs a serialized engine on CUDA with torch tensors as buffers; called with a numpy feed, it
    returns the first output as a numpy array."""

    def __init__(self, trt, engine_path: Path):
        import torch

        self.torch = torch
        self.trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise Unavailable(
                f"TensorRT could not load {engine_path} (built by another TensorRT version or GPU?); rebuild it "
                f"with bash {engine_path.parent / SCRIPT}"
            )
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()  # TensorRT warns against (and serialises on) the default stream
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.output = self.outputs[0]  # what a call returns; the Predictor names its task's output

    def _dtype(self, name: str):
        import numpy as np

        numpy_type = self.trt.nptype(self.engine.get_tensor_dtype(name))
        return self.torch.from_numpy(np.zeros(1, dtype=numpy_type)).dtype

    def __call__(self, batch: dict):
        torch = self.torch
        stream = self.stream
        keep = []  # the input tensors must outlive the asynchronous execution
        for name in self.inputs:
            tensor = torch.from_numpy(batch[name]).to(device="cuda", dtype=self._dtype(name)).contiguous()
            keep.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise EdgewiseError(
                    f"input {name} of shape {tuple(tensor.shape)} is outside the engine's optimisation profile; "
                    "rebuild it with wider --batch / --seq ranges or use smaller inputs"
                )
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            results[name] = torch.empty(shape, dtype=self._dtype(name), device="cuda")
            self.context.set_tensor_address(name, results[name].data_ptr())
        torch.cuda.current_stream().synchronize()  # the input copies were queued on the current stream
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return results[self.output].float().cpu().numpy()


def load_engine(folder: Path) -> EngineRunner:
    """The engine of a `tensorrt` artifact; Unavailable without one, without TensorRT or a GPU, and on
    another TensorRT or GPU than the one it was built for (with the rebuild command)."""
    from edgewise.core.manifest import Manifest

    engine = folder / ENGINE
    if not engine.is_file() and not (folder / SCRIPT).is_file():
        raise Unavailable(f"{folder} has no {ENGINE} and nothing to build one with; make a folder for TensorRT with "
                          "edgewise bundle --target jetson or edgewise export --format tensorrt")
    if not engine.is_file():
        raise Unavailable(f"{folder} has no {ENGINE} yet; build it on the target with bash {folder / SCRIPT}")
    trt, reason = probe()
    if trt is None:
        raise Unavailable(f"cannot run the TensorRT engine in {folder}: {reason}")
    recorded = Manifest.read(folder).metrics.get("tensorrt", {})
    if recorded.get("engine_built"):  # built here by edgewise: it recorded where; else the device built it
        check_compatible(recorded, {"tensorrt_version": trt.__version__, **device_info()}, folder)
    return EngineRunner(trt, engine)
