"""The token-classification task: tagged data, entities and their scores, word alignment, the pipeline's grouping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import task_class
from edgewise.core.tasks.token_classification import (
    TokenClassification,
    align_labels,
    entities,
    entity_scores,
    group_entities,
    is_tagged,
    load_tagged,
    read_conll,
    read_tagged_jsonl,
    tag_set,
    token_words,
    word_rows,
    word_spans,
)


def write(path, text):
    path.write_text(text)
    return path


CONLL = """-DOCSTART- O

Alice\tB-PER
flew\tO
to\tO
New\tB-LOC
York\tI-LOC

Acme\tB-ORG
hired\tO
Bob\tB-PER
"""


# --- data -----------------------------------------------------------------------------------------

def test_conll_sentences_tags_and_lines(tmp_path):
    split = read_conll(write(tmp_path / "train.conll", CONLL), "train")
    assert split.words == [["Alice", "flew", "to", "New", "York"], ["Acme", "hired", "Bob"]]
    assert split.tags == [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["B-ORG", "O", "B-PER"]]
    assert split.lines == [3, 9]
    assert split.texts[0] == "Alice flew to New York"


def test_conll_takes_the_last_column_as_the_tag(tmp_path):
    split = read_conll(write(tmp_path / "a.conll", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"), "train")
    assert split.words == [["EU", "rejects"]] and split.tags == [["B-ORG", "O"]]


@pytest.mark.parametrize("text, needle", [
    ("Alice\tB-PER\nflew\tO\textra\n", "line 2: 3 columns where the file's first line has 2"),
    ("Alice\n", "line 1: 'Alice' has one column"),
    ("Alice\tS-PER\n", "line 1: tag 'S-PER' is not BIO / IOB2"),
    ("\n-DOCSTART- O\n\n", "holds no sentences"),
])
def test_conll_bad_files_name_the_line(tmp_path, text, needle):
    with pytest.raises(EdgewiseError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_conll(write(tmp_path / "bad.conll", text), "train")


def test_jsonl_tokens_and_spans(tmp_path):
    rows = [{"tokens": ["Alice", "flew"], "tags": ["B-PER", "O"]},
            {"text": "Acme Corp hired Bob.", "entities": [{"start": 0, "end": 9, "label": "ORG"},
                                                          {"start": 16, "end": 19, "label": "PER"}]}]
    path = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert is_tagged(str(path))
    split = read_tagged_jsonl(path, "train")
    assert split.words[1] == ["Acme", "Corp", "hired", "Bob", "."]
    assert split.tags[1] == ["B-ORG", "I-ORG", "O", "B-PER", "O"]


def test_adjacent_spans_of_one_type_are_two_entities(tmp_path):
    row = {"text": "Paris Berlin", "entities": [{"start": 0, "end": 5, "label": "LOC"},
                                                {"start": 6, "end": 12, "label": "LOC"}]}
    split = read_tagged_jsonl(write(tmp_path / "t.jsonl", json.dumps(row)), "train")
    assert split.tags == [["B-LOC", "B-LOC"]]


@pytest.mark.parametrize("row, needle", [
    ({"text": "Bob", "entities": [{"start": 0, "end": 9, "label": "PER"}]}, "outside the text's 3 characters"),
    ({"text": "Bob", "entities": [{"start": 0, "end": 3, "label": "B-PER"}]}, "is a tag"),
    ({"text": "Bob Ray", "entities": [{"start": 0, "end": 5, "label": "PER"}, {"start": 4, "end": 7,
                                                                               "label": "LOC"}]}, "overlap"),
    ({"tokens": ["a", "b"], "tags": ["O"]}, "2 tokens but 1 tags"),
    ({"tokens": ["a"], "tags": [3]}, "tag names"),
    ({"tokens": ["New York"], "tags": ["B-LOC"]}, "token 'New York' holds a space"),
    ({"text": "x"}, "neither tokens"),
])
def test_jsonl_bad_rows(tmp_path, row, needle):
    with pytest.raises(EdgewiseError, match=needle):
        read_tagged_jsonl(write(tmp_path / "t.jsonl", json.dumps(row) + "\n"), "train")


def test_a_folder_of_splits_refuses_tags_train_lacks(tmp_path):
    write(tmp_path / "train.conll", CONLL)
    write(tmp_path / "validation.conll", "Bob\tB-PER\n")
    write(tmp_path / "test.conll", "x\tO\n\nParis\tB-GPE\n")
    with pytest.raises(EdgewiseError, match=r"test.conll \(sentence at line 3\): tag 'B-GPE' is not among the train "
                                            "tags"):
        load_tagged(str(tmp_path))
    write(tmp_path / "test.conll", "Paris\tB-LOC\n")
    splits = load_tagged(str(tmp_path))
    assert set(splits) == {"train", "validation", "test"}
    assert tag_set(splits["train"].tags) == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_a_csv_is_not_tagged(tmp_path):
    assert not is_tagged(str(write(tmp_path / "t.csv", "text,label\na,b\n")))
    assert not is_tagged(str(write(tmp_path / "t.jsonl", '{"text": "a", "label": "b"}\n')))


# --- entities and scores (seqeval's default mode) -------------------------------------------------

@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    (["I-PER", "I-PER", "O"], [("PER", 0, 2)]),  # IOB1: I- after O starts an entity
    (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # I- of another type starts one
    (["O", "O"], []),
])
def test_entities_as_conlleval_chunks_them(tags, expected):
    assert entities(tags) == expected


def test_entity_scores_by_hand():
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    guess = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-PER"]]
    scores = entity_scores(truth, guess)
    # predicted PER(0,2) ok, ORG ok, PER(1,2) wrong: precision 2/3; recall 2/3 (LOC missed)
    assert scores["entity_precision"] == pytest.approx(2 / 3)
    assert scores["entity_recall"] == pytest.approx(2 / 3)
    assert scores["entity_f1"] == pytest.approx(2 / 3)
    assert scores["token_accuracy"] == pytest.approx(4 / 6)
    assert scores["per_type"]["LOC"]["recall"] == 0 and scores["per_type"]["ORG"]["f1"] == 1
    assert scores["per_type"]["PER"]["precision"] == pytest.approx(0.5)


def test_entity_scores_match_seqeval_when_installed():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    truth = [[tags[i] for i in rng.integers(0, 5, 12)] for _ in range(40)]
    guess = [[tags[i] if rng.random() < 0.7 else "O" for i in rng.integers(0, 5, 12)] for _ in range(40)]
    ours = entity_scores(truth, guess)
    assert ours["entity_f1"] == pytest.approx(seqeval.f1_score(truth, guess))
    assert ours["entity_precision"] == pytest.approx(seqeval.precision_score(truth, guess))


# --- words and sub-tokens ---------------------------------------------------------------------------

def wordpiece():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "alice", "flew", "to", "new", "york",
                                         "ac", "##me", "##s", "bob", "."])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def test_first_sub_token_carries_the_tag():
    tokenizer = wordpiece()
    words, tags = ["acmes", "hired", "bob"], ["B-ORG", "O", "B-PER"]
    encoded = tokenizer(" ".join(words), return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = token_words(encoded["offset_mapping"], encoded["special_tokens_mask"], word_spans(words))
    # [CLS] ac ##me ##s [UNK] bob [SEP]
    assert ids == [None, 0, 0, 0, 1, 2, None]
    tag2id = {"O": 0, "B-ORG": 1, "I-ORG": 2, "B-PER": 3, "I-PER": 4}
    assert align_labels(ids, tags, tag2id) == [-100, 1, -100, -100, 0, 3, -100]
    logits = np.zeros((7, 5))
    logits[[1, 2, 3, 4, 5], [1, 4, 4, 0, 3]] = 1  # sub-tokens' own guesses never reach the word
    rows = word_rows(logits, ids, 3)
    assert TokenClassification().word_tags_of([rows], [3], {i: t for t, i in tag2id.items()}) == [
        ["B-ORG", "O", "B-PER"]]


def test_a_truncated_word_is_tagged_o():
    rows = word_rows(np.ones((3, 2)), [None, 0, None], 2)
    assert np.isnan(rows[1]).all()
    assert TokenClassification().word_tags_of([rows], [2], {0: "O", 1: "B-X"}) == [["O", "O"]]


# --- the pipeline's grouping ------------------------------------------------------------------------

def test_grouping_simple_and_first():
    text = "acmes bob"
    id2label = {0: "O", 1: "B-ORG", 2: "I-ORG", 3: "B-PER"}
    offsets = [(0, 0), (0, 2), (2, 4), (4, 5), (6, 9), (0, 0)]
    special = [1, 0, 0, 0, 0, 1]
    logits = np.full((6, 4), -5.0)
    logits[1, 1] = logits[2, 0] = logits[3, 2] = logits[4, 3] = 5.0  # B-ORG, O, I-ORG, B-PER
    simple = group_entities(text, logits, offsets, special, id2label, "simple")
    assert [(e["type"], e["start"], e["end"], e["text"]) for e in simple] == [
        ("ORG", 0, 2, "ac"), ("ORG", 4, 5, "s"), ("PER", 6, 9, "bob")]
    first = group_entities(text, logits, offsets, special, id2label, "first", subword=[0, 0, 1, 1, 0, 0])
    assert [(e["type"], e["start"], e["end"], e["text"]) for e in first] == [("ORG", 0, 5, "acmes"),
                                                                             ("PER", 6, 9, "bob")]
    assert 0 < first[0]["score"] <= 1


# --- the task ---------------------------------------------------------------------------------------

def test_the_task_is_registered_with_its_aliases():
    assert task_class("token-classification") is TokenClassification
    assert task_class("ner") is TokenClassification
    task = TokenClassification()
    assert task.gate_metric == "entity_f1" and task.quality_drop(0.9, 0.95) == pytest.approx(5)


def test_a_token_classifier_folder_is_detected(tmp_path):
    from edgewise.core.tasks import detect

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForTokenClassification"],
                                                      "id2label": {"0": "O", "1": "B-PER"}}))
    assert detect(tmp_path, {0: "O", 1: "B-PER"}) == TokenClassification()


def test_word_outputs_take_each_words_first_sub_token_and_leave_cut_words_unseen():
    scores = np.arange(2 * 5 * 2, dtype=np.float32).reshape(2, 5, 2)
    # text 0: "ab c" as [CLS] a ##b c [SEP]; text 1: "d e f" cut to [CLS] d e [SEP] + padding
    offsets = [([(0, 0), (0, 1), (1, 2), (3, 4), (0, 0)], [1, 0, 0, 0, 1]),
               ([(0, 0), (0, 1), (2, 3), (0, 0), (0, 0)], [1, 0, 0, 1, 1])]
    words = TokenClassification.word_outputs(scores, ["ab c", "d e f"], offsets)
    assert words.shape == (2, 3, 2)
    assert words[0, 0].tolist() == scores[0, 1].tolist() and words[0, 1].tolist() == scores[0, 3].tolist()
    assert np.isnan(words[0, 2]).all()  # text 0 has two words: padding
    assert words[1, 1].tolist() == scores[1, 2].tolist() and np.isnan(words[1, 2]).all()  # "f" was cut
    task = TokenClassification()
    assert task.word_tags_of(words, [2, 3], {0: "O", 1: "B-X"}) == [["B-X", "B-X"], ["B-X", "B-X", "O"]]


def test_score_and_agreement_on_an_eval_set():
    from edgewise.core.tasks import EvalSet

    labels = {0: "O", 1: "B-X", 2: "I-X"}
    eval_set = EvalSet("test", ["a b", "c"], None, [["B-X", "I-X"], ["O"]], "made", {})
    ours = np.array([[[0, 9, 0], [0, 0, 9]], [[9, 0, 0], [np.nan] * 3]], dtype=np.float32)
    theirs = np.array([[[0, 9, 0], [9, 0, 0]], [[9, 0, 0], [np.nan] * 3]], dtype=np.float32)
    task = TokenClassification()
    scored = task.score(eval_set, ours, labels, reference=theirs)
    assert scored["entity_f1"] == 1.0 and scored["token_accuracy"] == 1.0 and "per_type" not in scored
    assert scored["tag_agreement"] == pytest.approx(2 / 3)
    assert scored["entity_f1_vs_reference"] == 0.0  # X(0,2) against the reference's X(0,1)
    assert "per_type" in task.score(eval_set, ours, labels, full=True)
