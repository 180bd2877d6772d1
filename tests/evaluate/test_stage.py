import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.evaluate import EvaluateConfig, evaluate
from tests.conftest import write_csv


def test_evaluate_matches_the_metrics_finetune_recorded(tiny_teacher, tiny_data):
    result = evaluate(tiny_teacher, str(tiny_data), EvaluateConfig(split="test"))

    recorded = Manifest.read(tiny_teacher).metrics["test"]
    assert result["accuracy"] == pytest.approx(recorded["accuracy"])
    assert result["confusion_matrix"] == recorded["confusion_matrix"]
    assert (result["split"], result["samples"], result["max_length"]) == ("test", 60, 32)
    assert result["backend"] == "torch-cpu" and set(result["per_class"]) == {"colour", "fruit", "sport"}


def test_evaluate_default_split_is_test(tiny_teacher, tiny_data):
    assert evaluate(tiny_teacher, str(tiny_data))["split"] == "test"


def test_evaluate_scores_a_subset_of_labels(tiny_teacher, tmp_path):
    write_csv(tmp_path / "fruit.csv", [("apple banana the", "fruit"), ("grape lemon a", "fruit")])

    result = evaluate(tiny_teacher, str(tmp_path / "fruit.csv"))

    assert result["samples"] == 2 and result["per_class"]["sport"]["support"] == 0


def test_evaluate_rejects_labels_the_model_does_not_know(tiny_teacher, tmp_path):
    write_csv(tmp_path / "d.csv", [("apple", "fruit"), ("car", "vehicle")])

    with pytest.raises(EdgewiseError, match="'vehicle'.*unknown to the model"):
        evaluate(tiny_teacher, str(tmp_path / "d.csv"))
