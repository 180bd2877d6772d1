"""Distillation on real data: movie-review polarity (the VADER ground truth), MiniLM-L6 teacher.

Data: the 10,605 movie-review sentences with crowd sentiment scores inside the vadersentiment==3.3.2
sdist (fetched with `pip download`; sign of the score -> polarity, the 37 zero scores dropped), split
80/10/10 stratified with a fixed seed. Unlabelled extra text: the sdist's tweets, NYT editorial and
Amazon review snippets (13,095 texts), for --unlabeled.

Stages (each reuses the previous outputs under --workdir; rerun a stage with --stages NAME):
  data      prepare the split and the unlabelled file
  teacher   edgewise finetune builtin:all-minilm-l6-v2 on it
  students  3-layer students, same epochs: labels only (alpha 0) vs KD (with / without unlabelled text)
  timing    one epoch with cached teacher logits vs a teacher forward every step, 3- and 2-layer students
  latency   teacher and the best student exported to ONNX, benched side by side (edgewise bench)
  seeds     the three students again with seeds 1 and 2: the KD margins over three seeds

    python benchmarks/cpu_distill_minilm_movies.py [--workdir /tmp/edgewise-bench-distill] [--stages ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("data", "teacher", "students", "timing", "latency", "seeds")
SEEDS = (1, 2)  # besides the default 42 of the students stage
STUDENT_EPOCHS = 3


def edgewise(*args, env: dict | None = None) -> float:
    import os

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgewise", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        sys.exit(f"edgewise {' '.join(map(str, args))} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


def manifest(path: Path) -> dict:
    return json.loads((path / "edgewise.json").read_text())


def vader_files(sdist_dir: Path) -> tuple[Path, dict[str, str]]:
    """(the vadersentiment==3.3.2 sdist, fetched with pip download into ``sdist_dir`` unless there, and its
    *_GroundTruth.txt files by name: tab-separated id, score, text)."""
    sdist_dir.mkdir(parents=True, exist_ok=True)
    if not list(sdist_dir.glob("vader*.tar.gz")):
        subprocess.run([sys.executable, "-m", "pip", "download", "vadersentiment==3.3.2", "--no-binary", ":all:",
                        "--no-deps", "-d", str(sdist_dir)], check=True, capture_output=True)
    sdist = next(sdist_dir.glob("vader*.tar.gz"))
    with tarfile.open(sdist) as outer:
        inner_member = next(m for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        with tarfile.open(fileobj=outer.extractfile(inner_member)) as inner:
            return sdist, {Path(m.name).name: inner.extractfile(m).read().decode("latin-1")
                           for m in inner.getmembers() if m.name.endswith("_GroundTruth.txt")}


def stage_data(work: Path) -> dict:
    sdist, files = vader_files(work / "sdist")

    def rows(name):
        for line in files[name].splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[2].strip():
                yield float(parts[1]), parts[2].strip()

    movies = [(text, "positive" if score > 0 else "negative") for score, text in rows(
        "movieReviewSnippets_GroundTruth.txt") if score != 0]
    rng = random.Random(20261128)
    by_label = {}
    for row in movies:
        by_label.setdefault(row[1], []).append(row)
    split = {"train": [], "validation": [], "test": []}
    for label_rows in by_label.values():
        rng.shuffle(label_rows)
        n = len(label_rows)
        split["test"] += label_rows[: n // 10]
        split["validation"] += label_rows[n // 10: n // 5]
        split["train"] += label_rows[n // 5:]
    data = work / "movies"
    data.mkdir(exist_ok=True)
    for name, items in split.items():
        rng.shuffle(items)
        with open(data / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(items)
    unlabeled = [text for name in files if not name.startswith("movie") for _, text in rows(name)]
    (work / "unlabeled.txt").write_text("\n".join(t.replace("\n", " ") for t in unlabeled) + "\n")
    return {"sdist": sdist.name, "rows": {k: len(v) for k, v in split.items()}, "dropped_zero_scores":
            sum(1 for score, _ in rows("movieReviewSnippets_GroundTruth.txt") if score == 0),
            "unlabeled_rows": len(unlabeled)}


def stage_teacher(work: Path) -> dict:
    wall = edgewise("finetune", "builtin:all-minilm-l6-v2", work / "movies", "-o", work / "teacher", "--epochs", 3,
                    "--batch-size", 32, "--lr", "5e-5", "--overwrite")
    m = manifest(work / "teacher")
    return {"wall_s": round(wall, 1), "test_accuracy": m["metrics"]["test"]["accuracy"],
            "test_macro_f1": m["metrics"]["test"]["macro_f1"], "max_length": m["data"]["max_length"],
            "token_lengths": m["data"]["token_lengths"]}


def _student(work: Path, name: str, *flags) -> dict:
    wall = edgewise("distill", work / "teacher", work / "movies", "-o", work / name, "--layers", 3,
                    "--epochs", STUDENT_EPOCHS, "--overwrite", *flags)
    m = manifest(work / name)
    return {"flags": " ".join(map(str, flags)), "wall_s": round(wall, 1),
            "test_accuracy": m["metrics"]["test"]["accuracy"], "test_macro_f1": m["metrics"]["test"]["macro_f1"],
            "validation_accuracy": m["metrics"]["validation"]["accuracy"],
            "agreement_with_teacher": m["metrics"]["test"]["agreement_with_teacher"],
            "accuracy_vs_teacher": m["metrics"]["test"]["accuracy_vs_teacher"],
            "parameter_ratio": m["metrics"]["size"]["parameter_ratio"],
            "seconds_per_epoch": m["metrics"]["train"]["seconds_per_epoch"],
            "teacher_pass_s": m["metrics"]["train"]["teacher_pass_s"]}


def stage_students(work: Path) -> dict:
    return {
        "labels_only": _student(work, "student-labels", "--alpha", 0),
        "kd": _student(work, "student-kd", "--alpha", 0.7, "--temperature", 4),
        "kd_unlabeled": _student(work, "student-kd-unlabeled", "--alpha", 0.7, "--temperature", 4,
                                 "--unlabeled", work / "unlabeled.txt"),
    }


def stage_timing(work: Path) -> dict:
    """One epoch each way; the epoch time counts training steps only (no evaluation or checkpointing).
    Each cached run gets an empty cache, so its one-time teacher pass is measured too."""
    import shutil

    result = {}
    for layers in (3, 2):
        times = {}
        for mode in ("--cache-logits", "--no-cache-logits"):
            name = f"timing-l{layers}{mode.replace('--', '-')}"
            cache = work / f"cache-{name}"
            shutil.rmtree(cache, ignore_errors=True)
            edgewise("distill", work / "teacher", work / "movies", "-o", work / name, "--layers", layers,
                     "--epochs", 1, mode, "--overwrite", env={"EDGEWISE_CACHE": str(cache)})
            times[mode.strip("-")] = manifest(work / name)["metrics"]["train"]
        cached, live = times["cache-logits"], times["no-cache-logits"]
        result[f"{layers}_layers"] = {
            "cached_epoch_s": cached["seconds_per_epoch"], "teacher_every_step_epoch_s": live["seconds_per_epoch"],
            "speedup": live["seconds_per_epoch"] / cached["seconds_per_epoch"],
            "one_time_teacher_pass_s": cached["teacher_pass_s"], "from_cache": cached["teacher_logits_from_cache"]}
    return result


def _seed_run(work: Path, name: str, seed: int, *flags) -> float:
    """A finished student from an earlier (interrupted) seeds run is reused when its manifest says the same seed."""
    done = work / name / "edgewise.json"
    if done.is_file() and manifest(work / name)["config"]["values"]["seed"] == seed:
        return manifest(work / name)["metrics"]["test"]["accuracy"]
    return _student(work, name, *flags, "--seed", seed)["test_accuracy"]


def stage_seeds(work: Path, earlier: dict) -> dict:
    import statistics

    settings = {"labels_only": ("student-labels", ("--alpha", 0)),
                "kd": ("student-kd", ("--alpha", 0.7, "--temperature", 4)),
                "kd_unlabeled": ("student-kd-unlabeled", ("--alpha", 0.7, "--temperature", 4,
                                                          "--unlabeled", work / "unlabeled.txt"))}
    runs = {key: [earlier[key]["test_accuracy"]] for key in settings}
    for seed in SEEDS:
        for key, (name, flags) in settings.items():
            runs[key].append(_seed_run(work, f"{name}-s{seed}", seed, *flags))
    margins = {key: [a - b for a, b in zip(runs[key], runs["labels_only"], strict=True)]
               for key in ("kd", "kd_unlabeled")}
    return {"seeds": [42, *SEEDS], "test_accuracy": runs,
            "mean": {k: statistics.mean(v) for k, v in runs.items()},
            "stdev": {k: statistics.stdev(v) for k, v in runs.items()},
            "margin_points": {k: [round(m * 100, 2) for m in v] for k, v in margins.items()},
            "mean_margin_points": {k: round(statistics.mean(v) * 100, 2) for k, v in margins.items()}}


def stage_latency(work: Path, best: str) -> dict:
    for name in ("teacher", best):
        edgewise("export", work / name, "-o", work / f"{name}-onnx", "--overwrite")
    edgewise("bench", work / "teacher-onnx", work / f"{best}-onnx", "--data", work / "movies", "--threads", 1,
             "--batch-sizes", 1, "-o", work / "bench", "--overwrite")
    report = json.loads((work / "bench" / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["results"] if r["status"] == "ok"}
    teacher, student = rows["teacher-onnx"], rows[f"{best}-onnx"]
    return {"teacher_p50_ms": teacher["latency_ms"]["p50"], "student_p50_ms": student["latency_ms"]["p50"],
            "speedup": teacher["latency_ms"]["p50"] / student["latency_ms"]["p50"],
            "teacher_accuracy": teacher["accuracy"], "student_accuracy": student["accuracy"],
            "agreement": student["label_agreement"], "seq_len": "data (real lengths)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-distill"))
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results_file = HERE / "results" / "distill_minilm_movies.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for stage in args.stages.split(","):
        print(f"== {stage}", flush=True)
        if stage == "data":
            results["data"] = stage_data(args.workdir)
        elif stage == "teacher":
            results["teacher"] = stage_teacher(args.workdir)
        elif stage == "students":
            results["students"] = stage_students(args.workdir)
        elif stage == "timing":
            results["timing"] = stage_timing(args.workdir)
        elif stage == "seeds":
            results["seeds"] = stage_seeds(args.workdir, results["students"])
        elif stage == "latency":
            students = results.get("students", {})
            best = max(students, key=lambda k: students[k]["validation_accuracy"]) if students else "kd"
            results["latency"] = stage_latency(args.workdir, {"labels_only": "student-labels", "kd": "student-kd",
                                                             "kd_unlabeled": "student-kd-unlabeled"}[best])
        print(json.dumps(results[stage], indent=2), flush=True)
        results_file.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
