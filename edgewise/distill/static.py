"""A static student of an embedding teacher: no attention, no layers, one table of token vectors.

The method is model2vec's (Tulkens and van Dongen, 2024, github.com/MinishLab/model2vec, its `distill`):

1. every token of the teacher's vocabulary is embedded alone by the teacher, as "[CLS] token [SEP]", and
   mean-pooled over those three positions (the teacher's own pooling for a CLS-pooling teacher);
2. the table is reduced by PCA to ``dims`` dimensions (which also centres it);
3. each row is weighted by SIF, a / (a + p), with p a Zipf estimate of the token's frequency from its rank in
   the vocabulary (a = 1e-4): frequent, uninformative tokens weigh less.

A text's vector is the mean of its tokens' rows, special and unknown tokens left out, L2-normalised. The exported
graph does exactly that (Gather, a masked mean, normalisation: ``write_graph``), so the student runs in
onnxruntime like every other candidate, in bench, bundles and on devices.

model2vec itself is not used: its 0.9.0 keeps the MiniLM tokenizer's fixed padding of 128 tokens inside the
distilled tokenizer, so pad rows enter every mean (cosine 0.19 for the text "a" against the unpadded result),
fixed upstream only after that release; and its inference would be a second runtime.
"""

from __future__ import annotations

import re
from pathlib import Path

SIF_COEFFICIENT = 1e-4  # model2vec's default
UNUSED = re.compile(r"^\[unused\d+\]$")  # BERT's placeholder tokens: never produced by the tokenizer


def token_table(model, tokenizer, task, dims: int, batch_size: int = 512, progress=None):
    """(the table [vocabulary, dims] float32, the 0/1 ``keep`` vector of tokens a text's mean counts) of the
    teacher ``model`` (its ``task``: an embedding task, whose pooling is used without normalisation)."""
    import numpy as np
    import torch
    from sklearn.decomposition import PCA

    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    special = set(tokenizer.all_special_ids)
    kept = sorted(i for token, i in vocab.items() if i not in special and not UNUSED.match(token))
    first, last = _frame(tokenizer)
    width = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    vectors = np.zeros((len(kept), width), dtype=np.float32)
    pooling = "mean" if task.pooling == "max" else task.pooling  # max over three positions: mean, as model2vec
    with torch.inference_mode():
        for start in range(0, len(kept), batch_size):
            ids = kept[start:start + batch_size]
            rows = [first + [i] + last for i in ids]
            inputs = {"input_ids": torch.tensor(rows), "attention_mask": torch.ones(len(rows), len(rows[0]),
                                                                                    dtype=torch.long)}
            from edgewise.core.models import model_inputs
            from edgewise.core.tasks.embedding import pool

            outputs = model(**model_inputs(model, {**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"])}))
            vectors[start:start + len(ids)] = pool(outputs.last_hidden_state, inputs["attention_mask"], pooling,
                                                   False).float().numpy()
            if progress is not None:
                progress(len(ids))
    dims = min(dims or width, width, len(kept))
    reduced = vectors.astype(np.float64)
    if dims < width:  # at the teacher's width the table stays in its space (a rotation would only hide that)
        reduced = PCA(n_components=dims, svd_solver="full", random_state=0).fit_transform(reduced)
    ranks = np.arange(len(kept), dtype=np.float64)  # token ids in order: model2vec's Zipf assumption
    frequency = (1 / (ranks + 2)) / (1 / (ranks + 2)).sum()
    reduced *= (SIF_COEFFICIENT / (SIF_COEFFICIENT + frequency))[:, None]
    table = np.zeros((size, dims), dtype=np.float32)
    table[kept] = reduced.astype(np.float32)
    keep = np.zeros(size, dtype=np.float32)
    keep[kept] = 1.0
    return table, keep


def _frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a single text ([CLS] / [SEP], <s> / </s>)."""
    marker = tokenizer.convert_tokens_to_ids(tokenizer.unk_token) if tokenizer.unk_token else 0
    ids = tokenizer.build_inputs_with_special_tokens([marker])
    at = ids.index(marker)
    return ids[:at], ids[at + 1:]


def write_graph(table, keep, path: Path, opset: int = 17) -> dict:
    """model.onnx of the static model: input_ids and attention_mask in, ``sentence_embedding`` out (the masked mean
    of the tokens' rows, special and unknown tokens excluded, L2-normalised; a text of no counted token gives the
    zero vector)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows"], name="rows"),  # [batch, tokens, dims]
        helper.make_node("Gather", ["keep", "input_ids"], ["counted"], name="counted"),  # [batch, tokens]
        helper.make_node("Cast", ["attention_mask"], ["mask"], name="mask", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["mask", "counted"], ["weights"], name="weights"),
        helper.make_node("Unsqueeze", ["weights", "last_axis"], ["weights3"], name="weights3"),
        helper.make_node("Mul", ["rows", "weights3"], ["weighted"], name="weighted"),
        helper.make_node("ReduceSum", ["weighted", "axis1"], ["summed"], name="summed", keepdims=0),
        helper.make_node("ReduceSum", ["weights3", "axis1"], ["count"], name="count", keepdims=0),
        helper.make_node("Max", ["count", "one"], ["divisor"], name="divisor"),
        helper.make_node("Div", ["summed", "divisor"], ["mean"], name="mean"),
        helper.make_node("ReduceL2", ["mean"], ["norm"], name="norm", axes=[1], keepdims=1) if opset < 18 else
        helper.make_node("ReduceL2", ["mean", "axis1"], ["norm"], name="norm", keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["norm_clamped"], name="norm_clamped"),
        helper.make_node("Div", ["mean", "norm_clamped"], ["sentence_embedding"], name="sentence_embedding"),
    ]
    initializers = [numpy_helper.from_array(np.asarray(table, dtype=np.float32), "table"),
                    numpy_helper.from_array(np.asarray(keep, dtype=np.float32), "keep"),
                    const("last_axis", [-1], np.int64), const("axis1", [1], np.int64), const("one", 1.0),
                    const("eps", 1e-12)]
    graph = helper.make_graph(
        nodes, "edgewise_static_embedding",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch_size", int(table.shape[1])])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgewise")
    model.ir_version = 8  # onnxruntime reads IR 8 from 1.14 on
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"vocabulary": int(table.shape[0]), "dimension": int(table.shape[1]), "tokens_counted": int(keep.sum()),
            "opset": opset}
