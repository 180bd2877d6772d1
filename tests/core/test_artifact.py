import pytest

from edgewise.core.artifact import Artifact, OutputDir, carry_forward
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.finetune import FinetuneConfig


def _artifact(path, kind="hf"):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"id2label": {"0": "a", "1": "b"}}')
    (path / "model.safetensors").write_bytes(b"w")
    Manifest.write(path, kind=kind, stage="finetune", config=FinetuneConfig(), labels={0: "a", 1: "b"},
                   started_at="t")
    return path


def test_output_dir_commit_moves_a_complete_artifact_into_place(tmp_path):
    out = OutputDir.prepare(tmp_path / "runs" / "student")
    out.begin()
    (out.artifact / "model.onnx").write_bytes(b"x")
    assert not out.dst.exists()  # nothing at dst until the work is complete

    out.commit()

    assert (tmp_path / "runs" / "student" / "model.onnx").read_bytes() == b"x"
    assert not out.work.exists()


def test_output_dir_abort_leaves_nothing_behind(tmp_path):
    out = OutputDir.prepare(tmp_path / "x")
    out.begin()
    (out.artifact / "half").write_bytes(b"x")

    out.abort()

    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_output_dir_refuses_existing_output_unless_overwrite(tmp_path):
    old = _artifact(tmp_path / "old")
    with pytest.raises(EdgewiseError, match="already exists; pass --overwrite"):
        OutputDir.prepare(old)

    out = OutputDir.prepare(old, overwrite=True)
    out.begin()
    (out.artifact / "new").write_text("n")
    out.commit()

    assert sorted(p.name for p in old.iterdir()) == ["new"]


def test_output_dir_commit_puts_the_old_artifact_back_when_the_rename_fails(tmp_path, monkeypatch):
    old = _artifact(tmp_path / "old")
    out = OutputDir.prepare(old, overwrite=True)
    out.begin()
    real_rename = type(old).rename

    def failing(self, target):
        if self == out.artifact:
            raise OSError("disk gone")
        return real_rename(self, target)

    monkeypatch.setattr(type(old), "rename", failing)
    with pytest.raises(OSError):
        out.commit()
    monkeypatch.undo()
    out.abort()

    assert (old / "model.safetensors").read_bytes() == b"w" and (old / "edgewise.json").is_file()


