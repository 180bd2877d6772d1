"""Layer-wise least-squares reconstruction (Kwon et al. 2022, section 3.3, generalised): sublayer by
sublayer, the output projection that reads the kept units (the attention output W_O over the kept
heads' contexts, the FFN down projection W_2 over the kept neurons) is re-fitted so that the
pruned model's residual stream follows the unpruned model's.

Before its LayerNorm a sublayer computes r + W a + b (r its residual input, a its units' outputs),
linear in (W, b). With x_p the pruned model's input to the sublayer (the sublayers before it
already pruned and fitted) and x_u the unpruned model's, the new weights solve the ridge problem

    min_{W, b}  sum_tokens || r_p + W a_p + b - (r_u + W_full a_u + b_full) ||^2 + lam || [W b] - [W0 b0] ||^2

whose target is the unpruned sublayer's own pre-LayerNorm output: each fit also corrects the drift
of the sublayers before it. The damping pulls towards the sliced weights [W0 b0] and is a fraction
of the Gram matrix's mean diagonal, so it does not depend on the activations' scale.

Kwon et al. fit one scale per kept unit; fitting the whole projection has k x hidden unknowns
instead of k, and the normal equations stay small (at most FFN width + 1 square). The cost is one
forward pass of the sample texts through each model, one layer at a time.
"""

from __future__ import annotations

DAMPING = 1e-2  # lam as a fraction of the Gram matrix's mean diagonal


def reconstruct(original, pruned, batches, heads: list[list[int]], ffn: list[list[int]], *,
                layers: list[int] | None = None, damping: float = DAMPING, progress=None) -> None:
    """Slice ``pruned`` layer by layer to the kept ``heads`` and ``ffn`` neurons (its own current
    numbering) and re-fit its projections in place so that its hidden states follow ``original``'s on
    ``batches`` (model-input dicts of torch tensors with an attention_mask).

    ``pruned`` is a copy of ``original`` whose units are not sliced yet; its layer ``j`` is original
    layer ``layers[j]`` (default: the same layers). The output of a dropped layer is the next kept
    layer's to reproduce; dropped layers after the last kept one are not compensated (nothing is
    fitted after them). ``progress(n)`` is called once per fitted sublayer."""
    import torch

    from edgewise.core.structure import encoder_layers
    from edgewise.prune.importance import heads_of
    from edgewise.prune.slicing import remove_heads, remove_neurons

    layers_u, layers_p = encoder_layers(original), encoder_layers(pruned)
    layers = list(range(len(layers_u))) if layers is None else list(layers)
    if len(layers) != len(layers_p):
        raise ValueError(f"{len(layers)} layer numbers for a pruned model of {len(layers_p)} layers")
    with torch.no_grad():
        encoder_u, encoder_p = _bert(original), _bert(pruned)
        masks, states_u, states_p = [], [], []
        for inputs in batches:
            mask = inputs["attention_mask"]
            ids, types = inputs["input_ids"], inputs.get("token_type_ids")
            masks.append((mask.bool(), encoder_u.get_extended_attention_mask(mask, mask.shape)))
            states_u.append(encoder_u.embeddings(input_ids=ids, token_type_ids=types))
            states_p.append(encoder_p.embeddings(input_ids=ids, token_type_ids=types))
        for index_u, layer_u in enumerate(layers_u):
            # Attention: every head's context, on each model's own inputs.
            contexts_u = [layer_u.attention.self(h, attention_mask=m[1])[0]
                          for h, m in zip(states_u, masks, strict=True)]
            if index_u not in layers:  # a dropped layer: the unpruned model moves on alone
                states_u = [layer_u.attention.output(c, h) for c, h in zip(contexts_u, states_u, strict=True)]
                states_u = [layer_u.output(layer_u.intermediate(h), h) for h in states_u]
                continue
            index = layers.index(index_u)
            layer_p = layers_p[index]
            _, size = heads_of(layer_p)
            contexts_p = [layer_p.attention.self(h, attention_mask=m[1])[0]
                          for h, m in zip(states_p, masks, strict=True)]
            targets = [layer_u.attention.output.dense(c) + h for c, h in zip(contexts_u, states_u, strict=True)]
            gram, product = _normal_equations(contexts_p, states_p, targets, masks)
            columns = [h * size + j for h in sorted(heads[index]) for j in range(size)]
            remove_heads(pruned, index, heads[index])  # slices Q, K, V and W_O
            contexts_p = [c[..., columns] for c in contexts_p]
            _solve(layer_p.attention.output.dense, gram, product, columns, damping)
            states_u = [layer_u.attention.output(c, h) for c, h in zip(contexts_u, states_u, strict=True)]
            states_p = [layer_p.attention.output(c, h) for c, h in zip(contexts_p, states_p, strict=True)]
            del contexts_u, contexts_p, targets
            if progress is not None:
                progress(1)
            # FFN: every neuron's activation, on each model's own inputs.
            active_u = [layer_u.intermediate(h) for h in states_u]
            active_p = [layer_p.intermediate(h) for h in states_p]
            targets = [layer_u.output.dense(a) + h for a, h in zip(active_u, states_u, strict=True)]
            gram, product = _normal_equations(active_p, states_p, targets, masks)
            keep = sorted(ffn[index])
            remove_neurons(pruned, index, keep)
            active_p = [a[..., keep] for a in active_p]
            _solve(layer_p.output.dense, gram, product, keep, damping)
            states_u = [layer_u.output(a, h) for a, h in zip(active_u, states_u, strict=True)]
            states_p = [layer_p.output(a, h) for a, h in zip(active_p, states_p, strict=True)]
            del active_u, active_p, targets
            if progress is not None:
                progress(1)


