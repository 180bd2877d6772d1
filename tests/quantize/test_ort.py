import numpy as np
import pytest

from edgewise.quantize.config import QuantizeConfig
from edgewise.quantize.ort import TextBatches, int8_settings, quantizable_nodes


@pytest.mark.parametrize("cpu, family, reduce_range, per_channel", [
    # Per-channel scales everywhere: a pruned movie-review student lost 3.9 points with per-tensor on VNNI,
    # 7-bit weights (x86 without VNNI) lost 0.94 points with per-tensor on an AVX2-only EPYC.
    ({"arch": "x86_64", "isa": ["avx2", "avx512f", "avx512_vnni"]}, "x86-vnni", False, True),
    ({"arch": "x86_64", "isa": ["avx2", "avx_vnni"]}, "x86-vnni", False, True),
    ({"arch": "x86_64", "isa": ["avx2", "avx512f"]}, "x86", True, True),
    ({"arch": "x86_64", "isa": ["avx2"]}, "x86", True, True),
    ({"arch": "aarch64", "isa": []}, "arm", False, True),
])
def test_int8_settings_follow_the_instruction_set(cpu, family, reduce_range, per_channel):
    settings = int8_settings(QuantizeConfig(), cpu)

    assert settings["cpu_family"] == family and settings["reduce_range"] is reduce_range
    assert settings["per_channel"] is per_channel
    assert settings["weight_type"] == "int8" and settings["activation_type"] == "uint8"
    assert settings["chosen_by"] == "cpu" and settings["reason"]


def test_int8_settings_keep_what_the_user_chose():
    settings = int8_settings(QuantizeConfig(method="static", reduce_range=False, weight_type="uint8",
                                            activation_type="int8", per_channel=True),
                             {"arch": "x86_64", "isa": ["avx2"]})

    assert settings["reduce_range"] is False and settings["weight_type"] == "uint8"
    assert settings["activation_type"] == "int8" and settings["per_channel"] and settings["chosen_by"] == "user"


def test_int8_settings_per_tensor_on_request_on_a_cpu_without_vnni():
    settings = int8_settings(QuantizeConfig(per_channel=False), {"arch": "x86_64", "isa": ["avx2"]})

    assert settings["per_channel"] is False and settings["reduce_range"] is True
    assert settings["chosen_by"] == "cpu and user"


def _encode(texts, pairs):
    width = max(len(t.split()) for t in texts)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    for row, text in enumerate(texts):
        ids[row, : len(text.split())] = 1
    return {"input_ids": ids}


def test_text_batches_group_texts_by_length_and_pad_each_batch_to_its_longest():
    texts = ["a b c d e f", "a", "a b", "a b c d e f g h", "a b c"]
    batches = TextBatches(_encode, texts, None, batch_size=2)

    widths = [b["input_ids"].shape for b in iter(batches.get_next, None)]

    assert len(batches) == 3 and widths == [(2, 2), (2, 6), (1, 8)]


def test_text_batches_serve_one_range_at_a_time():
    batches = TextBatches(_encode, ["a", "a b", "a b c"], None, batch_size=1)

    batches.set_range(1, 2)

    assert batches.get_next()["input_ids"].shape == (1, 2) and batches.get_next() is None


def test_quantizable_nodes_lists_matmuls_and_embedding_lookups_only(tiny_onnx):
    import onnx

    nodes = quantizable_nodes(tiny_onnx / "model.onnx", QuantizeConfig().op_types)
    without_gather = quantizable_nodes(tiny_onnx / "model.onnx", QuantizeConfig().op_types, ("Gather",))

    weights = {t.name for t in onnx.load(str(tiny_onnx / "model.onnx")).graph.initializer}
    gathers = [n for n in onnx.load(str(tiny_onnx / "model.onnx")).graph.node if n.op_type == "Gather"]
    assert {n["op_type"] for n in nodes} == {"MatMul", "Gemm", "Gather"}  # the pooler and classifier are Gemm
    assert {n["name"] for n in nodes if n["op_type"] == "Gather"} == {g.name for g in gathers if g.input[0] in weights}
    assert [n for n in nodes if n["op_type"] != "Gather"] == without_gather


def _quantized_inputs(path):
    """MatMuls whose second operand (the weight, or K / V in attention) comes through DequantizeLinear.

    The first operand is no guide: a quantized node's input activation is shared by its siblings."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in dequantized}


def test_static_quantization_of_chosen_nodes_only_or_all_but_excluded(tiny_onnx, tiny_data, tmp_path):
    from edgewise.core.data import load_splits
    from edgewise.quantize.ort import preprocess, quantize_static
    from edgewise.runtime.predictor import Predictor

    pre = tmp_path / "pre.onnx"
    preprocess(tiny_onnx / "model.onnx", pre)
    matmuls = [n["name"] for n in quantizable_nodes(pre, ("MatMul",))]
    texts = load_splits(str(tiny_data))["train"].texts[:16]
    batches = TextBatches(Predictor(tiny_onnx).encode, texts, None, 8)
    settings = int8_settings(QuantizeConfig(method="static", per_channel=True), {"arch": "x86_64", "isa": []})
    config = QuantizeConfig(method="static")

    quantize_static(pre, tmp_path / "all.onnx", settings, config, batches, tmp_path / "cache.json")
    quantize_static(pre, tmp_path / "one.onnx", settings, config, None, tmp_path / "cache.json",
                    only_nodes=(matmuls[0],))
    quantize_static(pre, tmp_path / "but.onnx", settings, config, None, tmp_path / "cache.json",
                    exclude_node=(matmuls[0],))

    assert _quantized_inputs(tmp_path / "one.onnx") == {matmuls[0]}  # ranges came from the cache
    assert _quantized_inputs(tmp_path / "but.onnx") == _quantized_inputs(tmp_path / "all.onnx") - {matmuls[0]}
    assert len(_quantized_inputs(tmp_path / "all.onnx")) == len(matmuls)


def test_static_default_leaves_softmax_and_elementwise_ops_in_fp32(tiny_onnx, tiny_data, tmp_path):
    import onnx

    from edgewise.quantize import quantize

    quantize(tiny_onnx, tmp_path / "s8", QuantizeConfig(method="static", samples=16, calibration=str(tiny_data)))
    quantize(tiny_onnx, tmp_path / "all", QuantizeConfig(method="static", samples=16, op_types="MatMul,Softmax,Add",
                                                         calibration=str(tiny_data)))

    def fed_by_dq(path, op):
        graph = onnx.load(str(path / "model.onnx")).graph
        dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        return any(i in dq for n in graph.node if n.op_type == op for i in n.input)

    assert fed_by_dq(tmp_path / "s8", "MatMul") and not fed_by_dq(tmp_path / "s8", "Softmax")
    assert fed_by_dq(tmp_path / "all", "Softmax")
