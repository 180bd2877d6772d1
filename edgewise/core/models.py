"""Finding, loading and running transformers classifiers (PyTorch)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgewise.core import builtin
from edgewise.core.artifact import (
    PICKLE_FILES,
    WEIGHT_FILES,
    foreign_task,
    linked_out,
    not_a_folder,
    read_json,
    real_path,
)
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
    if problem := foreign_task(path) or linked_out(path, sealed=(path / "edgewise.json").exists()):
        raise problem
    _check_shards(path)
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


def _check_shards(path: Path) -> None:
    """Shards an index names must lie in the folder: transformers joins the names onto it as they are."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        weight_map = read_json(path / index).get("weight_map")
        if not isinstance(weight_map, dict):
            continue
        for shard in sorted(set(map(str, weight_map.values()))):
            if not (path / shard).resolve().is_relative_to(path.resolve()):
                raise EdgewiseError(f"{path / index} names a weights file outside its folder ({shard}); a model's "
                                    "shards lie beside their index: re-save the model with save_pretrained")


def resolve_model(spec: str, allow_pickle: bool = False) -> ModelSource:
    """Resolve ``builtin:NAME``, a local folder or a Hub id to something from_pretrained can load."""
    spec = str(spec)
    if builtin.is_builtin(spec):
        path, digest = builtin.model_path(spec)
        return ModelSource(spec, str(path), True, digest)
    path = real_path(spec)
    if path.exists():
        if not path.is_dir():
            raise not_a_folder(path)
        check_weights(path, allow_pickle)
        if (path / "edgewise.json").is_file():  # an edgewise artifact: its files must be the ones it recorded
            from edgewise.core.artifact import Artifact

            Artifact.load(path, kind="hf")
        weights = next((path / f for f in WEIGHT_FILES + PICKLE_FILES if (path / f).is_file()), None)
        digest = sha256_file(weights) if weights is not None and weights.suffix != ".json" else None
        return ModelSource(spec, str(path.resolve()), True, digest)
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec:
        raise EdgewiseError(f"model folder {spec} does not exist; check the path")
    return ModelSource(spec, spec, False)


