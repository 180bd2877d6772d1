import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.distill import DistillConfig, DistillTrainerConfig, distill
from tests.conftest import build_encoder, write_csv

FAST = DistillTrainerConfig(epochs=3, learning_rate=3e-3, batch_size=16, warmup_ratio=0.0)
ONE_EPOCH = DistillTrainerConfig(epochs=1)


def _terms(manifest) -> set[str]:
    return {k for entry in manifest.history for k in entry if k.startswith("loss_")}


@pytest.fixture(scope="module")
def student(tiny_teacher, tiny_data, tmp_path_factory):
    return distill(tiny_teacher, tmp_path_factory.mktemp("students") / "l1", DistillConfig(layers=1, trainer=FAST),
                   data=str(tiny_data))


def test_distill_writes_a_student_linked_to_its_teacher(student, tiny_teacher):
    artifact = Artifact.load(student.path, kind="hf")
    m = artifact.manifest

    assert (m.stage, m.kind) == ("distill", "hf")
    assert m.parent == {"path": str(tiny_teacher), "manifest_sha256": Manifest.read(tiny_teacher).sha256}
    assert m.labels == Manifest.read(tiny_teacher).labels
    assert m.metrics["size"]["student_parameters"] < m.metrics["size"]["teacher_parameters"]
    assert m.metrics["size"]["layer_map"] == [1] and m.metrics["size"]["student_kind"] == "teacher-layers"
    assert not any(name.endswith((".bin", ".pt")) for name in m.files)


def test_distill_records_the_token_lengths_of_its_training_texts(student):
    lengths = student.data["token_lengths"]

    assert len(lengths["quantiles"]) == 21 and lengths["quantiles"] == sorted(lengths["quantiles"])
    assert lengths["quantiles"][0] >= 2 and lengths["quantiles"][-1] == lengths["max"]


def test_distill_student_learns_and_agrees_with_the_teacher(student):
    test = student.metrics["test"]

    assert test["accuracy"] >= 0.9 and test["agreement_with_teacher"] >= 0.9
    assert test["accuracy_vs_teacher"] == pytest.approx(test["accuracy"] / test["teacher_accuracy"])


def test_distill_logs_every_loss_term(student):
    assert _terms(student) == {"loss_kd", "loss_ce"}
    assert student.metrics["train"]["teacher_logits_cached"] is True


@pytest.mark.slow
def test_distill_reuses_cached_teacher_logits_across_runs(tiny_teacher, tiny_data, tmp_path):
    first = distill(tiny_teacher, tmp_path / "a", DistillConfig(layers=1, max_length=24, trainer=ONE_EPOCH),
                    data=str(tiny_data))
    second = distill(tiny_teacher, tmp_path / "b", DistillConfig(layers=1, max_length=24, trainer=ONE_EPOCH),
                     data=str(tiny_data))
    other_length = distill(tiny_teacher, tmp_path / "c", DistillConfig(layers=1, max_length=16, trainer=ONE_EPOCH),
                           data=str(tiny_data))

    assert first.metrics["train"]["teacher_logits_from_cache"] is False
    assert second.metrics["train"]["teacher_logits_from_cache"] is True
    assert second.metrics["train"]["teacher_pass_s"] == 0.0
    assert other_length.metrics["train"]["teacher_logits_from_cache"] is False  # the key holds max_length


@pytest.mark.slow
def test_distill_alpha_chooses_the_terms(tiny_teacher, tiny_data, tmp_path):
    labels_only = distill(tiny_teacher, tmp_path / "ce", DistillConfig(layers=1, alpha=0, trainer=ONE_EPOCH),
                          data=str(tiny_data))
    soft_only = distill(tiny_teacher, tmp_path / "kd", DistillConfig(layers=1, alpha=1, trainer=ONE_EPOCH),
                        data=str(tiny_data))

    assert _terms(labels_only) == {"loss_ce"} and _terms(soft_only) == {"loss_kd"}


@pytest.mark.slow
def test_distill_hidden_and_attention_terms_run_the_teacher_every_step(tiny_teacher, tiny_data, tmp_path):
    m = distill(tiny_teacher, tmp_path / "s", DistillConfig(layer_map="1", hidden_weight=1.0, attention_weight=1.0,
                trainer=ONE_EPOCH), data=str(tiny_data))

    assert _terms(m) == {"loss_kd", "loss_ce", "loss_hidden", "loss_attention"}
    assert m.metrics["train"]["teacher_logits_cached"] is False


