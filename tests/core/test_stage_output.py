"""The output protocol every stage writes through (edgewise.core.stage.StageOutput)."""

import errno
import json
from pathlib import Path

import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.core.stage import RUN_FILE, StageOutput
from edgewise.export.config import BundleConfig


@pytest.fixture
def parent(tmp_path):
    """An edgewise artifact recording runtime settings, with tokenizer files and config.json."""
    folder = tmp_path / "parent"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "a", "1": "b"}}))
    Manifest.write(folder, kind="onnx", stage="export", config=BundleConfig(), labels={0: "a", 1: "b"},
                   started_at="2026-01-01T00:00:00+00:00",
                   data={"max_length": 48, "max_positions": 64, "pad_token_id": 3, "token_lengths": {"p50": 7},
                         "parity_texts": 9})
    return Artifact.load(folder)


def test_commit_carries_forward_and_inherits_the_runtime_settings(parent, tmp_path):
    out = StageOutput("quantize", tmp_path / "out", parent=parent)
    with out:
        (out.artifact / "model.onnx").write_bytes(b"int8")
        manifest = out.commit(kind="onnx", config=BundleConfig(), data={"max_length": 32, "eval_data": None})

    written = Artifact.load(tmp_path / "out")  # every file hash checks
    assert manifest.path == written.path and written.manifest.stage == "quantize"
    assert written.manifest.parent == {"path": str(parent.path), "manifest_sha256": parent.manifest.sha256}
    # The stage's own max_length wins; the rest comes forward; the parent's stage-specific data does not.
    assert written.manifest.data == {"max_length": 32, "max_positions": 64, "pad_token_id": 3,
                                     "token_lengths": {"p50": 7}, "eval_data": None}
    assert written.manifest.labels == {"0": "a", "1": "b"}
    assert {"tokenizer.json", "config.json"} <= set(written.manifest.files)
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"int8"  # what the stage wrote is kept
    assert not list(tmp_path.glob(".*.partial"))


def test_training_stages_neither_carry_nor_inherit(parent, tmp_path):
    out = StageOutput("distill", tmp_path / "out", parent=parent, derived=False)
    with out:
        (out.artifact / "model.safetensors").write_bytes(b"w")
        manifest = out.commit(kind="hf", config=BundleConfig(), labels={0: "a", 1: "b"}, data={"max_length": 16})

    assert manifest.data == {"max_length": 16} and set(manifest.files) == {"model.safetensors"}


def test_a_bundle_inherits_settings_but_copies_no_files(parent, tmp_path):
    out = StageOutput("bundle", tmp_path / "out", parent=parent, carry=False)
    with out:
        manifest = out.seal(kind="bundle", config=BundleConfig())
        assert not (tmp_path / "out").exists()  # sealed, checked, then published
        out.publish()

    assert manifest.path == tmp_path / "out" and manifest.files == {}
    assert manifest.data["pad_token_id"] == 3


def test_a_failure_inside_leaves_nothing(parent, tmp_path):
    out = StageOutput("quantize", tmp_path / "out", parent=parent)
    with pytest.raises(EdgewiseError, match="boom"), out:
        (out.artifact / "model.onnx").write_bytes(b"half")
        raise EdgewiseError("boom")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["parent"]


def test_leaving_without_commit_is_a_bug_and_leaves_nothing(parent, tmp_path):
    with pytest.raises(RuntimeError, match="without committing"), StageOutput("x", tmp_path / "out", parent=parent):
        pass

    assert sorted(p.name for p in tmp_path.iterdir()) == ["parent"]


def test_refuses_its_input_and_an_existing_output_before_any_work(parent, tmp_path):
    with pytest.raises(EdgewiseError, match="is the input"):
        StageOutput("quantize", parent.path, parent=parent)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    with pytest.raises(EdgewiseError, match="already exists; pass --overwrite"):
        StageOutput("quantize", tmp_path / "taken", parent=parent)
    with pytest.raises(EdgewiseError, match="cannot resume"):
        StageOutput("quantize", tmp_path / "new", parent=parent, resume=True)


