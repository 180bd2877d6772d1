"""Optional dependencies: import them where they are used, with an error that names the extra."""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

from edgewise.core.errors import EdgewiseError

# A module can be installed under several distribution names (onnxruntime-gpu provides
# `onnxruntime`, tensorrt-cu12 provides `tensorrt`): probe all of them.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu11"),
    "neural_compressor": ("neural-compressor-pt", "neural-compressor"),
    "optimum_onnx": ("optimum-onnx",),
}


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an EdgewiseError that names the pip extra providing it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EdgewiseError(
            f"`{module}` is needed here but is not installed: pip install 'edgewise[{extra}]'"
        ) from None


def require_full(*modules: str) -> None:
    """Check, before any heavy work, that the `full` extra's modules a stage needs are installed.

    Found, not imported: importing torch and transformers takes seconds, and a stage must refuse a
    missing model folder or output before that (the import happens where the module is used)."""
    import importlib.util

    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            found = False
        if not found:
            raise EdgewiseError(f"`{module}` is needed here but is not installed: pip install 'edgewise[full]'")


def dist_version(module_or_dist: str) -> str | None:
    """Installed version of a package, probing every distribution name it ships under."""
    for name in DISTRIBUTIONS.get(module_or_dist, (module_or_dist,)):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
