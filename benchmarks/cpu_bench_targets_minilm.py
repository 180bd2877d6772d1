"""Device targets end to end on a real bundle: `edgewise bench --target ssh://...` against a real OpenSSH server
on 127.0.0.1 and `--target adb://...` through a fake adb (the "device" is this machine), compared with a local
bench of the same bundle in the same run.

What it shows: the device path (probe, copy, `python -m edgewise.runtime job`, fetch, scoring on the host)
gives the same accuracy and predictions as a local bench, and what it costs (the wall time of each run, the
copy skipped on the second run) -- and that its latency figures are the local ones: device and host are one
machine here, so the p50 of a device row over the p50 of the same local row should be ~1. The three benches
run in turn, twice (L S A L S A), each at 1 thread on the BBC test split; ratios are taken between the runs
of one repetition and the median over repetitions reported.

    python benchmarks/cpu_bench_targets_minilm.py --bundle DIR [--repeats 2] [--out FILE.json]

Needs Debian's openssh-server (/usr/sbin/sshd) and openssh-client.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.fake_devices import LoopbackSshd, install_fake_adb, sshd_missing  # noqa: E402

TIMING = ["--threads", "1", "--batch-sizes", "1,8", "--rounds", "5", "--min-runs", "50", "--min-time", "2"]


def bench(bundle: Path, out: Path, target: str | None, env: dict) -> tuple[dict, float]:
    command = [sys.executable, "-m", "edgewise", "bench", str(bundle), "--data", "builtin:bbc-news", *TIMING,
               "-o", str(out), "--json"] + (["--target", target] if target else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), wall


def rows(report: dict) -> dict:
    return {(r["backend"], r["batch_size"]): r for r in report["results"] if r["status"] == "ok"}


def measure(args, scratch: Path, started: float) -> tuple[dict, list[dict]]:
    """The benches, local / ssh / adb in turn, ``args.repeats`` times: (the last repetition's reports, every run)."""
    (scratch / "sshd").mkdir()
    with LoopbackSshd(scratch / "sshd") as sshd:
        adb = install_fake_adb(scratch / "bin").parent
        env = {**os.environ, "EDGEWISE_SSH_OPTIONS": sshd.options, "FAKE_ADB_DEVICES": "R58M123",
               "PATH": f"{adb}{os.pathsep}{os.environ['PATH']}"}
        targets = {
            "local": None,
            "ssh": f"{sshd.url}?python={sys.executable}&cache={scratch}/ssh-cache",
            "adb": f"adb://R58M123?python={sys.executable}&cache={scratch}/adb-cache",
        }
        runs, reports = [], {}
        for repeat in range(args.repeats):
            for name, target in targets.items():
                report, wall = bench(args.bundle, scratch / f"{name}-{repeat}", target, env)
                reports[name] = report
                print(f"[{time.perf_counter() - started:6.0f} s] repeat {repeat + 1}, {name}: {wall:.1f} s wall, "
                      + ", ".join(f"batch {b} p50 {r['latency_ms']['p50']:.3f} ms acc {r['accuracy']:.4f}"
                                  for (_, b), r in rows(report).items()), flush=True)
                runs.append({"repeat": repeat, "target": name, "wall_s": round(wall, 1),
                             "rows": {f"{k[0]} batch {k[1]}": {"p50_ms": r["latency_ms"]["p50"],
                                                               "accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
                                      for k, r in rows(report).items()}})
    return reports, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle (edgewise bundle) of a BBC model")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_targets_minilm_bbc.json")
    args = parser.parse_args()
    why = sshd_missing()
    if why:
        sys.exit(f"this benchmark {why}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        last, runs = measure(args, Path(tmp), started)

    def run(repeat: int, target: str) -> dict:
        return next(r for r in runs if r["repeat"] == repeat and r["target"] == target)["rows"]

    comparison = {}
    for name in ("ssh", "adb"):
        for key in run(0, "local"):
            ratios = [run(i, name)[key]["p50_ms"] / run(i, "local")[key]["p50_ms"] for i in range(args.repeats)]
            same = all(run(i, name)[key]["accuracy"] == run(i, "local")[key]["accuracy"]
                       and run(i, name)[key]["macro_f1"] == run(i, "local")[key]["macro_f1"]
                       for i in range(args.repeats))
            comparison[f"{name} / local, {key}"] = {"p50_ratio_median": round(statistics.median(ratios), 3),
                                                    "p50_ratios": [round(x, 3) for x in ratios],
                                                    "accuracy_and_f1_identical": same}
    print("\n| comparison | p50 ratio (median) | ratios | accuracy, macro-F1 identical |\n|---|---|---|---|")
    for key, c in comparison.items():
        print(f"| {key} | {c['p50_ratio_median']:.3f} | {c['p50_ratios']} | {c['accuracy_and_f1_identical']} |")
    result = {
        "benchmark": "cpu_bench_targets_minilm", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": str(args.bundle), "timing": TIMING, "repeats": args.repeats,
        "machine": last["local"]["environment"]["cpu"], "device_environment": last["ssh"]["environment"],
        "comparison": comparison, "runs": runs, "total_s": round(time.perf_counter() - started, 1),
        "note": "device and host are the same machine (loopback sshd, fake adb): ratios near 1 mean the device path "
                "adds nothing to the figures; accuracy must be identical",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_s']} s)")


if __name__ == "__main__":
    main()
