import dataclasses
import json

import pytest

from edgewise.core.config import config_from_dict, config_to_dict
from edgewise.core.data import DataConfig
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest
from edgewise.core.tasks import TaskConfig
from edgewise.evaluate import EvaluateConfig
from edgewise.finetune import BestMetric, FinetuneConfig, TrainerConfig
from edgewise.quantize.config import QuantizeConfig

ALL_CONFIGS = [
    DataConfig(),
    DataConfig(text_column="q", text_pair_column="p", label_column="y", validation_fraction=0.25, seed=3),
    TrainerConfig(),
    FinetuneConfig(),
    FinetuneConfig(max_length=128, data=DataConfig(text_column="s"),
                   trainer=TrainerConfig(epochs=2, best_metric=BestMetric.ACCURACY)),
    EvaluateConfig(),
    EvaluateConfig(split="test", batch_size=4, max_length=64),
    EvaluateConfig(reference="runs/teacher", task=TaskConfig(task="embedding", pooling="cls", normalize=True)),
    TaskConfig(),
    TaskConfig(task="embedding", pooling="max", normalize=False),
    QuantizeConfig(),
    QuantizeConfig(method="static", calibration_method="entropy", exclude_op=("Gather",), reduce_range=True,
                   max_accuracy_drop=0.5, fallback_layers=(1, 3), data=DataConfig(label_column="y")),
]


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: type(c).__name__)
def test_config_survives_json_round_trip(config):
    data = json.loads(json.dumps(config_to_dict(config)))

    assert config_from_dict(type(config), data) == config


def test_config_from_dict_lists_valid_fields_for_unknown_keys():
    with pytest.raises(EdgewiseError) as info:
        config_from_dict(FinetuneConfig, {"trainer": {"epochz": 3}})

    assert "FinetuneConfig.trainer: unknown setting(s) epochz" in str(info.value)
    assert "epochs" in str(info.value) and "learning_rate" in str(info.value)


def test_config_from_dict_checks_nested_and_enum_values():
    with pytest.raises(EdgewiseError, match=r"FinetuneConfig.data: unknown setting\(s\) colum"):
        config_from_dict(FinetuneConfig, {"data": {"colum": "x"}})
    with pytest.raises(EdgewiseError, match="not one of accuracy, macro_f1"):
        config_from_dict(FinetuneConfig, {"trainer": {"best_metric": "loss"}})


def test_every_config_class_is_round_trip_tested():
    tested = {type(c) for c in ALL_CONFIGS}
    import edgewise.evaluate.config as e
    import edgewise.finetune.config as f

    declared = {obj for mod in (e, f) for obj in vars(mod).values()
                if dataclasses.is_dataclass(obj) and obj.__name__.endswith("Config")}
    assert declared <= tested


def _write(tmp_path, **extra):
    (tmp_path / "weights.bin").write_bytes(b"1234")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "vocab.txt").write_text("a\nb\n")
    return Manifest.write(tmp_path, kind="hf", stage="finetune",
                          config=FinetuneConfig(trainer=TrainerConfig(epochs=2)),
                          labels={0: "neg", 1: "pos"}, started_at="2026-01-01T00:00:00+00:00",
                          metrics={"test": {"accuracy": 0.5}}, **extra)


def test_manifest_write_then_read_round_trips(tmp_path):
    written = _write(tmp_path, source={"pretrained": {"spec": "x"}})

    read = Manifest.read(tmp_path)

    assert read == written
    assert read.sha256 == written.sha256 and len(read.sha256) == 64
    assert read.files == {"sub/vocab.txt": written.files["sub/vocab.txt"], "weights.bin": written.files["weights.bin"]}
    assert read.config["type"] == "FinetuneConfig" and read.config["values"]["trainer"]["epochs"] == 2.0
    assert read.labels == {"0": "neg", "1": "pos"}
    assert {"cpu", "packages", "python", "os", "gpu"} <= set(read.environment)
    assert read.environment["packages"]["edgewise"]


