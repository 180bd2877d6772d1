from pathlib import Path

import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.export import ExportConfig, export
from edgewise.export.parity import check, compare
from tests.conftest import ARCHITECTURES


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_export_onnx_matches_pytorch_for_each_architecture(teacher_of, tiny_data, tmp_path, arch):
    teacher = teacher_of(arch)

    manifest = export(teacher, tmp_path / "onnx", ExportConfig(verify_samples=40), data=str(tiny_data))

    parity = manifest.metrics["parity"]
    assert parity["max_abs_diff"] < 1e-4 and parity["label_agreement"] == 1.0 and parity["samples"] == 40
    inputs = manifest.metrics["onnx"]["inputs"]
    expected = {"input_ids", "attention_mask"} | ({"token_type_ids"} if arch == "bert" else set())
    assert set(inputs) == expected
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]  # dynamic batch and sequence axes
    assert manifest.metrics["onnx"]["opset"] == 17
    assert manifest.parent["manifest_sha256"] == Manifest.read(teacher).sha256
    assert Artifact.load(tmp_path / "onnx", kind="onnx").labels == Artifact.load(teacher).labels
    assert (tmp_path / "onnx" / "tokenizer.json").is_file() and manifest.data["max_length"] == 32


def test_export_without_data_checks_generated_shapes(tiny_teacher, tmp_path):
    manifest = export(tiny_teacher, tmp_path / "onnx", ExportConfig(opset=18))

    assert manifest.metrics["parity"]["samples"] == 1 + 2 + 4  # batches of 1, 2 and 4
    assert manifest.metrics["parity"]["max_abs_diff"] < 1e-4 and manifest.metrics["onnx"]["opset"] == 18


def test_export_optimize_fuses_attention_and_stays_in_parity(tiny_teacher, tmp_path):
    manifest = export(tiny_teacher, tmp_path / "opt", ExportConfig(optimize=True))

    fusions = manifest.metrics["fusions"]
    assert fusions["Attention"] == 2 and fusions["SkipLayerNormalization"] >= 2  # one per layer
    assert manifest.metrics["parity_optimized"]["max_abs_diff"] < 1e-4
    assert "warnings" not in manifest.metrics


def test_export_optimize_says_so_loudly_when_attention_does_not_fuse(tiny_teacher, tmp_path, monkeypatch, capfd):
    import edgewise.export.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "optimize", lambda path, cfg: dict.fromkeys(onnx_export.FUSED_OPS, 0))

    manifest = export(tiny_teacher, tmp_path / "opt", ExportConfig(optimize=True))

    assert "no Attention fusion" in manifest.metrics["warnings"][0]
    assert "WARNING" in capfd.readouterr().err


def test_export_parity_miss_is_an_error_and_leaves_nothing(tiny_teacher, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import edgewise.export.onnx as onnx_export

    real = onnx_export.model_runner
    monkeypatch.setattr(onnx_export, "model_runner",
                        lambda model, task=None: SimpleNamespace(scores=lambda batch: real(model).scores(batch) + 0.5))

    with pytest.raises(EdgewiseError) as info:
        export(tiny_teacher, tmp_path / "onnx", ExportConfig())
    assert "logits: max |diff| 0.5" in str(info.value) and "--no-verify" in str(info.value)
    assert list(tmp_path.iterdir()) == []

    manifest = export(tiny_teacher, tmp_path / "onnx", ExportConfig(verify=False))
    assert "parity" not in manifest.metrics


def test_compare_shape_mismatch_is_fatal_and_check_lists_outputs():
    import numpy as np

    batches = [{"input_ids": np.zeros((2, 4), dtype=np.int64)}]
    with pytest.raises(EdgewiseError, match=r"shape \(2, 3\) in the exported model but \(2, 2\)"):
        compare(lambda b: np.zeros((2, 2)), lambda b: np.zeros((2, 3)), batches)

    result = compare(lambda b: np.array([[1.0, 0.0], [0.0, 1.0]]), lambda b: np.array([[1.0, 0.2], [0.3, 0.0]]),
                     batches)
    assert result["label_agreement"] == 0.5 and result["max_abs_diff"] == pytest.approx(1.0)
    with pytest.raises(EdgewiseError, match="logits: max"):
        check(result, 1e-4, "x")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [("opset", 9, "opset must be between"), ("atol", 0, "atol"), ("verify_samples", 0, "verify_samples"),
     ("batch", "4:2:8", "MIN <= OPT <= MAX"), ("seq", "a:b:c", "not a profile"), ("workspace_mb", 1, "workspace"),
     ("optimize", True, "--optimize applies to --format onnx")],
)
def test_export_config_rejects_bad_values(field, value, fragment):
    kwargs = {field: value}
    if field == "optimize":
        kwargs["format"] = "ort"
    with pytest.raises(EdgewiseError) as info:
        ExportConfig(**kwargs)
    assert fragment in str(info.value)


