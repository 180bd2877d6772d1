"""Stopping a stage with a real signal (issue 15): SIGINT (Ctrl-C) and SIGTERM end in one line that says what
was kept and how to go on, exit 130 / 143, and leave no output that looks complete; SIGKILL leaves the output
absent and the next run works. (Training stages, which keep checkpoints to resume from, are tested in
tests/finetune/test_resume.py and tests/distill/test_resume.py.)

The edgewise process runs as it would for a user; the test only makes one step inside it wait (the child
replaces that function with one that calls the original the first N - 1 times, then writes a mark file and
sleeps), so the signal lands mid-stage every time instead of racing a tiny model's few seconds of work.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

HOLD = """
import importlib, sys, time
module, name, nth, mark = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
owner = importlib.import_module(module)
original, calls = getattr(owner, name), []

def held(*args, **kwargs):
    calls.append(1)
    if len(calls) < nth:
        return original(*args, **kwargs)
    open(mark, "w").close()
    time.sleep(300)

setattr(owner, name, held)
sys.argv = ["edgewise", *sys.argv[5:]]
from edgewise.cli import main
main()
"""

# stage -> (the step it is held at: module, function, which call), its command line (after `edgewise`)
HELD = {
    "export": (("edgewise.export.onnx", "export_onnx", 1), "export {teacher} -o {out}"),
    "prune": (("edgewise.prune.importance", "fisher", 1), "prune {teacher} {data} -o {out} --flops 0.5"),
    # the source and the first candidate are scored; the second candidate is being measured
    "quantize search": (("edgewise.quantize.search", "score", 3),
                        "quantize {onnx} -o {out} --data {data} --max-accuracy-drop 1 --calibration-method minmax"),
    "bundle": (("edgewise.runtime.sessions", "session", 1), "bundle {onnx} -o {out}"),
}
SIGNALS = [pytest.param(signal.SIGINT, 130, "Ctrl-C", id="SIGINT"),
           pytest.param(signal.SIGTERM, 143, "SIGTERM", id="SIGTERM")]


def _run_held(hold: tuple[str, str, int], args: list[str], mark: Path, sig: int, timeout_s: float = 240):
    """Run edgewise ``args`` with ``hold``'s function held; once it is reached, send ``sig`` to the process.
    Returns (exit code, stderr)."""
    module, name, nth = hold
    log = mark.with_suffix(".stderr")  # a file, not a pipe nobody reads while waiting (a full pipe blocks)
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, module, name, str(nth), str(mark), *args],
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while not mark.exists():
            assert proc.poll() is None, f"edgewise ended before the held step: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the held step was never reached"
            time.sleep(0.05)
        os.kill(proc.pid, sig)  # the edgewise process itself, as Ctrl-C's SIGINT or a `kill` reaches it
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, log.read_text()


@pytest.fixture
def fill(tiny_teacher, tiny_onnx, tiny_data, tmp_path):
    def expand(args: str) -> list[str]:
        return args.format(teacher=tiny_teacher, onnx=tiny_onnx, data=tiny_data, out=tmp_path / "out").split()
    return expand


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(HELD))
@pytest.mark.parametrize(("sig", "code", "name"), SIGNALS)
def test_a_signal_mid_stage_says_nothing_was_written_and_leaves_nothing(stage, sig, code, name, fill, tmp_path):
    hold, args = HELD[stage]
    mark = tmp_path.parent / f"{tmp_path.name}.held"

    returncode, stderr = _run_held(hold, fill(args), mark, sig)

    assert returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (f"Interrupted ({name}): {tmp_path / 'out'} was not written (nothing "
                                               "half-written is left)")
    assert list(tmp_path.iterdir()) == [], "an output or a work folder was left"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["export", "quantize search"])
def test_sigkill_mid_stage_leaves_no_output_and_the_next_run_works(stage, fill, tmp_path):
    hold, args = HELD[stage]
    mark = tmp_path.parent / f"{tmp_path.name}.held"

    returncode, _ = _run_held(hold, fill(args), mark, signal.SIGKILL)

    assert returncode == -signal.SIGKILL
    assert not (tmp_path / "out").exists()  # only the hidden work folder may be left: nothing looks complete
    assert [p.name for p in tmp_path.iterdir()] == [".out.partial"]
    again = subprocess.run([sys.executable, "-m", "edgewise", *fill(args)], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "out" / "edgewise.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), SIGNALS)
def test_a_signal_mid_recipe_keeps_the_finished_stages_and_a_rerun_continues(sig, code, name, tiny_teacher,
                                                                             tiny_data, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"version": 1, "model": str(tiny_teacher), "data": str(tiny_data),
                                      "stages": [{"export": {}}, {"quantize": {"method": "dynamic"}}]}))
    run = tmp_path / "run"
    args = ["run", str(recipe), "-o", str(run), "--no-report"]

    returncode, stderr = _run_held(("edgewise.quantize.ort", "quantize_dynamic", 1), args, tmp_path / "held", sig)

    assert returncode == code, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"Interrupted ({name}): {run / '02-quantize'} was not written (nothing half-written is left); 1 finished "
        f"stage(s) are kept in {run}: run the same command again to continue (finished stages are skipped, an "
        "interrupted training resumes from its checkpoints)")
    assert (run / "01-export" / "edgewise.json").is_file()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(("02", ".02"))) == []

    again = subprocess.run([sys.executable, "-m", "edgewise", *args, "--json"], capture_output=True, text=True,
                           timeout=300)

    assert again.returncode == 0, again.stderr[-3000:]
    steps = {s["id"]: s["status"] for s in json.loads(again.stdout)["steps"]}
    assert steps == {"export": "skip", "quantize": "ran"}, steps


@pytest.mark.slow
def test_a_signal_while_overwriting_keeps_the_earlier_output_as_it_was(fill, tiny_onnx, tmp_path):
    from tests.conftest import digest

    hold, args = HELD["export"]
    out = tmp_path / "out"
    shutil.copytree(tiny_onnx, out)  # an earlier edgewise output
    before = digest(out)

    returncode, stderr = _run_held(hold, [*fill(args), "--overwrite"], tmp_path.parent / f"{tmp_path.name}.held",
                                   signal.SIGINT)

    assert returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (f"Interrupted (Ctrl-C): {out} was not written (nothing half-written "
                                               "is left; the earlier one there is kept as it was)")
    assert digest(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
