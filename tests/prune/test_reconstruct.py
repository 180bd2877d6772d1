import copy

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model_and_batches(tiny_teacher, tiny_data):
    from edgewise.core.models import ModelSource, load_classifier, load_tokenizer

    source = ModelSource(str(tiny_teacher), str(tiny_teacher), True)
    model, tokenizer = load_classifier(source).eval(), load_tokenizer(source)
    texts = (tiny_data / "train.csv").read_text().splitlines()[1:65]
    batches = [dict(tokenizer(texts[i:i + 16], truncation=True, max_length=32, padding=True, return_tensors="pt"))
               for i in range(0, 64, 16)]
    return model, batches


def _logits(model, batches):
    import torch

    with torch.no_grad():
        return torch.cat([model(**b).logits for b in batches])


def test_the_ridge_fit_solves_the_least_squares_problem():
    import torch

    from edgewise.prune.reconstruct import _solve

    rng = np.random.default_rng(0)
    units = torch.from_numpy(rng.normal(size=(300, 5)))  # 5 units over 300 tokens
    target = units @ torch.from_numpy(rng.normal(size=(5, 3))) + 0.5  # 3 outputs, bias 0.5
    x = torch.cat([units, torch.ones(300, 1, dtype=units.dtype)], dim=1)
    kept = [0, 2, 3]
    linear = torch.nn.Linear(3, 3).double()

    with torch.no_grad():
        _solve(linear, x.T @ x, x.T @ target, kept, damping=1e-12)

    design = np.concatenate([units.numpy()[:, kept], np.ones((300, 1))], axis=1)
    expected, *_ = np.linalg.lstsq(design, target.numpy(), rcond=None)
    np.testing.assert_allclose(linear.weight.detach().numpy(), expected[:3].T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(linear.bias.detach().numpy(), expected[3], rtol=1e-6, atol=1e-8)


def test_reconstruction_brings_the_pruned_model_closer_to_the_whole_one(model_and_batches):
    from edgewise.core.structure import ffn_sizes, head_counts
    from edgewise.prune.reconstruct import reconstruct
    from edgewise.prune.slicing import remove_units

    model, batches = model_and_batches
    keep_heads, keep_ffn = [[0], [1]], [list(range(0, 64, 2)), list(range(32))]
    whole = _logits(model, batches)
    plain, fitted = copy.deepcopy(model), copy.deepcopy(model)
    remove_units(plain, keep_heads, keep_ffn)

    reconstruct(model, fitted, batches, keep_heads, keep_ffn)

    assert head_counts(fitted) == head_counts(plain) == [1, 1] and ffn_sizes(fitted) == ffn_sizes(plain) == [32, 32]
    assert fitted.config.pruned_heads == plain.config.pruned_heads  # what reloading re-applies
    plain_error = (_logits(plain, batches) - whole).pow(2).mean()
    fitted_error = (_logits(fitted, batches) - whole).pow(2).mean()
    assert fitted_error < plain_error


def test_reconstruction_with_nothing_pruned_keeps_the_model(model_and_batches):
    from edgewise.prune.reconstruct import reconstruct

    model, batches = model_and_batches
    fitted = copy.deepcopy(model)

    reconstruct(model, fitted, batches, [[0, 1], [0, 1]], [list(range(64))] * 2)

    np.testing.assert_allclose(_logits(fitted, batches).numpy(), _logits(model, batches).numpy(), atol=1e-3)


def test_reconstruction_over_a_dropped_layer_fits_the_next_one_to_both(model_and_batches):
    from edgewise.prune.reconstruct import reconstruct
    from edgewise.prune.slicing import drop_layers

    model, batches = model_and_batches
    whole = _logits(model, batches)
    plain = copy.deepcopy(model)
    drop_layers(plain, [1])
    fitted = copy.deepcopy(plain)

    reconstruct(model, fitted, batches, [[0, 1]], [list(range(64))], layers=[1])

    assert fitted.config.num_hidden_layers == 1
    assert (_logits(fitted, batches) - whole).pow(2).mean() < (_logits(plain, batches) - whole).pow(2).mean()
