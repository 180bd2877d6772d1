import numpy as np
import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.prune.search import Shape, choose, encoder_flops, head_flops, neuron_flops

SHAPES = [Shape(heads=4, head_size=8, ffn=64), Shape(heads=4, head_size=8, ffn=64)]
HIDDEN, TOKENS = 32, 16


def _scores():
    heads = [np.array([4.0, 3.0, 0.1, 0.2]), np.array([0.5, 9.0, 0.3, 0.05])]
    ffn = [np.linspace(1, 0, 64), np.linspace(0, 2, 64)]
    return heads, ffn


def test_flops_count_heads_and_neurons():
    assert head_flops(32, 8, 16) == 2 * (4 * 16 * 32 * 8 + 2 * 16 * 16 * 8)
    assert neuron_flops(32, 16) == 4 * 16 * 32
    assert encoder_flops(SHAPES, HIDDEN, TOKENS) == 2 * (4 * head_flops(32, 8, 16) + 64 * neuron_flops(32, 16))


def test_choose_keeps_the_most_important_units_within_the_budget():
    heads, ffn = _scores()

    plan = choose(heads, ffn, SHAPES, HIDDEN, tokens=TOKENS, flops=0.5, round_to=8)

    assert plan["flops_after"] <= 0.5 * plan["flops_before"]
    assert plan["heads"][1][0] == 1 and 0 in plan["heads"][0]  # the strongest head of each layer stays
    assert all(len(n) % 8 == 0 and len(n) >= 8 for n in plan["ffn"])
    assert plan["ffn"][1] == sorted(plan["ffn"][1]) and 63 in plan["ffn"][1] and 0 in plan["ffn"][0]


def test_choose_with_fractions_keeps_one_head_per_layer_at_least():
    heads, ffn = _scores()

    plan = choose(heads, ffn, SHAPES, HIDDEN, tokens=TOKENS, heads=0.25, ffn=0.5, round_to=8)

    assert plan["heads"] == [[0], [1]] and plan["budget"] is None
    assert sum(len(n) for n in plan["ffn"]) == 64


def test_choose_refuses_a_budget_below_the_floor():
    heads, ffn = _scores()

    with pytest.raises(EdgewiseError, match=r"--flops 0.01 is below what pruning reaches here.*ask for 0\.\d\d"):
        choose(heads, ffn, SHAPES, HIDDEN, tokens=TOKENS, flops=0.01, round_to=8)
