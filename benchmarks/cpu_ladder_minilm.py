"""The whole ladder from one recipe: `edgewise run recipes/bbc-demo.yaml` (what `edgewise demo` runs),
timed end to end, with every step benched side by side against the teacher in PyTorch.

Writes results/ladder_minilm_NAME.json (wall time per stage and in all, the ladder rows, the gate,
the environment) and results/ladder_minilm_NAME/ (ladder.md and the bench's report.md / report.json).

    python benchmarks/cpu_ladder_minilm.py [--recipe recipes/bbc-demo.yaml] [--name bbc] [--workdir DIR]
        [--set KEY=VALUE ...]       # e.g. the movie recipe: --recipe recipes/movies.yaml --name movies
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
    parser.add_argument("--recipe", type=Path, default=HERE.parent / "recipes" / "bbc-demo.yaml")
    parser.add_argument("--name", default="bbc")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-ladder"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    run = args.workdir / args.name
    if run.exists():
        shutil.rmtree(run)  # end-to-end time: nothing reused
    command = [sys.executable, "-m", "edgewise", "run", str(args.recipe), "-o", str(run), "--json",
               *(f"--set={o}" for o in args.overrides)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode not in (0, 1):  # 1: the recipe's gate missed, still a measurement
        sys.exit(f"{' '.join(command)} exited {done.returncode}")
    result = json.loads(done.stdout)
    report = json.loads((run / "report" / "report.json").read_text())
    out = HERE / "results" / f"ladder_minilm_{args.name}"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run / "ladder.md", out / "ladder.md")
    for name in ("report.md", "report.json"):
        shutil.copy2(run / "report" / name, out / name)
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "recipe": str(args.recipe),
        "overrides": args.overrides, "wall_s": round(wall, 1), "exit_code": done.returncode,
        "stages_s": {s["folder"]: s.get("seconds") for s in result["steps"]},
        "ladder": result["ladder"], "gate": result["gate"], "environment": report["environment"],
    }
    (HERE / "results" / f"ladder_minilm_{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print((out / "ladder.md").read_text())
    print(f"wall {wall / 60:.1f} min; results in {out}")


if __name__ == "__main__":
    main()
