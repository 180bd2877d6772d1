import json

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.export import BundleConfig, ExportConfig, ExportFormat, bundle, export
from edgewise.runtime import Predictor


def test_bundle_holds_model_tokenizer_labels_and_usage(tiny_bundle, tiny_onnx):
    names = sorted(p.name for p in tiny_bundle.iterdir())

    assert names == ["README.txt", "edgewise.json", "labels.json", "model.onnx", "tokenizer.json"]
    manifest = Manifest.read(tiny_bundle)
    assert manifest.kind == "bundle" and manifest.data["max_length"] == 32
    assert manifest.data["model_file"] == "model.onnx" and manifest.data["inputs"] == [
        "input_ids", "attention_mask", "token_type_ids"]
    assert json.loads((tiny_bundle / "labels.json").read_text()) == {"0": "colour", "1": "fruit", "2": "sport"}
    assert "python -m edgewise.runtime predict" in (tiny_bundle / "README.txt").read_text()
    assert manifest.parent["path"] == str(tiny_onnx)


def test_bundle_predictions_match_the_onnx_artifact(tiny_bundle, tiny_onnx):
    texts = ["apple banana the very", "football golf we", "red orange some"]

    assert [r["label"] for r in Predictor(tiny_bundle).predict(texts)] == ["fruit", "sport", "colour"]
    assert abs(Predictor(tiny_bundle).outputs(texts) - Predictor(tiny_onnx).outputs(texts)).max() == 0


def test_bundle_prefers_the_ort_model(tiny_onnx, tmp_path):
    export(tiny_onnx, tmp_path / "ort", ExportConfig(format=ExportFormat.ORT))

    manifest = bundle(tmp_path / "ort", tmp_path / "deploy", BundleConfig(max_length=16))

    assert manifest.data["model_file"] == "model.ort" and (tmp_path / "deploy" / "model.ort").is_file()
    assert Predictor(tmp_path / "deploy").max_length == 16


def test_bundle_refuses_a_missing_model_format(tiny_onnx, tmp_path):
    with pytest.raises(EdgewiseError, match="has no model.ort"):
        bundle(tiny_onnx, tmp_path / "deploy", BundleConfig(model_format="ort"))
    assert list(tmp_path.iterdir()) == []


def test_bundle_copies_external_weight_files_and_runs(external_onnx, tmp_path):
    bundle(external_onnx, tmp_path / "deploy", BundleConfig(max_length=32))

    assert (tmp_path / "deploy" / "model.onnx_data").stat().st_size > 10_000
    assert Predictor(tmp_path / "deploy").predict(["apple banana"])[0]["label"] == "fruit"


def test_bundle_writes_tokenizer_json_from_slow_tokenizer_files(tiny_onnx, tmp_path):
    import shutil

    from transformers import BertTokenizer

    folder = tmp_path / "slow"
    shutil.copytree(tiny_onnx, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "edgewise.json"):
        (folder / name).unlink()
    vocab = json.loads((tiny_onnx / "tokenizer.json").read_text())["model"]["vocab"]
    (folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)

    bundle(folder, tmp_path / "deploy")

    assert (tmp_path / "deploy" / "tokenizer.json").is_file()
    assert Predictor(tmp_path / "deploy").predict(["apple banana"])[0]["label"] == "fruit"


def test_an_embedding_bundle_ships_what_its_clients_read(tiny_embedder_bundle, tiny_embedder_onnx):
    names = sorted(p.relative_to(tiny_embedder_bundle).as_posix() for p in tiny_embedder_bundle.rglob("*")
                   if p.is_file())

    assert names == ["1_Pooling/config.json", "README.txt", "config.json", "edgewise.json", "model.onnx",
                     "modules.json", "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json",
                     "tokenizer_config.json"]  # no labels.json: vectors, not labels
    max_length = Manifest.read(tiny_embedder_bundle).data["max_length"]
    # fastembed truncates at tokenizer_config's model_max_length, sentence-transformers at max_seq_length.
    assert json.loads((tiny_embedder_bundle / "tokenizer_config.json").read_text())["model_max_length"] == max_length
    assert json.loads((tiny_embedder_bundle / "sentence_bert_config.json").read_text())["max_seq_length"] == max_length
    readme = (tiny_embedder_bundle / "README.txt").read_text()
    assert "python -m edgewise.runtime embed" in readme and 'backend="onnx"' in readme
    texts = ["apple banana the very", "football golf we"]
    assert abs(Predictor(tiny_embedder_bundle).embed(texts) - Predictor(tiny_embedder_onnx).embed(texts)).max() == 0


