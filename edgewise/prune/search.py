"""Which heads and FFN neurons to keep: the most important ones under a FLOPs budget (Kwon et al.
2022's mask search) or explicit fractions, with per-layer FFN widths rounded for fast kernels."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgewise.core.errors import EdgewiseError


@dataclass(frozen=True)
class Shape:
    """One layer as the FLOPs count sees it."""

    heads: int
    head_size: int
    ffn: int


def layer_shapes(model) -> list[Shape]:
    """Heads, head size and FFN width of every encoder layer of a BERT-family ``model``."""
    from edgewise.core.structure import encoder_layers
    from edgewise.prune.importance import heads_of

    return [Shape(*heads_of(layer), layer.intermediate.dense.out_features) for layer in encoder_layers(model)]


def head_flops(hidden: int, head_size: int, tokens: int) -> int:
    """Multiply-adds x 2 of one head at ``tokens``: its Q, K, V and output projections (4 matrices of
    hidden x head_size per token) and the scores and weighted sum (tokens x tokens x head_size each)."""
    return 2 * (4 * tokens * hidden * head_size + 2 * tokens * tokens * head_size)


def neuron_flops(hidden: int, tokens: int) -> int:
    """One FFN neuron: a row of the up projection and a column of the down projection per token."""
    return 2 * 2 * tokens * hidden


def encoder_flops(shapes: list[Shape], hidden: int, tokens: int) -> int:
    return sum(s.heads * head_flops(hidden, s.head_size, tokens) + s.ffn * neuron_flops(hidden, tokens)
               for s in shapes)


def _top(scores: list, count: int, floor: list[int]) -> list[list[int]]:
    """Indices per layer of the ``count`` highest scores overall, each layer keeping at least ``floor[i]``
    (its own best units first)."""
    import numpy as np

    keep = [list(np.argsort(-s, kind="stable")[:f]) for s, f in zip(scores, floor, strict=True)]
    taken = {(i, j) for i, layer in enumerate(keep) for j in layer}
    ranked = sorted(((float(s[j]), i, int(j)) for i, s in enumerate(scores) for j in range(len(s))
                     if (i, j) not in taken), reverse=True)
    for _, i, j in ranked[:max(0, count - len(taken))]:
        keep[i].append(j)
    return [sorted(int(j) for j in layer) for layer in keep]


def _round_ffn(scores: list, keep: list[list[int]], round_to: int) -> list[list[int]]:
    """Each layer's kept neurons rounded to the nearest multiple of ``round_to`` (at least one
    multiple, at most the layer's width), by its own importance order."""
    import numpy as np

    rounded = []
    for s, kept in zip(scores, keep, strict=True):
        width = len(s)
        target = min(width, max(round_to, int(round(len(kept) / round_to)) * round_to))
        rounded.append(sorted(int(j) for j in np.argsort(-s, kind="stable")[:target]))
    return rounded


def floor_fraction(shapes: list[Shape], hidden: int, *, tokens: int, round_to: int) -> float:
    """The smallest share of the FLOPs pruning reaches: one head and ``round_to`` neurons per layer."""
    floor = [Shape(1, s.head_size, min(round_to, s.ffn)) for s in shapes]
    return encoder_flops(floor, hidden, tokens) / encoder_flops(shapes, hidden, tokens)


def check_budget(shapes: list[Shape], hidden: int, *, tokens: int, flops: float, round_to: int) -> None:
    """An EdgewiseError when ``flops`` is below the floor every layer keeps (one head, ``round_to`` neurons)."""
    total = encoder_flops(shapes, hidden, tokens)
    floor = [Shape(1, s.head_size, min(round_to, s.ffn)) for s in shapes]
    minimum = encoder_flops(floor, hidden, tokens)
    if minimum > flops * total:
        raise EdgewiseError(
            f"--flops {flops} is below what pruning reaches here: every layer keeps one head and --round-to "
            f"{round_to} neurons, {minimum / total:.1%} of the FLOPs at least; ask for "
            f"{math.ceil(minimum / total * 100) / 100:.2f} or more, or remove whole layers by distilling "
            "(edgewise distill --layers)"
        )


