"""The layer structure of BERT-family encoders: heads and FFN widths per layer (torch imported when used).

A pruned `hf` artifact is a transformers folder whose layers have their own widths: heads removed with
transformers' ``prune_heads`` (config ``pruned_heads``, re-applied by transformers itself) and FFN neurons
removed with ``prune_linear_layer``, recorded as ``edgewise_ffn_sizes`` in config.json because BERT's
config has one global ``intermediate_size``. These helpers read and rebuild that structure; the prune
stage and ``edgewise.core.models.load_classifier`` share them.
"""

from __future__ import annotations

from edgewise.core.errors import EdgewiseError

FFN_SIZES_KEY = "edgewise_ffn_sizes"  # config.json: the intermediate width of every encoder layer
# HF model types whose layers are `encoder.layer[i]` with attention.self.{query,key,value},
# attention.output.dense, intermediate.dense and output.dense.
LAYERED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")
_LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "intermediate.dense", "output.dense")


def _part(layer, dotted: str):
    for name in dotted.split("."):
        layer = getattr(layer, name, None)
    return layer


def encoder_layers(model) -> list:
    """The encoder layers of a BERT-family model (``model.base_model.encoder.layer``), checked for the
    attention and FFN modules pruning slices; an EdgewiseError for any other layout.

    Example:
        >>> [layer.intermediate.dense.out_features for layer in encoder_layers(model)]  # doctest: +SKIP
        [64, 64]
    """
    import torch.nn as nn

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if isinstance(layers, nn.ModuleList) and len(layers) and all(
            isinstance(_part(layer, part), nn.Linear) for layer in layers for part in _LAYER_PARTS):
        return list(layers)
    raise EdgewiseError(
        f"edgewise prunes and reloads pruned encoders of types {', '.join(LAYERED_MODEL_TYPES)} (layers with "
        f"attention.self.query/key/value, attention.output.dense, intermediate.dense, output.dense), not "
        f"{model_type!r}; use one of those model types or an unpruned model"
    )


def head_counts(model) -> list[int]:
    """Attention heads of every encoder layer (fewer than the config's where heads were pruned)."""
    return [int(layer.attention.self.num_attention_heads) for layer in encoder_layers(model)]


def ffn_sizes(model) -> list[int]:
    """Intermediate (FFN) width of every encoder layer."""
    return [int(layer.intermediate.dense.out_features) for layer in encoder_layers(model)]


def recorded_ffn_sizes(config) -> list[int] | None:
    """The per-layer FFN widths a config records (``edgewise_ffn_sizes``), checked; None when it records none.

    ``config`` is a transformers config or the dict of config.json.
    """
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    sizes = get(FFN_SIZES_KEY)
    if sizes is None:
        return None
    layers = get("num_hidden_layers")
    if (not isinstance(sizes, (list, tuple)) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                        for s in sizes)):
        raise EdgewiseError(
            f"config.json's {FFN_SIZES_KEY} must be a list of non-negative integers (one FFN width per layer), "
            f"got {sizes!r}; re-run edgewise prune to write the model again"
        )
    if len(sizes) != layers:
        raise EdgewiseError(
            f"config.json's {FFN_SIZES_KEY} gives {len(sizes)} FFN widths but the model has {layers} layers "
            "(num_hidden_layers); the folder was edited by hand or is damaged: re-run edgewise prune"
        )
    return [int(s) for s in sizes]


def resize_ffn(model, sizes) -> None:
    """Give layer ``i`` an FFN of width ``sizes[i]`` in place: fresh ``nn.Linear`` modules for
    ``intermediate.dense`` and ``output.dense`` (weights to be loaded or copied afterwards); a layer whose
    width is already ``sizes[i]`` is left as it is. Dtype and device follow the modules they replace.
    """
    import torch.nn as nn

    layers = encoder_layers(model)
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(layers) or any(s < 0 for s in sizes):
        raise EdgewiseError(
            f"FFN widths {sizes} do not fit a model of {len(layers)} layers: give one width >= 0 per layer"
        )
    for layer, size in zip(layers, sizes, strict=True):
        up, down = layer.intermediate.dense, layer.output.dense
        if up.out_features == size and down.in_features == size:
            continue
        like = {"dtype": up.weight.dtype, "device": up.weight.device}
        layer.intermediate.dense = nn.Linear(up.in_features, size, bias=up.bias is not None, **like)
        layer.output.dense = nn.Linear(size, down.out_features, bias=down.bias is not None, **like)


def check_pruned_heads(model) -> None:
    """Every layer has the heads its config's ``pruned_heads`` leaves; a bug in transformers or a damaged
    config otherwise (transformers re-applies ``pruned_heads`` when it builds the model)."""
    config = model.config
    total = int(config.num_attention_heads)
    pruned = {int(k): set(v) for k, v in (getattr(config, "pruned_heads", None) or {}).items()}
    counts = head_counts(model)
    wrong = [f"layer {i}: {have} heads, expected {total - len(pruned.get(i, ()))}"
             for i, have in enumerate(counts) if have != total - len(pruned.get(i, ()))]
    if wrong:
        raise EdgewiseError(
            f"the model's heads do not follow its config's pruned_heads ({'; '.join(wrong)}); the folder's "
            "config.json does not belong to its weights: re-run edgewise prune"
        )
