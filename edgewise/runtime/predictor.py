"""Tokenize with `tokenizers`, run with onnxruntime: the same predictions on a server and a phone.

``Predictor`` is the runner (see edgewise.runtime.runners) of the onnxruntime backends and of a
built TensorRT engine; ``open_runner`` returns one for onnx / ort / bundle / tensorrt artifacts.
"""

from __future__ import annotations

from pathlib import Path

from edgewise.core.artifact import read_json
from edgewise.core.deps import require
from edgewise.core.errors import EdgewiseError
from edgewise.core.lengths import artifact_lengths
from edgewise.core.tasks.classification import Classification
from edgewise.runtime.base import ORT_BACKENDS, Runner, folder_task, read_manifest, verify_folder
from edgewise.runtime.sessions import disabled_optimizers, first_line, ort_errors, session

MODEL_FILES = ("model.ort", "model.onnx")
# The inputs the runtime feeds; a graph asking for others is not an exported transformers classifier.
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>", "[pad]")
# What a Predictor runs: an onnxruntime session, or (tensorrt) the engine of a tensorrt artifact.
BACKENDS = (*ORT_BACKENDS, "tensorrt")


def model_file(folder: Path) -> Path:
    for name in MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    if (folder / "config.json").is_file():  # a transformers folder: the runtime has no PyTorch to run it
        raise EdgewiseError(f"{folder} is a transformers (PyTorch) model, which the runtime cannot run; export "
                            f"and bundle it first: edgewise export {folder} -o ONNX, then edgewise bundle ONNX -o "
                            "BUNDLE")
    raise EdgewiseError(f"{folder} holds no model.onnx or model.ort; pass an ONNX artifact or a bundle")


def pad_token_id(folder: Path, tokenizer, settings: dict) -> int:
    """The padding token id of a `tokenizers` tokenizer: as the manifest's ``settings`` record it, else
    the pad token its tokenizer files name, else a usual pad token, else 0."""
    if isinstance(settings.get("pad_token_id"), int):
        return settings["pad_token_id"]
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        token = read_json(folder / name).get("pad_token")
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
            return tokenizer.token_to_id(token)
    for token in PAD_TOKENS:
        if tokenizer.token_to_id(token) is not None:
            return tokenizer.token_to_id(token)
    return 0


def output_of(task, outputs: list[str], path: Path) -> str:
    """The graph output the task reads: its named output (logits, sentence_embedding), else a classifier's first."""
    if task.output_name in outputs:
        return task.output_name
    if task.labelled and outputs:  # a foreign classifier's export may name its logits otherwise
        return outputs[0]
    raise EdgewiseError(f"{path} has outputs {', '.join(outputs) or 'none'}, no {task.output_name!r}: the runtime "
                        f"reads the {task.describe()} model's {task.output_name}; export it with edgewise export, "
                        "which computes it inside the graph")


