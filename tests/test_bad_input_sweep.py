"""The bad-input sweep (issue 15): every command given the mistakes a user plausibly makes.

Each case must end in one `Error:` line that names the problem and the fix, exit code 2, no traceback,
the sources' files unchanged (hashed before and after), nothing new next to them (no output folder, no
`.partial` work folder) and an existing output untouched. A case is a command line with placeholders:
fixtures ({teacher}, {onnx}, {int8}, {bundle}, {encoder}, {data}), inputs the case builds ({bad:NAME},
made by BUILDERS in the test's folder) and {out}, the output that must not appear ({existing} is one that
exists and must stay as it was).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import assert_user_error, digest, make_texts, write_csv

FIXTURES = {"teacher": "tiny_teacher", "onnx": "tiny_onnx", "int8": "tiny_int8", "bundle": "tiny_bundle",
            "encoder": "tiny_encoder", "data": "tiny_data", "embedder": "tiny_embedder",
            "embedder-onnx": "tiny_embedder_onnx", "embedder-bundle": "tiny_embedder_bundle", "corpus": "tiny_corpus",
            "pairs": "tiny_pairs", "ner-data": "tiny_ner_data", "ner-teacher": "tiny_ner_teacher"}


# ---- inputs the cases build (each into the test's own folder) ------------------------------------------------

def _copy(fixture: str, damage: Callable[[Path], None]) -> Callable[[Path, Callable], Path]:
    def build(tmp: Path, fixture_value) -> Path:
        dst = tmp / f"copy-of-{fixture}"
        shutil.copytree(fixture_value(fixture), dst)
        damage(dst)
        return dst
    return build


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _csv(rows, header=("text", "label")):
    def build(tmp: Path, fixture_value) -> Path:
        return write_csv(tmp / "input.csv", rows, header)
    return build


def _file(name: str, text: str):
    def build(tmp: Path, fixture_value) -> Path:
        (tmp / name).write_text(text)
        return tmp / name
    return build


def _other_task(config_class: str, model_class: str, **fields):
    """A real model of another task (its weights and config saved by transformers), with the tiny tokenizer."""
    def build(tmp: Path, fixture_value) -> Path:
        import transformers

        folder = tmp / "other-task-model"
        config = getattr(transformers, config_class)(**fields)
        getattr(transformers, model_class)(config).save_pretrained(folder)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(fixture_value("tiny_teacher") / name, folder / name)
        return folder
    return build


def _pickle_student(tmp: Path, fixture_value) -> Path:
    from transformers import AutoModelForSequenceClassification

    folder = tmp / "pickle-student"
    model = AutoModelForSequenceClassification.from_pretrained(fixture_value("tiny_teacher"))
    model.save_pretrained(folder, safe_serialization=False)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(fixture_value("tiny_teacher") / name, folder / name)
    return folder


def _report(tmp: Path, fixture_value) -> Path:
    row = {"artifact": "student", "backend": "ort-cpu", "batch_size": 1, "seq_len": 128, "threads": 1,
           "status": "ok", "latency_ms": {"p50": 1.0, "p50_ci95": [0.9, 1.1], "round_p50": [1.0] * 5}}
    (tmp / "report.json").write_text(json.dumps({"schema_version": 1, "results": [row],
                                                 "environment": {"cpu": {"model": "x"}}}))
    return tmp / "report.json"


def _recipe(body: str):
    return _file("recipe.yaml", "version: 1\nmodel: {teacher}\ndata: {data}\n" + body)


def _symlink_loop(tmp: Path, fixture_value) -> Path:
    (tmp / "loop-a").symlink_to(tmp / "loop-b")
    (tmp / "loop-b").symlink_to(tmp / "loop-a")
    return tmp / "loop-a"


def _pooling(mode: str):
    """The tiny embedding model with another pooling mode turned on in its 1_Pooling/config.json."""
    def damage(folder: Path) -> None:
        settings = json.loads((folder / "1_Pooling" / "config.json").read_text())
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {**settings, "pooling_mode_mean_tokens": False, mode: True}))
    return _copy("tiny_embedder", damage)


def _dense(folder: Path) -> None:
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))


OTHER_LABELS = [(text, {"fruit": "positive", "colour": "negative", "sport": "negative"}[label])
                for text, label in make_texts(30, seed=5)]
UNKNOWN_LABEL = [*make_texts(20, seed=5), ("a stormy day today", "weather")]

BUILDERS = {
    "vision": _other_task("ViTConfig", "ViTForImageClassification", hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8),
    "seq2seq": _other_task("T5Config", "T5ForConditionalGeneration", d_model=32, d_ff=64, num_layers=1, num_heads=2,
                           vocab_size=64),
    "truncated-weights": _copy("tiny_teacher", lambda d: _truncate(d / "model.safetensors")),
    "earlier": _copy("tiny_onnx", lambda d: None),  # an earlier edgewise output, to be replaced with --overwrite
    "edited-teacher": _copy("tiny_teacher", lambda d: (d / "tokenizer_config.json").write_text("{}")),
    "unknown-label": _csv(UNKNOWN_LABEL),
    "other-labels": _csv(OTHER_LABELS),
    "header-only": _csv([]),
    "no-text-column": _csv(make_texts(20, seed=5), header=("body", "label")),
    "empty-folder": lambda tmp, fv: (tmp / "empty").mkdir() or tmp / "empty",
    "pickle-student": _pickle_student,
    "corrupt-onnx": _copy("tiny_onnx", lambda d: (_truncate(d / "model.onnx"), (d / "edgewise.json").unlink())),
    "edited-onnx": _copy("tiny_onnx", lambda d: _truncate(d / "model.onnx")),
    "truncated-manifest": _copy("tiny_onnx", lambda d: _truncate(d / "edgewise.json")),
    "edited-bundle": _copy("tiny_bundle", lambda d: (d / "model.onnx").write_bytes(b"\0" * 64)),
    "report": _report,
    "truncated-report": _file("truncated.json", '{"schema_version": 1, "results": [{"artifact": "m", "ba'),
    "foreign-json": _file("package.json", '{"name": "left-pad", "version": "1.3.0"}'),
    "recipe": _recipe("stages:\n  - export: {}\n"),
    "recipe-unknown-key": _recipe("stages:\n  - export: {}\nbenchmark: {}\n"),
    "recipe-wrong-type": _recipe("stages:\n  - prune: {flops: half}\n"),
    "recipe-cycle": _recipe("stages:\n  - export: {}\n    id: a\n    input: b\n  - quantize: {}\n    id: b\n"
                            "    input: a\n"),
    "recipe-missing-model": _file("recipe.yaml", "version: 1\nmodel: /nowhere/teacher\nstages:\n  - export: {}\n"),
    "recipe-bad-yaml": _file("recipe.yaml", "version: 1\nstages: [export: {\n"),
    "recipe-empty": _file("recipe.yaml", ""),
    "symlink-loop": _symlink_loop,
    "a-file": _file("notes.txt", "not a folder\n"),
    "weighted-pooling": _pooling("pooling_mode_weightedmean_tokens"),
    "dense-module": _copy("tiny_embedder", _dense),
    "pairs-wrong-columns": _csv([("a red apple", "a green apple", "4.5")], header=("sentence_a", "sentence_b", "sim")),
    "pairs-text-scores": _csv([("a red apple", "a green apple", "high"), ("golf", "tennis", "")],
                              header=("sentence1", "sentence2", "score")),
    "blank-corpus": _file("corpus.txt", "\n   \n\n"),
    "ragged-conll": _file("train.conll", "Alice\tB-FRUIT\nflew\tO\textra\n"),
    "bioes-conll": _file("train.conll", "apple\tS-FRUIT\n"),
    "span-outside": _file("train.jsonl", '{"text": "apple", "entities": [{"start": 0, "end": 9, "label": "FRUIT"}]}\n'),
    "new-type": _copy("tiny_ner_data", lambda d: [(d / name).write_text((d / name).read_text() + "\nparis\tB-GPE\n")
                                                  for name in ("train.conll", "test.conll")]),
    "unknown-tag": _copy("tiny_ner_data", lambda d: (d / "test.conll").write_text("apple\tB-GPE\n")),
}


@dataclass(frozen=True)
class Case:
    command: str  # the command this case counts for in the tally
    args: str  # the command line after `edgewise`, with placeholders
    fragments: tuple[str, ...]  # the problem and the fix, as the error line must say them


def case(command: str, args: str, *fragments: str, id: str):
    return pytest.param(Case(command, args, fragments), id=f"{command}: {id}")


CASES = [
    # -- finetune, token classification (issue 24) ----------------------------------------------------------
    case("finetune", "finetune {encoder} {bad:ragged-conll} -o {out}", "line 2: 3 columns where the file's first "
         "line has 2", "fix the line", id="ragged conll"),
    case("finetune", "finetune {encoder} {bad:bioes-conll} -o {out}", "tag 'S-FRUIT' is not BIO / IOB2",
         "convert the tags", id="bioes tags"),
    case("finetune", "finetune {encoder} {bad:span-outside} -o {out}", "spans characters 0..9, outside the text's 5 "
         "characters", "fix its offsets", id="jsonl span outside its text"),
    case("finetune", "finetune {encoder} {data} -o {out} --task token-classification", "is not word-tagged data",
         "give CoNLL files", id="classification csv to the token task"),
    case("finetune", "finetune {encoder} {ner-data} -o {out} --task classification", "is word-tagged data",
         "pass --task token-classification", id="tagged data to the classification task"),
    case("finetune", "finetune {encoder} {bad:unknown-tag} -o {out}", "tag 'B-GPE' is not among the train tags",
         "fix the tag or add examples of it to train", id="a test tag train lacks"),
    case("evaluate", "evaluate {teacher} {data} --task token-classification", "is a classification model, not "
         "token-classification", "drop --task", id="a classifier as a token classifier"),
    case("evaluate", "evaluate {ner-teacher} {data}", "is not word-tagged data", "give CoNLL files",
         id="a classification csv to a token classifier"),
    case("evaluate", "evaluate {ner-teacher} {bad:new-type}", "tag 'B-GPE' is not among the model's tags",
         "fine-tune a model on data that has this one", id="a tag the token classifier lacks"),
    case("distill", "distill {ner-teacher} {ner-data} -o {out}", "is a token-classification model; distill serves",
         id="token classifier to a stage that does not serve it yet"),
    # -- finetune ------------------------------------------------------------------------------------------
    case("finetune", "finetune {encoder} {data} -o {out} --epochs 0", "epochs must be > 0, got 0", id="zero epochs"),
    case("finetune", "finetune {encoder} {data} -o {out} --epochs -2", "epochs must be > 0, got -2",
         id="negative epochs"),
    case("finetune", "finetune {encoder} {data} -o {out} --lr 0", "learning_rate must be in (0, 1), got 0",
         id="zero lr"),
    case("finetune", "finetune {encoder} {data} -o {out} --lr 5", "learning_rate must be in (0, 1), got 5",
         id="absurd lr"),
    case("finetune", "finetune {encoder} {data} -o {out} --batch-size 0", "batch_size must be >= 1, got 0",
         id="zero batch size"),
    case("finetune", "finetune {encoder} {data} -o {out} --max-length 0", "max_length must be >= 8 tokens or unset",
         id="zero max length"),
    case("finetune", "finetune {encoder} {data} -o {out} --max-length 1000000",
         "max_length 1000000 exceeds the model's limit of 64 tokens; lower it", id="absurd max length"),
    case("finetune", "finetune {encoder} {data} -o {out} --warmup-ratio 1.5", "warmup_ratio must be in [0, 1)",
         id="warmup above 1"),
    case("finetune", "finetune {encoder} {data} -o {out} --validation-fraction 1",
         "validation_fraction must be between 0 and 1 (exclusive)", id="validation fraction 1"),
    case("finetune", "finetune {encoder} {data} -o {out} --length-percentile 0",
         "length_percentile must be in [50, 100]", id="zero percentile"),
    case("finetune", "finetune {encoder} {data} -o {out} --gradient-accumulation-steps 0",
         "gradient_accumulation_steps must be >= 1", id="zero accumulation"),
    case("finetune", "finetune {encoder} {bad:no-text-column} -o {out}", "has no text column 'text'",
         "its columns are body, label: pass --text-column NAME", id="missing text column"),
    case("finetune", "finetune {encoder} {bad:header-only} -o {out}", "is empty: it has no rows", "add rows",
         id="empty data"),
    case("finetune", "finetune {encoder} {data} -o {existing}", "already exists", "pass --overwrite",
         id="existing output"),
    case("finetune", "finetune {encoder} {data} -o {bad:a-file}/out", "lies inside", "notes.txt, which is a file; "
         "choose a folder with -o",
         id="output inside a file"),
    case("finetune", "finetune {bad:vision} {data} -o {out}", "is an image model (vit), not a text encoder",
         "edgewise finetune builtin:all-minilm-l6-v2 DATA -o TEACHER", id="vision model"),
    case("finetune", "finetune {bad:seq2seq} {data} -o {out}", "is a sequence-to-sequence (encoder-decoder) model (t5)",
         "fine-tune one", id="seq2seq model"),
    case("finetune", "finetune {teacher} {data} -o {teacher}", "is the input; choose another output folder with -o",
         id="output is the source"),
    # -- evaluate ------------------------------------------------------------------------------------------
    case("evaluate", "evaluate {teacher} {bad:unknown-label}", "label(s) 'weather' in column 'label'",
         "which knows 'colour', 'fruit', 'sport'; relabel the data or use a model trained on these labels",
         id="label the teacher lacks"),
    case("evaluate", "evaluate {teacher} {data} --batch-size 0", "batch_size must be >= 1, got 0",
         id="zero batch size"),
    case("evaluate", "evaluate {teacher} {data} --max-length -1", "max_length must be >= 2 tokens or unset",
         id="negative max length"),
    case("evaluate", "evaluate {teacher} {data} --split nosuch", "has no 'nosuch' split; it has test, train, "
         "validation: pick one with --split", id="unknown split"),
    case("evaluate", "evaluate {teacher} {bad:empty-folder}", "holds no data: expected split files named train",
         id="empty data folder"),
    case("evaluate", "evaluate {teacher} {data} --encoding klingon", "encoding 'klingon' is not a text encoding",
         "pass --encoding with the file's encoding", id="unknown encoding"),
    case("evaluate", "evaluate {bad:truncated-weights} {data}", "changed since edgewise wrote it (model.safetensors",
         "re-create it with the stage that made it", id="truncated weights"),
    case("evaluate", "evaluate {bad:vision} {data}", "is an image model (vit)", "fine-tune one", id="vision model"),
    case("evaluate", "evaluate {teacher} {data} --backend tensorrt", "backend tensorrt cannot run a 'hf' artifact",
         "runs tensorrt artifacts and jetson bundles", id="tensorrt backend for hf"),
    case("evaluate", "evaluate {bad:a-file} {data}", "is a data file, not a model folder", "did you swap them?",
         id="a file as the model"),
    # -- distill -------------------------------------------------------------------------------------------
    case("distill", "distill {teacher} {data} -o {out} --layers 0", "layers must be >= 1, got 0", id="zero layers"),
    case("distill", "distill {teacher} {data} -o {out} --layers 99", "--layers 99 exceeds the teacher's 2 layers; "
         "choose fewer", id="more layers than the teacher"),
    case("distill", "distill {teacher} {data} -o {out} --layer-map 0,0", "must list distinct teacher layers in "
         "increasing order", id="repeated layer"),
    case("distill", "distill {teacher} {data} -o {out} --layer-map 0,9", "names layers the teacher lacks (it has 0..1)",
         id="layer out of range"),
    case("distill", "distill {teacher} {data} -o {out} --temperature 0", "temperature must be > 0",
         id="zero temperature"),
    case("distill", "distill {teacher} {data} -o {out} --alpha 1.5", "alpha must be in [0, 1], got 1.5",
         id="alpha above 1"),
    case("distill", "distill {teacher} {data} -o {out} --epochs -1", "epochs must be > 0", id="negative epochs"),
    case("distill", "distill {teacher} {data} -o {out} --batch-size 0 --layers 1", "batch_size must be >= 1",
         id="zero batch size"),
    case("distill", "distill {teacher} {data} -o {out} --student {bad:pickle-student}", "holds only pickle weights",
         "convert them to safetensors or pass --allow-pickle if you trust the file", id="pickle student"),
    case("distill", "distill {teacher} {data} -o {out} --student {bad:edited-teacher}",
         "changed since edgewise wrote it (tokenizer_config.json", "re-create it with the stage that made it",
         id="student edited after writing"),
    case("distill", "distill {bad:pickle-student} {data} -o {out} --layers 1", "holds only pickle weights",
         "pass --allow-pickle if you trust the file", id="pickle teacher"),
    case("distill", "distill {teacher} {bad:other-labels} -o {out} --layers 1", "label(s) 'negative', 'positive'",
         "use a model trained on these labels", id="teacher labels differ from the data's"),
    case("distill", "distill {teacher} {data} -o {out} --layers 1 --student-config layers=1",
         "choose one kind of student (--layers, --layer-map, --student, --student-config or --static)",
         id="two student choices"),
    case("distill", "distill {teacher} {data} -o {out} --student-config wings=2", "'wings=2'",
         "KEY one of layers, hidden, heads, ffn", id="unknown student key"),
    case("distill", "distill {teacher} {data} -o {out} --layers 1 --unlabeled /nowhere/texts.txt",
         "'/nowhere/texts.txt' does not exist; pass a file", id="missing unlabeled texts"),
    case("distill", "distill {onnx} {data} -o {out} --layers 1", "is a 'onnx' artifact; this step needs 'hf'",
         "edgewise lineage", id="onnx teacher"),
    case("distill", "distill {bad:seq2seq} {data} -o {out} --layers 1", "sequence-to-sequence", "fine-tune one",
         id="seq2seq teacher"),
    # -- prune ---------------------------------------------------------------------------------------------
    case("prune", "prune {teacher} {data} -o {out} --flops 0", "flops must be a fraction in (0, 1], got 0",
         id="zero flops"),
    case("prune", "prune {teacher} {data} -o {out} --flops 1.5", "flops must be a fraction in (0, 1], got 1.5",
         id="flops above 1"),
    case("prune", "prune {teacher} {data} -o {out} --heads -0.1", "heads must be a fraction in (0, 1]",
         id="negative heads"),
    case("prune", "prune {teacher} {data} -o {out}", "say how much to keep: --flops 0.5", id="no budget"),
    case("prune", "prune {teacher} {data} -o {out} --flops 0.5 --samples 0", "samples must be >= 1",
         id="zero samples"),
    case("prune", "prune {int8} {data} -o {out} --flops 0.5", "is a 'onnx' artifact; this step needs 'hf'",
         "edgewise lineage", id="quantized model"),
    case("prune", "prune {teacher} {data} -o {out} --latency-budget 3parsecs", "'3parsecs' is not a latency",
         "write milliseconds (4ms) or a share", id="bad latency budget"),
    case("prune", "prune {teacher} {data} -o {out} --latency-budget 3ms --threads 0", "threads must be >= 1",
         id="zero threads"),
    case("prune", "prune {teacher} {data} -o {out} --flops 0.5 --round-to 0", "round_to must be >= 1",
         id="zero round-to"),
    case("prune", "prune {teacher} {data} -o {out} --flops 0.5 --drop-layers 99", "would leave no layer of 2; drop "
         "at most 1", id="drop all layers"),
    case("prune", "prune {teacher} {data} -o {out} --flops 0.5 --heal-epochs -1", "heal_epochs must be >= 0",
         id="negative heal epochs"),
    case("prune", "prune {teacher} {data} -o {out} --flops 0.5 --seq-len 0", "seq_len must be >= 2",
         id="zero seq len"),
    case("prune", "prune {bad:truncated-weights} {data} -o {out} --flops 0.5", "changed since edgewise wrote it",
         "re-create it with the stage that made it", id="truncated weights"),
    # -- export --------------------------------------------------------------------------------------------
    case("export", "export {bad:corrupt-onnx} --format ort -o {out}", "model.onnx is not a readable ONNX model",
         "re-export it", id="truncated onnx"),
    case("export", "export {bad:edited-onnx} --format ort -o {out}", "changed since edgewise wrote it (model.onnx",
         "re-create it with the stage that made it", id="onnx edited after writing"),
    case("export", "export {bad:truncated-manifest} --format ort -o {out}", "edgewise.json is not valid JSON",
         "re-create it with the stage that made it", id="truncated manifest"),
    case("export", "export {teacher} -o {out} --opset 5", "opset must be between 11 and 23, got 5",
         id="opset too old"),
    case("export", "export {teacher} -o {out} --opset 99", "opset must be between 11 and 23, got 99",
         id="opset too new"),
    case("export", "export {teacher} -o {out} --atol -1", "atol must be in (0, 1), got -1", id="negative atol"),
    case("export", "export {teacher} -o {out} --verify-samples 0", "verify_samples must be >= 1",
         id="zero verify samples"),
    case("export", "export {onnx} --format tensorrt -o {out} --batch 1:2", "--batch '1:2' is not a profile",
         "write MIN:OPT:MAX", id="bad profile"),
    case("export", "export {teacher} --format ort -o {out}", "export it to ONNX first: edgewise export",
         id="ort from hf"),
    case("export", "export {onnx} -o {out}", "--format onnx needs an 'hf' artifact",
         "pass the fine-tuned transformers folder it came from", id="onnx from onnx"),
    case("export", "export {teacher} -o {existing}", "already exists", "pass --overwrite", id="existing output"),
    case("export", "export {teacher} -o {bad:a-file}/out", "notes.txt, which is a file", "choose a folder with -o",
         id="output inside a file"),
    case("export", "export {bad:symlink-loop} -o {out}", "is a symlink loop", "point it at a real model folder",
         id="symlink loop"),
    # -- quantize ------------------------------------------------------------------------------------------
    case("quantize", "quantize {int8} -o {out}", "is already quantized", "quantize its FP32 parent instead",
         id="already quantized"),
    case("quantize", "quantize {bad:corrupt-onnx} -o {out}", "is not a readable ONNX model",
         "re-create it with edgewise export", id="truncated onnx"),
    case("quantize", "quantize {onnx} -o {out} --method static --data {data} --samples 0", "samples must be >= 1",
         id="zero calibration samples"),
    case("quantize", "quantize {onnx} -o {out} --method static --data {data} --calibration-method percentile "
                     "--percentile 150", "percentile must be in (50, 100], got 150", id="percentile above 100"),
    case("quantize", "quantize {teacher} -o {out} --method dynamic", "--method dynamic needs an 'onnx' artifact",
         "export it first: edgewise export", id="hf model for ort method"),
    case("quantize", "quantize {onnx} -o {out} --max-accuracy-drop -1 --data {data}",
         "max_accuracy_drop must be between 0 and 100 points", id="negative accuracy drop"),
    case("quantize", "quantize {onnx} -o {out} --op-types MatMull", "--op-types names operator types",
         "'MatMull' (did you mean MatMul", id="misspelt op type"),
    case("quantize", "quantize {onnx} -o {out} --exclude-node no_such_node", "--exclude-node names no node",
         "node names are listed by", id="unknown node"),
    case("quantize", "quantize {onnx} -o {out} --method static --calibration /nowhere/c.csv",
         "'/nowhere/c.csv' does not exist", "pass a file", id="missing calibration data"),
    case("quantize", "quantize {onnx} -o {existing}", "already exists", "pass --overwrite", id="existing output"),
    # -- bundle --------------------------------------------------------------------------------------------
    case("bundle", "bundle {teacher} -o {out}", "is a 'hf' artifact", "export it to ONNX first: edgewise export",
         id="hf model"),
    case("bundle", "bundle {bad:truncated-manifest} -o {out}", "edgewise.json is not valid JSON",
         "re-create it with the stage that made it", id="truncated manifest"),
    case("bundle", "bundle {bad:edited-onnx} -o {out}", "changed since edgewise wrote it (model.onnx",
         "re-create it with the stage that made it", id="edited model"),
    case("bundle", "bundle {onnx} -o {out} --max-length 0", "max_length must be >= 2 or unset", id="zero max length"),
    case("bundle", "bundle {onnx} -o {out} --target android --fixed-shape 0x128", "'0x128' is not BATCHxTOKENS",
         "e.g. 1x128", id="zero fixed shape"),
    case("bundle", "bundle {onnx} -o {out} --target jetson --max-batch 0", "max_batch must be >= 1",
         id="zero max batch"),
    case("bundle", "bundle {onnx} -o {existing}", "already exists", "pass --overwrite", id="existing output"),
    case("bundle", "bundle {onnx} -o {bad:a-file}", "the output folder", "is a file; choose a folder with -o",
         id="output is a file"),
    # -- bench run -----------------------------------------------------------------------------------------
    case("bench", "bench {onnx} -o {out} --batch-sizes 0", "batch sizes must be >= 1, got [0]", id="zero batch size"),
    case("bench", "bench {onnx} -o {out} --batch-sizes a,b", "'a,b' is not a comma-separated list of integers",
         id="batch sizes not numbers"),
    case("bench", "bench {onnx} -o {out} --rounds 0", "rounds must be >= 1, got 0", id="zero rounds"),
    case("bench", "bench {onnx} -o {out} --threads -1", "threads must be >= 1, got -1", id="negative threads"),
    case("bench", "bench {onnx} -o {out} --seq-len -5", "seq_len must be a number >= 2, 'data' or 'auto'",
         id="negative seq len"),
    case("bench", "bench {onnx} -o {out} --min-time -1", "min_time_s must be >= 0, got -1", id="negative min time"),
    case("bench", "bench {onnx} -o {out} --data {data} --accuracy-samples 0", "accuracy_samples must be >= 1",
         id="zero accuracy samples"),
    case("bench", "bench {onnx} -o {out} --data {bad:unknown-label}", "label(s) 'weather'", "relabel the data",
         id="label the model lacks"),
    case("bench", "bench {bad:pickle-student} -o {out}", "holds only pickle weights", "pass --allow-pickle",
         id="pickle model"),
    case("bench", "bench {bad:a-file} -o {out}", "is a data file, not a model folder", "did you swap them?",
         id="a file as the artifact"),
    case("bench", "bench {onnx} -o {existing}", "already exists", "pass --overwrite", id="existing output"),
    # -- bench compare -------------------------------------------------------------------------------------
    case("bench compare", "bench compare {bad:truncated-report} {bad:report}", "is not a readable JSON report",
         "re-run edgewise bench", id="truncated report"),
    case("bench compare", "bench compare {bad:foreign-json} {bad:report}", "is not a bench report (no results list)",
         "pass a report.json of edgewise bench", id="foreign json"),
    case("bench compare", "bench compare {bad:empty-folder} {bad:report}", "report.json does not exist",
         "pass a report.json written by edgewise bench", id="a folder without a report"),
    case("bench compare", "bench compare {bad:report} {bad:report} --max-latency-regression fast",
         "'fast' is not a percentage; write e.g. 10%", id="bad regression bound"),
    case("bench compare", "bench compare /nowhere/report.json {bad:report}", "/nowhere/report.json does not exist",
         "pass a report.json written by edgewise bench", id="missing report"),
    # -- run (recipes) -------------------------------------------------------------------------------------
    case("run", "run {bad:recipe-unknown-key} -o {out}", "unknown key benchmark", "valid top-level keys are version",
         id="unknown key"),
    case("run", "run {bad:recipe-wrong-type} -o {out}", "stages[1].prune.flops: expected a number, got 'half'",
         id="wrong type"),
    case("run", "run {bad:recipe-cycle} -o {out}", "stages[1].input 'b' names no earlier stage",
         "a stage reads the model or a stage before it", id="cycle"),
    case("run", "run {bad:recipe-missing-model} -o {out}", "model /nowhere/teacher is not a folder",
         "give the path of a model folder", id="missing model"),
    case("run", "run {bad:recipe-bad-yaml} -o {out}", "is not valid YAML at line 3", "fix the file", id="yaml syntax"),
    case("run", "run {bad:recipe-empty} -o {out}", "got an empty file", id="empty recipe"),
    case("run", "run {bad:empty-folder} -o {out}", "does not exist or is not a file",
         "pass the path of a recipe YAML", id="a folder as the recipe"),
    case("run", "run {bad:recipe} -o {bad:a-file}/run", "lies inside", "choose a folder with -o",
         id="output inside a file"),
    # -- compress ------------------------------------------------------------------------------------------
    case("compress", "compress {teacher} {data} -o {out} --max-accuracy-drop -1",
         "max_accuracy_drop must be 0-100 points", id="negative drop"),
    case("compress", "compress {teacher} {data} -o {out} --latency-budget soon", "'soon' is not understood",
         "write milliseconds such as 3ms", id="bad latency budget"),
    case("compress", "compress {teacher} {data} -o {out} --depths 0", "depths must be >= 1 layer", id="zero depth"),
    case("compress", "compress {teacher} {data} -o {out} --time-budget later", "'later' is not understood",
         "write e.g. 45m, 2h or 900s", id="bad time budget"),
    case("compress", "compress {teacher} {data} -o {out} --set nosuch.key=1", "write STAGE.OPTION=VALUE with STAGE "
         "one of distill", id="unknown stage in --set"),
    case("compress", "compress {teacher} {data} -o {out} --threads 0", "threads must be >= 1, got 0",
         id="zero threads"),
    case("compress", "compress {teacher} {data} -o {out} --quantize bogus", "quantize method(s) bogus unknown; choose "
         "from dynamic, static", id="unknown quantize method"),
    case("compress", "compress {onnx} {data} -o {out}", "is a 'onnx' artifact; this step needs 'hf'",
         "pass the 'hf' artifact it was made from", id="onnx teacher"),
    case("compress", "compress {teacher} {data} -o {bad:symlink-loop}", "is a symlink loop", "point it at a real",
         id="symlink loop output"),
    # -- demo ----------------------------------------------------------------------------------------------
    case("demo", "demo -o {bad:a-file}", "the demo folder", "is a file; choose a folder with -o",
         id="output is a file"),
    case("demo", "demo -o {bad:symlink-loop}", "is a symlink loop", "point it at a real demo folder",
         id="symlink loop output"),
    # -- lineage -------------------------------------------------------------------------------------------
    case("lineage", "lineage {bad:empty-folder}", "has no edgewise.json; lineage needs an artifact written by edgewise",
         id="folder without a manifest"),
    # -- remote targets ------------------------------------------------------------------------------------
    case("targets", "bench {bundle} -o {out} --target ssh://-oProxyCommand=touch",
         "cannot start with '-' (ssh would read it as an option)", id="option injection"),
    case("targets", "bench {bundle} -o {out} --target ftp://pi", "unknown target 'ftp://pi'",
         "use local, ssh://[user@]host[:port] or adb://SERIAL", id="unknown scheme"),
    case("targets", "evaluate {bundle} {data} --target ssh://pi?timeout=-1",
         "timeout must be a number of seconds > 0", id="negative timeout"),
    case("targets", "evaluate {bundle} {data} --target ssh://pi?color=red", "unknown setting(s) color",
         "known: python, cache, timeout, wheels", id="unknown setting"),
    case("targets", "bench {bundle} -o {out} --target ssh://pi:0", "port must be 1..65535, got 0",
         "ssh://[user@]host[:port]", id="port zero"),
    # -- recipe validate -----------------------------------------------------------------------------------
    case("recipe validate", "recipe validate {bad:recipe-unknown-key}", "unknown key benchmark",
         "valid top-level keys are version", id="unknown key"),
    case("recipe validate", "recipe validate {bad:recipe-cycle}", "names no earlier stage", id="missing input"),
    case("recipe validate", "recipe validate /nowhere/recipe.yaml", "does not exist",
         "pass the path of a recipe YAML", id="missing recipe"),
    # -- embedding models (issue 23) -------------------------------------------------------------------------
    case("distill", "distill {teacher} {data} -o {out} --layers 1 --task embedding",
         "is a classification model, not embedding; drop --task", id="a classifier as --task embedding"),
    case("compress", "compress {teacher} {data} -o {out} --task embedding",
         "is a classification model, not embedding; drop --task", id="a classifier as --task embedding"),
    case("quantize", "quantize {embedder} -o {out} --method inc", "--method inc serves classification models",
         "quantize its ONNX export (edgewise export) with --method dynamic or static",
         id="an embedding model to INC"),
    case("distill", "distill {teacher} {data} -o {out} --static", "--static distils a sentence-embedding teacher",
         "drop --static", id="a classifier to --static"),
    case("evaluate", "evaluate {embedder} {data}", "holds no scored pairs and no reference model",
         "pass scored pairs (columns sentence1, sentence2, score) as DATA, or --reference MODEL",
         id="an embedding model on labelled texts alone"),
    case("evaluate", "evaluate {embedder-onnx} {corpus} --reference {teacher}", "is not a sentence-embedding",
         "pass --reference with the teacher", id="a classifier as the reference"),
    case("bench", "bench {embedder-onnx} --data {corpus} --pairs {bad:pairs-wrong-columns}",
         "has no column 'sentence1', 'sentence2', 'score'", "scored pairs need the columns sentence1, sentence2, "
         "score", id="pairs with wrong columns"),
    case("quantize", "quantize {embedder-onnx} -o {out} --data {corpus} --pairs {bad:pairs-text-scores}",
         "holds values that are not numbers: row 1 ('high'), row 2 ('')", "fix or drop those rows",
         id="pairs with scores that are not numbers"),
    case("distill", "distill {embedder} {bad:blank-corpus} -o {out} --layers 1", "is empty: it has no rows",
         id="an empty corpus"),
    case("export", "export {bad:weighted-pooling} -o {out}", "pooling_mode_weightedmean_tokens",
         "edgewise computes exactly one of mean, cls or max", id="unknown pooling mode"),
    case("distill", "distill {bad:dense-module} {corpus} -o {out} --layers 1", "Transformer, Pooling, Dense",
         "a model with other modules (Dense, ...) is not supported", id="a Dense module"),
    case("export", "export {embedder} -o {out} --pooling max", "pools its vectors itself",
         "--pooling max would change the model: drop them", id="pooling against the model's own"),
    case("prune", "prune {encoder} {corpus} -o {out} --flops 0.5 --task classification --pooling mean",
         "--pooling and --normalize describe an embedding model; drop them", id="pooling for a classifier"),
    case("compress", "compress {embedder} {corpus} -o {out} --pairs {pairs}/test.csv", "has one split",
         "give a folder with validation.csv and test.csv", id="pairs without validation and test"),
    # -- an earlier output given with --overwrite stays as it was when the new run fails ---------------------
    case("export", "export {teacher} -o {bad:earlier} --overwrite --opset 5", "opset must be between 11 and 23",
         id="failed overwrite"),
    case("quantize", "quantize {onnx} -o {bad:earlier} --overwrite --op-types MatMull", "did you mean MatMul",
         id="failed overwrite"),
    case("bundle", "bundle {onnx} -o {bad:earlier} --overwrite --target android --fixed-shape 1x1",
         "'1x1' is not BATCHxTOKENS", id="failed overwrite"),
    case("finetune", "finetune {encoder} {bad:header-only} -o {bad:earlier} --overwrite", "is empty: it has no rows",
         id="failed overwrite"),
]


def _expand(args: str, tmp: Path, fixture_value) -> tuple[list[str], list[Path]]:
    """The command line with its placeholders filled in, and the existing paths it reads."""
    values: dict[str, str] = {"out": str(tmp / "out"), "existing": str(tmp / "existing")}
    sources: list[Path] = []

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        path = BUILDERS[name[4:]](tmp, fixture_value) if name.startswith("bad:") else fixture_value(FIXTURES[name])
        sources.append(path)
        values[name] = str(path)
        return str(path)

    # A recipe builder's text holds placeholders too: fill them once the file exists.
    words = [re.sub(r"\{([a-z:0-9-]+)\}", fill, word) for word in args.split()]
    for path in sources:
        if path.suffix == ".yaml":
            path.write_text(re.sub(r"\{([a-z]+)\}", fill, path.read_text()))
    return words, sources


def _prepare(bad: Case, tmp_path: Path, fixture_value) -> tuple[Path, list[str], list[Path]]:
    """The case's folder (with an earlier output, `existing`), its command line and the paths it reads."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "existing").mkdir()
    (work / "existing" / "keep.txt").write_text("an earlier result\n")
    return work, *_expand(bad.args, work, fixture_value)


