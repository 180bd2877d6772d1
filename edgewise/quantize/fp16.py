"""FP16 conversion of an ONNX model (a classifier, an embedding model), for GPUs and Jetson: fragile ops stay in
FP32."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.quantize.config import QuantizeConfig

DEFAULT_ATOL = 0.05  # half precision carries ~3 decimal digits; logits of a few units differ in the 3rd
# An embedding model's FP16 vectors against its FP32 ones, the lowest cosine of any text accepted: all-MiniLM-L6-v2
# in FP16 kept 0.9999994 at the lowest over 1,971 STS-B and BBC test texts (onnxruntime 1.32 on the CPU): a
# conversion that lost precision where it matters falls far below.
FP16_COSINE = 0.999


def convert_fp16(src: Path, dst: Path, config: QuantizeConfig) -> dict:
    """Write ``src`` in half precision to ``dst``; inputs and outputs keep their types.

    The ops in ``config.fp16_keep_ops`` (normalisations, softmax, the pieces of a decomposed
    LayerNorm) and the nodes in ``config.exclude_node`` run in FP32 behind Cast nodes.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    present = {n.op_type for n in model.graph.node}
    try:
        converted = convert_float_to_float16(
            model, keep_io_types=True,
            op_block_list=sorted(set(config.fp16_keep_ops) | set(config.exclude_op)),
            node_block_list=list(config.exclude_node) or None,
        )
    except (ValueError, RuntimeError, KeyError) as e:
        raise EdgewiseError(
            f"the FP16 conversion of {src} failed ({type(e).__name__}: {str(e).splitlines()[0][:300]}); keep the "
            "failing operator in FP32 with --exclude-op"
        ) from None
    onnx.save(converted, str(dst))
    ops = Counter(n.op_type for n in converted.graph.node)
    return {
        "kept_fp32_ops": sorted(present & (set(config.fp16_keep_ops) | set(config.exclude_op))),
        "kept_fp32_nodes": list(config.exclude_node),
        "casts_inserted": ops.get("Cast", 0) - Counter(n.op_type for n in model.graph.node).get("Cast", 0),
    }