def test_manifest_verify_reports_changed_and_missing_files(tmp_path):
    manifest = _write(tmp_path)
    assert manifest.verify() == []

    (tmp_path / "weights.bin").write_bytes(b"9999")
    (tmp_path / "sub" / "vocab.txt").unlink()

    (tmp_path / "pytorch_model.bin").write_bytes(b"slipped in")

    assert sorted(manifest.verify()) == ["pytorch_model.bin: added (not in the manifest)", "sub/vocab.txt: missing",
                                         "weights.bin: changed (sha256 differs)"]


def test_manifest_records_parent_link(tmp_path):
    parent_dir, child_dir = tmp_path / "p", tmp_path / "c"
    parent_dir.mkdir(), child_dir.mkdir()
    parent = _write(parent_dir)

    child = Manifest.write(child_dir, kind="onnx", stage="export", config=DataConfig(), labels={},
                           started_at="t", parent=parent)

    assert child.parent == {"path": str(parent_dir), "manifest_sha256": parent.sha256}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("{not json", "not valid JSON"), ("[1, 2]", "does not hold a JSON object"),
     (json.dumps({"schema_version": SCHEMA_VERSION + 1}), "upgrade edgewise"),
     (json.dumps({"schema_version": 1, "kind": "hf"}), "lacks config"),
     (json.dumps({"schema_version": 1, "kind": "hf", "stage": "s", "config": {}, "files": None, "labels": {},
                  "environment": {}, "started_at": "", "finished_at": ""}), "malformed files"),
     (json.dumps({"schema_version": 1, "kind": "pickle", "stage": "s", "config": {}, "files": {}, "labels": {},
                  "environment": {}, "started_at": "", "finished_at": ""}), "unknown kind 'pickle'")],
    ids=["invalid", "not-object", "newer", "incomplete", "malformed", "unknown-kind"],
)
def test_manifest_read_rejects_corrupt_files(tmp_path, content, fragment):
    (tmp_path / MANIFEST_NAME).write_text(content)

    with pytest.raises(EdgewiseError, match=fragment):
        Manifest.read(tmp_path)


def test_manifest_read_catches_an_edit_of_the_manifest_itself(tmp_path):
    _write(tmp_path)
    assert Manifest.read(tmp_path).sealed is True and Manifest.read(tmp_path).verify() == []
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    data["metrics"]["test"]["accuracy"] = 0.99  # a better figure typed in by hand

    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data, indent=4))

    manifest = Manifest.read(tmp_path)
    assert manifest.sealed is False
    assert manifest.verify() == [f"{MANIFEST_NAME}: edited since edgewise wrote it (its content_sha256 no longer "
                                 "matches its content)"]


def test_manifest_seal_ignores_formatting_but_not_an_added_key(tmp_path):
    _write(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())

    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))
    assert Manifest.read(tmp_path).sealed is True

    (tmp_path / MANIFEST_NAME).write_text(json.dumps({**data, "note": "trust me"}))
    assert Manifest.read(tmp_path).sealed is False


def test_manifest_without_its_seal_is_refused_unless_schema_1(tmp_path):
    _write(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    del data["content_sha256"]

    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(EdgewiseError, match="lacks its content_sha256"):
        Manifest.read(tmp_path)

    (tmp_path / MANIFEST_NAME).write_text(json.dumps({**data, "schema_version": 1}))  # written before the seal
    manifest = Manifest.read(tmp_path)
    assert manifest.sealed is None and manifest.verify() == []


def test_config_from_dict_refuses_a_nested_config_given_as_null():
    with pytest.raises(EdgewiseError, match=r"FinetuneConfig.trainer: expected a mapping of settings, got nothing"):
        config_from_dict(FinetuneConfig, {"trainer": None})


def test_config_from_manifest_refuses_a_newer_schema():
    from edgewise.core.config import config_from_manifest

    with pytest.raises(EdgewiseError, match="schema version 9; this edgewise reads versions up to 2: upgrade"):
        config_from_manifest(FinetuneConfig, {"type": "FinetuneConfig", "version": 9, "values": {}})
