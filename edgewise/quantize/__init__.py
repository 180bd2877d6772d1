"""Post-training quantization: ONNX INT8 (dynamic, static QDQ), FP16, INC INT8 for PyTorch, and the
accuracy-aware search."""

from edgewise.quantize.stage import quantize

__all__ = ["quantize"]
