import json
import shutil

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.models import ModelSource, load_classifier
from edgewise.core.structure import (
    FFN_SIZES_KEY,
    encoder_layers,
    ffn_sizes,
    head_counts,
    recorded_ffn_sizes,
    resize_ffn,
)
from tests.conftest import assert_user_error


def _source(path):
    return ModelSource(str(path), str(path), True)


def _logits(model, tokenizer, texts):
    import torch

    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**encoded).logits


def _copy(path, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(path, dst)
    return dst


def test_load_classifier_reloads_a_pruned_model_with_the_same_logits(tiny_pruned):
    import torch
    from transformers import AutoTokenizer

    path, pruned = tiny_pruned
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ["the apple is very red", "we like tennis today and it is really golf", "a"]

    model = load_classifier(_source(path))

    assert head_counts(model) == [1, 2] and ffn_sizes(model) == [64, 32]
    assert not model.training
    torch.testing.assert_close(_logits(model, tokenizer, texts), _logits(pruned, tokenizer, texts), atol=1e-6,
                               rtol=0)


def test_load_classifier_keeps_attn_implementation_for_a_pruned_model(tiny_pruned):
    model = load_classifier(_source(tiny_pruned[0]), attn_implementation="eager")

    assert model.config._attn_implementation == "eager" and ffn_sizes(model) == [64, 32]


def test_load_classifier_gives_a_pruned_model_a_fresh_head_when_asked(tiny_pruned):
    labels = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}

    model = load_classifier(_source(tiny_pruned[0]), new_head=True, num_labels=5, id2label=labels,
                            label2id={v: k for k, v in labels.items()}, ignore_mismatched_sizes=True)

    assert model.classifier.weight.shape[0] == 5 and ffn_sizes(model) == [64, 32]


def test_plain_from_pretrained_fails_on_a_pruned_folder(tiny_pruned):
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(RuntimeError, match="size mismatch"):
        AutoModelForSequenceClassification.from_pretrained(tiny_pruned[0])


def test_load_classifier_refuses_a_pruned_folder_missing_a_weight(tiny_pruned, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _copy(tiny_pruned[0], tmp_path)
    weights = load_file(path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if k != "classifier.weight"}, path / "model.safetensors")

    with pytest.raises(EdgewiseError, match=r"holds no trained classifier: it lacks classifier.weight"):
        load_classifier(_source(path))


def test_load_classifier_refuses_a_pruned_folder_with_a_wrong_shape_or_extra_weight(tiny_pruned, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    path = _copy(tiny_pruned[0], tmp_path)
    weights = load_file(path / "model.safetensors")
    name = "bert.encoder.layer.1.intermediate.dense.weight"
    weights[name] = torch.zeros(48, 32)
    weights["bert.encoder.layer.1.extra"] = torch.zeros(2)
    save_file(weights, path / "model.safetensors")

    with pytest.raises(EdgewiseError) as info:
        load_classifier(_source(path))

    message = str(info.value)
    assert f"{name} (stored [48, 32], expected [32, 32])" in message
    assert "bert.encoder.layer.1.extra" in message and "re-run edgewise prune" in message


def test_load_classifier_refuses_ffn_sizes_that_do_not_fit_the_layers(tiny_pruned, tmp_path):
    path = _copy(tiny_pruned[0], tmp_path)
    config = json.loads((path / "config.json").read_text())
    config[FFN_SIZES_KEY] = [64, 32, 32]
    (path / "config.json").write_text(json.dumps(config))

    with pytest.raises(EdgewiseError, match=r"gives 3 FFN widths but the model has 2 layers"):
        load_classifier(_source(path))


def test_load_classifier_refuses_ffn_sizes_the_weights_do_not_have(tiny_pruned, tmp_path):
    path = _copy(tiny_pruned[0], tmp_path)
    config = json.loads((path / "config.json").read_text())
    config[FFN_SIZES_KEY] = [64, 64]
    (path / "config.json").write_text(json.dumps(config))

    with pytest.raises(EdgewiseError, match=r"layer.1.intermediate.dense.weight \(stored \[32, 32\], expected"):
        load_classifier(_source(path))


@pytest.mark.parametrize("sizes", [[64, "32"], [64, -1], "64"])
def test_recorded_ffn_sizes_rejects_what_is_not_a_width_per_layer(sizes):
    with pytest.raises(EdgewiseError, match="list of non-negative integers"):
        recorded_ffn_sizes({FFN_SIZES_KEY: sizes, "num_hidden_layers": 2})


def test_recorded_ffn_sizes_is_none_for_an_unpruned_config():
    assert recorded_ffn_sizes({"num_hidden_layers": 2}) is None


def test_resize_ffn_replaces_only_the_layers_whose_width_changes(tiny_teacher):
    model = load_classifier(_source(tiny_teacher))
    kept = encoder_layers(model)[0].intermediate.dense

    resize_ffn(model, [64, 16])

    assert ffn_sizes(model) == [64, 16] and encoder_layers(model)[0].intermediate.dense is kept
    assert encoder_layers(model)[1].output.dense.in_features == 16
    with pytest.raises(EdgewiseError, match="one width >= 0 per layer"):
        resize_ffn(model, [64])


def _distilbert(path, **config):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=40, dim=32, n_layers=2, n_heads=2,
                                                                 hidden_dim=64, num_labels=3, **config))
    model.save_pretrained(path)
    return model


def test_encoder_layers_refuses_a_model_whose_layers_are_not_bert_like(tmp_path):
    model = _distilbert(tmp_path)

    with pytest.raises(EdgewiseError, match=r"bert, roberta, xlm-roberta, electra .* not 'distilbert'"):
        encoder_layers(model)


def test_load_classifier_refuses_a_pruned_distilbert(tmp_path):
    _distilbert(tmp_path, **{FFN_SIZES_KEY: [64, 32], "num_hidden_layers": 2})

    with pytest.raises(EdgewiseError, match="not 'distilbert'"):
        load_classifier(_source(tmp_path))


def test_evaluate_runs_a_pruned_model(cli_run, tiny_pruned, tiny_data):
    result = cli_run("evaluate", tiny_pruned[0], tiny_data)

    assert result.exit_code == 0, (result.output, result.exception)


def test_evaluate_reports_a_damaged_pruned_model_as_a_user_error(cli_run, tiny_pruned, tiny_data, tmp_path):
    path = _copy(tiny_pruned[0], tmp_path)
    config = json.loads((path / "config.json").read_text())
    config[FFN_SIZES_KEY] = [64]
    (path / "config.json").write_text(json.dumps(config))

    result = cli_run("evaluate", path, tiny_data)

    assert_user_error(result, "gives 1 FFN widths but the model has 2 layers")
