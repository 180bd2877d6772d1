"""Settings of `edgewise quantize` (no torch / onnx imports here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgewise.core.config import setting
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import TaskConfig


class QuantMethod(str, enum.Enum):
    DYNAMIC = "dynamic"  # ONNX, INT8 weights, activations quantized at run time
    STATIC = "static"  # ONNX, INT8 QDQ with calibrated activation ranges
    FP16 = "fp16"  # ONNX, half precision with fragile ops kept in FP32
    INC = "inc"  # PyTorch INT8 via Intel Neural Compressor 3.x


class CalibrationMethod(str, enum.Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class IntType(str, enum.Enum):
    AUTO = "auto"  # chosen from the CPU's instruction set, recorded in the manifest
    INT8 = "int8"
    UINT8 = "uint8"


class IncApproach(str, enum.Enum):
    DYNAMIC = "dynamic"
    STATIC = "static"


# Ops kept in FP32 by --method fp16: normalisation and softmax lose too much in half precision, and
# the reductions / powers of a decomposed LayerNorm are the same computation spelled out.
FP16_KEEP_OPS = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
                 "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "Softmax",
                 "ReduceMean", "Pow", "Sqrt", "Erf")


# What INT8 quantization touches by default: the matrix products and embedding lookups, where the
# time and the weights are. onnxruntime's own default list also quantizes Softmax, Add and Mul, whose
# QLinear kernels ran slower than FP32 on MiniLM (QLinearSoftmax 2.5 ms against Softmax 0.26 ms per
# run at 128 tokens): static INT8 went from 9.8 to 6.4 ms by leaving them in FP32.
INT8_OPS = ("MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization")


def _ops(value) -> tuple[str, ...]:
    """A tuple of names from a tuple, a list or a comma-separated string (the CLI repeats or joins them)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [v for item in value for v in str(item).split(",")]
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


