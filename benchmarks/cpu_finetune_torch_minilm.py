"""Teacher fine-tuning on the built-in assets: accuracy, wall time, and SIGKILL + --resume.

Runs the README's main job (all-MiniLM-L6-v2 fine-tuned on BBC News, 2 epochs, 128 tokens)
through the installed `edgewise` command, then repeats it with a SIGKILL half-way (after the
first epoch's checkpoint) and `--resume`, and records both in results/finetune_minilm_bbc.json.

    python benchmarks/cpu_finetune_torch_minilm.py [--workdir /tmp/ew-bench] [--skip-resume]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
EDGEWISE = [sys.executable, "-m", "edgewise"]
FINETUNE = ["finetune", "builtin:all-minilm-l6-v2", "builtin:bbc-news", "--epochs", "2", "--max-length", "128"]


def run(args, **kw) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(EDGEWISE + args, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done, time.perf_counter() - start


def plain_run(work: Path) -> dict:
    out = work / "teacher"
    _, wall = run(FINETUNE + ["-o", str(out)])
    evaluation, eval_wall = run(["evaluate", str(out), "builtin:bbc-news", "--split", "test", "--json"])
    result = json.loads(evaluation.stdout)
    manifest = json.loads((out / "edgewise.json").read_text())
    return {
        "finetune_wall_s": round(wall, 1),
        "train_runtime_s": manifest["metrics"]["train"]["runtime_s"],
        "validation_accuracy": manifest["metrics"]["validation"]["accuracy"],
        "test_accuracy": result["accuracy"],
        "test_macro_f1": result["macro_f1"],
        "evaluate_wall_s": round(eval_wall, 1),
        "evaluate_predict_s": result["runtime_s"],
        "test_samples": result["samples"],
        "environment": manifest["environment"],
    }


def killed_then_resumed(work: Path) -> dict:
    out = work / "teacher-resumed"
    checkpoints = work / ".teacher-resumed.partial" / "checkpoints"
    start = time.perf_counter()
    proc = subprocess.Popen(EDGEWISE + FINETUNE + ["-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        if proc.poll() is not None:
            sys.exit("the fine-tune ended before it could be killed")
        time.sleep(0.5)
    time.sleep(20)  # well into the second epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = time.perf_counter() - start
    state = json.loads(next(checkpoints.glob("checkpoint-*/trainer_state.json")).read_text())
    output_absent = not out.exists()
    _, resume_wall = run(FINETUNE + ["-o", str(out), "--resume"])
    manifest = json.loads((out / "edgewise.json").read_text())
    return {
        "killed_after_s": round(killed_after, 1),
        "checkpoint_step": state["global_step"],
        "output_absent_after_kill": output_absent,
        "resume_wall_s": round(resume_wall, 1),
        "steps": manifest["metrics"]["train"]["steps"],
        "resumed": manifest["metrics"]["train"]["resumed"],
        "test_accuracy": manifest["metrics"]["test"]["accuracy"],
        "work_folder_removed": not (work / ".teacher-resumed.partial").exists(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-finetune"))
    parser.add_argument("--skip-resume", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)

    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "edgewise " + " ".join(FINETUNE) + " -o runs/teacher", "plain": plain_run(args.workdir)}
    if not args.skip_resume:
        result["kill_and_resume"] = killed_then_resumed(args.workdir)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "finetune_minilm_bbc.json").write_text(json.dumps(result, indent=2) + "\n")
    plain = result["plain"]
    cpu = plain["environment"]["cpu"]
    print(f"| test accuracy | test macro-F1 | fine-tune wall | train | machine |\n|---|---|---|---|---|\n"
          f"| {plain['test_accuracy']:.4f} | {plain['test_macro_f1']:.4f} | {plain['finetune_wall_s']} s "
          f"| {plain['train_runtime_s']} s | {cpu['model']}, {cpu['logical_cores']} cores |")
    if "kill_and_resume" in result:
        print(json.dumps(result["kill_and_resume"], indent=2))


if __name__ == "__main__":
    main()
