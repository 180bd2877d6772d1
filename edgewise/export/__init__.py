"""Export: ONNX (verified against PyTorch), ORT mobile format, TensorRT engines, deploy bundles."""

from edgewise.export.bundle import bundle
from edgewise.export.config import BundleConfig, ExportConfig, ExportFormat, OrtTarget
from edgewise.export.stage import export

__all__ = ["BundleConfig", "ExportConfig", "ExportFormat", "OrtTarget", "bundle", "export"]