def _rewrite_initializer(model_path, name: str, change) -> None:
    """Replace the initializer ``name`` of the ONNX file by ``change(its values)``, in place."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor)), name))
    onnx.save(model, str(model_path))


@pytest.fixture
def diverging_export(monkeypatch):
    """Make optimum's export write a graph that is no longer the PyTorch model: after the real export,
    the classifier initializer ``name`` of model.onnx is replaced by ``change(values)``."""
    import optimum.exporters.onnx

    def diverge(name: str, change):
        real = optimum.exporters.onnx.onnx_export_from_model

        def export_then_change(model, output, *args, **kwargs):
            real(model, output, *args, **kwargs)
            _rewrite_initializer(Path(output) / "model.onnx", name, change)

        # write_onnx imports onnx_export_from_model from the module when it runs, so the module attribute is
        # what it calls.
        monkeypatch.setattr(optimum.exporters.onnx, "onnx_export_from_model", export_then_change)

    return diverge


def _max_diff_listed(message: str, output: str = "logits") -> float:
    import re

    found = re.search(rf"{output}: max \|diff\| (\S+?)[;)]", message)
    assert found, message
    return float(found.group(1))


def test_export_real_divergence_is_an_error_listing_outputs_and_writes_nothing(tiny_teacher, diverging_export,
                                                                               tmp_path):
    diverging_export("classifier.weight", lambda w: w * 3)

    with pytest.raises(EdgewiseError) as info:
        export(tiny_teacher, tmp_path / "onnx", ExportConfig())

    message = str(info.value)
    assert message.startswith("the exported model does not match its source within atol 0.0001")
    assert _max_diff_listed(message) > 1e-4  # the output named, with its largest difference
    assert list(tmp_path.iterdir()) == []  # neither onnx/ nor .onnx.partial/


def test_export_optimize_real_divergence_after_fusing_is_an_error_and_writes_nothing(tiny_teacher, tmp_path,
                                                                                     monkeypatch):
    import edgewise.export.onnx as onnx_export

    real = onnx_export.optimize

    def optimize_then_change(path, model_config):
        fusions = real(path, model_config)
        _rewrite_initializer(path, "classifier.weight", lambda w: w * 3)
        return fusions

    monkeypatch.setattr(onnx_export, "optimize", optimize_then_change)

    with pytest.raises(EdgewiseError) as info:
        export(tiny_teacher, tmp_path / "opt", ExportConfig(optimize=True))

    message = str(info.value)
    assert message.startswith("the optimised ONNX model does not match its source")
    assert _max_diff_listed(message) > 1e-4
    assert list(tmp_path.iterdir()) == []


def test_export_nan_logits_are_an_error_and_write_nothing(tiny_teacher, diverging_export, tmp_path):
    import numpy as np

    diverging_export("classifier.bias", lambda b: np.full_like(b, np.nan))

    with pytest.raises(EdgewiseError) as info:
        export(tiny_teacher, tmp_path / "onnx", ExportConfig())

    message = str(info.value)
    assert message.startswith("the exported model produces NaN logits"), message
    assert "in output 'logits'" in message and "its source does not" in message
    assert list(tmp_path.iterdir()) == []


def test_compare_keeps_nan_and_inf_that_a_running_max_would_drop():
    import numpy as np

    batches = [{"input_ids": np.zeros((2, 2), dtype=np.int64)}]
    finite = lambda b: np.array([[1.0, 0.0], [0.0, 1.0]])  # noqa: E731

    result = compare(finite, lambda b: np.array([[1.0, 0.0], [np.nan, np.inf]]), batches)

    assert result["max_abs_diff"] == float("inf")
    assert result["outputs"]["logits"]["nonfinite"]["candidate"] == {"nan": 1, "inf": 1}
    with pytest.raises(EdgewiseError, match=r"the x produces NaN logits \(1 of 4 values NaN, 1 of 4 values inf\)"):
        check(result, 1e-4, "the x")
    with pytest.raises(EdgewiseError, match="the source of the x produces infinite logits"):
        check(compare(lambda b: np.array([[np.inf, 0.0], [0.0, 1.0]]), finite, batches), 1e-4, "the x")


def _initializer_shapes(model_path) -> dict:
    import onnx

    return {i.name: list(i.dims) for i in onnx.load(str(model_path)).graph.initializer}


def test_export_cli_writes_the_smaller_shapes_of_a_pruned_model_in_parity(cli_run, tiny_pruned, tiny_data, tmp_path):
    path, _ = tiny_pruned

    result = cli_run("export", path, "-o", tmp_path / "onnx", "--data", tiny_data)

    assert result.exit_code == 0, (result.output, result.exception)
    manifest = Manifest.read(tmp_path / "onnx")
    assert manifest.metrics["parity"]["max_abs_diff"] < 1e-4 and manifest.metrics["parity"]["label_agreement"] == 1
    shapes = _initializer_shapes(tmp_path / "onnx" / "model.onnx")
    # Layer 0 keeps 1 of 2 heads (Q/K/V 32 -> 16 wide), layer 1 keeps 32 of 64 FFN neurons.
    assert shapes["bert.encoder.layer.0.attention.self.query.bias"] == [16]
    assert shapes["bert.encoder.layer.1.intermediate.dense.bias"] == [32]
    # optimum names the transposed MatMul weights onnx::MatMul_*, in graph order: Q, K, V, O, FFN in, FFN out.
    matmuls = [shape for name, shape in shapes.items() if name.startswith("onnx::MatMul")]
    assert matmuls == [[32, 16]] * 3 + [[16, 32], [32, 64], [64, 32]] + [[32, 32]] * 6


def test_export_optimize_of_a_model_with_pruned_heads_reads_heads_per_layer_and_stays_in_parity(
        tiny_pruned, tiny_data, tmp_path, monkeypatch):
    import onnxruntime.transformers.optimizer as ort_optimizer

    real, seen = ort_optimizer.optimize_model, {}

    def spy(*args, **kwargs):
        seen.update(num_heads=kwargs["num_heads"], hidden_size=kwargs["hidden_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(ort_optimizer, "optimize_model", spy)

    manifest = export(tiny_pruned[0], tmp_path / "opt", ExportConfig(optimize=True), data=str(tiny_data))

    assert seen == {"num_heads": 0, "hidden_size": 0}  # not the config's global 2 heads of 32
    assert manifest.metrics["fusions"]["Attention"] == 2  # each layer fused with the heads its graph has
    assert manifest.metrics["parity_optimized"]["max_abs_diff"] < 1e-4
    assert manifest.metrics["parity_optimized"]["label_agreement"] == 1.0


def test_export_optimize_passes_the_global_head_count_for_an_unpruned_model(tiny_teacher, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import onnxruntime.transformers.optimizer as ort_optimizer

    import edgewise.export.onnx as onnx_export

    seen = {}

    def fake(path, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(ort_optimizer, "optimize_model", fake)
    with pytest.raises(RuntimeError, match="stop"):
        onnx_export.optimize(tmp_path / "model.onnx", SimpleNamespace(model_type="bert", num_attention_heads=2,
                                                                       hidden_size=32, pruned_heads={}))
    assert seen["num_heads"] == 2 and seen["hidden_size"] == 32


def test_export_optimize_of_a_model_with_pruned_heads_checks_parity_even_with_no_verify(tiny_pruned, tmp_path):
    manifest = export(tiny_pruned[0], tmp_path / "opt", ExportConfig(optimize=True, verify=False))

    assert "parity" not in manifest.metrics
    assert manifest.metrics["parity_optimized"]["max_abs_diff"] < 1e-4


def test_an_embedding_model_exports_with_its_pooling_in_the_graph(tiny_embedder, tiny_embedder_onnx, tiny_corpus):
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from edgewise.core.tasks.embedding import pool
    from edgewise.runtime import Predictor

    manifest = Manifest.read(tiny_embedder_onnx)
    texts = Path(tiny_corpus).read_text().splitlines()[:5]
    tokenizer = AutoTokenizer.from_pretrained(tiny_embedder)
    model = AutoModel.from_pretrained(tiny_embedder).eval()
    with torch.no_grad():
        encoded = tokenizer(texts, padding=True, return_tensors="pt")
        expected = pool(model(**encoded).last_hidden_state, encoded["attention_mask"], "mean", True).numpy()

    assert manifest.task == {"name": "embedding", "pooling": "mean", "normalize": True, "dimension": 32}
    assert manifest.metrics["onnx"]["outputs"]["sentence_embedding"] == ["batch_size", 32]
    assert manifest.metrics["parity"]["cosine_min"] > 0.9999 and "label_agreement" not in manifest.metrics["parity"]
    assert manifest.data["max_length"] == 32  # sentence_bert_config.json's max_seq_length, not the 64 positions
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):  # still a ST model
        assert (tiny_embedder_onnx / name).is_file()
    assert np.abs(Predictor(tiny_embedder_onnx).embed(texts) - expected).max() < 1e-5


@pytest.mark.slow
def test_a_plain_encoder_named_an_embedding_model_on_the_command_line_goes_through_export_evaluate_and_bench(
        cli_run, tiny_encoder, tiny_corpus, tiny_pairs, tmp_path):
    # A bare encoder (no sentence-transformers files, no labels): --task embedding --pooling cls makes it one,
    # export records that, and evaluate / bench read the export's record and take the encoder's from the options.
    import json

    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from edgewise.runtime import Predictor

    exported = cli_run("export", tiny_encoder, "-o", tmp_path / "onnx", "--data", tiny_corpus, "--task", "embedding",
                       "--pooling", "cls", "--normalize")
    assert exported.exit_code == 0, exported.output
    assert Manifest.read(tmp_path / "onnx").task == {"name": "embedding", "pooling": "cls", "normalize": True,
                                                     "dimension": 32}
    texts = ["apple banana the very", "football golf we"]
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_encoder), AutoModel.from_pretrained(tiny_encoder).eval()
    with torch.no_grad():
        cls = model(**tokenizer(texts, padding=True, return_tensors="pt")).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(cls, dim=-1).numpy()
    assert np.abs(Predictor(tmp_path / "onnx").embed(texts) - expected).max() < 1e-5

    evaluated = cli_run("evaluate", tmp_path / "onnx", tiny_pairs, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.stdout)
    # The default reference is the encoder it was exported from, pooled as the export records.
    assert scores["reference"]["path"] == str(tiny_encoder) and scores["reference"]["cosine_min"] > 0.9999

    without = cli_run("bench", "run", tiny_encoder, tmp_path / "onnx", "--pairs", tiny_pairs, "--data", tiny_corpus,
                      "--min-runs", 5, "--min-time", 0.01, "--rounds", 1, "--warmup", 1, "--json")
    assert without.exit_code == 2 and "--task embedding" in without.stderr
    benched = cli_run("bench", "run", tiny_encoder, tmp_path / "onnx", "--pairs", tiny_pairs, "--data", tiny_corpus,
                      "--task", "embedding", "--pooling", "cls", "--normalize", "--min-runs", 5, "--min-time", 0.01,
                      "--rounds", 1, "--warmup", 1, "--json")
    assert benched.exit_code == 0, benched.output
    rows = {r["artifact"]: r for r in json.loads(benched.stdout)["results"]}
    # 40 pairs of a random tiny model: cosines 1e-5 apart swap a few ranks, so Spearman agrees to 0.02.
    assert rows["onnx"]["spearman"] == pytest.approx(rows[tiny_encoder.name]["spearman"], abs=0.02)
    assert rows["onnx"]["cosine_min"] > 0.9999
