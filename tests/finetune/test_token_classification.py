"""finetune --task token-classification: a tag per word from CoNLL / JSONL data, scored as entities."""

from __future__ import annotations

import json

import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from tests.conftest import make_tagged, tiny_finetune_config, write_conll, write_csv

pytestmark = pytest.mark.slow


def test_a_tagged_folder_trains_a_token_classifier(tiny_ner_teacher):
    artifact = Artifact.load(tiny_ner_teacher)
    assert artifact.task.name == "token-classification"
    labels = artifact.classifier_labels()
    assert labels[0] == "O" and "B-FRUIT" in labels.values()
    config = json.loads((tiny_ner_teacher / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    metrics = artifact.manifest.metrics
    # the words' class decides their type: a tiny model learns it; entity F1 is the gate, token accuracy shown
    assert metrics["test"]["entity_f1"] > 0.8
    assert metrics["test"]["entities"] > 60 and "FRUIT" in metrics["test"]["per_type"]
    assert "entity_f1" in metrics["train"]["selected_by"]


def test_jsonl_spans_train_as_conll_does(tiny_encoder, tmp_path):
    from edgewise.finetune import finetune

    rows = []
    for sentence in make_tagged(40, seed=5, lengths=(1, 2)):
        text, entities = "", []
        for word, tag in sentence:
            start = len(text) + (1 if text else 0)
            text = f"{text} {word}" if text else word
            if tag.startswith("B-"):
                entities.append({"start": start, "end": start + len(word), "label": tag[2:]})
            elif tag.startswith("I-"):
                entities[-1]["end"] = start + len(word)
        rows.append(json.dumps({"text": text, "entities": entities}))
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    manifest = finetune(str(tiny_encoder), tmp_path / "out", tiny_finetune_config(epochs=1),
                        data=str(tmp_path / "train.jsonl"))
    assert manifest.task["name"] == "token-classification"
    assert "validation" in manifest.metrics and manifest.data["splits"]["validation"]["rows"] == 4


def test_a_classification_csv_given_to_the_token_task_is_refused(tiny_encoder, tmp_path):
    from edgewise.finetune import FinetuneConfig, finetune

    data = write_csv(tmp_path / "train.csv", [("a b", "x"), ("c d", "y")])
    with pytest.raises(EdgewiseError, match="not word-tagged data"):
        finetune(str(tiny_encoder), tmp_path / "out", FinetuneConfig(task="token-classification"), data=str(data))
    assert not (tmp_path / "out").exists()


def test_tagged_data_given_to_the_classification_task_is_refused(tiny_encoder, tmp_path):
    from edgewise.finetune import FinetuneConfig, finetune

    data = write_conll(tmp_path / "train.conll", make_tagged(4, seed=1))
    with pytest.raises(EdgewiseError, match="pass --task token-classification"):
        finetune(str(tiny_encoder), tmp_path / "out", FinetuneConfig(task="classification"), data=str(data))
    assert not (tmp_path / "out").exists()
