"""Fisher importance of attention heads and FFN neurons (Kwon et al. 2022, arXiv 2204.09656).

Every head and every FFN neuron gets a mask variable, 1 in the unpruned model. The importance of a
unit is the empirical Fisher information of its mask, the sum over sample texts of the squared
gradient of the text's loss with respect to the mask: a second-order estimate of how much the loss
grows when the unit is removed. Masks are per text (shape [batch, units]) so that one backward pass
gives every text's own gradient, not their sum.

The loss is the task's (core.tasks): a classifier's cross-entropy against the text's label, or, for
unlabelled texts, against the model's own prediction: the KL divergence to the unpruned model's logits
has a zero gradient at the unpruned model (mask = 1), so it would score every unit 0. An embedding
model's is an in-batch contrastive loss against the unpruned model's vectors, for the same reason.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def unit_hooks(layers, head_hook, ffn_hook):
    """Forward pre-hooks on every layer's attention output projection and FFN down projection, whose
    inputs are the heads' contexts and the neurons' activations: ``head_hook(index)`` and
    ``ffn_hook(index)`` make the hook of layer ``index``. Removed on exit."""
    handles = []
    for index, layer in enumerate(layers):
        handles.append(layer.attention.output.dense.register_forward_pre_hook(head_hook(index)))
        handles.append(layer.output.dense.register_forward_pre_hook(ffn_hook(index)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def heads_of(layer) -> tuple[int, int]:
    """(heads, head size) of a layer's self-attention."""
    attention = layer.attention.self
    return attention.num_attention_heads, attention.attention_head_size


def fisher(model, batches, progress=None, task=None) -> tuple[list, list]:
    """Per-layer head and FFN-neuron importance (lists of float64 numpy arrays).

    ``batches`` yields (model inputs as torch tensors, targets: label ids, or an embedding model's unpruned
    vectors); the loss is the ``task``'s importance loss (core.tasks; default a classifier's cross-entropy);
    ``progress(n)`` is called with the number of texts after each batch.
    """
    import numpy as np
    import torch

    from edgewise.core.tasks.classification import Classification

    task = task or Classification()
    from edgewise.core.structure import encoder_layers

    layers = encoder_layers(model)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # only the masks need gradients
    heads = [heads_of(layer) for layer in layers]
    widths = [layer.intermediate.dense.out_features for layer in layers]
    head_scores = [np.zeros(h, dtype=np.float64) for h, _ in heads]
    ffn_scores = [np.zeros(w, dtype=np.float64) for w in widths]
    masks: dict = {}

    def head_hook(index):
        def hook(module, args):
            context = args[0]  # [batch, tokens, heads * head size], the input of the output projection
            count, size = heads[index]
            batch, tokens, _ = context.shape
            scaled = context.view(batch, tokens, count, size) * masks["heads"][index][:, None, :, None]
            return (scaled.view(batch, tokens, count * size), *args[1:])
        return hook

    def ffn_hook(index):
        def hook(module, args):
            return (args[0] * masks["ffn"][index][:, None, :], *args[1:])  # [batch, tokens, neurons]
        return hook

    try:
        with unit_hooks(layers, head_hook, ffn_hook):
            for inputs, labels in batches:
                batch = len(labels)
                masks["heads"] = [torch.ones(batch, h, requires_grad=True) for h, _ in heads]
                masks["ffn"] = [torch.ones(batch, w, requires_grad=True) for w in widths]
                # A sum, not a mean: each text's mask gradient is then that text's own loss gradient.
                loss = task.importance_loss(task.output(model, inputs), labels)
                grads = torch.autograd.grad(loss, masks["heads"] + masks["ffn"])
                for i in range(len(layers)):
                    head_scores[i] += grads[i].double().pow(2).sum(0).numpy()
                    ffn_scores[i] += grads[len(layers) + i].double().pow(2).sum(0).numpy()
                if progress is not None:
                    progress(batch)
    finally:
        masks.clear()
    return head_scores, ffn_scores


def layer_skip_losses(model, batches, task=None) -> list[float]:
    """Per encoder layer, the mean of the ``task``'s importance loss (a classifier's cross-entropy) on ``batches``
    ((model inputs, targets)) with that layer skipped (its input passed on unchanged): how much the model needs it.
    One forward pass of the texts per layer."""
    import torch

    from edgewise.core.structure import encoder_layers
    from edgewise.core.tasks.classification import Classification

    task = task or Classification()
    batches = list(batches)

    def skip(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    losses = []
    with torch.no_grad():
        for layer in encoder_layers(model):
            handle = layer.register_forward_hook(skip, with_kwargs=True)
            try:
                total = sum(float(task.importance_loss(task.output(model, inputs), labels))
                            for inputs, labels in batches)
            finally:
                handle.remove()
            losses.append(total / max(1, sum(len(labels) for _, labels in batches)))
    return losses
