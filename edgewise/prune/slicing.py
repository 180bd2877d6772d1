"""Physical removal: the pruned heads, FFN neurons and whole layers sliced out of a BERT-family model
in place, recorded in its config so that the folder reloads (core.structure, core.models)."""

from __future__ import annotations


def remove_heads(model, index: int, keep: list[int]) -> None:
    """Keep only heads ``keep`` (the layer's current numbering) of layer ``index``, with transformers' own
    ``prune_heads``, so that ``config.pruned_heads`` re-applies it when the folder is loaded."""
    from edgewise.core.structure import encoder_layers
    from edgewise.prune.importance import heads_of

    count, _ = heads_of(encoder_layers(model)[index])
    already = set((getattr(model.config, "pruned_heads", None) or {}).get(index, ()))
    # prune_heads takes head numbers of the unpruned model: map the current ones back.
    original = [h for h in range(count + len(already)) if h not in already]
    removed = [original[h] for h in range(count) if h not in keep]
    if removed:
        model.prune_heads({index: removed})


def remove_neurons(model, index: int, keep: list[int]) -> None:
    """Keep only FFN neurons ``keep`` of layer ``index`` (rows of the up projection, columns of the
    down projection) and record every layer's width in the config (core.structure.FFN_SIZES_KEY)."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    from edgewise.core.structure import FFN_SIZES_KEY, encoder_layers, ffn_sizes

    layer = encoder_layers(model)[index]
    if len(keep) < layer.intermediate.dense.out_features:
        rows = torch.tensor(sorted(keep), dtype=torch.long)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, rows, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, rows, dim=1)
    setattr(model.config, FFN_SIZES_KEY, ffn_sizes(model))


def remove_units(model, keep_heads: list[list[int]], keep_ffn: list[list[int]]) -> None:
    """Slice every layer to its kept heads and FFN neurons (current numbering)."""
    from edgewise.core.structure import encoder_layers

    layers = len(encoder_layers(model))
    if len(keep_heads) != layers or len(keep_ffn) != layers:
        raise ValueError(f"a plan for {len(keep_heads)} / {len(keep_ffn)} layers given to a model of {layers}")
    for index in range(layers):
        remove_heads(model, index, keep_heads[index])
        remove_neurons(model, index, keep_ffn[index])


def drop_layers(model, keep: list[int]) -> None:
    """Keep only encoder layers ``keep`` (in order): the layer list, ``num_hidden_layers``, the
    ``pruned_heads`` of the kept layers renumbered, and the recorded FFN widths."""
    import torch.nn as nn

    from edgewise.core.structure import FFN_SIZES_KEY, encoder_layers, ffn_sizes

    layers = encoder_layers(model)
    keep = sorted(keep)
    if not keep or keep[0] < 0 or keep[-1] >= len(layers):
        raise ValueError(f"layers to keep {keep} do not fit a model of {len(layers)} layers")
    model.base_model.encoder.layer = nn.ModuleList(layers[i] for i in keep)
    model.config.num_hidden_layers = len(keep)
    pruned = {int(k): v for k, v in (getattr(model.config, "pruned_heads", None) or {}).items()}
    model.config.pruned_heads = {new: pruned[old] for new, old in enumerate(keep) if old in pruned}
    for new, layer in enumerate(model.base_model.encoder.layer):
        layer.attention.self.layer_idx = new  # where transformers keeps one (caches); harmless elsewhere
    setattr(model.config, FFN_SIZES_KEY, ffn_sizes(model))