@pytest.mark.slow
def test_distill_fresh_student_of_another_width_learns_through_a_projection(tiny_teacher, tiny_data, tmp_path):
    m = distill(tiny_teacher, tmp_path / "fresh", DistillConfig(student_config="layers=1,hidden=16,heads=2,ffn=32",
                hidden_weight=1.0, trainer=FAST), data=str(tiny_data))

    assert m.metrics["size"]["student_kind"] == "fresh" and "loss_hidden" in _terms(m)
    import json
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["hidden_size"] == 16


@pytest.mark.slow
def test_distill_pretrained_student_with_its_own_encoder(tiny_teacher, tiny_encoder, tiny_data, tmp_path):
    m = distill(tiny_teacher, tmp_path / "s", DistillConfig(student=str(tiny_encoder), trainer=FAST),
                data=str(tiny_data))

    # A pretrained encoder with a fresh classification head learns from the teacher: well above chance
    # (0.33). This width-32 encoder then sits on a two-class plateau (colour vs sport) that plain
    # fine-tuning leaves only at epoch 5, so the test does not ask for more.
    assert m.metrics["size"]["student_kind"] == "pretrained" and m.metrics["test"]["accuracy"] >= 0.6
    assert m.metrics["test"]["agreement_with_teacher"] >= 0.6


@pytest.mark.slow
def test_distill_with_unlabeled_texts_grows_the_transfer_set(tiny_teacher, tiny_data, tmp_path):
    (tmp_path / "more.txt").write_text("apple grape the\nred blue very\n\ngolf rugby a\n")

    m = distill(tiny_teacher, tmp_path / "s", DistillConfig(layers=1, trainer=ONE_EPOCH,
                unlabeled=str(tmp_path / "more.txt")), data=str(tiny_data))

    assert (m.data["unlabeled_rows"], m.data["transfer_rows"]) == (3, 243)


def test_distill_refuses_bad_inputs_before_any_work(tiny_teacher, tiny_encoder, tiny_data, tmp_path):
    with pytest.raises(EdgewiseError, match="names no labels"):
        distill(tiny_encoder, tmp_path / "a", DistillConfig(layers=1), data=str(tiny_data))
    with pytest.raises(EdgewiseError, match="exceeds the teacher's 2 layers"):
        distill(tiny_teacher, tmp_path / "b", DistillConfig(layers=5), data=str(tiny_data))
    write_csv(tmp_path / "other.csv", [("car bus", "vehicle"), ("apple", "fruit")] * 5)
    with pytest.raises(EdgewiseError, match="'vehicle'.*unknown to the model"):
        distill(tiny_teacher, tmp_path / "c", DistillConfig(layers=1), data=str(tmp_path / "other.csv"))
    other_tokenizer = tmp_path / "enc"
    build_encoder(other_tokenizer, "bert")
    (other_tokenizer / "tokenizer.json").write_text(
        (other_tokenizer / "tokenizer.json").read_text().replace('"apple"', '"pear"'))
    with pytest.raises(EdgewiseError, match="own tokenizer"):
        distill(tiny_teacher, tmp_path / "d", DistillConfig(student=str(other_tokenizer),
                                                                          hidden_weight=1.0), data=str(tiny_data))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc", "other.csv"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed beside this Python")
def test_distill_under_torchrun_with_two_cpu_processes(tiny_teacher, tiny_data, tmp_path):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "edgewise",
         "distill", str(tiny_teacher), str(tiny_data), "-o", str(tmp_path / "s"), "--layers", "1", "--epochs", "2",
         "--batch-size", "16"],
        capture_output=True, text=True, timeout=180,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    m = Manifest.read(tmp_path / "s")
    assert m.metrics["train"]["steps"] == 16  # 240 texts, 16 per process, 2 processes, 2 epochs
    assert m.metrics["test"]["samples"] == 60 and not list(tmp_path.glob(".*.partial"))


def test_transfer_dataset_keeps_each_texts_teacher_outputs_and_marks_unlabelled_rows(tiny_teacher):
    import numpy as np
    from transformers import AutoTokenizer

    from edgewise.core.data import Split
    from edgewise.distill.stage import transfer_dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    transfer = Split("transfer", ["apple a", "red the very", "golf"], None, None)
    logits = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]], dtype=np.float32)

    dataset = transfer_dataset(tokenizer, transfer, [1, 0], 1, logits, 16, False, None)

    items = [dataset[i] for i in range(3)]
    assert [item["teacher_outputs"] for item in items] == logits.tolist()
    assert [item["labels"] for item in items] == [1, 0, -100]
    assert [len(item["input_ids"]) for item in items] == [4, 5, 3]  # [CLS] text [SEP], row by row
    with pytest.raises(ValueError, match="2 teacher output rows for 3 texts"):
        transfer_dataset(tokenizer, transfer, [1, 0], 1, logits[:2], 16, False, None)


