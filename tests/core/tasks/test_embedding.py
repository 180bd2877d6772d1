import json

import numpy as np
import pytest
import torch

from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import EvalSet, from_record
from edgewise.core.tasks.embedding import (
    Embedding,
    cosine_agreement,
    neighbour_overlap,
    pool,
    pool_in_graph,
    sts_spearman,
)
from tests.conftest import write_sentence_transformers


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", False), ("max", True)])
def test_detect_reads_a_sentence_transformers_folder_as_it_is(tmp_path, pooling, normalize):
    write_sentence_transformers(tmp_path, pooling, normalize, width=48)

    found = Embedding.detect(tmp_path)

    assert (found.pooling, found.normalize, found.dimension) == (pooling, normalize, 48)
    assert Embedding.detect(tmp_path.parent) is None  # no modules.json: not an embedding folder


def test_detect_refuses_pooling_modes_and_modules_edgewise_does_not_compute(tmp_path):
    write_sentence_transformers(tmp_path)
    config = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({**config, "pooling_mode_mean_tokens": False,
                                                                    "pooling_mode_weightedmean_tokens": True}))
    with pytest.raises(EdgewiseError, match="pooling_mode_weightedmean_tokens; edgewise computes exactly one of mean"):
        Embedding.detect(tmp_path)

    dense = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    write_sentence_transformers(tmp_path, modules=dense)
    with pytest.raises(EdgewiseError, match="Transformer, Pooling, Dense; edgewise compresses Transformer"):
        Embedding.detect(tmp_path)


def test_written_files_are_read_back_as_the_same_task(tmp_path):
    task = Embedding("max", True, 32)

    written = task.write_files(tmp_path, 64)

    assert written == ["modules.json", "1_Pooling/config.json", "sentence_bert_config.json"]
    assert Embedding.detect(tmp_path) == task
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text())["max_seq_length"] == 64
    assert from_record(task.record()) == task
    assert Embedding("mean", True, 32, static=True).write_files(tmp_path / "none", 64) == []  # no transformer


def test_a_damaged_record_is_an_error():
    with pytest.raises(EdgewiseError, match="without a valid pooling"):
        from_record({"name": "embedding", "pooling": "sum", "normalize": True})
    with pytest.raises(EdgewiseError, match="unknown task 'ranking'"):
        from_record({"name": "ranking"})


def test_pool_computes_what_sentence_transformers_computes():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [9.0, 9.0]]])  # the last token is padding
    mask = torch.tensor([[1, 1, 0]])

    assert pool(hidden, mask, "mean", False).tolist() == [[2.0, 1.0]]
    assert pool(hidden, mask, "cls", False).tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "max", False).tolist() == [[3.0, 2.0]]  # padding never wins
    normalized = pool(hidden, mask, "mean", True)
    assert torch.linalg.norm(normalized).item() == pytest.approx(1.0)


def test_cosine_neighbours_and_spearman_measure_what_they_say():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8))

    assert cosine_agreement(vectors, 3 * vectors)["cosine_min"] == pytest.approx(1.0)  # scale does not matter
    assert neighbour_overlap(vectors, vectors) == 1.0
    assert neighbour_overlap(vectors, rng.normal(size=(30, 8))) < 0.6  # unrelated spaces share few neighbours
    first, second = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    cosines = (first * second).sum(-1) / np.linalg.norm(first, axis=-1) / np.linalg.norm(second, axis=-1)
    assert sts_spearman(first, second, cosines * 5) == pytest.approx(1.0)  # gold in the same order: 1
    assert sts_spearman(first, second, -cosines) == pytest.approx(-1.0)


def test_quality_drop_is_in_points_of_the_share_of_the_reference():
    task = Embedding()

    assert task.quality_drop(0.784, 0.8) == pytest.approx(2.0)  # 98 % of the teacher's Spearman: 2 points
    assert task.quality_drop(None, 0.8) is None


