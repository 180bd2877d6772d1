"""Tokenize with `tokenizers`, run with onnxruntime: the same predictions on a server and a phone."""

from __future__ import annotations

import json
from pathlib import Path

from edgewise.core.errors import EdgewiseError

# BACKENDS, CPU_DISABLED_FUSIONS and ort_errors are imported from here by other modules too.
from edgewise.runtime.sessions import (  # noqa: F401
    BACKENDS,
    CPU_DISABLED_FUSIONS,
    disabled_optimizers,
    first_line,
    ort_errors,
    session,
)

MODEL_FILES = ("model.ort", "model.onnx")
# The inputs the runtime feeds; a graph asking for others is not an exported transformers classifier.
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>", "[pad]")


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise EdgewiseError(f"`{module}` is needed to run models: pip install 'edgewise[runtime]'") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _config_limit(folder: Path) -> int | None:
    """The longest input the model takes, from config.json when the folder has one."""
    config = _read_json(folder / "config.json")
    if not config.get("max_position_embeddings"):
        return None
    from edgewise.core.models import OFFSET_POSITIONS

    limit = int(config["max_position_embeddings"])
    return limit - 2 if config.get("model_type") in OFFSET_POSITIONS else limit


def model_file(folder: Path) -> Path:
    for name in MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    raise EdgewiseError(f"{folder} holds no model.onnx or model.ort; pass an ONNX artifact or a bundle")


MAX_LISTED_PROBLEMS = 5


def verify_folder(folder: Path) -> None:
    """Refuse a folder whose files differ from the sha256 hashes its edgewise.json recorded.

    A folder without edgewise.json (a foreign ONNX folder) has nothing to check against and passes.
    Files the manifest expects to be (re)built on the device, such as a TensorRT artifact's
    model.engine, are not hashed there, so they pass whatever they hold.
    """
    from edgewise.core.manifest import MANIFEST_NAME, Manifest

    if not (folder / MANIFEST_NAME).is_file():
        return
    manifest = Manifest.read(folder)
    problems = manifest.verify()  # each file hashed once per process while unchanged (core.manifest)
    if not problems:
        return
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed += f"; and {len(problems) - MAX_LISTED_PROBLEMS} more"
    what = "bundle" if manifest.kind == "bundle" else "artifact"
    raise EdgewiseError(
        f"{folder} changed since edgewise wrote it ({listed}), so the model would run on unchecked files; "
        f"re-create the {what} with `edgewise {manifest.stage}`, or pass --no-verify (Predictor(..., verify=False)) "
        "if you changed it on purpose"
    )


def _pad_id(folder: Path, tokenizer, settings: dict) -> int:
    if isinstance(settings.get("pad_token_id"), int):
        return settings["pad_token_id"]
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        token = _read_json(folder / name).get("pad_token")
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
            return tokenizer.token_to_id(token)
    for token in PAD_TOKENS:
        if tokenizer.token_to_id(token) is not None:
            return tokenizer.token_to_id(token)
    return 0


class Predictor:
    """A text classifier from a bundle or ONNX artifact folder.

    Args:
        folder: holds model.ort or model.onnx, tokenizer.json and (usually) edgewise.json.
        backend: ort-cpu (default), ort-cuda, ort-tensorrt, or tensorrt (a built engine).
        threads: intra-op threads; None lets onnxruntime choose.
        max_length: tokens per text; default from the manifest, else 512.
        model: another ONNX file to run with this folder's tokenizer and settings (a candidate).
        verify: check the folder's files against the sha256 hashes in its edgewise.json (default True);
            once per process for unchanged files. The ``model`` file is not in the manifest and is not checked.

    Example:
        >>> Predictor("deploy/teacher").predict(["a gripping film"])[0]["label"]  # doctest: +SKIP
        'pos'
    """

    def __init__(self, folder, backend: str = "ort-cpu", threads: int | None = None, max_length: int | None = None,
                 model=None, verify: bool = True):
        np = _require("numpy")
        ort = _require("onnxruntime")
        tokenizers = _require("tokenizers")
        if backend not in BACKENDS:
            raise EdgewiseError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise EdgewiseError(f"{self.folder} is not a folder; pass a bundle or an ONNX artifact folder")
        manifest = _read_json(self.folder / "edgewise.json")
        settings = manifest.get("data") or {}  # max_length, pad_token_id as the exporting stage recorded them
        self.model_path = Path(model) if model is not None else model_file(self.folder)
        if not (self.folder / "tokenizer.json").is_file():
            raise EdgewiseError(f"{self.folder} has no tokenizer.json; re-create it with edgewise export or bundle")
        if verify:
            verify_folder(self.folder)
        # A bundle carries labels.json beside the manifest, so it still names its labels without one.
        labels = (manifest.get("labels") or _read_json(self.folder / "labels.json")
                  or _read_json(self.folder / "config.json").get("id2label") or {})
        self.id2label = {int(k): v for k, v in labels.items()}
        limit = settings.get("max_positions") or _config_limit(self.folder)
        # A folder edgewise did not write records no working length: take the model's own limit.
        self.max_length = int(max_length or settings.get("max_length") or min(512, limit or 512))
        if limit and self.max_length > limit:
            raise EdgewiseError(f"max_length {self.max_length} exceeds the model's limit of {limit} tokens; lower it")
        self.backend, self.threads, self._ort = backend, threads, ort
        self.disabled_optimizers = disabled_optimizers(backend)
        if backend == "tensorrt":
            from edgewise.export.tensorrt import load_engine

            self.session, self._engine = None, load_engine(self.folder)
            names = self._engine.inputs
            self.inputs = {name: np.int64 for name in names}  # the engine casts to its own types
            self.output = self._engine.outputs[0]
        else:
            self.session = session(self.model_path, backend, threads)
            names = [i.name for i in self.session.get_inputs()]
            self.inputs = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in self.session.get_inputs()}
            self.output = self.session.get_outputs()[0].name
        unknown = [name for name in names if name not in KNOWN_INPUTS]
        if unknown:
            raise EdgewiseError(
                f"{self.model_path} takes input(s) {', '.join(unknown)}; the runtime feeds text classifiers whose "
                f"inputs are {', '.join(KNOWN_INPUTS)} (export the model with edgewise export)"
            )
        self.tokenizer = tokenizers.Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = _pad_id(self.folder, self.tokenizer, settings)
        self._np = np

    def providers(self) -> list[str]:
        return self.session.get_providers() if self.session is not None else ["tensorrt"]

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

    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32, progress=None):
        """Logits for every text, in order; texts are batched by length so padding stays short."""
        np = self._np
        order = np.argsort([len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)], kind="stable")
        out = None
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            logits = self.run(self.encode([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None))
            if out is None:
                out = np.zeros((len(texts), logits.shape[-1]), dtype=np.float32)
            out[idx] = logits
            if progress is not None:
                progress(len(idx))
        return out if out is not None else np.zeros((0, len(self.id2label)), dtype=np.float32)

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list[dict]:
        """Label, its probability and every label's probability, per text."""
        np = self._np
        logits = self.logits(texts, pairs)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = shifted / shifted.sum(axis=-1, keepdims=True)
        results = []
        for row in probs:
            best = int(row.argmax())
            results.append({
                "label": self.id2label.get(best, str(best)),
                "score": float(row[best]),
                "scores": {self.id2label.get(i, str(i)): float(p) for i, p in enumerate(row)},
            })
        return results
