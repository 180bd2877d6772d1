"""`hf` -> `onnx`: optimum-onnx's exporter, a parity check against PyTorch, optional ORT fusions."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.core.progress import console
from edgewise.export.parity import check, compare, generated_batches, parity_line, text_batches
from edgewise.runtime.predictor import KNOWN_INPUTS
from edgewise.runtime.pytorch import model_runner
from edgewise.runtime.runners import onnx_scores
from edgewise.runtime.sizes import model_files, model_size

TWO_GB = 2 * 1024**3
# HF model types ONNX Runtime's optimiser handles with its BERT fusions, and which therefore
# should show Attention fusions; zero of them is a regression worth shouting about.
ORT_MODEL_TYPES = {
    "bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert", "electra": "bert",
    "camembert": "bert", "ernie": "bert",
}
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu", "LayerNormalization")


def check_optimizable(model_config) -> str:
    model_type = getattr(model_config, "model_type", None) or model_config.get("model_type", "")
    if model_type not in ORT_MODEL_TYPES:
        raise EdgewiseError(
            f"--optimize knows encoder types {', '.join(sorted(ORT_MODEL_TYPES))}, not {model_type!r}; "
            "export without --optimize"
        )
    return ORT_MODEL_TYPES[model_type]


@contextlib.contextmanager
def working_directory(path: Path):
    """ORT and optimum drop temporary files into the current directory: keep them in the work folder."""
    previous = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


# What dynamic quantization writes (activation scales computed at run time): ONNX Runtime runs it, TensorRT
# does not.
DYNAMIC_INT8_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger")


def graph_summary(path: Path) -> dict:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as e:
        raise EdgewiseError(
            f"{path} is not a readable ONNX model ({type(e).__name__}: {str(e)[:200]}); re-export it"
        ) from None
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    unknown = [name for name in inputs if name not in KNOWN_INPUTS]
    if unknown:
        raise EdgewiseError(
            f"{path} takes input(s) {', '.join(unknown)}; edgewise runs text classifiers whose inputs are "
            f"{', '.join(KNOWN_INPUTS)} (export it with edgewise export)"
        )
    return {
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "inputs": {i.name: dims(i) for i in model.graph.input if i.name not in initializers},
        "outputs": {o.name: dims(o) for o in model.graph.output},
        "nodes": len(model.graph.node),
        "size_bytes": model_size(path),
        # Static QDQ quantization puts QuantizeLinear on activations; dynamic quantization does not.
        "qdq": any(n.op_type == "QuantizeLinear" for n in model.graph.node),
        "asymmetric_qdq": _asymmetric_qdq(model.graph, path.parent),  # what TensorRT cannot build
        "ort_only_ops": sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"}
                               | {n.op_type for n in model.graph.node if n.op_type in DYNAMIC_INT8_OPS}),
        "dynamic_int8": any(n.op_type in DYNAMIC_INT8_OPS for n in model.graph.node),
    }


def _asymmetric_qdq(graph, base_dir: Path) -> int:
    """How many QuantizeLinear / DequantizeLinear nodes have a uint8 or non-zero zero point."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in graph.initializer}
    constants = {out: node.attribute[0].t for node in graph.node if node.op_type == "Constant" and node.attribute
                 for out in node.output if node.attribute[0].name == "value"}
    count = 0
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3 or not node.input[2]:
            continue
        tensor = initializers.get(node.input[2]) or constants.get(node.input[2])
        if tensor is None:
            continue
        zero = numpy_helper.to_array(tensor, base_dir=str(base_dir))
        if zero.dtype.name == "uint8" or zero.any():
            count += 1
    return count


