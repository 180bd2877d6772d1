import json

import numpy as np
import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.prune import PruneConfig, prune
from tests.conftest import assert_user_error

FAST = dict(samples=64, round_to=16, seq_len=32)


@pytest.fixture(scope="module")
def pruned(tiny_teacher, tiny_data, tmp_path_factory):
    return prune(tiny_teacher, tmp_path_factory.mktemp("pruned") / "p", PruneConfig(flops=0.6, **FAST),
                 data=str(tiny_data))


def test_prune_writes_a_smaller_model_within_the_budget(pruned, tiny_teacher):
    artifact = Artifact.load(pruned.path, kind="hf")  # every file hash checks
    p = pruned.metrics["pruning"]
    config = json.loads((pruned.path / "config.json").read_text())

    assert artifact.manifest.parent["path"] == str(tiny_teacher) and artifact.manifest.stage == "prune"
    assert p["flops_after"] <= 0.6 * p["flops_before"] and p["budget"]["met"]
    assert p["parameters_after"] < p["parameters_before"]
    assert config["edgewise_ffn_sizes"] == p["ffn_per_layer"] and all(n % 16 == 0 for n in p["ffn_per_layer"])
    assert sum(len(v) for v in (config.get("pruned_heads") or {}).values()) == p["heads_before"] - p["heads_after"]
    assert all(h >= 1 for h in p["heads_per_layer"])
    assert pruned.data["max_length"] == 32  # the teacher's working length comes forward
    from edgewise.core.lineage import training_data

    assert training_data(pruned.path)[0] == Manifest.read(tiny_teacher).data["spec"]  # pruning trains nothing
    assert {"tokenizer.json", "model.safetensors"} <= set(pruned.files)


def test_prune_records_importance_and_accuracy_before_and_after(pruned):
    importance, accuracy = pruned.metrics["importance"], pruned.metrics["accuracy"]

    assert [len(h) for h in importance["heads"]] == [2, 2] and [len(n) for n in importance["ffn"]] == [64, 64]
    assert any(v > 0 for layer in importance["ffn"] for v in layer)
    assert set(accuracy) == {"validation", "test"}
    row = accuracy["test"]
    assert {"before", "pruned", "reconstructed", "after"} <= set(row)  # each step's accuracy
    kept = pruned.metrics["pruning"]["kept_step"]
    assert kept in ("pruned", "reconstructed") and row["after"] == {k: row[kept][k] for k in row["after"]}
    assert row["agreement"] == row[kept]["agreement"]
    validation = accuracy["validation"]  # the fit is given up only when it made validation agree less
    assert (kept == "pruned") == (validation["reconstructed"]["agreement"] < validation["pruned"]["agreement"])
    assert 0 <= row["agreement"] <= 1 and row["drop_points"] == pytest.approx(
        (row["before"]["accuracy"] - row["after"]["accuracy"]) * 100)


def test_a_pruned_model_reloads_with_the_logits_it_was_measured_with(pruned, tiny_data):
    from edgewise.evaluate import EvaluateConfig, evaluate

    result = evaluate(pruned.path, config=EvaluateConfig(split="test"), data=str(tiny_data))

    assert result["accuracy"] == pytest.approx(pruned.metrics["accuracy"]["test"]["after"]["accuracy"])


def test_prune_with_fractions_and_unlabelled_texts(tiny_teacher, tmp_path):
    (tmp_path / "texts.txt").write_text("\n".join(["apple grape banana red", "golf rugby tennis", "blue green"] * 10))

    manifest = prune(tiny_teacher, tmp_path / "p", PruneConfig(heads=0.5, ffn=0.5, **FAST),
                     data=str(tmp_path / "texts.txt"))

    p = manifest.metrics["pruning"]
    assert p["heads_per_layer"] == [1, 1] and p["ffn_after"] == 64
    assert p["labels"] == "the model's own predictions" and manifest.metrics["accuracy"] == {}


def test_prune_without_reconstruction_keeps_the_plain_slice(cli_run, tiny_teacher, tiny_data, tmp_path):
    result = cli_run("prune", tiny_teacher, tiny_data, "-o", tmp_path / "p", "--flops", "0.6", "--no-reconstruct",
                     "--samples", "64", "--round-to", "16", "--seq-len", "32")

    assert result.exit_code == 0, result.output
    metrics = Manifest.read(tmp_path / "p").metrics
    assert metrics["pruning"]["kept_step"] == "pruned" and "reconstruction" not in metrics["time_s"]
    assert "reconstructed" not in metrics["accuracy"]["test"]