@dataclass(frozen=True)
class QuantizeConfig:
    """Post-training quantization of an exported ONNX classifier (or of a PyTorch one with `inc`).

    `dynamic` needs no data. `static` calibrates activation ranges on `samples` texts of the
    calibration data. `fp16` keeps the ops in `fp16_keep_ops` in FP32 and the model's inputs and
    outputs as they were. `inc` quantizes the PyTorch model of an `hf` artifact with
    neural-compressor-pt. With `max_accuracy_drop`, candidates are measured and the fastest within
    the drop is kept.

    Example:
        >>> QuantizeConfig(method="static", calibration_method="entropy", samples=300).samples
        300
    """

    # 2: `calibration` (the data that calibrates static INT8) joined the config.
    # 3: per_channel None (the default) means per-channel on every CPU, not only x86 without VNNI; the
    #    version is part of a recipe step's key, so a run folder quantized under the old default reruns.
    SCHEMA_VERSION = 3

    method: QuantMethod = setting(QuantMethod.DYNAMIC, "dynamic (INT8 weights, no data needed), static (INT8 QDQ, "
                                                       "calibrated), fp16, or inc (PyTorch INT8, from an hf artifact).")
    per_channel: bool | None = setting(None, "INT8 weight scales per output channel (--per-channel) or one per "
                                             "tensor (--per-tensor). Default: per-channel on every CPU (7-bit "
                                             "weights without VNNI and pruned models need the finer scales; no "
                                             "slower measured).", flag="--per-channel/--per-tensor")
    weight_type: IntType = setting(IntType.AUTO, "INT8 weight type; auto picks int8 (with a reduced 7-bit range "
                                                 "on x86 CPUs without VNNI).")
    activation_type: IntType = setting(IntType.AUTO, "Static: activation type; auto picks uint8; choose "
                                                     "int8 (symmetric) for TensorRT.")
    reduce_range: bool | None = setting(None, "Quantize weights to 7 bits (avoids saturation on x86 CPUs without "
                                              "VNNI). Default: from the CPU's instruction set.")
    calibration: str | None = setting(None, "Data whose texts calibrate static INT8 (any DATA spec; train split "
                                            "first; labels not needed). Default: --data.")
    calibration_method: CalibrationMethod = setting(CalibrationMethod.MINMAX, "Static: how activation ranges are "
                                                                              "found: minmax, entropy or percentile.")
    samples: int = setting(256, "Static: calibration texts drawn from the calibration data (train split first).")
    calibration_batch_size: int = setting(8, "Static: texts per calibration batch; only one batch of activations "
                                             "is held in memory at a time.")
    percentile: float = setting(99.999, "Static, percentile method: the percentile of |activation| kept.")
    op_types: tuple[str, ...] = setting(INT8_OPS, "INT8: operator types to quantize (comma-separated); others stay "
                                                  "FP32.", sep=",")
    exclude_op: tuple[str, ...] = setting((), "Operator types left in FP32 (comma-separated, or repeat the flag), "
                                              "e.g. Gather.", multiple=True)
    exclude_node: tuple[str, ...] = setting((), "Node names left in FP32 (comma-separated, or repeat the flag).",
                                            multiple=True)
    fp16_keep_ops: tuple[str, ...] = setting(FP16_KEEP_OPS, "FP16: operator types kept in FP32 (comma-separated).",
                                             sep=",")
    inc_approach: IncApproach = setting(IncApproach.DYNAMIC, "INC: dynamic or static (calibrated) INT8.")
    max_accuracy_drop: float | None = setting(None, "Search: try dynamic / static candidates (whatever --method, "
                                                    "--per-channel and --calibration-method say), then the fastest "
                                                    "that misses with its most sensitive layers left in FP32, and "
                                                    "keep the fastest whose validation quality drops by at most "
                                                    "this many points: accuracy points (a classifier), points of the "
                                                    "share of the source's STS Spearman, else of its top-10 "
                                                    "neighbours (an embedding model).",
                                              aliases=("--max-quality-drop",))
    pairs: str | None = setting(None, "Embedding models: scored sentence pairs (sentence1, sentence2, score; e.g. "
                                      "STS-B) whose Spearman gates, per split (validation, test).")
    sensitivity_samples: int = setting(64, "Search: validation texts used by the per-layer sensitivity scan.")
    fallback_layers: tuple[int, ...] = setting((1, 2, 4), "Search: how many of the most sensitive layers the "
                                                          "fallback candidates leave in FP32.", sep=",")
    threads: int = setting(1, "Search: threads for timing the candidates.")
    seq_len: int = setting(128, "Search: tokens per input when timing the candidates (capped at the model's "
                                "max_length); batch size 1.")
    eval_batch_size: int = setting(32, "Texts per batch when measuring accuracy.")
    max_eval_samples: int | None = setting(None, "Measure accuracy on at most this many texts per split "
                                                 "(default: all).")
    atol: float | None = setting(None, "FP16, classifiers: largest |logit difference| from the FP32 model accepted "
                                       "(default 0.05); INT8 is judged by accuracy instead.")
    allow_pickle: bool = setting(False, "INC: allow pytorch_model.bin pickle weights (loading them can run code).")
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        for name, kind in (("method", QuantMethod), ("weight_type", IntType), ("activation_type", IntType),
                           ("calibration_method", CalibrationMethod), ("inc_approach", IncApproach)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                accepted = ", ".join(m.value for m in kind)
                raise EdgewiseError(f"{name} must be one of {accepted}, got {value!r}") from None
        for name in ("op_types", "exclude_op", "exclude_node", "fp16_keep_ops"):
            object.__setattr__(self, name, _ops(getattr(self, name)))
        layers = self.fallback_layers
        try:
            layers = tuple(sorted({int(v) for v in (layers.split(",") if isinstance(layers, str) else layers)}))
        except ValueError:
            raise EdgewiseError(f"fallback_layers must be comma-separated counts, e.g. 1,2,4, got {layers!r}") from None
        object.__setattr__(self, "fallback_layers", layers)
        problems = []
        if not self.op_types:
            problems.append("op_types must name at least one operator type, e.g. MatMul")
        if self.samples < 1:
            problems.append(f"samples must be >= 1, got {self.samples}")
        if self.calibration_batch_size < 1:
            problems.append(f"calibration_batch_size must be >= 1, got {self.calibration_batch_size}")
        if not 50 < self.percentile <= 100:
            problems.append(f"percentile must be in (50, 100], got {self.percentile}")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            problems.append(f"max_accuracy_drop must be between 0 and 100 points, got {self.max_accuracy_drop}")
        if self.sensitivity_samples < 1:
            problems.append(f"sensitivity_samples must be >= 1, got {self.sensitivity_samples}")
        if any(n < 1 for n in layers):
            problems.append(f"fallback_layers must be counts >= 1, got {','.join(map(str, layers))}")
        if self.threads < 1 or self.seq_len < 2 or self.eval_batch_size < 1:
            problems.append("threads and eval_batch_size must be >= 1 and seq_len >= 2")
        if self.max_eval_samples is not None and self.max_eval_samples < 1:
            problems.append(f"max_eval_samples must be >= 1 or unset, got {self.max_eval_samples}")
        if self.atol is not None and self.atol <= 0:
            problems.append(f"atol must be > 0, got {self.atol}")
        if self.max_accuracy_drop is not None and self.method in (QuantMethod.FP16, QuantMethod.INC):
            problems.append("--max-accuracy-drop searches ONNX INT8 candidates; drop --method fp16 / inc to use it")
        if self.method is QuantMethod.DYNAMIC and self.activation_type is IntType.INT8:
            problems.append("dynamic quantization always uses uint8 activations; drop --activation-type")
        if problems:
            raise EdgewiseError("; ".join(problems))

    @property
    def needs_calibration(self) -> bool:
        return (self.method is QuantMethod.STATIC or self.max_accuracy_drop is not None
                or (self.method is QuantMethod.INC and self.inc_approach is IncApproach.STATIC))


def search_config(max_accuracy_drop: float = 1.0, **overrides) -> QuantizeConfig:
    """Preset: the accuracy-aware search with its defaults (1 thread, batch 1, 128 tokens)."""
    return QuantizeConfig(max_accuracy_drop=max_accuracy_drop, **overrides)
