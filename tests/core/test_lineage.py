import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.lineage import lineage
from edgewise.core.manifest import Manifest
from edgewise.evaluate import EvaluateConfig


def _child(parent_dir, path, **kw):
    path.mkdir()
    (path / "model.onnx").write_bytes(b"x")
    return Manifest.write(path, kind="onnx", stage="export", config=EvaluateConfig(), labels={}, started_at="t",
                          parent=Manifest.read(parent_dir), **kw)


def test_lineage_walks_back_to_the_pretrained_encoder(tiny_teacher, tmp_path):
    _child(tiny_teacher, tmp_path / "onnx")

    chain = lineage(tmp_path / "onnx")

    assert [e["stage"] for e in chain] == ["export", "finetune", "pretrained"]
    assert all(e["status"] in ("ok", "recorded") for e in chain)
    assert chain[1]["metrics"]["split"] == "test" and chain[1]["metrics"]["accuracy"] >= 0.9
    assert chain[2]["kind"] == "source" and len(chain[2]["weights_sha256"]) == 64


def test_lineage_flags_a_changed_or_missing_parent(tmp_path):
    parent = tmp_path / "p"
    parent.mkdir()
    (parent / "w").write_text("1")
    Manifest.write(parent, kind="hf", stage="finetune", config=EvaluateConfig(), labels={}, started_at="t")
    _child(parent, tmp_path / "c")
    Manifest.write(parent, kind="hf", stage="finetune", config=EvaluateConfig(split="x"), labels={}, started_at="t")

    assert "not the recorded parent" in lineage(tmp_path / "c")[1]["status"]

    import shutil
    shutil.rmtree(parent)
    assert lineage(tmp_path / "c")[1]["status"].startswith("missing")


def test_lineage_needs_a_manifest(tmp_path):
    with pytest.raises(EdgewiseError, match="has no edgewise.json"):
        lineage(tmp_path)


def test_training_data_is_found_through_the_parents(tiny_onnx, tiny_data):
    from edgewise.core.lineage import training_data

    spec, settings = training_data(tiny_onnx)  # the export records none; its parent, the teacher, does

    assert spec == str(tiny_data) and settings["label_column"] == "label"


def test_training_data_of_a_folder_edgewise_did_not_write_is_none(tmp_path):
    from edgewise.core.lineage import training_data

    assert training_data(tmp_path) is None


def test_lineage_shows_the_accuracy_a_quantized_model_kept(tiny_onnx, tmp_path):
    from edgewise.core.lineage import lineage
    from edgewise.quantize import quantize

    manifest = quantize(tiny_onnx, tmp_path / "int8")

    head = lineage(tmp_path / "int8")[0]
    assert head["stage"] == "quantize" and head["status"] == "ok"
    assert head["metrics"]["accuracy"] == manifest.metrics["accuracy"]["test"]["quantized"]["accuracy"]


def test_lineage_flags_an_artifact_whose_own_manifest_was_edited(tmp_path, cli_run):
    import json

    parent = tmp_path / "p"
    parent.mkdir()
    (parent / "w").write_text("1")
    Manifest.write(parent, kind="hf", stage="finetune", config=EvaluateConfig(), labels={}, started_at="t",
                   metrics={"test": {"accuracy": 0.81, "macro_f1": 0.8}})
    _child(parent, tmp_path / "c")
    data = json.loads((tmp_path / "c" / "edgewise.json").read_text())
    data["stage"] = "quantize"
    (tmp_path / "c" / "edgewise.json").write_text(json.dumps(data))

    chain = lineage(tmp_path / "c")

    assert "edgewise.json: edited since edgewise wrote it" in chain[0]["status"]
    assert chain[1]["status"] == "ok"
    result = cli_run("lineage", tmp_path / "c", "--json")
    assert result.exit_code == 0 and "edited since edgewise wrote it" in json.loads(result.stdout)[0]["status"]
