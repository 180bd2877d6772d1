"""A recipe run killed with SIGKILL in the middle of a training stage resumes with `edgewise run`: the
finished stages are skipped and the interrupted one continues from its checkpoint."""

import subprocess
import sys

import pytest
import yaml

from edgewise.core.manifest import Manifest
from tests.conftest import kill_after_first_checkpoint


@pytest.mark.slow
def test_a_killed_recipe_run_resumes_and_skips_the_finished_stages(tiny_teacher, tiny_data, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "version": 1, "model": str(tiny_teacher), "data": str(tiny_data),
        "stages": [{"export": {}},
                   {"distill": {"layers": 1, "trainer": {"epochs": 4, "batch_size": 16, "learning_rate": 1e-3}},
                    "input": "model"}]}))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "edgewise", "run", str(recipe), "-o", str(run), "--no-report"]

    kill_after_first_checkpoint(command, run / ".02-distill.partial" / "checkpoints", timeout_s=180)
    assert (run / "01-export" / "edgewise.json").is_file() and not (run / "02-distill").exists()
    export_manifest = (run / "01-export" / "edgewise.json").read_bytes()

    resumed = subprocess.run(command, capture_output=True, text=True)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[1/2] 01-export (export): skipped, unchanged since it was made" in resumed.stderr
    assert (run / "01-export" / "edgewise.json").read_bytes() == export_manifest
    assert Manifest.read(run / "02-distill").metrics["train"]["resumed"] is True
    assert not (run / ".02-distill.partial").exists()
