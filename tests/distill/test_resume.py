"""A distillation killed with SIGKILL after an epoch continues with --resume, trains no epoch twice, and ends
with exactly the student of an uninterrupted run with the same seed."""

import subprocess
import sys

import pytest
from safetensors.numpy import load_file

from edgewise.core.manifest import Manifest
from tests.conftest import kill_after_first_checkpoint

EPOCHS = 4
STEPS_PER_EPOCH = 15  # 240 training texts, batch 16


def _command(teacher, data, out, *extra):
    return [sys.executable, "-m", "edgewise", "distill", str(teacher), str(data), "-o", str(out), "--layers", "1",
            "--epochs", str(EPOCHS), "--batch-size", "16", "--lr", "1e-3", "--seed", "3", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("loss", [[], ["--hidden-weight", "1.0"]], ids=["cached-logits", "hidden-state-loss"])
def test_distill_resumes_after_sigkill_to_the_same_student(tiny_teacher, tiny_data, tmp_path, loss):
    out = tmp_path / "student"
    checkpoints = tmp_path / ".student.partial" / "checkpoints"
    saved = kill_after_first_checkpoint(_command(tiny_teacher, tiny_data, out, *loss), checkpoints, timeout_s=180)

    assert not out.exists()  # killed: no destination, half-written or otherwise
    assert STEPS_PER_EPOCH <= saved["global_step"] < EPOCHS * STEPS_PER_EPOCH

    resumed = subprocess.run(_command(tiny_teacher, tiny_data, out, *loss, "--resume"), capture_output=True,
                             text=True)
    uninterrupted = subprocess.run(_command(tiny_teacher, tiny_data, tmp_path / "again", *loss), capture_output=True,
                                   text=True)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    manifest = Manifest.read(out)
    assert manifest.metrics["train"]["resumed"] is True
    assert manifest.metrics["train"]["steps"] == EPOCHS * STEPS_PER_EPOCH
    # Epoch 1 finished before the kill: it is neither trained nor evaluated again.
    assert "epoch 1.00 " not in resumed.stderr and f"epoch {EPOCHS}.00 " in resumed.stderr
    assert "epoch 1.00 " in uninterrupted.stderr
    weights, reference = load_file(out / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert weights.keys() == reference.keys()
    assert all((weights[k] == reference[k]).all() for k in weights), "resumed student differs from the seeded run"
    assert not (tmp_path / ".student.partial").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")])
def test_distill_stopped_by_a_signal_says_what_was_kept_and_finishes_with_fewer_epochs(tiny_teacher, tiny_data,
                                                                                       tmp_path, sig, code, name):
    import signal

    from tests.conftest import signal_after_first_checkpoint

    out, work = tmp_path / "student", tmp_path / ".student.partial"
    saved, returncode, stderr = signal_after_first_checkpoint(_command(tiny_teacher, tiny_data, out),
                                                              work / "checkpoints", timeout_s=180,
                                                              sig=getattr(signal, sig))

    assert returncode == code and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"Interrupted ({name}): the checkpoints so far are kept in "
                                                      f"{work}: run the same command with --resume")
    assert not out.exists()

    command = _command(tiny_teacher, tiny_data, out, "--resume")
    command[command.index("--epochs") + 1] = "1"  # keep what the first epoch trained
    resumed = subprocess.run(command, capture_output=True, text=True)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming with trainer.epochs 1.0 (the interrupted run had {float(EPOCHS)})" in resumed.stderr
    assert Manifest.read(out).metrics["train"]["resumed"] is True
