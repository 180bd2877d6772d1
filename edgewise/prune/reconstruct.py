"""Layer-wise least-squares reconstruction (Kwon et al. 2022, section 3.3): after the mask search,
the kept heads' and neurons' output scales are re-fitted, sublayer by sublayer, so that the pruned
model's residual stream follows the unpruned model's.

Before its LayerNorm, a sublayer computes x + sum_u m_u c_u(x) + bias, linear in the masks m (the
heads' contributions c_h = W_O[:, h] C_h(x), the neurons' c_i = W_2[:, i] a_i(x)). With the removed
units at 0, the kept units' masks solve

    min_m  sum_tokens || x_p + sum_kept m_u c_u(x_p) - (x_u + sum_all c_u(x_u)) ||^2

where x_p is the pruned model's input to the sublayer (its earlier sublayers already fitted) and
x_u the unpruned model's: each fit also corrects the drift of the sublayers before it. The normal
equations need only the Gram matrix of the contributions and their products with the target.
The scales end up folded into the W_O and W_2 columns when the weights are sliced.
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
    # capture: (layer, "attention" | "ffn"); masked: whether the masks apply (False: the unpruned model).
    state: dict = {"capture": None, "masked": True, "seen": None}

    def head_hook(index):
        def hook(module, args):
            if not state["masked"]:
                return None
            context = args[0]
            count, size = shapes[index]
            batch, tokens, _ = context.shape
            scaled = context.view(batch, tokens, count, size) * head_masks[index].to(context.dtype)[:, None]
            return (scaled.view(batch, tokens, count * size), *args[1:])
        return hook

    def ffn_hook(index):
        def hook(module, args):
            if not state["masked"]:
                return None
            return (args[0] * ffn_masks[index].to(args[0].dtype), *args[1:])
        return hook

    def capture_hook(index, part):
        def hook(module, args):  # BertSelfOutput / BertOutput(units' input, residual input)
            if state["capture"] == (index, part):
                state["seen"] = (args[0][state["tokens"]].double(), args[1][state["tokens"]].double())
                raise _Stop
        return hook

    def run(inputs, masked: bool):
        state["masked"] = masked
        with contextlib.suppress(_Stop):  # the capture hook stops the pass once it has what it needs
            model(**inputs)
        return state["seen"]

    captures = []
    for index, layer in enumerate(layers):
        captures.append(layer.attention.output.register_forward_pre_hook(capture_hook(index, "attention")))
        captures.append(layer.output.register_forward_pre_hook(capture_hook(index, "ffn")))
    try:
        with unit_hooks(layers, head_hook, ffn_hook), torch.no_grad():
            for index, layer in enumerate(layers):
                for part, kept, masks in (("attention", keep_heads[index], head_masks),
                                          ("ffn", keep_ffn[index], ffn_masks)):
                    state["capture"] = (index, part)
                    weight = (layer.attention.output.dense if part == "attention" else layer.output.dense).weight
                    weight = weight.double()
                    gram, target_product = 0.0, 0.0
                    for inputs in batches:
                        state["tokens"] = inputs["attention_mask"].bool()
                        units_u, residual_u = run(inputs, masked=False)
                        units_p, residual_p = run(inputs, masked=True)
                        target = residual_u + units_u @ weight.T - residual_p  # what the kept units must add
                        g, p = _normal_equations(part, units_p, weight, target, shapes[index])
                        gram, target_product = gram + g, target_product + p
                    scales = _solve(gram.numpy(), target_product.numpy(), kept)
                    masks[index][kept] = torch.from_numpy(scales).to(masks[index].dtype)
                    if progress is not None:
                        progress(1)
    finally:
        for handle in captures:
            handle.remove()
        state.clear()
    return [m.double().numpy() for m in head_masks], [m.double().numpy() for m in ffn_masks]


def _normal_equations(part: str, units, weight, target, shape):
    """(Gram matrix of the units' contributions, their products with ``target``) over these tokens."""
    import torch

    if part == "attention":
        count, size = shape
        contributions = torch.einsum("nhk,dhk->nhd", units.view(-1, count, size), weight.view(-1, count, size))
        return (torch.einsum("nhd,ngd->hg", contributions, contributions),
                torch.einsum("nhd,nd->h", contributions, target))
    # c_i = a_i W2[:, i]: c_i . c_j = (a_i . a_j)(W2_i . W2_j), and c_i . t = a_i (W2^T t)_i
    return (units.T @ units) * (weight.T @ weight), (units * (target @ weight)).sum(0)


def _solve(gram, target_product, kept: list[int]):
    """The kept units' scales: the normal equations of the least-squares fit, lightly damped so that
    two units with the same contribution do not make them singular."""
    import numpy as np

    a = gram[np.ix_(kept, kept)]
    damping = 1e-6 * float(np.mean(np.diag(a))) + 1e-12
    return np.linalg.solve(a + damping * np.eye(len(kept)), target_product[kept])


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
