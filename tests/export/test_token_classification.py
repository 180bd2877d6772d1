"""A token classifier through export and the runtime: ONNX logits per token, entities as transformers' pipeline."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_tagged

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ner_onnx(tiny_ner_teacher, tiny_ner_data, tmp_path_factory):
    from edgewise.export import export

    dst = tmp_path_factory.mktemp("ner") / "onnx"
    export(tiny_ner_teacher, dst, data=str(tiny_ner_data))
    return dst


def sentences(n: int = 40) -> list[str]:
    # two-word entities too: the model may tag their second word B-, I- or O, which the grouping must follow
    return [" ".join(word for word, _ in s) for s in make_tagged(n, seed=11, lengths=(1, 2))]


def test_the_export_is_verified_on_the_tagged_sentences(ner_onnx):
    manifest = json.loads((ner_onnx / "edgewise.json").read_text())
    assert manifest["task"]["name"] == "token-classification"
    assert manifest["data"]["parity_texts"] > 0
    assert manifest["metrics"]["parity"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("aggregation", ["simple", "first"])
def test_runtime_entities_equal_the_transformers_pipeline(ner_onnx, tiny_ner_teacher, aggregation):
    """The real client: transformers.pipeline on the PyTorch model gives the entities the torch-free runtime
    gives on the FP32 export (type, character span, score)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from edgewise.runtime.predictor import Predictor

    texts = sentences()
    reference = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(
        tiny_ner_teacher), tokenizer=AutoTokenizer.from_pretrained(tiny_ner_teacher), aggregation_strategy=aggregation)
    ours = Predictor(ner_onnx).entities(texts, aggregation)
    found = 0
    for text, theirs, mine in zip(texts, reference(texts), ours, strict=True):
        assert [(e["entity_group"], e["start"], e["end"]) for e in theirs] == [
            (e["type"], e["start"], e["end"]) for e in mine], text
        assert [e["score"] for e in mine] == pytest.approx([float(e["score"]) for e in theirs], abs=1e-4)
        assert all(e["text"] == text[e["start"]:e["end"]] for e in mine)
        found += len(mine)
    assert found > 20  # the teacher tags entities: the comparison is not of empty lists


def test_runtime_predict_prints_entities(ner_onnx, capsys):
    from edgewise.runtime.__main__ import main

    assert main(["predict", str(ner_onnx), "we like apple and golf today", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert {e["text"] for e in result["entities"]} == {"apple", "golf"}
    assert {e["type"] for e in result["entities"]} == {"FRUIT", "SPORT"}
    assert main(["predict", str(ner_onnx), "we like apple"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "we like apple" and lines[1].split("\t")[0].strip() == "FRUIT"


@pytest.fixture(scope="module")
def wordpiece_tagger(tmp_path_factory):
    """An untrained token classifier with a WordPiece tokenizer that cuts words into ## pieces: its random tags
    mix B-, I- and O inside words, the hard case for grouping (and for ``first``, which needs real words)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("wordpiece-tagger")
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "we", "like", "and", "the", "to", ".", ",",
              "app", "##le", "ban", "##ana", "gol", "##f", "par", "##is", "##s", "new", "york", "ac", "##me"]
    vocab = {w: i for i, w in enumerate(pieces)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=64).save_pretrained(folder)
    tags = ["O", "B-FRUIT", "I-FRUIT", "B-LOC", "I-LOC"]
    torch.manual_seed(3)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(tags),
                        id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
    BertForTokenClassification(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("aggregation", ["simple", "first"])
def test_word_pieces_group_as_the_pipeline_groups_them(wordpiece_tagger, tmp_path, aggregation):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from edgewise.export import export
    from edgewise.runtime.predictor import Predictor

    export(wordpiece_tagger, tmp_path / "onnx")
    texts = ["We like Apple and Bananas.", "Paris, New York and Acme", "golf golf apples to paris",
             "the unknownword applejack", "Apple", ""]
    reference = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(
        wordpiece_tagger), tokenizer=AutoTokenizer.from_pretrained(wordpiece_tagger), aggregation_strategy=aggregation)
    ours = Predictor(tmp_path / "onnx").entities(texts, aggregation)
    pieces = 0
    for text, mine in zip(texts, ours, strict=True):
        theirs = reference(text)
        assert [(e["entity_group"], e["start"], e["end"]) for e in theirs] == [
            (e["type"], e["start"], e["end"]) for e in mine], text
        assert [e["score"] for e in mine] == pytest.approx([float(e["score"]) for e in theirs], abs=1e-4)
        pieces += sum(len(e["text"].split()) for e in mine)
    assert pieces > 5


@pytest.mark.parametrize("aggregation", ["simple", "first"])
def test_long_texts_read_in_windows_as_the_pipeline_reads_them(wordpiece_tagger, tmp_path, aggregation):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from edgewise.export import export
    from edgewise.runtime.predictor import Predictor

    export(wordpiece_tagger, tmp_path / "onnx")
    predictor = Predictor(tmp_path / "onnx")
    words = ["we", "like", "apples", "and", "bananas", ",", "paris", "to", "new", "york", "and", "acme", "golf"]
    text = " ".join(words[i % len(words)] for i in range(3 * predictor.max_length))  # a few windows long
    reference = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(
        wordpiece_tagger), tokenizer=AutoTokenizer.from_pretrained(wordpiece_tagger,
                                                                   model_max_length=predictor.max_length),
        aggregation_strategy=aggregation, stride=16)
    theirs = reference(text)
    [mine] = predictor.entities([text], aggregation, stride=16)
    assert [(e["entity_group"], e["start"], e["end"]) for e in theirs] == [(e["type"], e["start"], e["end"])
                                                                           for e in mine]
    assert [e["score"] for e in mine] == pytest.approx([float(e["score"]) for e in theirs], abs=1e-4)
    assert mine[-1]["end"] > len(text) // 2  # the windows reach past the first one
    [cut] = predictor.entities([text], aggregation)
    assert max(e["end"] for e in cut) < mine[-1]["end"]  # without a stride the text is cut


def test_a_stride_a_window_cannot_hold_is_one_error(wordpiece_tagger, tmp_path):
    from edgewise.core.errors import EdgewiseError
    from edgewise.export import export
    from edgewise.runtime.predictor import Predictor

    export(wordpiece_tagger, tmp_path / "onnx")
    predictor = Predictor(tmp_path / "onnx")
    with pytest.raises(EdgewiseError, match="stride must be at least 0 and below the 62 tokens"):
        predictor.entities(["apple"], stride=predictor.max_length)
