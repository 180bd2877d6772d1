"""The task registry (edgewise.core.tasks): every task registered, how a folder's task is found, and the refusal."""

import inspect
import json

import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import TASKS, Task, TaskConfig, detect, refuse_unless, resolve, task_class
from edgewise.core.tasks.classification import Classification
from edgewise.core.tasks.embedding import Embedding
from tests.conftest import write_sentence_transformers

# What every stage asks of a task: a task module that lacks one of these breaks a stage.
PROTOCOL = ("record", "describe", "from_record", "detect", "from_options", "check_options", "quality_drop", "gate_of",
            "write_files", "auto_class", "load", "head", "output", "distill_loss", "eval_loss", "importance_loss",
            "trainer_metrics", "eval_data", "eval_set", "score", "quality", "agreement_on", "check_outputs",
            "compact", "expand", "postprocess", "labels_of", "output_width", "importance_targets", "summary",
            "finish_graph")
ATTRIBUTES = ("name", "export_task", "output_name", "gate_metric", "quality_name", "columns", "column_notes",
              "self_targets", "metrics")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_implements_the_whole_protocol(name):
    cls = task_class(name)

    missing = sorted(m for m in PROTOCOL if not callable(getattr(cls, m, None)))
    # a task being built names what it lacks (every stage that needs it refuses the task): the list is the code's
    assert issubclass(cls, Task) and cls.name == name and missing == sorted(cls.pending)
    assert cls.quality_drop is not Task.quality_drop  # the base only says it must be defined
    assert all(getattr(cls, a, None) for a in ATTRIBUTES)
    # A task module loads no torch at import time: the torch-free runtime post-processes through it.
    assert "import torch" not in inspect.getsource(inspect.getmodule(cls)).split("class ")[0]


def test_every_registered_task_has_tests():
    import pathlib

    here = pathlib.Path(__file__).parent
    assert {f"test_{name.replace('-', '_')}.py" for name in TASKS} <= {p.name for p in here.iterdir()}


def test_a_classifier_folder_and_a_sentence_transformers_folder_are_told_apart(tiny_teacher, tiny_embedder,
                                                                               tiny_encoder):
    assert detect(tiny_teacher) == Classification()
    assert detect(tiny_embedder) == Embedding("mean", True, 32)
    assert detect(tiny_encoder) is None  # a plain encoder says neither


def test_resolve_prefers_the_record_and_refuses_contradicting_options(tiny_teacher, tiny_embedder, tiny_encoder):
    assert resolve(tiny_embedder, {"name": "classification"}) == Classification()  # edgewise's record wins
    assert resolve(tiny_encoder, config=TaskConfig(task="embedding", pooling="cls")) == Embedding("cls", False, 32)
    assert resolve(tiny_encoder) is None
    with pytest.raises(EdgewiseError, match="is a classification model, not embedding; drop --task"):
        resolve(tiny_teacher, config=TaskConfig(task="embedding"))
    with pytest.raises(EdgewiseError, match="pools its vectors itself .* --pooling max would change the model"):
        resolve(tiny_embedder, config=TaskConfig(pooling="max"))


def test_task_config_checks_its_values():
    assert TaskConfig(task="sentence-embedding").task == "embedding"  # the names users type
    assert TaskConfig(task="ner").task == "token-classification"
    with pytest.raises(EdgewiseError, match="task must be one of auto, classification, embedding, "
                                            "token-classification"):
        TaskConfig(task="sentiment")
    with pytest.raises(EdgewiseError, match="describe an embedding model; drop them for --task token-classification"):
        TaskConfig(task="ner", normalize=True)
    with pytest.raises(EdgewiseError, match="describe an embedding model; drop them"):
        TaskConfig(task="classification", pooling="mean")


def test_refuse_unless_says_what_the_step_serves_and_how_to_get_it(tmp_path):
    assert refuse_unless(Embedding(), ("embedding",), "m", "x") == Embedding()
    with pytest.raises(EdgewiseError, match="m is a sentence-embedding .* --method inc serves classification models: "
                                            "quantize its ONNX export"):
        refuse_unless(Embedding(), ("classification",), "m", "--method inc", "quantize its ONNX export")
    with pytest.raises(EdgewiseError, match="it is an encoder, not a classifier .* edgewise finetune m DATA -o "
                                            "TEACHER, or pass --task embedding --pooling mean"):
        refuse_unless(None, ("classification", "embedding"), "m", "distill")
    write_sentence_transformers(tmp_path)
    assert detect(tmp_path).name == "embedding"


def test_a_placeholder_label_map_is_not_a_classifier_and_sentence_transformers_files_win(tiny_encoder, tmp_path):
    # transformers writes id2label {0: LABEL_0, 1: LABEL_1} into headless configs (bge's config.json has it):
    # such a folder is a plain encoder, and an embedding model when sentence-transformers' files say so.
    import shutil

    folder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
                                                    "label2id": {"LABEL_0": 0, "LABEL_1": 1}}))
    assert Artifact.load(folder).task_for() is None
    write_sentence_transformers(folder, pooling="cls", normalize=False)
    assert Artifact.load(folder).task_for() == Embedding("cls", False, 32)

    named = tmp_path / "named"
    shutil.copytree(tiny_encoder, named)
    (named / "config.json").write_text(json.dumps({**config, "id2label": {"0": "sport", "1": "tech"},
                                                   "label2id": {"sport": 0, "tech": 1}}))
    assert Artifact.load(named).task_for() == Classification()  # labels of its own: a classifier's folder