def test_output_dir_never_replaces_a_folder_edgewise_did_not_write(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")

    with pytest.raises(EdgewiseError, match="was not written by edgewise"):
        OutputDir.prepare(tmp_path / "home", overwrite=True)
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_output_dir_refuses_output_equal_to_or_nested_in_input(tmp_path):
    src = _artifact(tmp_path / "teacher")
    with pytest.raises(EdgewiseError, match="is the input"):
        OutputDir.prepare(src, sources=(src,), overwrite=True)
    with pytest.raises(EdgewiseError, match="nested"):
        OutputDir.prepare(src / "student", sources=(src,))
    with pytest.raises(EdgewiseError, match="nested"):
        OutputDir.prepare(tmp_path, sources=(src,), overwrite=True)


def test_output_dir_refuses_a_file_as_output(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(EdgewiseError, match="is a file"):
        OutputDir.prepare(tmp_path / "f")


def test_output_dir_resume_rules(tmp_path):
    with pytest.raises(EdgewiseError, match="nothing to resume"):
        OutputDir.prepare(tmp_path / "t", resumable=True, resume=True)
    (tmp_path / ".t.partial" / "checkpoints").mkdir(parents=True)
    with pytest.raises(EdgewiseError, match="pass --resume to continue it or --overwrite"):
        OutputDir.prepare(tmp_path / "t", resumable=True)

    out = OutputDir.prepare(tmp_path / "t", resumable=True, resume=True)
    out.begin(resume=True)

    assert (out.work / "checkpoints").is_dir()


def test_artifact_load_reads_kind_labels_and_verifies_hashes(tmp_path):
    path = _artifact(tmp_path / "a")

    artifact = Artifact.load(path, kind="hf")
    assert artifact.labels == {0: "a", 1: "b"} and artifact.manifest.stage == "finetune"

    (path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(EdgewiseError, match="changed since edgewise wrote it"):
        Artifact.load(path)


def test_artifact_load_accepts_foreign_transformers_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"id2label": {"0": "x"}}')
    (tmp_path / "model.safetensors").write_bytes(b"w")

    artifact = Artifact.load(tmp_path)

    assert (artifact.kind, artifact.manifest, artifact.labels) == ("hf", None, {0: "x"})


@pytest.mark.parametrize(
    ("make", "fragment"),
    [(lambda p: None, "does not exist"),
     (lambda p: p.write_text("x"), "is a file"),
     (lambda p: (p.mkdir(), (p / "readme.md").write_text("x")), "not a model folder")],
    ids=["missing", "file", "not-model"],
)
def test_artifact_load_rejects_non_artifacts(tmp_path, make, fragment):
    make(tmp_path / "m")
    with pytest.raises(EdgewiseError, match=fragment):
        Artifact.load(tmp_path / "m")


def test_artifact_load_checks_kind(tmp_path):
    path = _artifact(tmp_path / "a")
    with pytest.raises(EdgewiseError, match="is a 'hf' artifact; this step needs 'onnx'"):
        Artifact.load(path, kind="onnx")


def test_carry_forward_copies_tokenizer_files_without_overwriting(tmp_path):
    src, dst = tmp_path / "s", tmp_path / "d"
    src.mkdir(), dst.mkdir()
    (src / "tokenizer.json").write_text("src")
    (src / "vocab.txt").write_text("src")
    (src / "model.safetensors").write_text("w")
    (dst / "vocab.txt").write_text("stage wrote this")

    copied = carry_forward(src, dst)

    assert copied == ["tokenizer.json"]
    assert (dst / "vocab.txt").read_text() == "stage wrote this"
    assert not (dst / "model.safetensors").exists()


def test_symlinks_out_of_a_folder_are_refused_before_anything_is_copied(tiny_onnx, tmp_path, cli_run):
    import shutil

    from tests.conftest import assert_user_error

    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_onnx, foreign)
    (foreign / "edgewise.json").unlink()
    (foreign / "tokenizer.json").rename(tmp_path / "tokenizer.json")
    (foreign / "tokenizer.json").symlink_to(secret)
    sealed = tmp_path / "sealed"
    shutil.copytree(tiny_onnx, sealed)
    (sealed / "notes.txt").symlink_to(sealed / "labels.json" if (sealed / "labels.json").exists()
                                      else sealed / "config.json")  # pointing inside, yet not edgewise's

    for folder, fragment in ((foreign, "holds symlinks pointing outside it: tokenizer.json -> "),
                             (sealed, "holds symlinks, which edgewise never writes")):
        result = cli_run("bundle", folder, "-o", tmp_path / "out")
        assert_user_error(result, fragment, f"copy the folder with its links resolved (cp -rL {folder} NEW)")
    assert not (tmp_path / "out").exists()


def test_a_hugging_face_cache_snapshot_may_link_into_its_blobs(tiny_teacher, tmp_path):
    """The Hub cache stores files in blobs/ and links them from snapshots/<revision>/: that is no escape."""
    from edgewise.core.artifact import linked_out

    snapshot = tmp_path / "models--org--name" / "snapshots" / "abc123"
    blobs = tmp_path / "models--org--name" / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for file in tiny_teacher.iterdir():
        if file.name != "edgewise.json":
            (blobs / file.name).write_bytes(file.read_bytes())
            (snapshot / file.name).symlink_to(f"../../blobs/{file.name}")

    assert linked_out(snapshot, sealed=False) is None
    assert Artifact.load(snapshot, kind="hf").kind == "hf"
    (snapshot / "vocab.txt").symlink_to(tmp_path / "outside.txt")
    assert "vocab.txt -> " in str(linked_out(snapshot, sealed=False))


@pytest.mark.parametrize(("config", "refused"), [
    ({"model_type": "t5", "is_encoder_decoder": True, "architectures": ["T5ForConditionalGeneration"]},
     "sequence-to-sequence"),
    ({"model_type": "bart", "is_encoder_decoder": True, "architectures": ["BartForSequenceClassification"]}, None),
    ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "text-generation"),
    ({"model_type": "gpt2", "architectures": ["GPT2ForSequenceClassification"]}, None),
    ({"model_type": "vit", "image_size": 224, "num_channels": 3}, "an image model"),
    ({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForCTC"]}, "a speech model"),
    ({"model_type": "deberta-v2", "architectures": ["DebertaV2ForSequenceClassification"]}, None),
    ({"model_type": "modernbert", "architectures": ["ModernBertModel"]}, None),
])
def test_models_of_other_tasks_are_named_and_text_classifiers_are_not(tmp_path, config, refused):
    import json

    from edgewise.core.artifact import foreign_task

    (tmp_path / "config.json").write_text(json.dumps(config))

    problem = foreign_task(tmp_path)

    assert (problem is None) if refused is None else refused in str(problem)