def parity_inputs(tokenizer, texts, pairs, max_length: int, input_names, vocab_size: int) -> list[dict]:
    """Batches from real texts when given, else generated token ids of several shapes."""
    if texts:
        def encode(batch_texts, batch_pairs):
            enc = tokenizer(batch_texts, batch_pairs, truncation=True, max_length=max_length, padding=True,
                            return_tensors="np")
            return {k: enc[k].astype("int64") for k in input_names if k in enc}

        return text_batches(encode, texts, pairs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return generated_batches(input_names, vocab_size, max_length, pad)


def optimize(path: Path, model_config) -> dict:
    """ORT's transformer optimiser in place; returns the fused-operator counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = check_optimizable(model_config)
    heads = getattr(model_config, "num_attention_heads", None) or getattr(model_config, "n_heads", 0)
    hidden = getattr(model_config, "hidden_size", None) or getattr(model_config, "dim", 0)
    if getattr(model_config, "pruned_heads", None):
        # Pruned heads: layers have their own head counts, and the config's global one would mis-fuse them.
        # 0 / 0 makes ORT read each layer's heads and width from its Reshape shapes, or leave it unfused.
        heads, hidden = 0, 0
    before = model_files(path)
    external = sum(p.stat().st_size for p in before) > TWO_GB
    optimized = optimize_model(str(path), model_type=model_type, num_heads=heads, hidden_size=hidden,
                               opt_level=None, use_gpu=False)
    stats = optimized.get_fused_operator_statistics()
    for stale in before:  # the optimised model is written afresh, with its own data file if it needs one
        stale.unlink()
    optimized.save_model_to_file(str(path), use_external_data_format=external)
    return {op: int(stats.get(op, 0)) for op in FUSED_OPS}


def write_onnx(model, dst: Path, *, opset: int, work: Path, what: str, preprocessors=None, task=None) -> Path:
    """optimum-onnx's export of the loaded ``model`` for its ``task`` (core.tasks; default a classifier: its
    text-classification export) into ``dst`` (its temporary files in ``work``), the task's graph finished (an
    embedding model's pooling); returns dst/model.onnx. ``model.config.pad_token_id`` must be set (optimum needs
    one)."""
    from optimum.exporters.onnx import onnx_export_from_model

    from edgewise.core.tasks.classification import Classification

    task = task or Classification()
    with working_directory(work):
        try:
            onnx_export_from_model(model, str(dst), opset=opset, task=task.export_task, do_validation=False,
                                   device="cpu", preprocessors=preprocessors)
        except (ValueError, KeyError, NotImplementedError) as e:
            raise EdgewiseError(
                f"optimum-onnx cannot export {what} ({model.config.model_type}): "
                f"{str(e).splitlines()[0][:300]}; try another --opset"
            ) from None
    path = Path(dst) / "model.onnx"
    task.finish_graph(path)
    return path


def export_onnx(artifact, out, config, texts, pairs, max_length: int, task) -> dict:
    """Export the `hf` artifact, a model of ``task`` (core.tasks), into ``out.artifact``; returns the metrics for
    the manifest."""
    from optimum.utils.save_utils import maybe_load_preprocessors

    from edgewise.core.models import ModelSource, load_tokenizer

    source = ModelSource(str(artifact.path), str(artifact.path), True)
    # The model is loaded once, strictly, and that object is exported: optimum's main_export would reload the
    # folder with plain from_pretrained, which fills a missing classification head with random weights without
    # a word and cannot build a pruned model (per-layer FFN widths, edgewise_ffn_sizes).
    model = task.load(source, config.allow_pickle).eval()
    model_config = model.config
    if model_config.pad_token_id is None:  # optimum's text-classification export needs one, as main_export does
        model_config.pad_token_id = load_tokenizer(source).pad_token_id
    console().print(f"exporting {artifact.path} ({model_config.model_type}, {task.describe()}) to ONNX opset "
                    f"{config.opset}")
    path = write_onnx(model, out.artifact, opset=config.opset, work=out.work / "tmp", what=str(artifact.path),
                      preprocessors=maybe_load_preprocessors(str(artifact.path)), task=task)
    summary = graph_summary(path)
    metrics = {"onnx": summary}
    if not config.verify and not config.optimize:
        return metrics

    tokenizer = load_tokenizer(source)
    batches = parity_inputs(tokenizer, texts, pairs, max_length, list(summary["inputs"]), model_config.vocab_size)
    # Both sides run through the runtime: PyTorch as the torch backend does, ONNX in the session the runtime builds.
    reference = model_runner(model, task=task).scores
    exported = lambda: onnx_scores(path, output=task.output_name)  # noqa: E731
    if config.verify:
        metrics["parity"] = compare(reference, exported(), batches, task.output_name)
        console().print(parity_line("ONNX vs PyTorch", metrics["parity"]))
        check(metrics["parity"], config.atol, "the exported model")
    if config.optimize:
        with working_directory(out.work / "tmp"):
            fusions = optimize(path, model_config)
        metrics["fusions"] = fusions
        metrics["onnx"] = graph_summary(path)
        attention = fusions["Attention"] + fusions["MultiHeadAttention"]
        console().print("fused: " + ", ".join(f"{k} {v}" for k, v in fusions.items() if v))
        if attention == 0:
            warning = (f"no Attention fusion in a {model_config.model_type} model: the attention pattern "
                       "changed (a transformers / torch attention-backend change?) and the optimised model "
                       "will be slower than it should")
            metrics["warnings"] = [warning]
            console().print(f"[bold red]WARNING[/bold red]: {warning}")
        # Layers with their own head counts are where ORT's fusions have gone wrong: checked even with --no-verify.
        if config.verify or getattr(model_config, "pruned_heads", None):
            metrics["parity_optimized"] = compare(reference, exported(), batches, task.output_name)
            console().print(parity_line("optimised ONNX vs PyTorch", metrics["parity_optimized"]))
            check(metrics["parity_optimized"], config.atol, "the optimised ONNX model")
    return metrics

