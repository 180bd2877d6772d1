"""Tiny models, tokenizers and data built offline, once per test session."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Teacher-logit caches go to a temporary folder, never the user's ~/.cache."""
    import os

    previous = os.environ.get("EDGEWISE_CACHE")
    os.environ["EDGEWISE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["EDGEWISE_CACHE"]
    else:
        os.environ["EDGEWISE_CACHE"] = previous


# Three classes, each signalled by its own words inside shared filler: learnable in seconds.
CLASS_WORDS = {
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango"],
    "colour": ["red", "green", "blue", "yellow", "purple", "orange"],
    "sport": ["football", "tennis", "hockey", "rugby", "cricket", "golf"],
}
FILLER = ["the", "a", "is", "very", "and", "we", "like", "today", "really", "some", "of", "it"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_texts(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(CLASS_WORDS)[i % len(CLASS_WORDS)]
        words = rng.sample(FILLER, 5) + rng.sample(CLASS_WORDS[label], 2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def build_tokenizer(path: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + FILLER + [w for ws in CLASS_WORDS.values() for w in ws]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=64,
    )
    fast.save_pretrained(path)
    return len(vocab)


ARCHITECTURES = ("bert", "distilbert", "roberta")


def build_encoder(path: Path, arch: str = "bert") -> Path:
    """A pretrained-encoder folder like all-MiniLM-L6-v2: encoder weights + tokenizer, no head."""
    import torch
    from transformers import AutoModel, BertConfig, DistilBertConfig, RobertaConfig

    vocab_size = build_tokenizer(path)
    torch.manual_seed(0)
    config = {
        "bert": lambda: BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=64),
        "distilbert": lambda: DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                               max_position_embeddings=64),
        # RoBERTa's positions start after the padding index: 2 more than the 64 tokens it takes.
        "roberta": lambda: RobertaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=66,
                                         pad_token_id=0, type_vocab_size=1),
    }[arch]()
    AutoModel.from_config(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_encoder(tmp_path_factory.mktemp("encoder"), "bert")


def write_sentence_transformers(path: Path, pooling: str = "mean", normalize: bool = True, width: int = 32,
                                max_seq_length: int = 32, modules: list | None = None) -> Path:
    """The files sentence-transformers writes beside an encoder (modules.json, 1_Pooling/config.json,
    sentence_bert_config.json), written by hand as it writes them: an embedding model's folder."""
    import json

    listed = modules or [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        *([{"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
          if normalize else [])]
    (path / "modules.json").write_text(json.dumps(listed, indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    modes = {"pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean",
             "pooling_mode_max_tokens": pooling == "max", "pooling_mode_mean_sqrt_len_tokens": False}
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": width, **modes}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                "do_lower_case": False}))
    return path


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory) -> Path:
    """A sentence-transformers embedding model like all-MiniLM-L6-v2 (a tiny BERT encoder, mean pooling,
    normalised), random weights: the embedding teacher of the tests (no edgewise.json: a foreign folder)."""
    path = build_encoder(tmp_path_factory.mktemp("embedder"), "bert")
    return write_sentence_transformers(path)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Unlabelled texts, one per line (.txt): an embedding model's corpus."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(text for text, _ in make_texts(160, seed=4)) + "\n")
    return path


def make_pairs(n: int, seed: int) -> list[tuple[str, str, float]]:
    """Scored sentence pairs on STS's 0-5 scale: a text and itself 5, two texts of one class 3-4, of two classes
    0-1 (so that even an untrained encoder ranks them the right way round, mostly: a positive Spearman)."""
    rng = random.Random(seed)
    texts = make_texts(2 * n, seed)
    rows = []
    for i in range(n):
        (first, a), (second, b) = rng.sample(texts, 2)
        if i % 4 == 0:
            rows.append((first, first, 5.0))
        else:
            rows.append((first, second, round(rng.uniform(3, 4) if a == b else rng.uniform(0, 1), 2)))
    return rows


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory) -> Path:
    """A folder of scored pairs (validation.csv and test.csv; columns sentence1, sentence2, score), like STS-B."""
    path = tmp_path_factory.mktemp("pairs")
    header = ("sentence1", "sentence2", "score")
    write_csv(path / "validation.csv", make_pairs(40, seed=5), header)
    write_csv(path / "test.csv", make_pairs(40, seed=6), header)
    return path


def write_retrieval(path: Path) -> Path:
    """A retrieval set in BEIR's layout: 30 documents of the three classes, 6 queries (two words of one class),
    each with the documents of its class judged relevant (grade 1)."""
    import json

    path.mkdir(parents=True, exist_ok=True)
    documents = make_texts(30, seed=8)
    (path / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n"
                                               for i, (text, _) in enumerate(documents)))
    queries = [(f"q{i}", label, " ".join(CLASS_WORDS[label][i % 3:i % 3 + 2])) for i, label in
               enumerate(list(CLASS_WORDS) * 2)]
    (path / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": text}) + "\n"
                                                for q, _, text in queries))
    (path / "qrels").mkdir(exist_ok=True)
    (path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\td{i}\t1\n" for q, label, _ in queries for i, (_, other) in enumerate(documents) if other == label))
    return path


@pytest.fixture(scope="session")
def tiny_retrieval(tmp_path_factory) -> Path:
    return write_retrieval(tmp_path_factory.mktemp("retrieval") / "beir")


@pytest.fixture(scope="session")
def tiny_embedder_onnx(tiny_embedder, tiny_corpus, tmp_path_factory) -> Path:
    """The tiny embedding model exported to ONNX by edgewise (pooling and normalisation in the graph)."""
    from edgewise.export import ExportConfig, export

    dst = tmp_path_factory.mktemp("embedder-onnx") / "onnx"
    export(tiny_embedder, dst, ExportConfig(), data=str(tiny_corpus))
    return dst


@pytest.fixture(scope="session")
def tiny_embedder_bundle(tiny_embedder_onnx, tmp_path_factory) -> Path:
    """The tiny embedding model's deploy folder."""
    from edgewise.export import bundle

    dst = tmp_path_factory.mktemp("deploy-embedder") / "embedder"
    bundle(tiny_embedder_onnx, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder with train.csv / validation.csv / test.csv of the three-class task."""
    path = tmp_path_factory.mktemp("data")
    write_csv(path / "train.csv", make_texts(240, seed=1))
    write_csv(path / "validation.csv", make_texts(60, seed=2))
    write_csv(path / "test.csv", make_texts(60, seed=3))
    return path


def make_tagged(n: int, seed: int, lengths=(1,)) -> list[list[tuple[str, str]]]:
    """Word-tagged sentences: filler words (O) with one or two entities of ``lengths`` class words each (the
    class is the entity type: B-FRUIT I-FRUIT ...; the tiny encoder learns B- vs I- slowly, so one word by
    default)."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        sentence = [(w, "O") for w in rng.sample(FILLER, 5)]
        for _ in range(rng.choice((1, 2))):
            kind = rng.choice(list(CLASS_WORDS))
            words = rng.sample(CLASS_WORDS[kind], rng.choice(lengths))
            at = rng.randrange(len(sentence) + 1)
            while at < len(sentence) and sentence[at][1].startswith("I-"):
                at += 1  # never inside another entity
            entity = [(w, ("B-" if i == 0 else "I-") + kind.upper()) for i, w in enumerate(words)]
            sentence[at:at] = entity
        sentences.append(sentence)
    return sentences


def write_conll(path: Path, sentences) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_ner_data(tmp_path_factory) -> Path:
    """A folder with train.conll / validation.conll / test.conll of the three entity types."""
    path = tmp_path_factory.mktemp("ner")
    write_conll(path / "train.conll", make_tagged(240, seed=1))
    write_conll(path / "validation.conll", make_tagged(60, seed=2))
    write_conll(path / "test.conll", make_tagged(60, seed=3))
    return path


TINY_TRAINER = dict(epochs=8, learning_rate=3e-3, batch_size=16, warmup_ratio=0.0)
TINY_MAX_LENGTH = 32


def tiny_finetune_config(data=None, **trainer):
    """The fine-tuning settings of the tiny teachers (TINY_TRAINER, changed by ``trainer``)."""
    from edgewise.core.data import DataConfig
    from edgewise.finetune import FinetuneConfig, TrainerConfig

    return FinetuneConfig(trainer=TrainerConfig(**{**TINY_TRAINER, **trainer}), max_length=TINY_MAX_LENGTH,
                          data=data or DataConfig())


@pytest.fixture(scope="session")
def tiny_teacher(tiny_encoder, tiny_data, tmp_path_factory) -> Path:
    """A fine-tuned teacher artifact written by edgewise's own finetune stage."""
    from edgewise.finetune import finetune

    dst = tmp_path_factory.mktemp("runs") / "teacher"
    finetune(str(tiny_encoder), dst, tiny_finetune_config(), data=str(tiny_data))
    return dst


@pytest.fixture(scope="session")
def tiny_ner_teacher(tiny_encoder, tiny_ner_data, tmp_path_factory) -> Path:
    """A token-classification teacher written by edgewise's finetune stage."""
    from edgewise.finetune import finetune

    dst = tmp_path_factory.mktemp("runs") / "ner-teacher"
    finetune(str(tiny_encoder), dst, tiny_finetune_config(), data=str(tiny_ner_data))
    return dst


@pytest.fixture(scope="session")
def teacher_of(tiny_data, tmp_path_factory):
    """A fine-tuned tiny teacher per architecture, built once per session on first use."""
    from edgewise.finetune import finetune

    teachers = {}

    def get(arch: str) -> Path:
        if arch not in teachers:
            encoder = build_encoder(tmp_path_factory.mktemp(f"encoder-{arch}"), arch)
            dst = tmp_path_factory.mktemp(f"runs-{arch}") / "teacher"
            finetune(str(encoder), dst, tiny_finetune_config(), data=str(tiny_data))
            teachers[arch] = dst
        return teachers[arch]

    return get


@pytest.fixture(scope="session")
def teacher_without_validation(tiny_encoder, tiny_data, tmp_path_factory):
    """A tiny teacher fine-tuned on train.csv + test.csv only (finetune carves validation from train),
    exported to ONNX."""
    import shutil

    from edgewise.core.data import DataConfig
    from edgewise.export import ExportConfig, export
    from edgewise.finetune import finetune

    root = tmp_path_factory.mktemp("no-validation")
    data = root / "data"
    data.mkdir()
    for name in ("train.csv", "test.csv"):
        shutil.copy(tiny_data / name, data / name)
    config = tiny_finetune_config(DataConfig(validation_fraction=0.2, seed=7), epochs=2)
    finetune(str(tiny_encoder), root / "teacher", config, data=str(data))
    export(root / "teacher", root / "onnx", ExportConfig())
    return data, root / "teacher", root / "onnx"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_teacher, tiny_data, tmp_path_factory) -> Path:
    """The tiny BERT teacher exported to ONNX by edgewise."""
    from edgewise.export import ExportConfig, export

    dst = tmp_path_factory.mktemp("onnx") / "teacher-onnx"
    export(tiny_teacher, dst, ExportConfig(), data=str(tiny_data))
    return dst


@pytest.fixture(scope="session")
def external_onnx(tiny_onnx, tmp_path_factory) -> Path:
    """The tiny ONNX artifact re-saved with its weights in model.onnx_data, as optimum does above 2 GB."""
    import shutil

    import onnx

    from edgewise.core.manifest import MANIFEST_NAME

    dst = tmp_path_factory.mktemp("external") / "onnx"
    shutil.copytree(tiny_onnx, dst)
    (dst / MANIFEST_NAME).unlink()  # a foreign folder now: its files changed
    model = onnx.load(str(dst / "model.onnx"))
    onnx.save(model, str(dst / "model.onnx"), save_as_external_data=True, location="model.onnx_data",
              size_threshold=0)
    return dst


@pytest.fixture(scope="session")
def tiny_int8(tiny_onnx, tmp_path_factory) -> Path:
    """The tiny ONNX teacher, dynamically quantized (quantize's defaults)."""
    from edgewise.quantize import quantize
    from edgewise.quantize.config import QuantizeConfig

    dst = tmp_path_factory.mktemp("int8") / "dynamic"
    quantize(tiny_onnx, dst, QuantizeConfig())
    return dst


@pytest.fixture(scope="session")
def tiny_bundle(tiny_onnx, tmp_path_factory) -> Path:
    from edgewise.export import bundle

    dst = tmp_path_factory.mktemp("deploy") / "teacher"
    bundle(tiny_onnx, dst)
    return dst


def random_classifier(path: Path, tokenizer_from: Path, hidden: int = 32, layers: int = 2, seed: int = 1) -> Path:
    """An untrained classifier on the tiny labels and tokenizer: it predicts at chance."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    labels = ["colour", "fruit", "sport"]
    config = BertConfig(vocab_size=35, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=4 * hidden, max_position_embeddings=64, id2label=dict(enumerate(labels)),
                        label2id={v: k for k, v in enumerate(labels)})
    BertForSequenceClassification(config).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer_from / name, path / name)
    return path


def assert_user_error(result, *fragments: str) -> None:
    """A CLI result is exactly one `Error: ...` line on stderr, exit code 2, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def digest(path: Path) -> str:
    """A hash of everything under ``path`` (names, bytes, symlink targets; loops and unreadable files included)."""
    import hashlib
    import os

    sha = hashlib.sha256()
    if path.is_file() or path.is_symlink():
        entries = [path]
    else:
        entries = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            entries += [Path(root) / name for name in sorted(dirs + files)]
    for entry in entries:
        sha.update(str(entry.relative_to(path.parent)).encode())
        if entry.is_symlink():
            sha.update(b"->" + os.readlink(entry).encode())
        elif entry.is_file():
            sha.update(entry.read_bytes())
    return sha.hexdigest()


@pytest.fixture
def cli_run():
    from click.testing import CliRunner

    from edgewise.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args], prog_name="edgewise")

    return run


def ort_has_cuda() -> bool:
    """Whether this onnxruntime has the CUDA provider (tests of the "no CUDA here" path skip where it does)."""
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def signal_after_first_checkpoint(command: list[str], checkpoints: Path, timeout_s: float, sig=None):
    """Start ``command`` in its own process group and send it ``sig`` (default SIGKILL; SIGINT is what Ctrl-C
    sends a terminal's foreground group) once a complete checkpoint is in ``checkpoints``. Returns (that
    checkpoint's trainer state, the exit code, stderr)."""
    import json
    import os
    import signal
    import subprocess
    import time

    sig = signal.SIGKILL if sig is None else sig
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        # trainer_state.json is the last file a checkpoint gets: its presence means the checkpoint is whole.
        while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, f"the run ended before it could be stopped: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        saved = json.loads(sorted(checkpoints.glob("checkpoint-*/trainer_state.json"))[0].read_text())
    finally:
        os.killpg(proc.pid, sig)
        _, stderr = proc.communicate(timeout=timeout_s)
    return saved, proc.returncode, stderr


def kill_after_first_checkpoint(command: list[str], checkpoints: Path, timeout_s: float) -> dict:
    """Start ``command``, SIGKILL it (and its children) once a complete checkpoint is in ``checkpoints``,
    and return that checkpoint's trainer state."""
    return signal_after_first_checkpoint(command, checkpoints, timeout_s)[0]


def build_pruned(src: Path, dst: Path, heads: dict[int, list[int]], ffn_keep: dict[int, int]):
    """Prune the classifier in ``src`` the way edgewise prune does (transformers' prune_heads, FFN neurons
    sliced with prune_linear_layer, the widths recorded as edgewise_ffn_sizes) and save it with the tokenizer
    into ``dst`` (no edgewise.json: a foreign folder). ``ffn_keep`` maps a layer to the neurons it keeps (the
    first ones of every pair, so the weights really change). Returns the pruned model, in memory."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.pytorch_utils import prune_linear_layer

    from edgewise.core.artifact import TOKENIZER_FILES

    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    model.prune_heads(heads)
    for i, keep in ffn_keep.items():
        layer = model.base_model.encoder.layer[i]
        index = torch.arange(0, 2 * keep, 2)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)
    model.config.edgewise_ffn_sizes = [layer.intermediate.dense.out_features
                                       for layer in model.base_model.encoder.layer]
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    return model


@pytest.fixture(scope="session")
def tiny_pruned(tiny_teacher, tmp_path_factory):
    """The tiny teacher with head 1 of layer 0 removed and layer 1's FFN cut from 64 to 32 neurons:
    (folder, pruned model in memory)."""
    path = tmp_path_factory.mktemp("pruned") / "teacher-pruned"
    return path, build_pruned(tiny_teacher, path, heads={0: [1]}, ffn_keep={1: 32})
