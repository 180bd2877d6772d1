"""Soak: does memory stay flat when the device runtime predicts for a long time, and do repeated recipe runs
leave the run folder and the cache as they were?

1. `edgewise.runtime.Predictor` (1 thread) predicts --texts texts (default 100,000) of mixed lengths (BBC
   articles cut to random word counts, 1 word to the full 128 tokens), alternating blocks of batch 1 and
   batch 8, and samples the process's resident memory (VmRSS) every 1,000 texts. Goal: after the warm-up
   (the first --warmup texts), RSS grows by less than 5 %.
2. A recipe (export, dynamic INT8, bundle of an `hf` model, with its ladder bench) runs --recipe-runs times
   (default 3) into the same folder with the same EDGEWISE_CACHE; the run folder's and the cache's sizes
   after each run are compared. Goal: no growth after the first run.

    python benchmarks/cpu_soak_runtime_minilm.py --bundle DIR --model HF_DIR [--texts 100000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def mixed_texts(count: int, seed: int = 0) -> list[str]:
    """``count`` texts: BBC test articles cut to random word counts (1 word up to the whole article)."""
    from edgewise.core.data import load_splits

    articles = load_splits("builtin:bbc-news")["test"].texts
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        words = articles[i % len(articles)].split()
        texts.append(" ".join(words[: rng.randint(1, len(words))]))
    return texts


def soak(bundle: Path, total: int, warmup: int, every: int = 1000) -> dict:
    from edgewise.runtime import Predictor

    predictor = Predictor(bundle, threads=1)
    texts = mixed_texts(4096)
    samples = [{"texts": 0, "rss_mb": round(rss_mb(), 1), "s": 0.0}]
    started, done, block = time.perf_counter(), 0, 0
    while done < total:
        batch = 1 if block % 2 == 0 else 8  # blocks of 1,000 texts, alternating batch sizes
        for start in range(0, every, batch):
            chunk = [texts[(done + start + j) % len(texts)] for j in range(batch)]
            predictor.predict(chunk)
        done += every
        block += 1
        samples.append({"texts": done, "rss_mb": round(rss_mb(), 1), "s": round(time.perf_counter() - started, 1)})
        if done % 10_000 == 0:
            print(f"[{samples[-1]['s']:7.1f} s] {done:>7} texts  RSS {samples[-1]['rss_mb']:.1f} MiB", flush=True)
    after_warmup = next(s for s in samples if s["texts"] >= warmup)
    end = samples[-1]
    return {"bundle": str(bundle), "texts": total, "warmup_texts": warmup, "sample_every": every,
            "rss_start_mb": samples[0]["rss_mb"], "rss_after_warmup_mb": after_warmup["rss_mb"],
            "rss_end_mb": end["rss_mb"], "rss_max_mb": max(s["rss_mb"] for s in samples),
            "growth_after_warmup": round(end["rss_mb"] / after_warmup["rss_mb"] - 1, 4),
            "goal": "growth after warm-up < 5 %", "met": end["rss_mb"] / after_warmup["rss_mb"] - 1 < 0.05,
            "seconds": end["s"], "samples": samples}


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return sum(p.stat().st_size for p in files), len(files)


def recipe_runs(model: Path, runs: int, scratch: Path) -> dict:
    import yaml

    recipe = scratch / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "version": 1, "model": str(model), "data": "builtin:bbc-news",
        "stages": [{"export": {}}, {"quantize": {"method": "dynamic"}}, {"bundle": {}}],
        "bench": {"threads": 1, "batch_sizes": [1], "seq_len": "128", "rounds": 3, "min_runs": 20, "min_time_s": 0.5,
                  "accuracy_samples": 64},
    }))
    env = {**os.environ, "EDGEWISE_CACHE": str(scratch / "cache")}
    sizes = []
    for run in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "edgewise", "run", str(recipe), "-o", str(scratch / "run")],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"edgewise run exited {done.returncode}:\n{done.stderr[-3000:]}")
        run_bytes, run_files = folder_size(scratch / "run")
        cache_bytes, cache_files = folder_size(scratch / "cache")
        sizes.append({"run": run + 1, "seconds": round(time.perf_counter() - started, 1), "run_bytes": run_bytes,
                      "run_files": run_files, "cache_bytes": cache_bytes, "cache_files": cache_files})
        print(f"recipe run {run + 1}: {sizes[-1]['seconds']} s, run folder {run_bytes / 2**20:.2f} MiB in "
              f"{run_files} files, cache {cache_bytes / 2**20:.2f} MiB in {cache_files} files", flush=True)
    first = sizes[0]
    grew = [s for s in sizes[1:]
            if s["run_bytes"] > first["run_bytes"] * 1.001 or s["cache_bytes"] > first["cache_bytes"]
            or s["run_files"] > first["run_files"] or s["cache_files"] > first["cache_files"]]
    return {"model": str(model), "runs": sizes, "goal": "no growth of the run folder or cache after the first run",
            "met": not grew,
            "note": "the run folder's report files are rewritten each run (same names); 0.1 % of size slack for "
                    "their timing figures' text"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="an hf classifier for the recipe runs")
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--recipe-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak_runtime_minilm_bbc.json")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from edgewise.core.env import fingerprint

    result = {"benchmark": "cpu_soak_runtime_minilm", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "environment": fingerprint(), "runtime": soak(args.bundle, args.texts, args.warmup)}
    r = result["runtime"]
    print(f"runtime: RSS {r['rss_start_mb']} MiB at start, {r['rss_after_warmup_mb']} after {args.warmup} texts, "
          f"{r['rss_end_mb']} after {args.texts} ({r['growth_after_warmup']:+.2%}; goal < 5 %: "
          f"{'met' if r['met'] else 'MISSED'}), {r['seconds']} s")
    with tempfile.TemporaryDirectory() as scratch:
        result["recipe"] = recipe_runs(args.model, args.recipe_runs, Path(scratch))
    print(f"recipe runs: {'no growth after the first' if result['recipe']['met'] else 'GREW'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
