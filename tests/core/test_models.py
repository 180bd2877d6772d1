import json
import shutil

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.models import ModelSource, load_classifier
from tests.conftest import assert_user_error


@pytest.fixture(scope="module")
def headless(tiny_encoder, tmp_path_factory):
    """An encoder saved without a classification head, whose config.json nevertheless names labels."""
    path = tmp_path_factory.mktemp("headless") / "model"
    shutil.copytree(tiny_encoder, path)
    config = json.loads((path / "config.json").read_text())
    labels = ["colour", "fruit", "sport"]
    config.update(id2label={str(i): v for i, v in enumerate(labels)}, label2id={v: i for i, v in enumerate(labels)})
    (path / "config.json").write_text(json.dumps(config))
    return path


def _source(path):
    return ModelSource(str(path), str(path), True)


def test_load_classifier_refuses_a_head_transformers_would_draw_at_random(headless):
    with pytest.raises(EdgewiseError, match=r"holds no trained classifier: it lacks classifier.bias, "
                                            r"classifier.weight.*edgewise finetune"):
        load_classifier(_source(headless))


def test_load_classifier_accepts_a_fresh_head_but_not_a_fresh_encoder_when_fine_tuning(headless, tmp_path):
    assert load_classifier(_source(headless), new_head=True).num_labels == 3

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(headless, broken)
    weights = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.1." not in k}, broken / "model.safetensors")
    with pytest.raises(EdgewiseError, match=r"lacks encoder weights .*encoder.layer.1.*complete pretrained encoder"):
        load_classifier(_source(broken), new_head=True)


def test_load_classifier_loads_a_trained_classifier(tiny_teacher):
    assert load_classifier(_source(tiny_teacher)).config.id2label[0] == "colour"


@pytest.mark.parametrize("command", ["evaluate", "bench", "distill", "quantize-inc", "export"])
def test_commands_refuse_a_classifier_without_trained_head(cli_run, headless, tiny_data, tmp_path, command,
                                                            monkeypatch):
    from edgewise.core import env

    vnni = {"model": "x", "arch": "x86_64", "logical_cores": 2, "isa": ["avx2", "avx512_vnni"]}
    monkeypatch.setattr(env, "cpu_info", lambda *a, **k: vnni)  # INC is refused without VNNI before any load
    args = {"evaluate": ("evaluate", headless, tiny_data),
            "bench": ("bench", headless, "--data", tiny_data, "--rounds", 2, "--min-runs", 2, "--min-time", 0),
            "distill": ("distill", headless, tiny_data, "-o", tmp_path / "student", "--layers", 1),
            "quantize-inc": ("quantize", headless, "-o", tmp_path / "inc", "--method", "inc"),
            "export": ("export", headless, "-o", tmp_path / "onnx")}[command]

    result = cli_run(*args)

    assert_user_error(result, "holds no trained classifier", "classifier.weight", "edgewise finetune")
    assert not [p for p in tmp_path.iterdir() if p.name in ("student", "inc", "onnx") or p.name.endswith(".partial")]


def _foreign_copy(src, dst):
    """``src`` copied without its manifest: a folder from elsewhere."""
    shutil.copytree(src, dst)
    (dst / "edgewise.json").unlink(missing_ok=True)
    return dst


def test_pickle_weights_never_run_code_even_with_allow_pickle(tiny_teacher, tiny_data, tmp_path, cli_run):
    import os

    import torch

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    model = _foreign_copy(tiny_teacher, tmp_path / "model")
    (model / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": Payload()}, model / "pytorch_model.bin")

    refused = cli_run("evaluate", model, tiny_data)
    allowed = cli_run("evaluate", model, tiny_data, "--allow-pickle")  # loaded with weights_only=True

    assert_user_error(refused, "holds only pickle weights", "pass --allow-pickle if you trust the file")
    assert_user_error(allowed, f"cannot load the model in {model}")
    assert not marker.exists()


def test_a_model_that_brings_its_own_code_is_refused_before_anything_loads(tiny_teacher, tiny_data, tmp_path,
                                                                           cli_run):
    model = _foreign_copy(tiny_teacher, tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilClassifier"}
    (model / "config.json").write_text(json.dumps(config))
    (model / "modeling_evil.py").write_text(f"open({str(tmp_path / 'code-ran')!r}, 'w').close()\n")

    for command in (["evaluate", model, tiny_data], ["distill", model, tiny_data, "-o", tmp_path / "out"],
                    ["finetune", model, tiny_data, "-o", tmp_path / "out"]):
        result = cli_run(*command)
        assert_user_error(result, "brings its own Python code (modeling_evil.py, named by auto_map in config.json)",
                          "edgewise never runs a model's own code")
    assert not (tmp_path / "code-ran").exists() and not (tmp_path / "out").exists()


def test_shards_outside_the_model_folder_are_refused(tiny_pruned, tmp_path):
    from safetensors.torch import load_file, save_file

    model = _foreign_copy(tiny_pruned[0], tmp_path / "model")
    save_file(load_file(model / "model.safetensors"), tmp_path / "elsewhere.safetensors")
    (model / "model.safetensors").unlink()
    (model / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"bert.pooler.dense.bias": str(tmp_path / "elsewhere.safetensors")}}))

    with pytest.raises(EdgewiseError, match="names a weights file outside its folder"):
        load_classifier(ModelSource(str(model), str(model), True))  # a pruned model: read through _checkpoint


def test_an_index_naming_shards_outside_the_folder_is_refused_for_any_model(tiny_teacher, tiny_data, tmp_path,
                                                                          cli_run):
    model = _foreign_copy(tiny_teacher, tmp_path / "model")
    (model / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (model / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"bert.pooler.dense.bias": "../elsewhere.safetensors"}}))

    result = cli_run("evaluate", model, tiny_data)

    assert_user_error(result, "names a weights file outside its folder (../elsewhere.safetensors)",
                      "re-save the model with save_pretrained")