def choose(head_scores: list, ffn_scores: list, shapes: list[Shape], hidden: int, *, tokens: int,
           flops: float | None = None, heads: float | None = None, ffn: float | None = None,
           round_to: int = 32) -> dict:
    """The heads and neurons to keep per layer: {"heads": [[kept head ids] per layer], "ffn": [[kept neuron
    ids] per layer], "flops_before", "flops_after", "budget"}.

    With ``flops``: for every possible number of heads kept (most important first), the neurons that
    fit in the rest of the budget; the split whose kept units add up to the most importance wins
    (the paper's search). Every layer keeps one head and ``round_to`` neurons at least.
    """
    per_head = [head_flops(hidden, s.head_size, tokens) for s in shapes]
    per_neuron = neuron_flops(hidden, tokens)
    total = encoder_flops(shapes, hidden, tokens)
    head_floor, ffn_floor = [1] * len(shapes), [min(round_to, s.ffn) for s in shapes]
    if flops is not None:
        budget = flops * total
        check_budget(shapes, hidden, tokens=tokens, flops=flops, round_to=round_to)
        kept_heads, kept_ffn = _search(head_scores, ffn_scores, per_head, per_neuron, budget, head_floor, ffn_floor)
    else:
        total_heads, total_neurons = sum(s.heads for s in shapes), sum(s.ffn for s in shapes)
        kept_heads = _top(head_scores, round((heads or 1.0) * total_heads), head_floor)
        kept_ffn = _top(ffn_scores, round((ffn or 1.0) * total_neurons), ffn_floor)
        budget = None
    kept_ffn = _round_ffn(ffn_scores, kept_ffn, round_to)

    def cost(ffn_kept) -> int:
        after = [Shape(len(h), s.head_size, len(n)) for h, n, s in zip(kept_heads, ffn_kept, shapes, strict=True)]
        return encoder_flops(after, hidden, tokens)

    while budget is not None and cost(kept_ffn) > budget:
        # Rounding up went over the budget: give back the least important block of round_to neurons.
        blocks = [(float(sum(sorted(ffn_scores[i][kept], reverse=True)[-round_to:])), i)
                  for i, kept in enumerate(kept_ffn) if len(kept) > round_to]
        if not blocks:
            break
        _, layer = min(blocks)
        order = sorted(kept_ffn[layer], key=lambda j: -ffn_scores[layer][j])
        kept_ffn[layer] = sorted(order[:len(order) - round_to])
    return {"heads": kept_heads, "ffn": kept_ffn, "flops_before": total, "flops_after": cost(kept_ffn),
            "budget": budget}


def _search(head_scores, ffn_scores, per_head, per_neuron, budget, head_floor, ffn_floor):
    """Kwon et al.'s search: heads by importance per FLOP are not comparable across unit types, so every
    head count is tried and the remaining budget filled with the most important neurons."""
    import numpy as np

    kept_heads_floor = _top(head_scores, sum(head_floor), head_floor)
    kept_ffn_floor = _top(ffn_scores, sum(ffn_floor), ffn_floor)
    floor_cost = (sum(per_head[i] * len(h) for i, h in enumerate(kept_heads_floor))
                  + per_neuron * sum(len(n) for n in kept_ffn_floor))
    extra_heads = sorted(((float(s[j]), per_head[i], i, j) for i, s in enumerate(head_scores) for j in range(len(s))
                          if j not in kept_heads_floor[i]), reverse=True)
    extra_neurons = sorted((float(s[j]) for i, s in enumerate(ffn_scores) for j in range(len(s))
                            if j not in kept_ffn_floor[i]), reverse=True)
    neuron_prefix = np.concatenate([[0.0], np.cumsum(extra_neurons)])
    best = (-1.0, 0, 0)
    head_cost, head_gain = 0.0, 0.0
    for k in range(len(extra_heads) + 1):
        if k:
            head_gain += extra_heads[k - 1][0]
            head_cost += extra_heads[k - 1][1]
        left = budget - floor_cost - head_cost
        if left < 0:
            break
        n = min(len(extra_neurons), int(left // per_neuron))
        gain = head_gain + float(neuron_prefix[n])
        if gain > best[0]:
            best = (gain, k, n)
    _, k, n = best
    return (_top(head_scores, sum(head_floor) + k, head_floor), _top(ffn_scores, sum(ffn_floor) + n, ffn_floor))