def _bert(model):
    """The BertModel inside a classifier (an embedding model is one itself)."""
    from edgewise.core.errors import EdgewiseError

    inner = getattr(model, model.base_model_prefix, model)
    if inner is None or not hasattr(inner, "embeddings") or not hasattr(inner, "get_extended_attention_mask"):
        raise EdgewiseError(f"reconstruction needs a BERT-layout encoder, not {type(model).__name__}; "
                            "prune with --no-reconstruct")
    return inner


def _normal_equations(units, residuals, targets, masks):
    """X^T X and X^T Y over the real tokens, X = [units, 1], Y = target - residual (what the projection
    and its bias must produce); float32 per batch, float64 sums."""
    import torch

    k, out = units[0].shape[-1], targets[0].shape[-1]
    gram = torch.zeros(k + 1, k + 1, dtype=torch.float64)
    product = torch.zeros(k + 1, out, dtype=torch.float64)
    for a, r, t, (real, _) in zip(units, residuals, targets, masks, strict=True):
        x = torch.cat([a[real], torch.ones(int(real.sum()), 1, dtype=a.dtype)], dim=1)
        gram += (x.T @ x).double()
        product += (x.T @ (t[real] - r[real])).double()
    return gram, product


def _solve(linear, gram, product, kept: list[int], damping: float) -> None:
    """Ridge fit of ``linear`` (already sliced to ``kept`` inputs) from the full normal equations."""
    import torch

    index = torch.tensor([*kept, gram.shape[0] - 1], dtype=torch.long)  # the kept units and the bias
    a, b = gram[index][:, index], product[index]
    start = torch.cat([linear.weight.T, linear.bias[None]], dim=0).double()  # [k + 1, out]
    lam = damping * float(a.diagonal().mean()) + 1e-12
    solved = torch.linalg.solve(a + lam * torch.eye(len(index), dtype=torch.float64), b + lam * start)
    linear.weight.copy_(solved[:-1].T.to(linear.weight.dtype))
    linear.bias.copy_(solved[-1].to(linear.bias.dtype))