def _state(work: Path, sources: list[Path]) -> dict:
    """What a refused command must leave as it was: every source, what lies next to them, the earlier output."""
    return {"a source": {path: digest(path) for path in sources},
            "what lies next to the sources": sorted(p.name for p in work.iterdir()),
            "the existing output": digest(work / "existing")}


def _assert_unchanged(work: Path, sources: list[Path], before: dict) -> None:
    after = _state(work, sources)
    for what, value in before.items():
        assert after[what] == value, f"{what} changed"


@pytest.mark.parametrize("bad", CASES)
def test_a_bad_input_is_one_error_that_changes_nothing(bad: Case, cli_run, request, tmp_path):
    work, args, sources = _prepare(bad, tmp_path, request.getfixturevalue)
    before = _state(work, sources)

    result = cli_run(*args)

    assert_user_error(result, *bad.fragments)
    _assert_unchanged(work, sources, before)


# The device runtime (`python -m edgewise.runtime`, argparse, no click): the same rule.
RUNTIME_CASES = [
    case("runtime", "predict /nowhere/bundle hello", "/nowhere/bundle is not a folder; pass a bundle or an ONNX "
         "artifact folder", id="missing bundle"),
    case("runtime", "predict {teacher} hello", "is a transformers (PyTorch) model, which the runtime cannot run",
         "edgewise export", id="hf folder"),
    case("runtime", "predict {bad:edited-bundle} hello", "changed since edgewise wrote it (model.onnx",
         "re-create the bundle with `edgewise bundle`, or pass --no-verify", id="edited bundle"),
    case("runtime", "predict {bundle} hello --threads 0", "--threads must be >= 1, got 0", id="zero threads"),
    case("runtime", "bench {bundle} --batch-sizes 0", "--batch-sizes must be >= 1, got 0", id="zero batch size"),
    case("runtime", "bench {bundle} --batch-sizes x", "'x' is not a comma-separated list of integers",
         id="batch sizes not numbers"),
    case("runtime", "bench {bundle} --seq-len -1", "--seq-len must be between 2 and the bundle's max_length 32",
         id="negative seq len"),
    case("runtime", "bench {bundle} --min-runs 0", "--min-runs must be >= 1, got 0", id="zero runs"),
    case("runtime", "build-engine {bundle} --no-bench", "is a bundle for target generic, not a jetson bundle",
         "make one with edgewise bundle SRC -o DST --target jetson", id="engine of a generic bundle"),
    case("runtime", "job /nowhere/job.json --out {out}", "cannot read the job /nowhere/job.json",
         "write it with edgewise bench --target", id="missing job"),
    case("runtime", "predict {embedder-bundle} hello", "gives vectors, not labels; use embed",
         id="predict with an embedding bundle"),
    case("runtime", "predict {bundle} hello --stride 8", "--stride reads a token classifier's long texts",
         "drop --stride", id="stride for a classifier"),
    case("runtime", "embed {bundle} hello", "gives labels, not vectors; use predict", id="embed with a classifier"),
    case("runtime", "embed {embedder-bundle}", "no texts to embed", "give them as arguments or with --file",
         id="nothing to embed"),
]


