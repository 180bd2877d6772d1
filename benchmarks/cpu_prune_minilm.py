"""Structured pruning of the fine-tuned MiniLM teacher (BBC News), timed side by side with it.

Needs the teacher of cpu_finetune_torch_minilm.py (default: its work folder; `edgewise demo`
writes an equal one to runs/demo/01-teacher). Runs the `edgewise` commands a user would:

  prune    edgewise prune TEACHER builtin:bbc-news --flops 0.5 (Fisher importance on the training texts,
           then the least-squares refit, kept only if validation accuracy holds): time taken, FLOPs
           kept, accuracy before / after each step
  heal     one epoch of distillation from the teacher into the pruned model
           (edgewise distill TEACHER DATA --student PRUNED --epochs 1)
  export   the teacher, the pruned and the healed model to ONNX (parity checked), the healed one also
           with --optimize (per-layer head counts read from the graph)
  bench    one `edgewise bench` run: teacher in torch and ORT, pruned and healed in ORT;
           1 thread, batch 1, 128 tokens, accuracy on the test split
  latency  edgewise prune TEACHER DATA --latency-budget 60% --threads 1 (measured with onnxruntime),
           exported, and one `edgewise bench` run against the teacher's ONNX
  chain    the healed model quantized (dynamic INT8) and bundled, the teacher's ONNX quantized too,
           and one `edgewise bench` run of them against the teacher in torch

    python benchmarks/cpu_prune_minilm.py [--teacher DIR] [--stages prune,heal,export,bench] [--workdir DIR]
        [--data SPEC --name NAME]   # e.g. the movie-review teacher of cpu_distill_minilm_movies.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from cpu_quantize_ort_minilm import edgewise, manifest  # the sibling suite's `edgewise` runner

HERE = Path(__file__).resolve().parent
DATA = "builtin:bbc-news"  # --data replaces it
NAME = "bbc"  # --name replaces it: results/prune_minilm_NAME.json and results/prune_minilm_NAME/
SEQ_LEN = "128"  # --seq-len replaces it: the bench stage's tokens per input ("data": the texts' real lengths)
FLOPS = 0.5


def stage_prune(teacher: Path, work: Path) -> dict:
    out = work / "pruned"
    seconds = edgewise("prune", teacher, DATA, "-o", out, "--flops", FLOPS, "--overwrite")
    m = manifest(out)["metrics"]
    p = m["pruning"]
    return {"flops": FLOPS, "wall_s": round(seconds, 1), "stage_s": m["time_s"],
            "heads_per_layer": p["heads_per_layer"], "ffn_per_layer": p["ffn_per_layer"],
            "flops_ratio": p["flops_ratio"], "parameters": [p["parameters_before"], p["parameters_after"]],
            "samples": p["samples"], "accuracy": m["accuracy"]}


def stage_heal(teacher: Path, work: Path) -> dict:
    out = work / "healed"
    seconds = edgewise("distill", teacher, DATA, "-o", out, "--student", work / "pruned", "--epochs", 1,
                       "--overwrite")  # at the teacher's own working length
    m = manifest(out)["metrics"]
    return {"wall_s": round(seconds, 1), "test_accuracy": m["test"]["accuracy"],
            "teacher_accuracy": m["test"]["teacher_accuracy"],
            "agreement_with_teacher": m["test"]["agreement_with_teacher"],
            "validation_accuracy": m["validation"]["accuracy"]}


def stage_export(teacher: Path, work: Path) -> dict:
    result = {}
    for name, src, extra in (("teacher-onnx", teacher, []), ("pruned-onnx", work / "pruned", []),
                             ("healed-onnx", work / "healed", []),
                             ("healed-onnx-opt", work / "healed", ["--optimize"])):
        seconds = edgewise("export", src, "-o", work / name, "--data", DATA, "--overwrite", *extra)
        parity = manifest(work / name)["metrics"]
        result[name] = {"wall_s": round(seconds, 1),
                        "parity": {k: v for k, v in (parity.get("parity_optimized") or parity["parity"]).items()
                                   if k in ("max_abs_diff", "label_agreement", "samples")}}
    return result


def stage_bench(teacher: Path, work: Path) -> dict:
    report_dir = work / "bench"
    artifacts = [teacher, work / "teacher-onnx", work / "pruned-onnx", work / "healed-onnx", work / "healed-onnx-opt"]
    edgewise("bench", *artifacts, "--data", DATA, "--threads", 1, "--batch-sizes", 1, "--seq-len", SEQ_LEN,
             "--rounds", 7, "-o", report_dir, "--overwrite")
    report = json.loads((report_dir / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["results"] if r["status"] == "ok"}
    p50 = {name: row["latency_ms"]["p50"] for name, row in rows.items()}
    out_dir = HERE / "results" / f"prune_minilm_{NAME}"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "report.md"):
        shutil.copy2(report_dir / name, out_dir / name)
    return {
        "p50_ms": p50,
        "p50_ci95": {name: row["latency_ms"]["p50_ci95"] for name, row in rows.items()},
        "accuracy_test": {name: row.get("accuracy") for name, row in rows.items()},
        "size_mb": {a["name"]: round(a["size_bytes"] / 1e6, 1) for a in report["artifacts"]},
        "pruned_vs_teacher_ort": p50["teacher-onnx"] / p50["pruned-onnx"],
        "healed_vs_teacher_ort": p50["teacher-onnx"] / p50["healed-onnx"],
        "healed_opt_vs_teacher_ort": p50["teacher-onnx"] / p50["healed-onnx-opt"],
        "healed_vs_teacher_torch": p50[teacher.name] / p50["healed-onnx"],
        "machine": report["environment"].get("cpu", {}),
    }


def stage_latency(teacher: Path, work: Path) -> dict:
    seconds = edgewise("prune", teacher, DATA, "-o", work / "pruned-lat60", "--latency-budget", "60%", "--threads", 1,
                       "--overwrite")
    m = manifest(work / "pruned-lat60")["metrics"]
    edgewise("export", work / "pruned-lat60", "-o", work / "pruned-lat60-onnx", "--data", DATA, "--overwrite")
    report_dir = work / "lat-bench"
    edgewise("bench", work / "teacher-onnx", work / "pruned-lat60-onnx", "--data", DATA, "--threads", 1,
             "--batch-sizes", 1, "--seq-len", 128, "--rounds", 7, "-o", report_dir, "--overwrite")
    rows = {r["artifact"]: r for r in json.loads((report_dir / "report.json").read_text())["results"]}
    p50 = {name: row["latency_ms"]["p50"] for name, row in rows.items()}
    return {"wall_s": round(seconds, 1), "search": m["pruning"]["latency"], "accuracy": m["accuracy"],
            "bench_p50_ms": p50, "bench_ratio": p50["pruned-lat60-onnx"] / p50["teacher-onnx"],
            "bench_accuracy": {name: row.get("accuracy") for name, row in rows.items()}}


def stage_chain(teacher: Path, work: Path) -> dict:
    edgewise("quantize", work / "healed-onnx", "-o", work / "healed-int8", "--data", DATA, "--overwrite")
    edgewise("bundle", work / "healed-int8", "-o", work / "healed-bundle", "--overwrite")
    edgewise("quantize", work / "teacher-onnx", "-o", work / "teacher-int8", "--data", DATA, "--overwrite")
    report_dir = work / "chain-bench"
    edgewise("bench", teacher, work / "teacher-int8", work / "healed-int8", work / "healed-bundle", "--data", DATA,
             "--threads", 1, "--batch-sizes", 1, "--seq-len", 128, "--rounds", 7, "-o", report_dir, "--overwrite")
    report = json.loads((report_dir / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["results"] if r["status"] == "ok"}
    p50 = {name: row["latency_ms"]["p50"] for name, row in rows.items()}
    shutil.copy2(report_dir / "report.md", HERE / "results" / f"prune_minilm_{NAME}" / "chain.md")
    return {"p50_ms": p50, "accuracy_test": {name: row.get("accuracy") for name, row in rows.items()},
            "size_mb": {a["name"]: round(a["size_bytes"] / 1e6, 1) for a in report["artifacts"]},
            "speedup_vs_teacher_torch": {name: p50[teacher.name] / v for name, v in p50.items()}}


STAGES = {"prune": stage_prune, "heal": stage_heal, "export": stage_export, "bench": stage_bench,
          "latency": stage_latency, "chain": stage_chain}


def main() -> None:
    global DATA, NAME, SEQ_LEN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=Path("/tmp/edgewise-bench-finetune/teacher"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-prune"))
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--data", default=DATA, help="the teacher's data (any DATA spec)")
    parser.add_argument("--name", default="bbc", help="results go to results/prune_minilm_NAME.json")
    parser.add_argument("--seq-len", default=SEQ_LEN, help="tokens per input in the bench stage, or 'data'")
    args = parser.parse_args()
    DATA, NAME, SEQ_LEN = args.data, args.name, args.seq_len
    args.workdir.mkdir(parents=True, exist_ok=True)
    results_file = HERE / "results" / f"prune_minilm_{args.name}.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for stage in args.stages.split(","):
        print(f"== {stage}", flush=True)
        if stage not in STAGES:
            sys.exit(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
        results[stage] = STAGES[stage](args.teacher, args.workdir)
        print(json.dumps(results[stage], indent=2)[:4000], flush=True)
        results_file.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
