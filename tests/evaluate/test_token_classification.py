"""evaluate on a token classifier: entity F1 per type from the words' first sub-tokens, in PyTorch and ONNX alike."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_evaluate_scores_entities_as_finetune_did(tiny_ner_teacher, tiny_ner_data):
    from edgewise.core.artifact import Artifact
    from edgewise.evaluate import EvaluateConfig, evaluate

    result = evaluate(tiny_ner_teacher, None, EvaluateConfig(), data=str(tiny_ner_data))
    recorded = Artifact.load(tiny_ner_teacher).manifest.metrics["test"]
    assert result["split"] == "test" and result["samples"] == 60
    # the same words, the same rule (the first sub-token's tag): the figures finetune recorded on test
    for key in ("entity_f1", "entity_precision", "entity_recall", "token_accuracy", "entities"):
        assert result[key] == pytest.approx(recorded[key]), key
    assert set(result["per_type"]) == {"COLOUR", "FRUIT", "SPORT"}


def test_the_onnx_export_agrees_with_its_teacher_word_by_word(tiny_ner_teacher, tiny_ner_data, tmp_path, cli_run):
    from edgewise.export import export

    export(tiny_ner_teacher, tmp_path / "onnx", data=str(tiny_ner_data))
    result = cli_run("evaluate", str(tmp_path / "onnx"), str(tiny_ner_data), "--reference", str(tiny_ner_teacher),
                     "--json")
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["backend"] == "ort-cpu" and scored["reference"]["tag_agreement"] == 1.0
    assert scored["entity_f1"] == pytest.approx(scored["reference"]["entity_f1"])
    assert scored["reference"]["entity_f1_share"] == pytest.approx(1.0)


def test_a_token_classifier_on_a_device_target_is_refused(tiny_ner_teacher, tiny_ner_data, cli_run):
    from tests.conftest import assert_user_error

    result = cli_run("evaluate", str(tiny_ner_teacher), str(tiny_ner_data), "--target", "ssh://user@127.0.0.1")
    assert_user_error(result, "evaluate --target does not serve token-classification models yet", "evaluate here")
