"""Students: the teacher's own layers (DistilBERT-style), a given pretrained encoder, or a fresh config."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgewise.core.errors import EdgewiseError

LAYER_KEY = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")  # bert/roberta encoder.layer.N, distilbert transformer.layer.N


@dataclass
class Student:
    model: object
    tokenizer: object
    kind: str  # "teacher-layers" | "pretrained" | "fresh"
    layer_map: list[int] | None  # teacher layer behind each student layer (hidden / attention transfer)
    same_tokenizer: bool


def evenly_spaced(teacher_layers: int, layers: int) -> list[int]:
    """`layers` teacher layers spread from the first to the last, e.g. 3 of 6 -> [0, 3, 5]."""
    import numpy as np

    if layers > teacher_layers:
        raise EdgewiseError(f"--layers {layers} exceeds the teacher's {teacher_layers} layers; choose fewer")
    if layers == 1:
        return [teacher_layers - 1]
    return sorted({int(v) for v in np.floor(np.linspace(0, teacher_layers - 1, layers) + 0.5)})


def default_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer i learns from teacher layer round((i + 1) * L / N) - 1: the last maps to the last."""
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def _num_layers(config) -> int:
    return int(getattr(config, "num_hidden_layers", None) or config.n_layers)


def from_teacher_layers(teacher, layer_map: list[int], auto_class=None, **load):
    """A copy of the teacher with only the layers in ``layer_map`` (embeddings, pooler, classifier kept), built as
    ``auto_class`` (the task's: the classifier's by default, the bare encoder for an embedding model)."""
    import copy

    from transformers import AutoModelForSequenceClassification

    auto_class = auto_class or AutoModelForSequenceClassification
    total = _num_layers(teacher.config)
    if not layer_map or max(layer_map) >= total:
        raise EdgewiseError(f"--layer-map {layer_map} names layers the teacher lacks (it has 0..{total - 1})")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layer_map)  # DistilBERT maps this onto n_layers
    student = auto_class.from_config(config, **load)
    source = teacher.state_dict()
    state, layers_seen = {}, set()
    for key in student.state_dict():
        match = LAYER_KEY.match(key)
        if match:
            layers_seen.add(int(match[2]))
        state[key] = source[f"{match[1]}{layer_map[int(match[2])]}{match[3]}" if match else key].clone()
    if layers_seen != set(range(len(layer_map))):
        raise EdgewiseError(
            f"cannot find the transformer layers of this {teacher.config.model_type} model (expected weights named "
            "...layer.N...); build the student with --student or --student-config instead"
        )
    student.load_state_dict(state)
    return student


def fresh(teacher, changes: dict[str, int], auto_class=None, **load):
    """A randomly initialised student from the teacher's config with layers / hidden / heads / FFN changed."""
    import copy

    from transformers import AutoModelForSequenceClassification

    from edgewise.distill.config import STUDENT_CONFIG_KEYS

    auto_class = auto_class or AutoModelForSequenceClassification

    config = copy.deepcopy(teacher.config)
    for key, value in changes.items():
        name = STUDENT_CONFIG_KEYS[key]
        if name == "intermediate_size" and hasattr(config, "hidden_dim"):
            name = "hidden_dim"  # DistilBERT calls its FFN width hidden_dim
        setattr(config, name, value)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    if hidden and heads and hidden % heads:
        raise EdgewiseError(f"--student-config gives hidden {hidden} and {heads} heads; hidden must divide by heads")
    return auto_class.from_config(config, **load)


def build_student(teacher, teacher_tokenizer, config, id2label, seed: int, task=None, **load) -> Student:
    """The student ``config`` asks for, of the teacher's task (``task``, default a classifier) and labelled like the
    teacher. An embedding student must give vectors as wide as the teacher's (it learns them as they are)."""
    from transformers import set_seed

    from edgewise.core.models import load_tokenizer, resolve_model
    from edgewise.core.tasks.classification import Classification
    from edgewise.distill.config import parse_student_config

    task = task or Classification()
    set_seed(seed)
    total = _num_layers(teacher.config)
    classifier = task.labelled
    if config.student:
        source = resolve_model(config.student, allow_pickle=config.allow_pickle)
        tokenizer = load_tokenizer(source)
        if classifier:
            from edgewise.core.models import load_classifier

            model = load_classifier(source, config.allow_pickle, new_head=True, num_labels=len(id2label),
                                    id2label=id2label, label2id={v: k for k, v in id2label.items()},
                                    ignore_mismatched_sizes=True, **load)
        else:
            model = task.load(source, config.allow_pickle, **load)
        same = tokenizer.get_vocab() == teacher_tokenizer.get_vocab()
        if (config.hidden_weight or config.attention_weight) and not same:
            raise EdgewiseError(
                f"hidden-state and attention transfer need the student to read the teacher's tokens, but "
                f"{config.student} has its own tokenizer; set --hidden-weight 0 --attention-weight 0"
            )
        student = Student(model, tokenizer, "pretrained", default_map(_num_layers(model.config), total), same)
    elif config.student_config:
        model = fresh(teacher, parse_student_config(config.student_config), task.auto_class(), **load)
        student = Student(model, teacher_tokenizer, "fresh", default_map(_num_layers(model.config), total), True)
    else:
        layer_map = list(config.layer_map or evenly_spaced(total, config.layers or max(1, total // 2)))
        student = Student(from_teacher_layers(teacher, layer_map, task.auto_class(), **load), teacher_tokenizer,
                          "teacher-layers", layer_map, True)
    if not classifier and width(student.model.config) != width(teacher.config):
        raise EdgewiseError(f"the student's vectors would have {width(student.model.config)} dimensions and the "
                            f"teacher's have {width(teacher.config)}; an embedding student learns the teacher's "
                            "vectors as they are: keep the teacher's hidden size (drop hidden= from --student-config, "
                            "or choose a --student of the same width)")
    return student


def width(config) -> int:
    """The hidden width of a transformers config (DistilBERT calls it dim)."""
    return int(getattr(config, "hidden_size", None) or config.dim)
