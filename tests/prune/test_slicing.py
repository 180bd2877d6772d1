import copy

import pytest


@pytest.fixture()
def model(tiny_teacher):
    from edgewise.core.models import ModelSource, load_classifier

    return load_classifier(ModelSource(str(tiny_teacher), str(tiny_teacher), True)).eval()


def _reloaded(model, path):
    from edgewise.core.models import ModelSource, load_classifier

    model.save_pretrained(path, safe_serialization=True)
    return load_classifier(ModelSource(str(path), str(path), True)).eval()


def _logits(model):
    import torch

    with torch.no_grad():
        ids = torch.tensor([[2, 5, 7, 9, 3]])
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_remove_units_slices_every_matrix_and_reloads(model, tmp_path):
    import torch

    from edgewise.core.structure import ffn_sizes, head_counts
    from edgewise.prune.slicing import remove_units

    remove_units(model, [[1], [0, 1]], [list(range(16)), list(range(0, 64, 4))])

    layer = model.base_model.encoder.layer[0]
    size = layer.attention.self.attention_head_size
    assert layer.attention.self.query.out_features == size and layer.attention.output.dense.in_features == size
    assert head_counts(model) == [1, 2] and ffn_sizes(model) == [16, 16]
    assert model.config.edgewise_ffn_sizes == [16, 16] and model.config.pruned_heads == {0: [0]}
    reloaded = _reloaded(model, tmp_path / "m")
    assert head_counts(reloaded) == [1, 2] and ffn_sizes(reloaded) == [16, 16]
    torch.testing.assert_close(_logits(reloaded), _logits(model))


def test_heads_are_numbered_as_the_model_has_them_now(model):
    from edgewise.prune.slicing import remove_heads

    remove_heads(model, 0, [1])  # original head 1 stays
    remove_heads(model, 0, [0])  # ... and is head 0 now: nothing more goes

    assert model.config.pruned_heads == {0: [0]}


def test_a_dropped_layer_is_bypassed_and_the_model_reloads(model, tmp_path):
    import torch

    from edgewise.core.structure import ffn_sizes, head_counts
    from edgewise.prune.slicing import drop_layers, remove_units

    remove_units(model, [[0, 1], [1]], [list(range(64)), list(range(32))])
    second = copy.deepcopy(model.base_model.encoder.layer[1])

    drop_layers(model, [1])

    assert model.config.num_hidden_layers == 1 and head_counts(model) == [1] and ffn_sizes(model) == [32]
    assert model.config.pruned_heads == {0: [0]}  # layer 1's pruned heads, renumbered
    torch.testing.assert_close(model.base_model.encoder.layer[0].output.dense.weight, second.output.dense.weight)
    reloaded = _reloaded(model, tmp_path / "m")
    assert reloaded.config.num_hidden_layers == 1 and head_counts(reloaded) == [1]
    torch.testing.assert_close(_logits(reloaded), _logits(model))


def test_a_plan_for_another_depth_is_a_bug(model):
    from edgewise.prune.slicing import drop_layers, remove_units

    with pytest.raises(ValueError, match="plan for 1 / 1 layers"):
        remove_units(model, [[0]], [[0]])
    with pytest.raises(ValueError, match="do not fit"):
        drop_layers(model, [2])
