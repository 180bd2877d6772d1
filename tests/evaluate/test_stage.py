import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.evaluate import EvaluateConfig, evaluate
from tests.conftest import write_csv


def test_evaluate_matches_the_metrics_finetune_recorded(tiny_teacher, tiny_data):
    result = evaluate(tiny_teacher, config=EvaluateConfig(split="test"), data=str(tiny_data))

    recorded = Manifest.read(tiny_teacher).metrics["test"]
    assert result["accuracy"] == pytest.approx(recorded["accuracy"])
    assert result["confusion_matrix"] == recorded["confusion_matrix"]
    assert (result["split"], result["samples"], result["max_length"]) == ("test", 60, 32)
    assert result["backend"] == "torch" and set(result["per_class"]) == {"colour", "fruit", "sport"}


def test_evaluate_default_split_is_test(tiny_teacher, tiny_data):
    assert evaluate(tiny_teacher, data=str(tiny_data))["split"] == "test"


def test_evaluate_scores_a_subset_of_labels(tiny_teacher, tmp_path):
    write_csv(tmp_path / "fruit.csv", [("apple banana the", "fruit"), ("grape lemon a", "fruit")])

    result = evaluate(tiny_teacher, data=str(tmp_path / "fruit.csv"))

    assert result["samples"] == 2 and result["per_class"]["sport"]["support"] == 0


def test_evaluate_rejects_labels_the_model_does_not_know(tiny_teacher, tmp_path):
    write_csv(tmp_path / "d.csv", [("apple", "fruit"), ("car", "vehicle")])

    with pytest.raises(EdgewiseError, match="'vehicle'.*unknown to the model"):
        evaluate(tiny_teacher, data=str(tmp_path / "d.csv"))


def test_evaluate_needs_data_and_writes_no_folder(tiny_teacher, tiny_data, tmp_path):
    with pytest.raises(EdgewiseError, match="evaluate needs labelled data: pass DATA"):
        evaluate(tiny_teacher)
    with pytest.raises(EdgewiseError, match="evaluate writes no folder"):
        evaluate(tiny_teacher, tmp_path / "out", data=str(tiny_data))
    with pytest.raises(EdgewiseError, match="no interrupted run to resume"):
        evaluate(tiny_teacher, data=str(tiny_data), resume=True)
    assert not (tmp_path / "out").exists()


def test_evaluate_auto_runs_an_hf_model_on_the_gpu_only_where_torch_sees_one(monkeypatch):
    import torch

    from edgewise.evaluate.stage import _backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [_backend(wanted, kind) for wanted, kind in (("auto", "hf"), ("auto", "inc"), ("torch", "hf"))] == [
        "torch-cuda", "torch", "torch"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _backend("auto", "hf") == "torch"