def _hub_guard(source: ModelSource, action, what: str = "model"):
    """Run a from_pretrained call on user-given files; turn its failures into an EdgewiseError."""
    from safetensors import SafetensorError

    try:
        return action()
    except SafetensorError as e:  # a truncated or corrupt model.safetensors
        raise EdgewiseError(
            f"the weights of the {what} in {source.location} cannot be read ({str(e).splitlines()[0]}): the file is "
            "truncated or corrupt; copy the model again or re-save it with save_pretrained"
        ) from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        # from_pretrained reports a bad folder (no model_type, unreadable tokenizer, unknown
        # architecture) with these types; the message it carries says which.
        first = (str(e).splitlines() or [type(e).__name__])[0]
        if source.is_local:
            raise EdgewiseError(
                f"cannot load the {what} in {source.location} ({type(e).__name__}: {first}); "
                "re-save it with save_pretrained"
            ) from None
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise EdgewiseError(
                f"cannot load the {what} {source.spec!r}: it is not a local folder and HF_HUB_OFFLINE is set, so the "
                "Hugging Face Hub is not asked; unset HF_HUB_OFFLINE, or pass a local folder or "
                "builtin:all-minilm-l6-v2"
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
    return _hub_guard(source, lambda: AutoTokenizer.from_pretrained(source.location, trust_remote_code=False),
                      "tokenizer")


def load_classifier(source: ModelSource, allow_pickle: bool = False, *, new_head: bool = False, auto_class=None,
                    **kwargs):
    """An AutoModelForSequenceClassification (or ``auto_class``: AutoModelForTokenClassification); safetensors
    only unless ``allow_pickle``.

    Every weight must come from the checkpoint: transformers fills a missing one with random
    values and only logs a warning, so an encoder saved without its classification head would
    score at chance with exit code 0. ``new_head=True`` (fine-tuning a pretrained encoder, a
    pretrained student) accepts a fresh head and pooler, never a fresh encoder weight.

    A pruned folder (config.json with ``edgewise_ffn_sizes``, written by edgewise prune) is built with
    its own FFN width per layer and loaded strictly: plain from_pretrained fails on it with a size mismatch.
    """
    from transformers import AutoModelForSequenceClassification

    auto_class = auto_class or AutoModelForSequenceClassification
    if source.is_local:  # the weights it will read: safetensors, or pickle only when allowed
        check_weights(Path(source.location), allow_pickle)
    if _is_pruned(source):
        model, info = _load_pruned(source, allow_pickle, new_head, auto_class=auto_class, **kwargs)
    else:
        model, info = _hub_guard(
            source,
            lambda: auto_class.from_pretrained(
                source.location, use_safetensors=None if allow_pickle else True, output_loading_info=True,
                trust_remote_code=False, **kwargs
            ),
        )
    fresh = list(info.get("missing_keys") or []) + [
        m[0] if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    encoder = model.base_model_prefix + "."  # e.g. "bert.": the weights outside it are the head
    if new_head:
        fresh = [k for k in fresh if k.startswith(encoder) and ".pooler." not in k]
    if fresh:
        shown = _listed(fresh)
        what = ("lacks encoder weights" if all(k.startswith(encoder) for k in fresh)
                else "holds no trained classifier: it lacks")
        fix = ("fine-tune it into a classifier first (edgewise finetune MODEL DATA -o DIR)" if not new_head
               else "pass a complete pretrained encoder saved with save_pretrained")
        raise EdgewiseError(
            f"{source.location} {what} {shown} (transformers would fill them with random values, so predictions "
            f"would be meaningless); {fix}"
        )
    return model


def load_encoder(source: ModelSource, allow_pickle: bool = False, **kwargs):
    """The bare encoder (AutoModel) of a sentence-embedding model; safetensors only unless ``allow_pickle``.

    Every weight must come from the checkpoint but the pooler's, which sentence pooling never reads (a
    sentence-transformers folder may lack it). A pruned folder is built with its own widths (as load_classifier).
    """
    from transformers import AutoModel

    if source.is_local:
        check_weights(Path(source.location), allow_pickle)
    if _is_pruned(source):
        model, info = _load_pruned(source, allow_pickle, False, auto_class=AutoModel, **kwargs)
    else:
        model, info = _hub_guard(
            source,
            lambda: AutoModel.from_pretrained(source.location, use_safetensors=None if allow_pickle else True,
                                              output_loading_info=True, trust_remote_code=False, **kwargs),
        )
    fresh = [k for k in list(info.get("missing_keys") or []) + [
        m[0] if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
        if not k.startswith("pooler.") and ".pooler." not in k]
    if fresh:
        raise EdgewiseError(
            f"{source.location} lacks encoder weights {_listed(fresh)} (transformers would fill them with random "
            "values, so its vectors would be meaningless); pass a complete model saved with save_pretrained"
        )
    return model.eval()


def _listed(names, limit: int = 6) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _is_pruned(source: ModelSource) -> bool:
    """Whether a local folder's config.json records per-layer FFN widths (a Hub id never does here)."""
    from edgewise.core.structure import FFN_SIZES_KEY

    # A missing or unreadable config.json reads as {}: from_pretrained then reports it.
    return source.is_local and FFN_SIZES_KEY in read_json(Path(source.location) / "config.json")


def _checkpoint(path: Path, allow_pickle: bool) -> dict:
    """The state dict stored in a model folder: safetensors (one file or shards), or pickle with ``allow_pickle``
    (load_classifier, its caller, has run check_weights on the folder)."""
    import json

    files = [f for f in WEIGHT_FILES + (PICKLE_FILES if allow_pickle else ()) if (path / f).is_file()]
    first = path / files[0]
    shards = (sorted(set(json.loads(first.read_text())["weight_map"].values())) if first.name.endswith(".json")
              else [first.name])
    state = {}
    for shard in shards:
        try:
            if shard.endswith(".safetensors"):
                from safetensors.torch import load_file

                state.update(load_file(path / shard))
            else:
                import torch

                state.update(torch.load(path / shard, map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001 - safetensors and torch.load report a damaged file each their own way
            raise EdgewiseError(
                f"cannot read the weights {path / shard} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                "re-save the model"
            ) from None
    return state


def _load_pruned(source: ModelSource, allow_pickle: bool, new_head: bool, *, auto_class, **kwargs):
    """A pruned model (``auto_class``: the classifier's or the bare encoder's): built from its config with each
    layer's own widths, then every weight loaded strictly. Returns the model and its loading info as
    from_pretrained's ``output_loading_info``."""
    import re

    import torch
    from transformers import AutoConfig

    from edgewise.core.structure import FFN_SIZES_KEY, check_pruned_heads, recorded_ffn_sizes, resize_ffn

    build = {k: kwargs.pop(k) for k in ("attn_implementation", "dtype", "torch_dtype") if k in kwargs}
    build.setdefault("dtype", build.pop("torch_dtype", torch.get_default_dtype()))
    # The head's mismatch is handled below, as new_head asks; the encoder's widths must always fit.
    kwargs.pop("ignore_mismatched_sizes", None)
    config, unused = _hub_guard(
        source, lambda: AutoConfig.from_pretrained(source.location, return_unused_kwargs=True,
                                                   trust_remote_code=False, **kwargs))
    if unused:
        raise TypeError(f"loading a pruned model got arguments it cannot apply to a pruned model: {sorted(unused)}")
    model = _hub_guard(source, lambda: auto_class.from_config(config, **build))
    check_pruned_heads(model)  # transformers applied config.pruned_heads while building the model
    resize_ffn(model, recorded_ffn_sizes(config))
    model.config.name_or_path = source.location  # as from_pretrained sets it (optimum reads it)

    stored = _checkpoint(Path(source.location), allow_pickle)
    expected = model.state_dict()
    prefix = model.base_model_prefix + "."
    if not any(k.startswith(prefix) for k in stored) and any(k.startswith(prefix) for k in expected):
        stored = {prefix + k: v for k, v in stored.items()}  # a bare encoder saved with AutoModel
    ignored_missing = getattr(model, "_keys_to_ignore_on_load_missing", None) or []
    ignored_unexpected = getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []
    missing = [k for k in expected if k not in stored and not any(re.search(p, k) for p in ignored_missing)]
    unexpected = [k for k in stored if k not in expected and not any(re.search(p, k) for p in ignored_unexpected)
                  and not (new_head and not k.startswith(prefix))]  # a pretraining head (cls.predictions...)
    mismatched = [(k, tuple(stored[k].shape), tuple(v.shape)) for k, v in expected.items()
                  if k in stored and stored[k].shape != v.shape]
    head_mismatch = [m for m in mismatched if new_head and (not m[0].startswith(prefix) or ".pooler." in m[0])]
    wrong = [m for m in mismatched if m not in head_mismatch]
    if unexpected or wrong:
        problems = []
        if wrong:
            problems.append("weights whose shapes do not fit the widths config.json records: " + _listed(
                f"{k} (stored {list(have)}, expected {list(want)})" for k, have, want in wrong))
        if unexpected:
            problems.append("weights the model has no place for: " + _listed(unexpected))
        if missing:
            problems.append("none of " + _listed(missing))
        raise EdgewiseError(
            f"{source.location} is a pruned model ({FFN_SIZES_KEY}, pruned_heads) whose weights do not match its "
            f"config.json: it holds {'; and '.join(problems)}; the folder was edited by hand or mixes two "
            "models: re-run edgewise prune"
        )
    for name, *_ in head_mismatch:
        del stored[name]  # a fresh head for new labels, as ignore_mismatched_sizes gives
    model.load_state_dict({k: v for k, v in stored.items() if k in expected}, strict=False)
    model.eval()  # as from_pretrained returns it
    return model, {"missing_keys": missing, "mismatched_keys": [m[0] for m in head_mismatch],
                   "unexpected_keys": unexpected}


def model_inputs(model, encoded) -> dict:
    """The tokenizer outputs the model's forward accepts (DistilBERT and RoBERTa take no token_type_ids)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in encoded.items() if k in accepted}


def token_lengths(tokenizer, texts: list[str], pairs: list[str] | None) -> list[int]:
    """Token count of every example, special tokens included, without truncation."""
    encoded = tokenizer(texts, pairs, truncation=False, add_special_tokens=True, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]
