"""A fine-tune killed with SIGKILL half-way continues with --resume and never leaves a half-written output."""

import json
import subprocess
import sys

import pytest

from edgewise.core.manifest import Manifest
from tests.conftest import kill_after_first_checkpoint, signal_after_first_checkpoint


def _command(encoder, data, out, *extra):
    return [sys.executable, "-m", "edgewise", "finetune", str(encoder), str(data), "-o", str(out),
            "--epochs", "40", "--max-length", "16", "--lr", "3e-3", "--warmup-ratio", "0", *extra]


@pytest.mark.slow
def test_finetune_resumes_after_sigkill(tiny_encoder, tiny_data, tmp_path):
    out = tmp_path / "teacher"
    checkpoints = tmp_path / ".teacher.partial" / "checkpoints"
    saved = kill_after_first_checkpoint(_command(tiny_encoder, tiny_data, out), checkpoints, timeout_s=120)

    assert not out.exists()  # killed: no output folder, half-written or otherwise
    assert 0 < saved["global_step"] < 40 * 15

    resumed = subprocess.run(_command(tiny_encoder, tiny_data, out, "--resume"), capture_output=True, text=True)

    assert resumed.returncode == 0, resumed.stderr
    manifest = Manifest.read(out)
    assert manifest.metrics["train"]["resumed"] is True
    assert manifest.metrics["train"]["steps"] == 40 * 15
    # Epochs finished before the kill are not trained (nor evaluated) again.
    assert "epoch 1.00 " not in resumed.stderr and "epoch 40.00 " in resumed.stderr
    assert manifest.history[0]["step"] < saved["global_step"]  # history restored from the checkpoint
    assert not (tmp_path / ".teacher.partial").exists()


@pytest.mark.slow
def test_finetune_resume_refuses_changed_settings(tiny_encoder, tiny_data, tmp_path):
    work = tmp_path / ".teacher.partial"
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"pretrained": {}, "data": {}, "config": {}}))

    result = subprocess.run(_command(tiny_encoder, tiny_data, tmp_path / "teacher", "--resume"),
                            capture_output=True, text=True)

    assert result.returncode == 2
    assert result.stderr.startswith("Error: --resume needs the same settings") and "config" in result.stderr
    assert (work / "run.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")])
def test_finetune_stopped_by_a_signal_says_what_was_kept_and_resumes(tiny_encoder, tiny_data, tmp_path, sig, code,
                                                                     name):
    import signal

    out = tmp_path / "teacher"
    work = tmp_path / ".teacher.partial"
    _, returncode, stderr = signal_after_first_checkpoint(_command(tiny_encoder, tiny_data, out), work / "checkpoints",
                                                          timeout_s=120, sig=getattr(signal, sig))

    assert returncode == code and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (f"Interrupted ({name}): the checkpoints so far are kept in {work}: run "
                                               "the same command with --resume to continue from the last one")
    assert not out.exists() and not (work / "artifact").exists()  # nothing that looks complete

    resumed = subprocess.run(_command(tiny_encoder, tiny_data, out, "--resume"), capture_output=True, text=True)

    assert resumed.returncode == 0, resumed.stderr
    assert Manifest.read(out).metrics["train"]["resumed"] is True


@pytest.mark.slow
def test_a_stopped_finetune_finishes_with_fewer_epochs_from_the_best_checkpoint(tiny_encoder, tiny_data, tmp_path):
    import signal

    out = tmp_path / "teacher"
    saved, returncode, _ = signal_after_first_checkpoint(_command(tiny_encoder, tiny_data, out),
                                                         tmp_path / ".teacher.partial" / "checkpoints", timeout_s=120,
                                                         sig=signal.SIGINT)
    assert returncode == 130

    # 40 epochs were asked for; the user keeps what the first ones trained.
    command = _command(tiny_encoder, tiny_data, out, "--resume")
    command[command.index("--epochs") + 1] = "1"
    resumed = subprocess.run(command, capture_output=True, text=True)

    assert resumed.returncode == 0, resumed.stderr
    assert "resuming with trainer.epochs 1.0 (the interrupted run had 40.0)" in resumed.stderr
    manifest = Manifest.read(out)
    assert manifest.metrics["train"]["resumed"] is True and manifest.metrics["train"]["best_checkpoint"]
    assert manifest.metrics["train"]["steps"] >= saved["global_step"]  # nothing trained again
