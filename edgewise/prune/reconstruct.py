"""Layer-wise least-squares reconstruction (Kwon et al. 2022, section 3.3): after the mask search,
the kept heads' and neurons' output scales are re-fitted, layer by layer, so that each pruned
sublayer reproduces what the whole sublayer gave on the same input.

A sublayer's output before its residual and LayerNorm is linear in the masks: the attention output
is sum_h m_h * W_O[:, h] C_h(x) + bias, the FFN output sum_i m_i * W_2[:, i] a_i(x) + bias. With the
removed units' masks at 0, the kept units' masks m solve a small least-squares problem
min || sum_{kept} m_u c_u(x) - sum_{all} c_u(x) ||^2 over the sample tokens, whose normal equations
need only the Gram matrix of the units' contributions. Layers are fitted in order on the inputs
the already-fitted earlier layers produce, so each one also corrects the drift of those before it.
The scales end up folded into W_O and W_2 columns when the weights are sliced.
"""

from __future__ import annotations

import contextlib


class _Stop(Exception):
    """Raised by the capture hook: nothing after the captured sublayer needs computing."""


def reconstruct(model, batches, keep_heads: list[list[int]], keep_ffn: list[list[int]], progress=None):
    """Per-layer output scales of every head and neuron (0 for removed units, the fitted scale for kept
    ones), as lists of float64 numpy arrays. ``batches`` is a list of model-input dicts (torch tensors,
    with an attention_mask); ``progress(n)`` is called once per fitted sublayer."""
    import torch

    from edgewise.core.structure import encoder_layers
    from edgewise.prune.importance import heads_of, unit_hooks

    layers = encoder_layers(model)
    shapes = [heads_of(layer) for layer in layers]
    head_masks = [torch.zeros(h) for h, _ in shapes]
    ffn_masks = [torch.zeros(layer.intermediate.dense.out_features) for layer in layers]
    for i in range(len(layers)):
        head_masks[i][keep_heads[i]] = 1.0
        ffn_masks[i][keep_ffn[i]] = 1.0
    state: dict = {"capture": None, "gram": None, "tokens": None}

    def head_hook(index):
        def hook(module, args):
            context = args[0]
            count, size = shapes[index]
            batch, tokens, _ = context.shape
            if state["capture"] == (index, "attention"):
                heads = context[state["tokens"]].view(-1, count, size).double()  # real tokens only
                weight = module.weight.double().view(-1, count, size)  # [hidden, heads, head size]
                contributions = torch.einsum("nhk,dhk->nhd", heads, weight)  # each head's output per token
                gram = torch.einsum("nhd,ngd->hg", contributions, contributions)
                state["gram"] = gram if state["gram"] is None else state["gram"] + gram
                raise _Stop
            scaled = context.view(batch, tokens, count, size) * head_masks[index].to(context.dtype)[:, None]
            return (scaled.view(batch, tokens, count * size), *args[1:])
        return hook

    def ffn_hook(index):
        def hook(module, args):
            if state["capture"] == (index, "ffn"):
                activations = args[0][state["tokens"]].double()  # [real tokens, neurons]
                gram = activations.T @ activations
                state["gram"] = gram if state["gram"] is None else state["gram"] + gram
                raise _Stop
            return (args[0] * ffn_masks[index].to(args[0].dtype), *args[1:])
        return hook

    try:
        with unit_hooks(layers, head_hook, ffn_hook), torch.no_grad():
            for index, layer in enumerate(layers):
                for part, kept, masks in (("attention", keep_heads[index], head_masks),
                                          ("ffn", keep_ffn[index], ffn_masks)):
                    state.update(capture=(index, part), gram=None)
                    for inputs in batches:
                        state["tokens"] = inputs["attention_mask"].bool()
                        with contextlib.suppress(_Stop):  # the hook stops the pass once it has what it needs
                            model(**inputs)
                    gram = state["gram"]
                    if part == "ffn":  # c_i . c_j = (a_i . a_j) (W2_i . W2_j)
                        down = layer.output.dense.weight.double()
                        gram = gram * (down.T @ down)
                    masks[index][kept] = torch.from_numpy(_solve(gram.numpy(), kept)).to(masks[index].dtype)
                    if progress is not None:
                        progress(1)
    finally:
        state.clear()
    return [m.double().numpy() for m in head_masks], [m.double().numpy() for m in ffn_masks]


def _solve(gram, kept: list[int]):
    """The kept units' scales m minimising || sum_kept m_u c_u - sum_all c_u ||^2 (normal equations,
    lightly damped so that two units with the same contribution do not make it singular)."""
    import numpy as np

    a = gram[np.ix_(kept, kept)]
    b = gram[kept].sum(axis=1)
    damping = 1e-6 * float(np.mean(np.diag(a))) + 1e-12
    return np.linalg.solve(a + damping * np.eye(len(kept)), b)


def fold_scales(model, head_scales, ffn_scales) -> None:
    """Multiply each head's columns of the attention output projection, and each neuron's column of the
    FFN down projection, by its scale (before the removed units are sliced away)."""
    import torch

    from edgewise.core.structure import encoder_layers
    from edgewise.prune.importance import heads_of

    with torch.no_grad():
        for layer, heads, neurons in zip(encoder_layers(model), head_scales, ffn_scales, strict=True):
            _, size = heads_of(layer)
            column = torch.from_numpy(heads).to(layer.attention.output.dense.weight.dtype).repeat_interleave(size)
            layer.attention.output.dense.weight.mul_(column)
            layer.output.dense.weight.mul_(torch.from_numpy(neurons).to(layer.output.dense.weight.dtype))