@pytest.mark.parametrize("bad", RUNTIME_CASES)
def test_a_bad_input_to_the_device_runtime_is_one_error_that_changes_nothing(bad: Case, capsys, request, tmp_path):
    from types import SimpleNamespace

    from edgewise.runtime.__main__ import main

    work, args, sources = _prepare(bad, tmp_path, request.getfixturevalue)
    before = _state(work, sources)
    capsys.readouterr()  # what building the fixtures printed

    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()

    assert_user_error(SimpleNamespace(exit_code=code, stderr=captured.err, output=captured.out + captured.err,
                                      exception=None), *bad.fragments)
    _assert_unchanged(work, sources, before)


def test_the_sweep_covers_every_command():
    from click import Group

    from edgewise.cli import cli

    commands = {c.command for c in (p.values[0] for p in CASES + RUNTIME_CASES)}
    listed = set()
    for name, command in cli.commands.items():
        if isinstance(command, Group):
            listed |= {"bench" if sub == "run" else f"{name} {sub}" for sub in command.commands}
        else:
            listed.add(name)
    missing = (listed | {"runtime", "targets"}) - commands - {"env"}  # env takes no input
    assert not missing, f"no bad-input case for: {sorted(missing)}"
    assert len(CASES) + len(RUNTIME_CASES) >= 60


