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
    with pytest.raises(EdgewiseError, match="evaluate needs data: pass DATA"):
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


def test_evaluate_an_embedding_model_on_scored_pairs_against_its_teacher(tiny_embedder, tiny_embedder_bundle,
                                                                         tiny_pairs):
    own = evaluate(tiny_embedder, data=str(tiny_pairs / "test.csv"))
    result = evaluate(tiny_embedder_bundle, data=str(tiny_pairs / "test.csv"))

    assert own["task"]["name"] == "embedding" and own["pairs"] == 40 and -1 <= own["spearman"] <= 1
    assert "reference" not in own  # the teacher itself: no lineage to compare with
    assert result["spearman"] == pytest.approx(own["spearman"], abs=1e-3)  # the FP32 export, bundled
    reference = result["reference"]
    assert reference["path"] == str(tiny_embedder) and reference["cosine_min"] > 0.9999
    assert reference["spearman"] == pytest.approx(own["spearman"]) and reference["spearman_share"] == pytest.approx(
        1.0, abs=1e-3)
    assert reference["neighbour_overlap"] == pytest.approx(1.0)


def test_evaluate_an_embedding_model_on_texts_compares_it_with_a_reference(tiny_embedder, tiny_embedder_onnx,
                                                                            tiny_corpus):
    result = evaluate(tiny_embedder_onnx, config=EvaluateConfig(reference=str(tiny_embedder)), data=str(tiny_corpus))

    assert "spearman" not in result and result["reference"]["cosine_mean"] > 0.9999
    with pytest.raises(EdgewiseError, match="no scored pairs and no reference model was found"):
        evaluate(tiny_embedder, data=str(tiny_corpus))
    with pytest.raises(EdgewiseError, match="--reference .* is the evaluated model itself"):
        evaluate(tiny_embedder, config=EvaluateConfig(reference=str(tiny_embedder)), data=str(tiny_corpus))


def test_evaluate_an_embedding_model_on_a_retrieval_set(tiny_embedder, tiny_embedder_onnx, tiny_retrieval,
                                                         tiny_teacher, tiny_data):
    own = evaluate(tiny_embedder, data=str(tiny_retrieval))
    result = evaluate(tiny_embedder_onnx, config=EvaluateConfig(retrieval=str(tiny_retrieval)),
                      data=str(tiny_retrieval))

    assert own["queries"] == 6 and 0 < own["ndcg_at_10"] <= 1 and 0 <= own["recall_at_10"] <= 1
    assert result["ndcg_at_10"] == pytest.approx(own["ndcg_at_10"], abs=1e-3)
    with pytest.raises(EdgewiseError, match="--retrieval scores an embedding model's vectors"):
        evaluate(tiny_teacher, config=EvaluateConfig(retrieval=str(tiny_retrieval)), data=str(tiny_data))


def test_evaluate_a_classifier_against_a_reference_gives_label_agreement(tiny_teacher, tiny_onnx, tiny_data):
    result = evaluate(tiny_onnx, config=EvaluateConfig(reference=str(tiny_teacher)), data=str(tiny_data))

    reference = result["reference"]
    assert reference["path"] == str(tiny_teacher) and reference["label_agreement"] == 1.0
    assert reference["accuracy"] == pytest.approx(result["accuracy"]) and reference["accuracy_share"] == 1.0
    assert "reference" not in evaluate(tiny_onnx, data=str(tiny_data))  # a classifier is compared only when asked