@pytest.mark.slow
def test_distill_soft_targets_alone_teach_the_student(tiny_teacher, tiny_data, tmp_path):
    # alpha 1: no label term at all, so only correctly aligned teacher logits can teach the task.
    m = distill(tiny_teacher, tmp_path / "s", DistillConfig(layers=1, alpha=1.0, temperature=1.0, trainer=FAST),
                data=str(tiny_data))

    assert _terms(m) == {"loss_kd"} and m.metrics["test"]["agreement_with_teacher"] >= 0.95


@pytest.mark.slow
def test_distill_student_with_its_own_tokenizer_reads_its_own_tokens(tiny_teacher, tiny_data, tmp_path):
    import json

    encoder = build_encoder(tmp_path / "enc", "bert")
    vocab_file = encoder / "tokenizer.json"
    spec = json.loads(vocab_file.read_text())
    vocab = spec["model"]["vocab"]
    words = [w for w in vocab if not w.startswith("[")]
    # Same words, other ids: the student's tokenizer differs from the teacher's.
    for word, new_id in zip(words, reversed([vocab[w] for w in words]), strict=True):
        vocab[word] = new_id
    vocab_file.write_text(json.dumps(spec))

    m = distill(tiny_teacher, tmp_path / "s", DistillConfig(student=str(encoder), trainer=FAST), data=str(tiny_data))

    assert m.metrics["size"]["student_kind"] == "pretrained" and m.metrics["test"]["accuracy"] >= 0.6
    saved = json.loads((tmp_path / "s" / "tokenizer.json").read_text())["model"]["vocab"]
    assert saved == vocab  # the student ships its own tokenizer


@pytest.mark.slow
def test_distill_from_a_teacher_without_manifest(tiny_teacher, tiny_data, tmp_path):
    foreign = tmp_path / "foreign-teacher"
    shutil.copytree(tiny_teacher, foreign)
    (foreign / "edgewise.json").unlink()

    m = distill(foreign, tmp_path / "s", DistillConfig(layers=1, trainer=ONE_EPOCH), data=str(tiny_data))

    assert m.parent is None and m.source["teacher"]["path"] == str(foreign) and m.data["max_length"] == 64


