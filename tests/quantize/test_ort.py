import numpy as np
import pytest

from edgewise.quantize.config import QuantizeConfig
from edgewise.quantize.ort import TextBatches, int8_settings, quantizable_nodes


@pytest.mark.parametrize("cpu, family, reduce_range", [
    ({"arch": "x86_64", "isa": ["avx2", "avx512f", "avx512_vnni"]}, "x86-vnni", False),
    ({"arch": "x86_64", "isa": ["avx2", "avx_vnni"]}, "x86-vnni", False),
    ({"arch": "x86_64", "isa": ["avx2", "avx512f"]}, "x86", True),
    ({"arch": "aarch64", "isa": []}, "arm", False),
])
def test_int8_settings_follow_the_instruction_set(cpu, family, reduce_range):
    settings = int8_settings(QuantizeConfig(), cpu)

    assert settings["cpu_family"] == family and settings["reduce_range"] is reduce_range
    assert settings["weight_type"] == "int8" and settings["activation_type"] == "uint8"
    assert settings["chosen_by"] == "cpu" and settings["reason"]


def test_int8_settings_keep_what_the_user_chose():
    settings = int8_settings(QuantizeConfig(method="static", reduce_range=False, weight_type="uint8",
                                            activation_type="int8", per_channel=True),
                             {"arch": "x86_64", "isa": ["avx2"]})

    assert settings["reduce_range"] is False and settings["weight_type"] == "uint8"
    assert settings["activation_type"] == "int8" and settings["per_channel"] and settings["chosen_by"] == "user"


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


def test_quantizable_nodes_lists_matmuls_and_can_leave_an_op_type_out(tiny_onnx):
    nodes = quantizable_nodes(tiny_onnx / "model.onnx")
    without_gather = quantizable_nodes(tiny_onnx / "model.onnx", ("Gather",))

    assert {n["op_type"] for n in nodes} >= {"MatMul", "Gather"}
    assert {n["op_type"] for n in without_gather} == {n["op_type"] for n in nodes} - {"Gather"}
