import pytest
import torch

from edgewise.core.errors import EdgewiseError
from edgewise.distill.config import DistillConfig, parse_layer_map, parse_student_config
from edgewise.distill.losses import Projection, attention_loss, hidden_loss
from edgewise.distill.students import default_map, evenly_spaced, fresh, from_teacher_layers


def test_evenly_spaced_keeps_first_and_last_layers():
    assert evenly_spaced(6, 3) == [0, 3, 5]
    assert evenly_spaced(6, 2) == [0, 5]
    assert evenly_spaced(6, 1) == [5]
    assert evenly_spaced(12, 6) == [0, 2, 4, 7, 9, 11]
    with pytest.raises(EdgewiseError, match="exceeds the teacher's 6 layers"):
        evenly_spaced(6, 7)


def test_default_map_ends_on_the_teachers_last_layer():
    assert default_map(3, 6) == [1, 3, 5] and default_map(2, 6) == [2, 5] and default_map(6, 6) == list(range(6))


def _teacher(arch="bert"):
    from transformers import AutoModelForSequenceClassification, BertConfig, DistilBertConfig

    torch.manual_seed(0)
    config = (BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=32, num_labels=3) if arch == "bert" else
              DistilBertConfig(vocab_size=40, dim=16, n_layers=4, n_heads=2, hidden_dim=32, num_labels=3))
    return AutoModelForSequenceClassification.from_config(config)


@pytest.mark.parametrize(("arch", "prefix"), [("bert", "bert.encoder.layer"),
                                             ("distilbert", "distilbert.transformer.layer")])
def test_student_from_teacher_layers_copies_the_chosen_layers(arch, prefix):
    teacher = _teacher(arch)

    student = from_teacher_layers(teacher, [1, 3])

    s, t = student.state_dict(), teacher.state_dict()
    for key in s:
        if key.startswith(prefix):
            index = int(key[len(prefix) + 1:].split(".")[0])
            source = key.replace(f"{prefix}.{index}.", f"{prefix}.{[1, 3][index]}.", 1)
            assert torch.equal(s[key], t[source]), key
        else:
            assert torch.equal(s[key], t[key]), key  # embeddings, pooler, classifier
    assert student.config.num_hidden_layers == 2
    with pytest.raises(EdgewiseError, match="names layers the teacher lacks"):
        from_teacher_layers(teacher, [0, 4])


def test_fresh_student_takes_the_changed_sizes():
    student = fresh(_teacher(), {"layers": 1, "hidden": 8, "heads": 2, "ffn": 12})

    config = student.config
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (1, 8, 12)
    with pytest.raises(EdgewiseError, match="hidden must divide by heads"):
        fresh(_teacher(), {"hidden": 9})


def test_parse_layer_map_and_student_config():
    assert parse_layer_map("0,2,5") == (0, 2, 5)
    for bad in ("2,1", "0,0", "a", "-1"):
        with pytest.raises(EdgewiseError, match="layer-map"):
            parse_layer_map(bad)
    assert parse_student_config("layers=4,hidden=256,heads=4") == {"layers": 4, "hidden": 256, "heads": 4}
    for bad in ("depth=2", "layers=x", "hidden=10,heads=4"):
        with pytest.raises(EdgewiseError, match="student-config"):
            parse_student_config(bad)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"layers": 2, "layer_map": "0,1"}, "choose one kind of student"), ({"layers": 0}, "layers must be >= 1"),
     ({"alpha": 1.5}, "alpha"), ({"temperature": 0}, "temperature"), ({"hidden_weight": -1}, "hidden_weight")],
)
def test_distill_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(EdgewiseError, match=fragment):
        DistillConfig(**kwargs)


def test_hidden_and_attention_losses_vanish_on_identical_internals_and_project_widths():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0]])
    teacher_hidden = tuple(torch.randn(1, 4, 6) for _ in range(3))
    attention = tuple(torch.softmax(torch.randn(1, 2, 4, 4), -1) for _ in range(2))

    assert hidden_loss(teacher_hidden, teacher_hidden, [0, 1], mask, Projection(6, 6)).item() == 0.0
    assert attention_loss(attention, attention, [0, 1], mask).item() == pytest.approx(0.0, abs=1e-6)
    narrow = tuple(torch.randn(1, 4, 3) for _ in range(3))
    projection = Projection(3, 6)
    loss = hidden_loss(narrow, teacher_hidden, [0, 1], mask, projection)
    loss.backward()
    assert projection.linear.weight.grad is not None and loss.item() > 0


def test_hidden_loss_pairs_student_layers_with_their_mapped_teacher_layers():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0]])
    teacher_hidden = tuple(torch.randn(1, 4, 6) for _ in range(4))  # embeddings + 3 layers
    # Student layer 0 equals teacher layer 2, except at the padded position, which must not count.
    student_layer = teacher_hidden[3].clone()
    student_layer[0, 3] += 5.0
    student_hidden = (teacher_hidden[0], student_layer)

    assert hidden_loss(student_hidden, teacher_hidden, [2], mask, Projection(6, 6)).item() == 0.0
    assert hidden_loss(student_hidden, teacher_hidden, [1], mask, Projection(6, 6)).item() > 0.1


def test_attention_loss_uses_the_mapped_layer_and_ignores_padded_queries():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 0]])
    teacher = tuple(torch.softmax(torch.randn(1, 2, 3, 3), -1) for _ in range(3))
    student_layer = teacher[2].clone()
    student_layer[0, :, 2] = torch.softmax(torch.randn(2, 3), -1)  # differs only at the padded query row

    assert attention_loss((student_layer,), teacher, [2], mask).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_loss((student_layer,), teacher, [0], mask).item() > 0.01