@pytest.mark.slow
def test_distill_cache_write_failure_is_a_user_error(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EDGEWISE_CACHE", str(blocker))

    with pytest.raises(EdgewiseError, match="set EDGEWISE_CACHE to a writable folder"):
        distill(tiny_teacher, tmp_path / "s", DistillConfig(layers=1, max_length=20, trainer=ONE_EPOCH),
                data=str(tiny_data))
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_distill_holds_out_the_validation_texts_the_teacher_held_out(teacher_without_validation, tmp_path):
    data, teacher, _ = teacher_without_validation  # fine-tuned with validation_fraction 0.2, seed 7

    # The student's own defaults would carve 0.1 with seed 42.
    m = distill(teacher, tmp_path / "s", DistillConfig(layers=1, trainer=ONE_EPOCH), data=str(data))

    assert m.data["splits"]["validation"] == Manifest.read(teacher).data["splits"]["validation"]
    assert m.data["splits"]["train"] == Manifest.read(teacher).data["splits"]["train"]


@pytest.fixture(scope="module")
def embedding_student(tiny_embedder, tiny_corpus, tmp_path_factory):
    return distill(tiny_embedder, tmp_path_factory.mktemp("embedding-students") / "l1",
                   DistillConfig(layers=1, cosine_weight=0.5, trainer=FAST), data=str(tiny_corpus))


@pytest.mark.slow
def test_distill_an_embedding_teacher_into_a_sentence_transformers_student(embedding_student, tiny_embedder):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from edgewise.runtime import open_runner

    m = embedding_student
    assert m.task == {"name": "embedding", "pooling": "mean", "normalize": True, "dimension": 32}
    assert m.labels == {} and m.source["teacher"]["path"] == str(tiny_embedder)
    assert _terms(m) == {"loss_mse", "loss_cosine"} and m.metrics["train"]["selected_by"] == "validation cosine"
    validation = m.metrics["validation"]
    assert 0 < validation["cosine_mean"] <= 1 and 0 <= validation["neighbour_overlap"] <= 1
    assert m.data["max_length"] == 32 and m.metrics["size"]["layer_map"] == [1]
    texts = ["apple banana the very", "hockey golf a"]
    ours = open_runner(m.path, "hf", "torch").outputs(texts)
    theirs = SentenceTransformer(str(m.path), device="cpu", local_files_only=True).encode(texts)
    assert np.abs(ours - theirs).max() < 1e-5  # the student folder is a sentence-transformers model


@pytest.mark.slow
def test_distill_an_embedding_teacher_on_data_with_a_test_split_scores_test_against_the_teacher(
        tiny_embedder, tiny_data, tmp_path):
    # A labelled folder used as a corpus (train / validation / test): its labels mean nothing to an embedding
    # model; the test split is scored against the teacher's vectors of its texts.
    m = distill(tiny_embedder, tmp_path / "s", DistillConfig(layers=1, trainer=FAST), data=str(tiny_data))

    assert m.task["name"] == "embedding" and m.labels == {}
    for split in ("validation", "test"):
        assert 0 < m.metrics[split]["cosine_mean"] <= 1 and 0 <= m.metrics[split]["neighbour_overlap"] <= 1
        assert "accuracy" not in m.metrics[split]


@pytest.mark.slow
def test_an_embedding_student_trains_on_batches_grouped_by_length_and_a_classifier_as_before(
        tiny_embedder, tiny_corpus, tiny_teacher, tiny_data, tmp_path, monkeypatch):
    import transformers.trainer

    grouped = []
    original = transformers.trainer.LengthGroupedSampler

    def sampler(*args, **kwargs):
        grouped.append(kwargs.get("dataset"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.trainer, "LengthGroupedSampler", sampler)
    one_epoch = DistillTrainerConfig(**{**FAST.__dict__, "epochs": 1})
    distill(tiny_embedder, tmp_path / "e", DistillConfig(layers=1, trainer=one_epoch), data=str(tiny_corpus))
    assert len(grouped) >= 1  # the training set (and evaluation) batched by length
    grouped.clear()
    distill(tiny_teacher, tmp_path / "c", DistillConfig(layers=1, trainer=one_epoch), data=str(tiny_data))
    assert grouped == []  # a classifier's batches stay random unless asked
    distill(tiny_teacher, tmp_path / "g", DistillConfig(layers=1, trainer=DistillTrainerConfig(
        **{**one_epoch.__dict__, "group_by_length": True})), data=str(tiny_data))
    assert len(grouped) >= 1


@pytest.mark.slow
def test_distill_a_static_student_writes_an_onnx_table_that_the_runtime_embeds(tiny_embedder, tiny_corpus, tmp_path):
    import numpy as np

    from edgewise.export import bundle
    from edgewise.runtime import Predictor

    manifest = distill(tiny_embedder, tmp_path / "static", DistillConfig(static=True, static_dims=16),
                       data=str(tiny_corpus))

    assert manifest.kind == "onnx" and manifest.task["static"] is True and manifest.task["dimension"] == 16
    assert manifest.metrics["static"]["tokens_counted"] == manifest.metrics["static"]["vocabulary"] - 5  # specials
    assert "cosine_mean" not in manifest.metrics["validation"]  # another space: neighbours only
    vectors = Predictor(tmp_path / "static").embed(["apple banana", "banana apple", "golf"])
    assert vectors.shape == (3, 16) and np.allclose(vectors[0], vectors[1], atol=1e-6)  # a bag of tokens
    bundle(tmp_path / "static", tmp_path / "deploy")
    assert not (tmp_path / "deploy" / "modules.json").exists()  # no transformer for sentence-transformers to load
    usage = (tmp_path / "deploy" / "README.txt").read_text()
    assert "SentenceTransformer(" not in usage and "sentence-transformers and fastembed do not load this" in usage


def test_distill_refuses_what_an_embedding_student_cannot_be(tiny_teacher, tiny_embedder, tiny_corpus, tiny_data,
                                                             tmp_path):
    with pytest.raises(EdgewiseError, match="--static distils a sentence-embedding teacher"):
        distill(tiny_teacher, tmp_path / "s", DistillConfig(static=True), data=str(tiny_data))
    with pytest.raises(EdgewiseError, match="choose one kind of student .* not layers and static"):
        DistillConfig(layers=1, static=True)
    with pytest.raises(EdgewiseError, match="an embedding student learns the teacher's vectors as they are"):
        distill(tiny_embedder, tmp_path / "w", DistillConfig(student_config="hidden=16,heads=2"), data=str(tiny_corpus))
    assert list(tmp_path.iterdir()) == []
