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
    assert abs(Predictor(tiny_bundle).logits(texts) - Predictor(tiny_onnx).logits(texts)).max() == 0


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