class Predictor(Runner):
    """A text classifier or sentence-embedding model from a bundle or ONNX artifact folder: the runner of the ort-*
    and tensorrt backends.

    Args:
        folder: holds model.ort or model.onnx, tokenizer.json and (usually) edgewise.json.
        backend: ort-cpu (default), ort-cuda, ort-tensorrt, or tensorrt (a built engine).
        threads: intra-op threads; None lets onnxruntime choose.
        max_length: tokens per text; default from the manifest, else the model's limit (at most 512).
        model: another ONNX file to run with this folder's tokenizer and settings (a candidate).
        verify: check the folder's files against the sha256 hashes in its edgewise.json (default True);
            once per process for unchanged files. The ``model`` file is not in the manifest and is not checked.
        task: what the model is (core.tasks), for a folder that does not say yet (a stage checking its output
            before sealing it); default: as its edgewise.json records, else read from its files.

    Example:
        >>> Predictor("deploy/teacher").predict(["a gripping film"])[0]["label"]  # doctest: +SKIP
        'pos'
    """

    def __init__(self, folder, backend: str = "ort-cpu", threads: int | None = None, max_length: int | None = None,
                 model=None, verify: bool = True, task=None):
        np = require("numpy", "runtime")
        ort = require("onnxruntime", "runtime")
        tokenizers = require("tokenizers", "runtime")
        if backend not in BACKENDS:
            raise EdgewiseError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise EdgewiseError(f"{self.folder} is not a folder; pass a bundle or an ONNX artifact folder")
        self.manifest = read_manifest(self.folder)
        settings = self.manifest.get("data") or {}  # max_length, pad_token_id as the exporting stage recorded them
        self.model_path = Path(model) if model is not None else model_file(self.folder)
        if not (self.folder / "tokenizer.json").is_file():
            raise EdgewiseError(f"{self.folder} has no tokenizer.json; re-create it with edgewise export or bundle")
        if verify:
            verify_folder(self.folder)
        # A bundle carries labels.json beside the manifest, so it still names its labels without one.
        labels = (self.manifest.get("labels") or read_json(self.folder / "labels.json")
                  or read_json(self.folder / "config.json").get("id2label") or {})
        self.id2label = {int(k): v for k, v in labels.items()}
        # A foreign ONNX folder that says nothing is a classifier, as exported ONNX classifiers come.
        self.task = folder_task(self.folder, self.manifest, self.id2label, task) or Classification()
        self.max_length, _ = artifact_lengths(self.folder, settings, max_length)
        self.backend, self.threads, self._ort = backend, threads, ort
        self.disabled_optimizers = disabled_optimizers(backend)
        if backend == "tensorrt":
            from edgewise.runtime.tensorrt import load_engine

            self.session, self._engine = None, load_engine(self.folder)
            names = self._engine.inputs
            self.inputs = {name: np.int64 for name in names}  # the engine casts to its own types
            outputs = list(self._engine.outputs)
        else:
            self.session = session(self.model_path, backend, threads)
            names = [i.name for i in self.session.get_inputs()]
            self.inputs = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in self.session.get_inputs()}
            outputs = [o.name for o in self.session.get_outputs()]
        self.output = output_of(self.task, outputs, self.model_path)
        if self.session is None:
            self._engine.output = self.output
        unknown = [name for name in names if name not in KNOWN_INPUTS]
        if unknown:
            raise EdgewiseError(
                f"{self.model_path} takes input(s) {', '.join(unknown)}; the runtime feeds text classifiers whose "
                f"inputs are {', '.join(KNOWN_INPUTS)} (export the model with edgewise export)"
            )
        self.tokenizer = tokenizers.Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = pad_token_id(self.folder, self.tokenizer, settings)
        self._np = np

    def providers(self) -> list[str]:
        return self.session.get_providers() if self.session is not None else ["tensorrt"]

    @property
    def info(self) -> dict:
        """What bench records of this runner: the providers that run it, threads, fusions turned off."""
        return {"providers": self.providers(), "threads": self.threads, "disabled_optimizers": self.disabled_optimizers}

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict:
        """Model inputs for a batch, padded to its longest text."""
        np = self._np
        items = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        encodings = self.tokenizer.encode_batch(items)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = e.attention_mask
            types[row, : len(e.ids)] = e.type_ids
        columns = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: columns[name].astype(dtype) for name, dtype in self.inputs.items()}

    def token_offsets(self, texts: list[str]) -> list[tuple[list, list]]:
        return [(e.offsets, e.special_tokens_mask) for e in self.tokenizer.encode_batch(list(texts))]

    def synthetic(self, batch_size: int, seq_len: int, seed: int = 0) -> dict:
        """Token ids of the requested shape, [CLS]-like first and [SEP]-like last as real inputs have."""
        np = self._np
        rng = np.random.default_rng(seed)
        vocab = self.tokenizer.get_vocab_size()
        ids = rng.integers(low=min(1000, vocab // 2), high=vocab, size=(batch_size, seq_len), dtype=np.int64)
        sample = self.tokenizer.encode("a")
        if len(sample.ids) >= 2:
            ids[:, 0], ids[:, -1] = sample.ids[0], sample.ids[-1]
        columns = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return {name: columns[name].astype(dtype) for name, dtype in self.inputs.items()}

    def run(self, feed: dict):
        if self.session is None:
            return self._engine(feed)
        try:
            return self.session.run([self.output], feed)[0]
        except ort_errors(self._ort) as e:
            raise EdgewiseError(
                f"onnxruntime failed to run {self.model_path} on inputs of shape "
                f"{next(iter(feed.values())).shape} ({type(e).__name__}: {first_line(e)})"
            ) from None

    def scores(self, feed: dict):
        return self.run(feed)  # already a numpy array, on the CPU

    def predict(self, texts: list[str], pairs: list[str] | None = None, aggregation: str = "simple",
                stride: int | None = None) -> list[dict]:
        """Label, its probability and every label's probability, per text; with the tokens the model saw
        and whether the text was cut to ``max_length`` (``truncated``) or had nothing to read (``empty``).
        A token classifier's answer is ``entities`` (grouped by ``aggregation``); an embedding model's is
        ``embed``'s."""
        if self.task.name == "token-classification":
            if pairs is not None:
                raise EdgewiseError(f"{self.folder} is a token classifier: it tags the words of one text; drop --pair")
            answers = [{"entities": found} for found in self.entities(texts, aggregation, stride)]
            counts = self.token_counts(texts)
            if stride is not None:  # read whole, in windows: nothing was cut
                counts = [{**count, "truncated": False} for count in counts]
            return [{**answer, **count} for answer, count in zip(answers, counts, strict=True)]
        if stride is not None:
            raise EdgewiseError(f"--stride reads a token classifier's long texts in windows; {self.folder} is a "
                                f"{self.task.describe()} model: drop --stride")
        if not self.task.labelled:
            raise EdgewiseError(f"{self.folder} is a {self.task.describe()} model: it gives vectors, not labels; use "
                                "embed (python -m edgewise.runtime embed, Predictor.embed)")
        return self._answers(texts, pairs, self.task.postprocess(self.outputs(texts, pairs), self.id2label))

    def entities(self, texts: list[str], aggregation: str = "simple", stride: int | None = None) -> list[list[dict]]:
        """The entities of every text (type, start, end, text, score), grouped as transformers' token-classification
        pipeline groups them: ``simple`` (tokens) or ``first`` (words take their first sub-token's tag). A text
        longer than ``max_length`` tokens is cut, or with ``stride`` read in windows of ``max_length`` tokens that
        overlap by ``stride`` (the pipeline's ``stride``: overlapping entities merged, the longer kept)."""
        from edgewise.core.tasks.token_classification import AGGREGATIONS, group_entities, merge_windows, subword_flags

        if self.task.name != "token-classification":
            raise EdgewiseError(f"{self.folder} is a {self.task.describe()} model, not a token classifier; use "
                                "predict or embed")
        if aggregation not in AGGREGATIONS:
            raise EdgewiseError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        specials = len(self.tokenizer.encode("").ids)
        if stride is not None and not 0 <= stride < self.max_length - specials:
            raise EdgewiseError(f"stride must be at least 0 and below the {self.max_length - specials} tokens a "
                                f"window holds besides its special tokens, got {stride}; lower --stride")
        prefix = getattr(self.tokenizer.model, "continuing_subword_prefix", None)
        unk = getattr(self.tokenizer.model, "unk_token", None)
        unk_id = self.tokenizer.token_to_id(unk) if unk else None
        np = self._np
        found = []
        if stride is not None:
            self.tokenizer.enable_truncation(self.max_length, stride=stride)
        try:
            for text in texts:
                encoding = self.tokenizer.encode(text)
                windows = [encoding, *(encoding.overflowing if stride is not None else [])]
                entities = []
                for window in windows:
                    feed = {"input_ids": np.asarray([window.ids]), "token_type_ids": np.asarray([window.type_ids]),
                            "attention_mask": np.asarray([window.attention_mask])}
                    logits = np.asarray(self.run({name: feed[name].astype(dtype)
                                                  for name, dtype in self.inputs.items()}))[0]
                    flags = subword_flags(text, window.tokens, window.offsets, window.ids, unk_id, prefix)
                    entities += group_entities(text, logits, window.offsets, window.special_tokens_mask,
                                               self.id2label, aggregation, flags)
                found.append(merge_windows(entities) if len(windows) > 1 else entities)
        finally:
            self.tokenizer.enable_truncation(self.max_length)
        return found

    def embed(self, texts: list[str], batch_size: int = 32):
        """The sentence vector of every text (numpy, [texts, dimension]), as the model's graph pools and normalises
        it; texts are cut to ``max_length`` tokens."""
        if self.task.name != "embedding":
            raise EdgewiseError(f"{self.folder} is a {self.task.describe()} model: it gives labels, not vectors; use "
                                "predict (python -m edgewise.runtime predict, Predictor.predict)")
        return self.outputs(list(texts), batch_size=batch_size)

    def token_counts(self, texts: list[str], pairs: list[str] | None = None) -> list[dict]:
        """Per text: the tokens the model saw, whether it was cut to ``max_length`` (``truncated``) and whether it
        had nothing to read (``empty``)."""
        items = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        encodings = self.tokenizer.encode_batch(items)  # what encode() fed the model, read for its lengths
        return [{"tokens": len(e.ids), "truncated": bool(e.overflowing), "empty": not text.strip()}
                for text, e in zip(texts, encodings, strict=True)]

    def _answers(self, texts, pairs, answers: list[dict]) -> list[dict]:
        return [{**answer, **counts} for answer, counts in zip(answers, self.token_counts(texts, pairs), strict=True)]
