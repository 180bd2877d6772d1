"""The one place edgewise builds an onnxruntime InferenceSession.

Parity checks, bundling and the runtime all load models here, so the numbers export verifies are
the numbers a deployed bundle produces: same providers, same threads, same disabled fusions.
"""

from __future__ import annotations

from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.base import Unavailable

# The execution providers of each onnxruntime backend (runners.ORT_BACKENDS), in the order tried.
PROVIDERS = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# Graph fusions onnxruntime applies at load time that are slower on CPUs than what they replace:
# its SkipLayerNormalization CPU kernel took 2.4 ms per MiniLM run at 128 tokens against 0.27 ms for
# the Add + LayerNormalization it fuses (onnxruntime 1.32, 1 thread, AMD EPYC with AVX-512), which
# made the dynamic-INT8 model 40 % slower (7.95 vs 5.67 ms). The plain FP32 export of that model did
# not match the fusion's pattern; its INT8 version (bias folded into the integer MatMul) did.
# (A graph written with the op already fused, by export --optimize, keeps it.)
CPU_DISABLED_FUSIONS = ("SkipLayerNormFusion",)


def ort_errors(ort) -> tuple[type[BaseException], ...]:
    """The exception types onnxruntime raises for a model it cannot load or run."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (RuntimeError, OSError)


def first_line(error: BaseException, limit: int = 400) -> str:
    """The first line of an onnxruntime error, short enough for a one-line `Error:`, without the C++ source
    location and function signature onnxruntime puts before its message."""
    import re

    line = (str(error).splitlines() or [""])[0]
    line = re.sub(r"/onnxruntime_src/\S+:\d+ .*?\)\s(?=[A-Z])", "", line)
    return line[:limit]


def disabled_optimizers(backend: str) -> list[str]:
    """The onnxruntime graph optimisers turned off for ``backend`` (the slow CPU fusions on ort-cpu)."""
    return list(CPU_DISABLED_FUSIONS) if backend == "ort-cpu" else []


def session(path, backend: str = "ort-cpu", threads: int | None = None):
    """An onnxruntime InferenceSession for the model file at ``path``.

    Args:
        path: model.onnx or model.ort (external-data files beside it are found by onnxruntime).
        backend: ort-cpu (default), ort-cuda or ort-tensorrt; the provider must be in this onnxruntime.
        threads: intra-op threads (inter-op is then 1); None lets onnxruntime choose.

    Raises EdgewiseError for an unknown backend and a file onnxruntime cannot load, and
    runners.Unavailable when this onnxruntime lacks the backend's provider.

    Example:
        >>> session("deploy/teacher/model.onnx", threads=1).get_inputs()[0].name  # doctest: +SKIP
        'input_ids'
    """
    from edgewise.core.deps import require

    ort = require("onnxruntime", "runtime")
    providers = PROVIDERS.get(backend)
    if not providers:  # unknown, or `tensorrt`, which runs a native engine rather than an ONNX session
        raise EdgewiseError(f"backend {backend!r} does not run onnxruntime sessions; choose one of "
                            f"{', '.join(PROVIDERS)}")
    available = ort.get_available_providers()
    if providers[0] not in available:
        raise Unavailable(
            f"backend {backend} needs {providers[0]}, which this onnxruntime lacks (it has "
            f"{', '.join(available)}); install onnxruntime-gpu on a CUDA machine or use ort-cpu"
        )
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: onnxruntime's warnings would drown the CLI's output
    try:
        return ort.InferenceSession(str(path), options, providers=providers,
                                    disabled_optimizers=disabled_optimizers(backend) or None)
    except ort_errors(ort) as e:
        reason = first_line(e)
        fix = (f"it needs a newer onnxruntime than this {ort.__version__}: upgrade it (pip install -U onnxruntime) or "
               "export with a lower --opset" if "opset" in reason.lower() else
               "the file is corrupt or not an ONNX model: re-create it with edgewise export")
        raise EdgewiseError(
            f"onnxruntime cannot load {Path(path)} ({type(e).__name__}: {reason}); {fix}"
        ) from None
