"""INT8 quantization of ONNX classifiers with onnxruntime.quantization: dynamic, and static QDQ."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgewise.core.env import VNNI_FLAGS, cpu_family
from edgewise.core.errors import EdgewiseError
from edgewise.quantize.config import FP16_KEEP_OPS, INT8_OPS, CalibrationMethod, IntType, QuantizeConfig


def int8_settings(config: QuantizeConfig, cpu: dict) -> dict:
    """Weight / activation types, range reduction and scale granularity, from the config or else from the CPU.

    onnxruntime's x86 INT8 kernels multiply uint8 activations by int8 weights. Without VNNI the
    AVX2 / AVX-512 instruction (vpmaddubsw) adds pairs of products into int16, which saturates with
    full-range int8 weights: 7-bit weights (reduce_range) avoid that. With VNNI (and on ARM, whose
    dot-product instructions accumulate in int32) full 8 bits are safe.

    7-bit weights with one scale per tensor lose too much: on a 2-core AMD EPYC (Zen 3, AVX2, no
    VNNI), dynamic INT8 of the MiniLM-L6 BBC teacher scored 97.18 % on the test split against
    98.12 % in FP32 (agreement 99.1 %), while per-channel scales lost nothing (98.12 %) and were no
    slower (p50 at 128 tokens, 1 thread, one interleaved run: per-tensor 24.29 ms, per-channel
    23.54 ms, FP32 39.47 ms; reported in issue 10, and the accuracies reproduced with 7-bit weights
    on a VNNI machine by benchmarks/cpu_quantize_defaults_isa_minilm.py). So x86 without VNNI
    defaults to per-channel.

    With full 8 bits (VNNI, ARM) per-tensor scales were enough for the teacher (98.12 % at 2.53x, per-channel
    the same at 2.57x), but not for pruned models, whose least-squares refit leaves output projections
    with uneven column ranges: the movie-review 3-layer student pruned to 50 % FLOPs scored 79.56 % on
    validation with per-tensor dynamic INT8 against 83.07 % with per-channel scales, the FP32 model's own
    83.25 % (AVX-512 VNNI EPYC, 2026-12-01, two edgewise compress runs: benchmarks/results/
    compress_minilm_movies_pertensor.json and compress_minilm_movies.json). So
    every CPU family defaults to per-channel scales.
    """
    family = cpu_family(cpu)
    if family == "arm":
        reduce, why = False, "ARM: int32 dot products, full 8-bit weights, per-channel scales"
    elif family == "x86-vnni":
        reduce = False
        why = (f"x86 with {sorted(set(cpu.get('isa', ())) & set(VNNI_FLAGS))[0]}: full 8-bit weights, per-channel "
               "scales")
    else:
        reduce = True
        why = ("x86 without VNNI: 7-bit weights avoid int16 saturation (reduce_range), with per-channel scales "
               "so the 7 bits lose no accuracy")
    weight = "int8" if config.weight_type is IntType.AUTO else config.weight_type.value
    activation = "uint8" if config.activation_type is IntType.AUTO else config.activation_type.value
    reduce_range = reduce if config.reduce_range is None else config.reduce_range
    per_channel = True if config.per_channel is None else config.per_channel
    automatic = (config.reduce_range is None, config.weight_type is IntType.AUTO, config.per_channel is None)
    return {"cpu_family": family, "weight_type": weight, "activation_type": activation,
            "reduce_range": reduce_range, "per_channel": per_channel,
            "chosen_by": "cpu" if all(automatic) else "user" if not any(automatic) else "cpu and user",
            "reason": why}


@contextlib.contextmanager
def scratch_cwd() -> Iterator[Path]:
    """onnxruntime and neural-compressor write temporary files into the current directory: give them one.

    The quantizer also logs a warning on the root logger for every 1-D weight it declines to quantize
    per channel (LayerNorm scales); those are expected, so warnings are muted meanwhile.
    """
    import logging
    import sys

    previous, muted = Path.cwd(), logging.root.manager.disable
    with tempfile.TemporaryDirectory(prefix="edgewise-quant-") as folder:
        os.chdir(folder)
        logging.disable(max(muted, logging.WARNING))
        try:
            # The histogram calibrators print progress on stdout, which belongs to --json.
            with contextlib.redirect_stdout(sys.stderr):
                yield Path(folder)
        finally:
            logging.disable(muted)
            os.chdir(previous)


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def read_graph(model_path: Path):
    """The ONNX model without its external weights, parsed once per file version: the search asks
    about the same pre-processed file for every candidate and every layer it probes. Read-only."""
    stat = Path(model_path).stat()
    return _read_graph(str(model_path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _read_graph(path: str, mtime_ns: int, size: int):
    import onnx

    return onnx.load(path, load_external_data=False)


def contrib_ops(model_path: Path) -> list[str]:
    """Operators of onnxruntime's own domain (a graph that went through the transformer optimiser)."""
    model = read_graph(model_path)
    return sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"})