LONG = " ".join(["apple banana cherry the very"] * 20)  # longer than the bundle's 32 tokens: truncation must agree
CLIENT_TEXTS = ["apple banana the very", "football golf we like", "red", LONG, "grape lemon and tennis today"]


def _cosines(a, b):
    import numpy as np

    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_sentence_transformers_onnx_backend_loads_the_bundle_and_gives_the_runtimes_vectors(tiny_embedder_bundle):
    from sentence_transformers import SentenceTransformer

    client = SentenceTransformer(str(tiny_embedder_bundle), backend="onnx", local_files_only=True,
                                 model_kwargs={"provider": "CPUExecutionProvider"})

    theirs = client.encode(CLIENT_TEXTS)
    ours = Predictor(tiny_embedder_bundle).embed(CLIENT_TEXTS)

    assert _cosines(theirs, ours).min() >= 0.9999 and abs(theirs - ours).max() < 1e-5


def test_fastembed_custom_model_loads_the_bundle_and_gives_the_runtimes_vectors(tiny_embedder_bundle, monkeypatch,
                                                                                 tmp_path):
    import numpy as np

    fastembed = pytest.importorskip("fastembed")  # in the dev extra; the runtime itself does not need it
    from fastembed.common.model_description import ModelSource, PoolingType

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = f"edgewise/tiny-{tmp_path.name}"  # fastembed keeps a process-wide registry of custom models
    fastembed.TextEmbedding.add_custom_model(
        model=name, pooling=PoolingType.DISABLED, normalization=False, sources=ModelSource(hf=name), dim=32,
        model_file="model.onnx", output_name="sentence_embedding")
    client = fastembed.TextEmbedding(model_name=name, specific_model_path=str(tiny_embedder_bundle),
                                     cache_dir=str(tmp_path), local_files_only=True)

    theirs = np.stack(list(client.embed(CLIENT_TEXTS)))
    ours = Predictor(tiny_embedder_bundle).embed(CLIENT_TEXTS)

    assert _cosines(theirs, ours).min() >= 0.9999


def test_fastembed_truncates_where_the_runtime_does_whatever_the_source_tokenizer_config_says(tiny_embedder,
                                                                                            monkeypatch, tmp_path):
    """all-MiniLM-L6-v2's tokenizer_config says max_length 128 beside model_max_length 512, and fastembed
    truncates at the smaller: the bundle sets both to its own max_length."""
    import shutil

    import numpy as np

    fastembed = pytest.importorskip("fastembed")
    from fastembed.common.model_description import ModelSource, PoolingType

    from edgewise.export import bundle, export

    source = tmp_path / "embedder"
    shutil.copytree(tiny_embedder, source)
    settings = json.loads((source / "tokenizer_config.json").read_text())
    (source / "tokenizer_config.json").write_text(json.dumps({**settings, "max_length": 4}))
    export(source, tmp_path / "onnx")
    bundle(tmp_path / "onnx", tmp_path / "bundle")
    written = json.loads((tmp_path / "bundle" / "tokenizer_config.json").read_text())
    assert written["max_length"] == written["model_max_length"] > 4

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = f"edgewise/tiny-{tmp_path.name}"
    fastembed.TextEmbedding.add_custom_model(
        model=name, pooling=PoolingType.DISABLED, normalization=False, sources=ModelSource(hf=name), dim=32,
        model_file="model.onnx", output_name="sentence_embedding")
    client = fastembed.TextEmbedding(model_name=name, specific_model_path=str(tmp_path / "bundle"),
                                     cache_dir=str(tmp_path), local_files_only=True)
    texts = ["the red apple and the green apple are very good today and we like them really"]  # > 4 tokens
    theirs = np.stack(list(client.embed(texts)))
    assert _cosines(theirs, Predictor(tmp_path / "bundle").embed(texts)).min() >= 0.9999
