"""Finding, loading and running transformers classifiers (PyTorch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgewise.core import builtin
from edgewise.core.artifact import PICKLE_FILES, WEIGHT_FILES
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import sha256_file


@dataclass(frozen=True)
class ModelSource:
    """Where a pretrained model comes from: a local folder or a Hub id, and what we know of it."""

    spec: str
    location: str  # folder path or Hub id, as transformers' from_pretrained takes it
    is_local: bool
    weights_sha256: str | None = None

    def describe(self) -> dict:
        return {"spec": self.spec, "location": self.location, "weights_sha256": self.weights_sha256}


def check_weights(path: Path, allow_pickle: bool) -> None:
    """A local model folder must hold safetensors weights, or pickle weights with --allow-pickle."""
    if not (path / "config.json").is_file():
        raise EdgewiseError(
            f"{path} is not a transformers model folder (no config.json); pass a folder written by "
            "save_pretrained, a Hub id or builtin:all-minilm-l6-v2"
        )
    if any((path / f).is_file() for f in WEIGHT_FILES):
        return
    if any((path / f).is_file() for f in PICKLE_FILES):
        if allow_pickle:
            return
        raise EdgewiseError(
            f"{path} holds only pickle weights (pytorch_model.bin), which can run code when loaded; "
            "convert them to safetensors or pass --allow-pickle if you trust the file"
        )
    raise EdgewiseError(f"{path} has a config.json but no weights (model.safetensors); re-save the model")


def resolve_model(spec: str, allow_pickle: bool = False) -> ModelSource:
    """Resolve ``builtin:NAME``, a local folder or a Hub id to something from_pretrained can load."""
    spec = str(spec)
    if builtin.is_builtin(spec):
        path, digest = builtin.model_path(spec)
        return ModelSource(spec, str(path), True, digest)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EdgewiseError(f"{path} is a file; pass the model folder that holds it")
        check_weights(path, allow_pickle)
        weights = next((path / f for f in WEIGHT_FILES + PICKLE_FILES if (path / f).is_file()), None)
        digest = sha256_file(weights) if weights is not None and weights.suffix != ".json" else None
        return ModelSource(spec, str(path.resolve()), True, digest)
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec:
        raise EdgewiseError(f"model folder {spec} does not exist; check the path")
    return ModelSource(spec, spec, False)


def _hub_guard(source: ModelSource, action, what: str = "model"):
    """Run a from_pretrained call on user-given files; turn its failures into an EdgewiseError."""
    try:
        return action()
    except (OSError, ValueError, TypeError, KeyError) as e:
        # from_pretrained reports a bad folder (no model_type, unreadable tokenizer, unknown
        # architecture) with these types; the message it carries says which.
        first = (str(e).splitlines() or [type(e).__name__])[0]
        if source.is_local:
            raise EdgewiseError(
                f"cannot load the {what} in {source.location} ({type(e).__name__}: {first}); "
                "re-save it with save_pretrained"
            ) from None
        raise EdgewiseError(
            f"cannot load the {what} {source.spec!r} from the Hugging Face Hub ({first}); check the id "
            "and the network, or pass a local folder or builtin:all-minilm-l6-v2"
        ) from None


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    from edgewise.core.artifact import TOKENIZER_FILES

    if source.is_local and not any((Path(source.location) / f).is_file() for f in TOKENIZER_FILES):
        raise EdgewiseError(
            f"{source.location} has no tokenizer files (tokenizer.json, vocab.txt, ...); save the tokenizer "
            "into the model folder with tokenizer.save_pretrained"
        )
    return _hub_guard(source, lambda: AutoTokenizer.from_pretrained(source.location), "tokenizer")


def load_classifier(source: ModelSource, allow_pickle: bool = False, *, new_head: bool = False, **kwargs):
    """An AutoModelForSequenceClassification; safetensors only unless ``allow_pickle``.

    Every weight must come from the checkpoint: transformers fills a missing one with random
    values and only logs a warning, so an encoder saved without its classification head would
    score at chance with exit code 0. ``new_head=True`` (fine-tuning a pretrained encoder, a
    pretrained student) accepts a fresh head and pooler, never a fresh encoder weight.
    """
    from transformers import AutoModelForSequenceClassification

    model, info = _hub_guard(
        source,
        lambda: AutoModelForSequenceClassification.from_pretrained(
            source.location, use_safetensors=None if allow_pickle else True, output_loading_info=True, **kwargs
        ),
    )
    fresh = list(info.get("missing_keys") or []) + [
        m[0] if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    encoder = model.base_model_prefix + "."  # e.g. "bert.": the weights outside it are the head
    if new_head:
        fresh = [k for k in fresh if k.startswith(encoder) and ".pooler." not in k]
    if fresh:
        shown = ", ".join(sorted(fresh)[:6]) + (f" and {len(fresh) - 6} more" if len(fresh) > 6 else "")
        what = ("lacks encoder weights" if all(k.startswith(encoder) for k in fresh)
                else "holds no trained classifier: it lacks")
        fix = ("fine-tune it into a classifier first (edgewise finetune MODEL DATA -o DIR)" if not new_head
               else "pass a complete pretrained encoder saved with save_pretrained")
        raise EdgewiseError(
            f"{source.location} {what} {shown} (transformers would fill them with random values, so predictions "
            f"would be meaningless); {fix}"
        )
    return model


def model_inputs(model, encoded) -> dict:
    """The tokenizer outputs the model's forward accepts (DistilBERT and RoBERTa take no token_type_ids)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in encoded.items() if k in accepted}


def token_lengths(tokenizer, texts: list[str], pairs: list[str] | None) -> list[int]:
    """Token count of every example, special tokens included, without truncation."""
    encoded = tokenizer(texts, pairs, truncation=False, add_special_tokens=True, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]