def _without_root_override(tmp_path: Path) -> list[str]:
    """The prefix that makes a command obey file modes: nothing for a normal user; for root (CI containers),
    setpriv dropping the capabilities that let root read and write anything. Skips where neither works."""
    import subprocess

    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: chmod cannot make a file unreadable here")
        prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        readable = subprocess.run([*prefix, "cat", str(probe)], capture_output=True).returncode == 0
    finally:
        probe.unlink()
    if readable:
        pytest.skip("a chmod 000 file stays readable here (capabilities cannot be dropped)")
    return prefix


def _lock(path: Path, mode: int):
    path.chmod(mode)
    return path


# (what is made unreadable or unwritable, the command line, what the error names)
PERMISSION_CASES = [
    pytest.param(lambda w: _lock(w / "model" / "model.safetensors", 0), "evaluate {model} {data}",
                 "model.safetensors", id="unreadable weights"),
    pytest.param(lambda w: _lock(w / "data.csv", 0), "evaluate {model} {csv}", "data.csv", id="unreadable data"),
    pytest.param(lambda w: _lock(w / "model", 0), "export {model} -o {out}", "is not readable",
                 id="unreadable model folder"),
    pytest.param(lambda w: _lock(w / "locked", 0o555), "export {model} -o {locked}/out", "locked",
                 id="read-only output location"),
    pytest.param(lambda w: _lock(w / "locked", 0o555), "bundle {onnx} -o {locked}/out", "locked",
                 id="read-only bundle location"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("lock", "args", "named"), PERMISSION_CASES)
def test_an_unreadable_input_or_unwritable_output_is_one_error(lock, args, named, tiny_teacher, tiny_onnx,
                                                               tiny_data, tmp_path):
    import subprocess
    import sys

    prefix = _without_root_override(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_teacher, work / "model")
    shutil.copy(tiny_data / "test.csv", work / "data.csv")
    (work / "locked").mkdir()
    before = digest(work)  # (a normal user cannot read the locked file afterwards)
    locked = lock(work)
    values = {"model": work / "model", "data": tiny_data, "csv": work / "data.csv", "onnx": tiny_onnx,
              "out": work / "out", "locked": work / "locked"}
    try:
        result = subprocess.run([*prefix, sys.executable, "-m", "edgewise", *args.format(**values).split()],
                                capture_output=True, text=True, timeout=300)
    finally:
        locked.chmod(0o755 if locked.is_dir() else 0o644)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], result.stderr
    assert "permission" in lines[0].lower() or "not readable" in lines[0], lines[0]
    assert digest(work) == before, "something changed or was left next to the inputs"