def preprocess(src: Path, dst: Path) -> dict:
    """onnxruntime's pre-processing (shape inference, graph clean-up) before quantization.

    Symbolic shape inference needs auto-merge here (without it: "Incomplete symbolic shape
    inference"); it is what gives the tensors behind fused ops (Attention, SkipLayerNormalization)
    the types calibration needs. If it fails, plain ONNX shape inference is used; if that fails too,
    the model is quantized as it is. Which one ran is recorded.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    errors = []
    for mode, options in (("symbolic", {"auto_merge": True, "guess_output_rank": True}),
                          ("onnx", {"skip_symbolic_shape": True})):
        try:
            with scratch_cwd():
                quant_pre_process(str(src), str(dst), **options)
            return {"preprocessed": mode}
        except Exception as e:  # noqa: BLE001 - a failure only means trying the next, plainer pre-processing
            errors.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    import onnx

    onnx.save(onnx.load(str(src)), str(dst))  # external data, if any, read in and written inline
    return {"preprocessed": None, "preprocess_errors": errors}


def _extra_options(model_path: Path) -> dict:
    import onnx

    # Weights that the transformer optimiser folded into fused ops carry no type information the
    # quantizer can find ("Unable to find data type for weight_name"): tell it they are FP32.
    return {"DefaultTensorType": onnx.TensorProto.FLOAT} if contrib_ops(model_path) else {}


def quantizable_nodes(model_path: Path, op_types: tuple[str, ...], exclude_op: tuple[str, ...] = ()) -> list[dict]:
    """The layers INT8 quantization touches (nodes of ``op_types`` not excluded), in graph order."""
    model = read_graph(model_path)
    weights = {t.name for t in model.graph.initializer}
    return [{"name": n.name, "op_type": n.op_type} for n in model.graph.node
            if n.op_type in op_types and n.op_type not in exclude_op and n.name
            and (n.op_type != "Gather" or n.input[0] in weights)]  # embedding tables, not shape lookups


def _op_types(config: QuantizeConfig) -> list[str]:
    return sorted(set(config.op_types) - set(config.exclude_op))


QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
                 "DynamicQuantizeMatMul", "QLinearMatMul", "MatMulNBits", "QAttention", "QGemm")



def check_source(model_path: Path, config: QuantizeConfig) -> None:
    """Refuse a file that is not ONNX, a model that is already quantized or in FP16, node names the graph
    does not have, and operator types no ONNX model has (a typo would silently quantize nothing)."""
    import onnx

    from edgewise.export.onnx import FUSED_OPS

    try:
        model = read_graph(model_path)
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError, OSError, ValueError... for a bad file
        raise EdgewiseError(
            f"{model_path} is not a readable ONNX model ({type(e).__name__}); re-create it with edgewise export"
        ) from None
    ops = {n.op_type for n in model.graph.node}
    if ops & set(QUANTIZED_OPS) or any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        found = sorted(ops & set(QUANTIZED_OPS)) or ["FP16 weights"]
        raise EdgewiseError(
            f"{model_path} is already quantized ({', '.join(found[:4])}); quantize its FP32 parent instead "
            "(edgewise lineage shows it)"
        )
    # ONNX's own operators, the model's (onnxruntime's fused contrib ops among them) and the contrib ops the
    # optimiser and FP16 conversion know: a name outside these is a typo that would quietly quantize (or keep)
    # nothing.
    known_ops = ({s.name for s in onnx.defs.get_all_schemas_with_history()} | ops | set(INT8_OPS) | set(FUSED_OPS)
                 | set(FP16_KEEP_OPS) | {"FusedMatMul"})
    for flag, named in (("--op-types", config.op_types), ("--exclude-op", config.exclude_op),
                        ("--fp16-keep-ops", config.fp16_keep_ops)):
        if said := _unknown(named, known_ops):
            raise EdgewiseError(f"{flag} names operator types that are neither ONNX operators nor in this model: "
                                f"{said}; its types are {', '.join(sorted(ops))}")
    if said := _unknown(config.exclude_node, [n.name for n in model.graph.node]):
        raise EdgewiseError(f"--exclude-node names no node of {model_path.name}: {said}; node names are listed by "
                            "onnx.load(...).graph.node or Netron")


def _unknown(named, known) -> str | None:
    """The names in ``named`` that ``known`` lacks, each with its closest known names; None when all are known."""
    import difflib

    known = sorted(set(known))
    unknown = [n for n in named if n not in set(known)]
    if not unknown:
        return None
    hints = {u: difflib.get_close_matches(u, known, n=2) for u in unknown}
    return "; ".join(f"{u!r}" + (f" (did you mean {', '.join(h)}?)" if h else "") for u, h in hints.items())


def _fail(what: str, e: Exception) -> EdgewiseError:
    return EdgewiseError(
        f"onnxruntime could not {what} ({type(e).__name__}: {str(e).splitlines()[0][:300]}); the model may use "
        "operators the quantizer does not handle: leave them in FP32 with --exclude-op / --exclude-node, or "
        "quantize the model exported without --optimize"
    )


def quantize_dynamic(src: Path, dst: Path, settings: dict, config: QuantizeConfig,
                     exclude_node: tuple[str, ...] = (), only_nodes: tuple[str, ...] | None = None) -> None:
    """Dynamic INT8: weights quantized ahead of time, activations at run time (uint8)."""
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    try:
        with scratch_cwd():
            ort_quantize_dynamic(
                str(src), str(dst),
                per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                weight_type=_quant_type(settings["weight_type"]),
                op_types_to_quantize=_op_types(config),
                nodes_to_exclude=list(dict.fromkeys((*config.exclude_node, *exclude_node))),
                nodes_to_quantize=list(only_nodes) if only_nodes is not None else None,
                extra_options=_extra_options(src),
            )
    except (ValueError, RuntimeError, KeyError, AttributeError) as e:
        raise _fail("quantize the model dynamically", e) from None


class TextBatches:
    """Calibration batches for onnxruntime: texts sorted by length, each batch padded to its longest.

    onnxruntime asks for the data in ranges (``set_range``); with a range of one batch, only that
    batch's activations are held in memory before they are folded into the running ranges or
    histograms, whatever the number of calibration texts.
    """

    def __init__(self, encode, texts: list[str], pairs: list[str] | None, batch_size: int):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + (len(pairs[i]) if pairs else 0))
        self._encode = encode
        self._batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        self._texts, self._pairs = texts, pairs
        self.set_range(0, len(self._batches))

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pending = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict | None:
        batch = next(self._pending, None)
        if batch is None:
            return None
        return self._encode([self._texts[i] for i in batch], [self._pairs[i] for i in batch] if self._pairs else None)


def _calibration_method(method: CalibrationMethod):
    from onnxruntime.quantization import CalibrationMethod as OrtMethod

    return {CalibrationMethod.MINMAX: OrtMethod.MinMax, CalibrationMethod.ENTROPY: OrtMethod.Entropy,
            CalibrationMethod.PERCENTILE: OrtMethod.Percentile}[method]


def quantize_static(src: Path, dst: Path, settings: dict, config: QuantizeConfig, batches: TextBatches | None,
                    cache: Path, method: CalibrationMethod | None = None, exclude_node: tuple[str, ...] = (),
                    only_nodes: tuple[str, ...] | None = None) -> None:
    """Static INT8 in QDQ format. Activation ranges come from ``batches``, or from ``cache`` when it
    exists (written by an earlier call with the same method), so variants calibrate once."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    method = method or config.calibration_method
    reader = None
    if batches is not None and not cache.is_file():
        reader = batches  # onnxruntime's CalibrationDataReader is a protocol: get_next, __len__, set_range
        reader.set_range(0, len(batches))
    symmetric = settings["activation_type"] == "int8"  # TensorRT wants symmetric int8 activations
    extra = {
        **_extra_options(src),
        "CalibStridedMinMax": 1,  # one batch per collection step: memory bounded by a batch
        "ActivationSymmetric": symmetric,
        "WeightSymmetric": True,
    }
    if method is CalibrationMethod.PERCENTILE:
        extra["CalibPercentile"] = config.percentile
    try:
        with scratch_cwd():
            ort_quantize_static(
                str(src), str(dst), reader,
                quant_format=QuantFormat.QDQ,
                per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                activation_type=_quant_type(settings["activation_type"]),
                weight_type=_quant_type(settings["weight_type"]),
                op_types_to_quantize=_op_types(config),
                nodes_to_exclude=list(dict.fromkeys((*config.exclude_node, *exclude_node))),
                nodes_to_quantize=list(only_nodes) if only_nodes is not None else None,
                calibrate_method=_calibration_method(method),
                extra_options=extra,
                calibration_cache_path=str(cache),
            )
    except (ValueError, RuntimeError, KeyError, AttributeError, AssertionError) as e:
        raise _fail(f"quantize the model statically ({method.value} calibration)", e) from None
