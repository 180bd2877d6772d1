"""Multi-process fine-tuning comes from the library (torchrun + Trainer); edgewise must not break it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgewise.core.manifest import Manifest


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed beside this Python")
def test_finetune_under_torchrun_with_two_cpu_processes(tiny_encoder, tiny_data, tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "teacher"

    done = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "edgewise", "finetune",
         str(tiny_encoder), str(tiny_data), "-o", str(out), "--epochs", "2", "--max-length", "16"],
        capture_output=True, text=True, timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    manifest = Manifest.read(out)
    # 240 texts, batch 16 per process, 2 processes: 8 steps an epoch.
    assert manifest.metrics["train"]["steps"] == 16
    assert manifest.metrics["test"]["samples"] == 60  # gathered from both ranks, no duplicates
    assert not list(tmp_path.glob(".*.partial"))
