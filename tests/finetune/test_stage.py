import json

import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.finetune import FinetuneConfig, TrainerConfig, finetune
from tests.conftest import TINY_TRAINER, write_csv

ONE_EPOCH = TrainerConfig(epochs=1)


def test_finetune_learns_the_tiny_task_well_above_chance(tiny_teacher):
    manifest = Manifest.read(tiny_teacher)

    # Three balanced classes: chance is 0.33.
    assert manifest.metrics["test"]["accuracy"] >= 0.9
    assert manifest.metrics["validation"]["macro_f1"] >= 0.9


def test_finetune_writes_a_complete_hf_artifact(tiny_teacher, tiny_encoder, tiny_data):
    artifact = Artifact.load(tiny_teacher, kind="hf")  # verifies every file hash
    m = artifact.manifest

    assert (m.kind, m.stage, m.parent) == ("hf", "finetune", None)
    assert m.labels == {"0": "colour", "1": "fruit", "2": "sport"}
    assert m.source["pretrained"]["location"] == str(tiny_encoder.resolve())
    assert len(m.source["pretrained"]["weights_sha256"]) == 64
    assert set(m.data["splits"]) == {"train", "validation", "test"} and m.data["max_length"] == 32
    assert m.config["values"]["trainer"]["epochs"] == TINY_TRAINER["epochs"] and m.config["version"] == 2
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(m.files)
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in m.files)  # no pickles
    assert m.metrics["train"]["steps"] == 8 * 15 and m.metrics["train"]["best_checkpoint"]
    assert m.metrics["test"]["confusion_matrix"] and m.history
    config = json.loads((tiny_teacher / "config.json").read_text())
    assert config["id2label"] == {"0": "colour", "1": "fruit", "2": "sport"}
    assert not list(tiny_teacher.parent.glob(".*.partial"))


@pytest.mark.slow
def test_finetune_takes_text_pairs_and_a_single_file(tiny_encoder, tmp_path):
    rows = [(f"{a} x", f"{b} y", "same" if a == b else "diff") for a in ("apple", "red") for b in ("apple", "red")]
    write_csv(tmp_path / "pairs.csv", rows * 10, header=("first", "second", "y"))
    config = FinetuneConfig(max_length=16, trainer=ONE_EPOCH, data=DataConfig(
        text_column="first", text_pair_column="second", label_column="y", validation_fraction=0.25))

    manifest = finetune(str(tiny_encoder), tmp_path / "out", config, data=str(tmp_path / "pairs.csv"))

    assert manifest.data["splits"]["train"]["rows"] == 30 and manifest.data["splits"]["validation"]["rows"] == 10
    assert "test" not in manifest.metrics and manifest.labels == {"0": "diff", "1": "same"}
    # Both texts are tokenized: [CLS] a x [SEP] b y [SEP] is 7 tokens (the first text alone would be 4).
    assert manifest.data["token_lengths"]["p50"] == 7


@pytest.mark.slow
def test_finetune_picks_max_length_from_token_lengths(tiny_encoder, tiny_data, tmp_path):
    manifest = finetune(str(tiny_encoder), tmp_path / "auto", FinetuneConfig(length_percentile=99, trainer=ONE_EPOCH),
                        data=str(tiny_data))

    # Every tiny text is 7 words + [CLS] + [SEP] = 9 tokens: rounded up to 16.
    assert manifest.data["max_length"] == 16
    assert manifest.data["token_lengths"]["p99"] == 9 and manifest.data["token_lengths"]["truncated_fraction"] == 0


@pytest.mark.slow
def test_finetune_is_reproducible_with_the_same_seed(tiny_encoder, tiny_data, tmp_path):
    config = FinetuneConfig(max_length=16, trainer=ONE_EPOCH, data=DataConfig(seed=3))

    a = finetune(str(tiny_encoder), tmp_path / "a", config, data=str(tiny_data))
    b = finetune(str(tiny_encoder), tmp_path / "b", config, data=str(tiny_data))

    # Same seed, same data: the same weights, fresh classification head included.
    assert a.files["model.safetensors"] == b.files["model.safetensors"]


@pytest.mark.slow
def test_finetune_from_an_edgewise_artifact_links_it_as_parent(tiny_teacher, tiny_data, tmp_path):
    manifest = finetune(str(tiny_teacher), tmp_path / "again", FinetuneConfig(trainer=ONE_EPOCH), data=str(tiny_data))

    assert manifest.parent == {"path": str(tiny_teacher), "manifest_sha256": Manifest.read(tiny_teacher).sha256}
    assert manifest.source is None and manifest.data["max_length"] == 16


@pytest.mark.slow
def test_finetune_skips_test_metrics_when_the_test_split_is_unlabelled(tiny_encoder, tmp_path):
    from tests.conftest import make_texts

    write_csv(tmp_path / "train.csv", make_texts(60, seed=1))
    write_csv(tmp_path / "test.csv", [(t, "") for t, _ in make_texts(6, seed=2)])

    manifest = finetune(str(tiny_encoder), tmp_path / "out", FinetuneConfig(trainer=ONE_EPOCH), data=str(tmp_path))

    assert "test" not in manifest.metrics and "validation" in manifest.metrics


def test_drop_incomplete_checkpoints_keeps_only_finished_ones(tmp_path):
    from edgewise.core.stage import drop_incomplete_checkpoints

    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-20").mkdir()
    (tmp_path / "checkpoint-20" / "model.safetensors").write_bytes(b"half")

    assert drop_incomplete_checkpoints(tmp_path) == ["checkpoint-20"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-10"]


def test_finetune_failure_leaves_no_output(tiny_encoder, tiny_data, tmp_path):
    with pytest.raises(EdgewiseError, match="exceeds the model's limit of 64"):
        finetune(str(tiny_encoder), tmp_path / "t", FinetuneConfig(max_length=128, trainer=ONE_EPOCH),
                 data=str(tiny_data))

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("cls", "field", "value", "fragment"),
    [(TrainerConfig, "epochs", 0, "epochs must be > 0"),
     (TrainerConfig, "learning_rate", 2.0, "learning_rate must be in (0, 1)"),
     (TrainerConfig, "batch_size", 0, "batch_size must be >= 1"), (TrainerConfig, "warmup_ratio", 1.0, "warmup_ratio"),
     (TrainerConfig, "best_metric", "loss", "best_metric must be one of accuracy, macro_f1"),
     (FinetuneConfig, "max_length", 4, "max_length must be >= 8"), (DataConfig, "seed", -1, "seed must be >= 0")],
)
def test_finetune_config_rejects_bad_values(cls, field, value, fragment):
    with pytest.raises(EdgewiseError) as info:
        cls(**{field: value})
    assert fragment in str(info.value)


def test_finetune_config_reads_schema_1_manifests():
    from edgewise.core.config import config_from_manifest

    flat = {"epochs": 2.0, "learning_rate": 3e-3, "batch_size": 8, "seed": 7, "max_length": 32, "train_split": "train",
            "best_metric": "accuracy", "allow_pickle": False, "length_percentile": 99.0, "data": {"text_column": "t"}}

    config = config_from_manifest(FinetuneConfig, {"type": "FinetuneConfig", "version": 1, "values": flat})

    assert config.trainer == TrainerConfig(epochs=2, learning_rate=3e-3, batch_size=8, best_metric="accuracy")
    assert (config.max_length, config.data.seed, config.data.text_column) == (32, 7, "t")