def test_prune_drops_the_least_needed_layer_and_counts_flops_from_the_model_as_given(tiny_teacher, tiny_data,
                                                                                     tmp_path):
    from edgewise.core.models import ModelSource, load_classifier

    manifest = prune(tiny_teacher, tmp_path / "p", PruneConfig(drop_layers=1, flops=0.4, **FAST),
                     data=str(tiny_data))

    p = manifest.metrics["pruning"]
    losses = p["layer_skip_losses"]
    assert len(losses) == 2 and p["layers_kept"] == [int(np.argmax(losses))] and p["layers_before"] == 2
    assert len(p["heads_per_layer"]) == len(p["ffn_per_layer"]) == 1
    assert p["flops_after"] <= 0.4 * p["flops_before"] and p["budget"]["met"]
    model = load_classifier(ModelSource(str(manifest.path), str(manifest.path), True))
    assert model.config.num_hidden_layers == 1 and model.config.edgewise_ffn_sizes == p["ffn_per_layer"]


def test_dropping_layers_alone_keeps_every_head_and_neuron_of_the_rest(tiny_teacher, tiny_data, tmp_path):
    manifest = prune(tiny_teacher, tmp_path / "p", PruneConfig(drop_layers=1, **FAST), data=str(tiny_data))

    p = manifest.metrics["pruning"]
    assert p["heads_per_layer"] == [2] and p["ffn_per_layer"] == [64] and manifest.metrics["importance"] is None
    assert p["flops_ratio"] == pytest.approx(0.5)


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("flops", 0.0, "flops must be a fraction in (0, 1]"), ("heads", 1.5, "heads must be a fraction in (0, 1]"),
    ("samples", 0, "samples must be >= 1"), ("drop_layers", -1, "drop_layers must be >= 0"),
])
def test_prune_config_rejects_bad_values(field, value, fragment):
    with pytest.raises(EdgewiseError) as info:
        PruneConfig(**{field: value})
    assert fragment in str(info.value)