def test_score_takes_spearman_from_the_pairs_and_neighbours_from_the_corpus():
    rng = np.random.default_rng(1)
    task = Embedding()
    corpus, first, second = rng.normal(size=(12, 8)), rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    documents = np.eye(8)[:3] * 3  # three documents along three axes; each query nearest to one of them
    queries = np.eye(8)[[2, 0]] + rng.normal(scale=0.1, size=(2, 8))
    texts = ([f"c{i}" for i in range(12)] + [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
             + ["q0", "q1"] + ["d0", "d1", "d2"])
    # The gold scores are the cosines of the right slices: Spearman 1 only when score reads those slices.
    unit = np.linalg.norm(first, axis=-1) * np.linalg.norm(second, axis=-1)
    gold = list((first * second).sum(-1) / unit)
    relevant = [{"2": 1}, {"0": 1}]
    eval_set = EvalSet("validation", texts, None, {"scores": gold, "relevant": relevant}, "data",
                       {"corpus": 12, "pairs": 5, "queries": 2, "documents": 3})
    outputs = np.concatenate([corpus, first, second, queries, documents])

    scores = task.score(eval_set, outputs, reference=outputs)

    assert scores["pairs"] == 5 and scores["spearman"] == pytest.approx(1.0)
    assert scores["ndcg_at_10"] == pytest.approx(1.0) and scores["queries"] == 2  # the right rows are searched
    assert scores["neighbour_overlap"] == 1.0 and scores["neighbour_texts"] == 12  # the corpus part only
    assert task.quality(scores) == scores["spearman"] and task.gate_of(scores) == "spearman"
    assert task.gate_of({"neighbour_overlap": 1.0}) == "neighbour_overlap"


def test_importance_loss_has_a_gradient_at_the_unpruned_model_where_a_distance_has_none():
    # Pruning ranks units by the gradient of a loss at the unpruned model: against its own vectors a distance is
    # zero there with a zero gradient; the in-batch contrastive loss is not. Texts of one corpus share a direction
    # (cosines of 0.3-0.7 between unrelated texts, as a real model's): seeded, so the test does not vary.
    generator = torch.Generator().manual_seed(0)
    vectors = (torch.randn(1, 8, generator=generator) + 0.7 * torch.randn(4, 8, generator=generator)).requires_grad_()
    target = vectors.detach().clone()

    (distance_grad,) = torch.autograd.grad(((vectors - target) ** 2).sum(), vectors)
    (contrastive_grad,) = torch.autograd.grad(Embedding().importance_loss(vectors, target), vectors)

    assert distance_grad.abs().max().item() == 0.0
    assert contrastive_grad.abs().max().item() > 1e-3


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("mean", False), ("cls", True), ("max", True)])
def test_pooling_in_the_graph_matches_pooling_in_torch(tiny_embedder, tmp_path, pooling, normalize):
    import onnxruntime
    from transformers import AutoModel

    from edgewise.export.onnx import write_onnx

    model = AutoModel.from_pretrained(tiny_embedder).eval()
    task = Embedding(pooling, normalize, 32)
    path = write_onnx(model, tmp_path / "onnx", opset=17, work=tmp_path / "work", what="tiny", task=task)
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 3, 0, 0]])
    mask = (ids != 0).long()

    session = onnxruntime.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    got = session.run(["sentence_embedding"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                               "token_type_ids": np.zeros_like(ids.numpy())})[0]
    with torch.no_grad():
        expected = task.output(model, {"input_ids": ids, "attention_mask": mask})

    assert names == ["sentence_embedding", "last_hidden_state"]  # the pooled output first; token vectors kept
    assert np.abs(got - expected.numpy()).max() < 1e-5


def test_pooling_in_the_graph_needs_the_encoders_outputs(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"])],
                              [helper.make_tensor_value_info("logits", TensorProto.INT64, ["b", "t"])])
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))

    with pytest.raises(EdgewiseError, match="needs last_hidden_state and attention_mask"):
        pool_in_graph(tmp_path / "model.onnx", "mean", True)


def test_retrieval_scores_rank_documents_by_cosine_as_ndcg_and_recall_count_them():
    from edgewise.core.tasks.embedding import retrieval_scores

    documents = np.eye(12)  # document i points along axis i
    query = np.zeros((1, 12))
    query[0, [0, 1]] = [1.0, 0.5]  # nearest: document 0, then 1; the rest tie at 0

    perfect = retrieval_scores(query, documents, [{0: 1.0}])
    second = retrieval_scores(query, documents, [{1: 1.0}])
    missed = retrieval_scores(query, documents, [{11: 1.0, 0: 1.0}])

    assert perfect["ndcg_at_10"] == 1.0 and perfect["recall_at_10"] == 1.0
    assert second["ndcg_at_10"] == pytest.approx(1 / np.log2(3))  # found at rank 2
    assert missed["recall_at_10"] == 0.5  # document 11 ties at the bottom, outside the top 10


def test_a_retrieval_set_in_beirs_layout_is_read_with_its_judgements(tiny_retrieval, tmp_path):
    from edgewise.core.data import is_retrieval, load_retrieval

    found = load_retrieval(tiny_retrieval)

    assert is_retrieval(tiny_retrieval) and not is_retrieval(tmp_path)
    assert (found.name, len(found.queries), len(found.documents)) == ("test", 6, 30)
    assert all(set(grades.values()) == {1.0} for grades in found.relevant)
    (tiny_retrieval.parent / "broken").mkdir()
    for name in ("corpus.jsonl", "queries.jsonl"):
        (tiny_retrieval.parent / "broken" / name).write_text((tiny_retrieval / name).read_text())
    (tiny_retrieval.parent / "broken" / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tnowhere\t1\n")
    with pytest.raises(EdgewiseError, match="names ids that corpus.jsonl / queries.jsonl do not hold \\(nowhere\\)"):
        load_retrieval(tiny_retrieval.parent / "broken")
