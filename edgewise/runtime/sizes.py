"""How big a model is on disk: the one answer bench, quantize, export and the runtime report."""

from __future__ import annotations

from pathlib import Path

# The file that holds the weights of each artifact kind, the first present counting.
MODEL_FILES = {"hf": ("model.safetensors",), "onnx": ("model.onnx",), "ort": ("model.ort",),
               "bundle": ("model.onnx", "model.ort"), "tensorrt": ("model.engine", "model.onnx"),
               "inc": ("model.pt2", "quantized_weight.pt")}


def model_files(path: Path) -> list[Path]:
    """The model file at ``path`` and its external-data files (optimum writes model.onnx_data,
    onnxruntime model.onnx.data): every file beside it whose name starts with its name."""
    path = Path(path)
    return sorted(p for p in path.parent.iterdir() if p.is_file() and p.name.startswith(path.name))


def model_size(path: Path, kind: str | None = None) -> int:
    """Bytes on disk of a model's weights, external data included.

    ``path`` is a model file, or an artifact folder of ``kind`` (read from its edgewise.json, or
    detected, when None): its model file per MODEL_FILES; for `hf` every safetensors shard, else
    the pickle weights.

    Example:
        >>> model_size(Path("runs/teacher-onnx/model.onnx")) == model_size(Path("runs/teacher-onnx"))  # doctest: +SKIP
        True
    """
    path = Path(path)
    if path.is_file():
        return sum(p.stat().st_size for p in model_files(path))
    if kind is None:
        from edgewise.core.artifact import detect_kind
        from edgewise.runtime.runners import read_manifest

        kind = read_manifest(path).get("kind") or detect_kind(path)
    if kind != "hf":
        for name in MODEL_FILES.get(kind, ()):
            if (path / name).is_file():
                return sum(p.stat().st_size for p in model_files(path / name))
    weights = list(path.glob("*.safetensors")) or list(path.glob("pytorch_model*.bin"))  # shards too
    return sum(p.stat().st_size for p in weights)