def test_prune_refuses_bad_inputs_with_one_line(cli_run, tiny_teacher, tiny_onnx, tiny_data, tmp_path):
    cases = [
        (("prune", tiny_teacher, tiny_data, "-o", tmp_path / "a"), ["say how much to keep", "--flops"]),
        (("prune", tiny_teacher, tiny_data, "-o", tmp_path / "b", "--flops", "0.5", "--heads", "0.5"),
         ["give one budget, not flops and heads / ffn"]),
        (("prune", tiny_onnx, tiny_data, "-o", tmp_path / "c", "--flops", "0.5"), ["'onnx' artifact", "'hf'"]),
        (("prune", tiny_teacher, tiny_data, "-o", tmp_path / "d", "--flops", "0.05", "--seq-len", "32"),
         ["below what pruning reaches", "ask for"]),
        (("prune", tiny_teacher, tiny_data, "-o", tiny_teacher, "--flops", "0.5"), ["is the input"]),
        (("prune", tiny_teacher, tiny_data, "-o", tmp_path / "e", "--drop-layers", "2"),
         ["--drop-layers 2 would leave no layer of 2", "at most 1"]),
    ]
    for args, fragments in cases:
        assert_user_error(cli_run(*args), *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_prune_heals_by_distilling_from_the_unpruned_model(tiny_teacher, tiny_data, tmp_path):
    manifest = prune(tiny_teacher, tmp_path / "p", PruneConfig(heads=0.5, ffn=0.5, heal_epochs=1, **FAST),
                     data=str(tiny_data))

    row = manifest.metrics["accuracy"]["test"]
    assert manifest.metrics["pruning"]["kept_step"] == "healed" and row["after"] == row["healed"]
    assert manifest.metrics["heal"]["epochs"] == 1 and manifest.metrics["heal"]["teacher"] == str(tiny_teacher)
    sizes = json.loads((manifest.path / "config.json").read_text())["edgewise_ffn_sizes"]
    assert sizes == manifest.metrics["pruning"]["ffn_per_layer"] and sum(sizes) == 64  # healing keeps the shape
    assert not (manifest.path / "edgewise.json").read_text().count(".partial")  # nothing of the work folder leaks


def test_prune_heal_needs_labelled_texts(tiny_teacher, tmp_path):
    (tmp_path / "texts.txt").write_text("apple red\ngolf blue\n")

    with pytest.raises(EdgewiseError, match="--heal-epochs distils on labelled texts"):
        prune(tiny_teacher, tmp_path / "p", PruneConfig(heads=0.5, heal_epochs=1), data=str(tmp_path / "texts.txt"))
    assert not (tmp_path / "p").exists()


@pytest.fixture(scope="module")
def wordpiece_classifier(tiny_data, tmp_path_factory):
    """A random BERT classifier with a WordPiece tokenizer (words, ## pieces, characters) and the tiny labels."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("wordpiece")
    words = sorted({w for line in (tiny_data / "train.csv").read_text().splitlines()[1:] for w in
                    line.split(",")[0].split()})
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz",
              *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), *words, "zebra", "quartz", "##ing", "unused"]
    (folder / "vocab.txt").write_text("\n".join(pieces) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(pieces), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3, pad_token_id=0,
                        id2label={0: "colour", 1: "fruit", 2: "sport"},
                        label2id={"colour": 0, "fruit": 1, "sport": 2})
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_prune_vocab_keeps_the_data_tokens_and_the_same_predictions(wordpiece_classifier, tiny_data, tmp_path):
    from edgewise.core.models import ModelSource, load_classifier, load_tokenizer
    from edgewise.runtime.pytorch import TorchRunner

    manifest = prune(wordpiece_classifier, tmp_path / "v", PruneConfig(vocab=True), data=str(tiny_data))

    v = manifest.metrics["vocab"]
    assert v["size_after"] < v["size_before"] and v["coverage"]["test"] == 1.0  # the tiny test uses train words
    vocab = (tmp_path / "v" / "vocab.txt").read_text().split()
    assert "zebra" not in vocab and "unused" not in vocab and "##q" in vocab and vocab[:2] == ["[PAD]", "[UNK]"]
    texts = [line.split(",")[0] for line in (tiny_data / "test.csv").read_text().splitlines()[1:20]]
    before, after = (TorchRunner(load_classifier(ModelSource(str(f), str(f), True)),
                                 load_tokenizer(ModelSource(str(f), str(f), True)), max_length=32).outputs(texts)
                     for f in (wordpiece_classifier, tmp_path / "v"))
    np.testing.assert_allclose(after, before, atol=1e-6)  # the same tokens, renumbered
    row = manifest.metrics["accuracy"]["test"]
    assert row["after"] == row["vocab"] == row["before"]
    # The runtime's own tokenizer (tokenizers, from tokenizer.json) agrees with the rewritten vocab.txt.
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tmp_path / "v" / "tokenizer.json")).encode("zebra apple").ids
    assert [vocab[i] for i in ids] == ["[CLS]", "z", "##e", "##b", "##r", "##a", "apple", "[SEP]"]


def test_prune_vocab_refuses_a_tokenizer_it_cannot_rewrite(tiny_teacher, tiny_data, tmp_path):
    with pytest.raises(EdgewiseError, match="--vocab handles WordPiece tokenizers"):
        prune(tiny_teacher, tmp_path / "v", PruneConfig(vocab=True), data=str(tiny_data))
    assert not (tmp_path / "v").exists()


def test_latency_budget_is_parsed_or_refused():
    from edgewise.prune.latency import parse_budget

    assert parse_budget("4ms") == ("ms", 4.0) and parse_budget(" 2.5 ms") == ("ms", 2.5)
    assert parse_budget("60%") == ("fraction", 0.6)
    for bad in ("fast", "0ms", "150%", "4"):
        with pytest.raises(EdgewiseError, match="--latency-budget"):
            PruneConfig(latency_budget=bad)


@pytest.mark.slow
def test_prune_to_a_measured_latency_budget(tiny_teacher, tiny_data, tmp_path):
    manifest = prune(tiny_teacher, tmp_path / "p", PruneConfig(latency_budget="100%", **FAST), data=str(tiny_data))

    latency = manifest.metrics["pruning"]["latency"]
    assert latency["met"] and latency["measured_ms"] <= latency["budget_ms"] == latency["unpruned_ms"]
    assert len(latency["probes"]) == 7 and manifest.metrics["pruning"]["budget"]["met"]

    with pytest.raises(EdgewiseError, match=r"below the fastest this model reaches by pruning here: .* ms at"):
        prune(tiny_teacher, tmp_path / "q", PruneConfig(latency_budget="0.0001ms", **FAST), data=str(tiny_data))
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_prune_an_embedding_model_keeps_its_task_and_measures_its_agreement(tiny_embedder, tiny_corpus, tiny_pairs,
                                                                           tmp_path):
    from edgewise.core.tasks.embedding import Embedding
    from edgewise.export import export
    from edgewise.runtime import Predictor

    manifest = prune(tiny_embedder, tmp_path / "p", PruneConfig(flops=0.6, pairs=str(tiny_pairs), **FAST),
                     data=str(tiny_corpus))

    assert Embedding.detect(tmp_path / "p") == Embedding("mean", True, 32)  # still a sentence-transformers folder
    assert manifest.task["name"] == "embedding" and manifest.metrics["pruning"]["flops_ratio"] <= 0.6
    assert manifest.metrics["pruning"]["labels"].startswith("the unpruned model's vectors")
    row = manifest.metrics["accuracy"]["validation"]
    assert row["gate"] == "spearman" and row["before"]["agreement"] == 1.0 and 0 < row["after"]["cosine_mean"] <= 1
    assert row["drop_points"] == pytest.approx((1 - row["after"]["quality"] / row["before"]["quality"]) * 100,
                                               abs=1e-3)
    export(tmp_path / "p", tmp_path / "onnx")  # the pruned encoder reloads and exports with its pooling
    assert Predictor(tmp_path / "onnx").embed(["apple"]).shape == (1, 32)
    with pytest.raises(EdgewiseError, match="a batch needs 2 texts or more"):
        prune(tiny_embedder, tmp_path / "one", PruneConfig(flops=0.6, **{**FAST, "batch_size": 1}),
              data=str(tiny_corpus))
    assert not (tmp_path / "one").exists()