def test_a_resumable_stage_keeps_its_checkpoints_and_resumes_only_the_same_run(tmp_path):
    run = {"config": {"epochs": 1}}
    out = StageOutput("finetune", tmp_path / "out", derived=False, resumable=True, run=run)
    with pytest.raises(KeyboardInterrupt), out:
        (out.checkpoints / "checkpoint-5").mkdir(parents=True)
        (out.checkpoints / "checkpoint-5" / "trainer_state.json").write_text("{}")
        (out.checkpoints / "checkpoint-9").mkdir()  # killed while saving: no trainer_state.json
        raise KeyboardInterrupt

    assert json.loads((out.work / RUN_FILE).read_text()) == run and not (tmp_path / "out").exists()
    with pytest.raises(EdgewiseError, match="an interrupted run left"):
        StageOutput("finetune", tmp_path / "out", derived=False, resumable=True, run=run)
    changed = StageOutput("finetune", tmp_path / "out", derived=False, resumable=True, resume=True,
                          run={"config": {"epochs": 2}})
    with pytest.raises(EdgewiseError, match=r"these differ: config.epochs \(1 then, 2 now\)"), changed:
        pass

    again = StageOutput("finetune", tmp_path / "out", derived=False, resumable=True, resume=True, run=run)
    with again:
        assert again.dropped == ["checkpoint-9"] and (again.checkpoints / "checkpoint-5").is_dir()
        again.commit(kind="hf", config=BundleConfig(), labels={})

    assert (tmp_path / "out" / "edgewise.json").is_file() and not out.work.exists()


def test_an_inactive_rank_touches_nothing(tmp_path):
    with StageOutput("finetune", tmp_path / "out", derived=False, resumable=True, run={}, active=False):
        pass
    with pytest.raises(EdgewiseError, match="boom"), StageOutput("finetune", tmp_path / "out", derived=False,
                                                                 resumable=True, run={}, active=False):
        raise EdgewiseError("boom")

    assert list(tmp_path.iterdir()) == []


def test_an_inactive_rank_leaves_the_interrupted_run_to_rank_zero(tmp_path):
    (tmp_path / ".out.partial" / "checkpoints" / "checkpoint-5").mkdir(parents=True)

    with StageOutput("finetune", tmp_path / "out", derived=False, resumable=True, resume=True, run={}, active=False):
        pass

    assert (tmp_path / ".out.partial" / "checkpoints" / "checkpoint-5").is_dir()


def test_differences_name_each_nested_setting_with_both_values():
    from edgewise.core.stage import differences

    before = {"config": {"values": {"trainer": {"epochs": 3, "lr": 5e-5}}}, "data": {"sha256": "a" * 64}}
    after = {"config": {"values": {"trainer": {"epochs": 1, "lr": 5e-5, "seed": 7}}}, "data": {"sha256": "b" * 64}}

    assert differences(before, after) == [
        ("config.values.trainer.epochs", "3", "1"), ("config.values.trainer.seed", "unset", "7"),
        ("data.sha256", '"' + "a" * 56 + "...", '"' + "b" * 56 + "..."),
    ]


def test_an_interrupt_says_what_was_kept(parent, tmp_path):
    plain = StageOutput("quantize", tmp_path / "out", parent=parent)
    with pytest.raises(KeyboardInterrupt) as stopped, plain:
        (plain.artifact / "model.onnx").write_text("half")
        raise KeyboardInterrupt

    assert stopped.value.edgewise_note == f"{tmp_path / 'out'} was not written (nothing half-written is left)"
    resumable = StageOutput("finetune", tmp_path / "trained", derived=False, resumable=True, run={})
    with pytest.raises(KeyboardInterrupt) as stopped, resumable:
        (resumable.checkpoints / "checkpoint-5").mkdir(parents=True)
        (resumable.checkpoints / "checkpoint-5" / "trainer_state.json").write_text("{}")
        raise KeyboardInterrupt

    assert stopped.value.edgewise_note.startswith(f"the checkpoints so far are kept in {resumable.work}: run the "
                                                  "same command with --resume")


@pytest.mark.parametrize(("code", "fix"), [(errno.ENOSPC, "free some space"), (errno.EROFS, "read-only"),
                                           (errno.EACCES, "make the folder writable"),
                                           (errno.EDQUOT, "disk quota is full")])
def test_a_full_or_read_only_disk_is_one_error_and_leaves_nothing(parent, tmp_path, code, fix):
    import os

    out = StageOutput("bundle", tmp_path / "deploy", parent=parent)
    with pytest.raises(EdgewiseError) as e, out:
        (out.artifact / "model.onnx").write_text("half")
        raise OSError(code, os.strerror(code), str(out.artifact / "model.onnx"))

    assert str(e.value).startswith(f"{os.strerror(code)} ({out.artifact / 'model.onnx'}) while writing "
                                   f"{tmp_path / 'deploy'}: nothing was written") and fix in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parent"]


def test_an_output_folder_that_cannot_be_created_is_one_error(parent, tmp_path, monkeypatch):
    out = StageOutput("bundle", tmp_path / "deploy", parent=parent)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".deploy.partial"))

    monkeypatch.setattr(Path, "mkdir", read_only)  # what begin() does first here: make the work folder
    with pytest.raises(EdgewiseError, match="cannot create the output next to .*Read-only file system.*read-only"), out:
        pass
