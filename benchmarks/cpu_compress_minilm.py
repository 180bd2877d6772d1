"""`edgewise compress` on a real teacher, timed end to end: the search, its ladder of every candidate
(one interleaved bench on the validation split) and the chosen bundle against the teacher on test.

Writes results/compress_minilm_NAME.json (wall time, the goal, every candidate, the choice, the test
rows, phases, failures, the environment) and results/compress_minilm_NAME/ (compress.md, recipe.yaml
and the two bench reports).

    python benchmarks/cpu_compress_minilm.py --teacher runs/teacher [--data builtin:bbc-news] [--name bbc]
        [--workdir DIR] [--keep] -- [compress options, e.g. --max-accuracy-drop 1 --seq-len 128]

The teacher is an edgewise finetune output (e.g. 01-teacher of benchmarks/cpu_ladder_minilm.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", default="builtin:bbc-news")
    parser.add_argument("--name", default="bbc")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-compress"))
    parser.add_argument("--keep", action="store_true", help="Reuse the finished steps of an earlier run (the "
                                                            "wall time is then not the end-to-end time).")
    parser.add_argument("options", nargs="*", help="edgewise compress options (after --)")
    args = parser.parse_args()
    run = args.workdir / args.name
    if run.exists() and not args.keep:
        shutil.rmtree(run)  # end-to-end time: nothing reused
    command = [sys.executable, "-m", "edgewise", "compress", str(args.teacher), args.data, "-o", str(run), "--json",
               *args.options]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # progress goes to our stderr
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: the goal was missed, still a measurement
        sys.exit(f"{' '.join(command)} exited {done.returncode}")
    result = json.loads(done.stdout)
    report = json.loads((run / "report" / "report.json").read_text())
    out = HERE / "results" / f"compress_minilm_{args.name}"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run / "compress.md", out / "compress.md")
    shutil.copy2(run / "recipe.yaml", out / "recipe.yaml")
    for folder in ("report", "report-test"):
        for name in ("report.md", "report.json"):
            if (run / folder / name).is_file():
                shutil.copy2(run / folder / name, out / f"{folder}-{name}")
    summary = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "teacher": str(args.teacher),
               "data": args.data, "options": args.options, "wall_s": round(wall, 1), "exit_code": done.returncode,
               "reused": args.keep, "result": result, "environment": report["environment"]}
    (HERE / "results" / f"compress_minilm_{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print((out / "compress.md").read_text())
    print(f"wall {wall / 60:.1f} min; results in {out}")


if __name__ == "__main__":
    main()