UNUSUAL_TEXTS = [
    "😀🍎 apple banana 🍌 really 👍🏽",  # emoji, a skin-tone sequence
    "גלידה apple בננה mango שלום",  # right-to-left script mixed with left-to-right
    "مرحبا red blue أخضر",
    "the\x00 red\x07 and\x1b[31m blue\u200b\u202e green",  # NUL, bell, an ANSI escape, zero-width, RTL override
    "tennis " + "golf " * 200_000,  # a 1 MB text: cut at the model's max length
    "\u00a0\u3000 hockey \u2028 rugby",  # unusual spaces, a line separator
]


def test_unusual_texts_are_predicted_not_refused(cli_run, tiny_teacher, tiny_bundle, tmp_path, capsys):
    from edgewise.runtime.__main__ import main

    labels = ["fruit", "fruit", "colour", "colour", "sport", "sport"]
    data = tmp_path / "unusual.jsonl"
    rows = zip(UNUSUAL_TEXTS, labels, strict=True)
    data.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows), encoding="utf-8")

    for model in (tiny_teacher, tiny_bundle):  # PyTorch and onnxruntime
        result = cli_run("evaluate", model, data, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["samples"] == len(UNUSUAL_TEXTS)
        assert 0 <= report["accuracy"] <= 1
    capsys.readouterr()
    assert main(["predict", str(tiny_bundle), *UNUSUAL_TEXTS, "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == len(UNUSUAL_TEXTS)
    assert {p["label"] for p in predictions} <= {"colour", "fruit", "sport"}


@pytest.fixture
def full_disk(tmp_path):
    """A real 16 KiB tmpfs (root only; skipped where mounting is not allowed): writing a model there fills it."""
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()
    tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True,
                           text=True)
    if tried.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {tried.stderr.strip() or tried.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export {teacher} -o {out}", "bundle {onnx} -o {out}",
                                     "quantize {onnx} -o {out}"])
def test_a_full_disk_is_one_error_that_leaves_nothing(command, full_disk, cli_run, tiny_teacher, tiny_onnx):
    sources = {path: digest(path) for path in (tiny_teacher, tiny_onnx)}

    result = cli_run(*command.format(teacher=tiny_teacher, onnx=tiny_onnx, out=full_disk / "out").split())

    # (the stage's progress lines come first: the disk fills mid-stage)
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr
    assert "No space left on device" in errors[0]
    assert "free some space there or choose another output folder with -o" in errors[0]
    assert list(full_disk.iterdir()) == []
    assert shutil.disk_usage(full_disk).used < 8 * 1024  # what was written was removed
    assert {path: digest(path) for path in sources} == sources
