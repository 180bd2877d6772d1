"""Quantization of the fine-tuned MiniLM teacher (BBC News): ORT dynamic / static INT8, FP16, the
accuracy-aware search, and INC INT8 for PyTorch, then every model timed side by side.

Needs the teacher of cpu_finetune_torch_minilm.py and its ONNX export of cpu_export_ort_minilm.py
(default: their work folders). Runs the `edgewise` commands a user would:

  quantize    dynamic INT8 (defaults), static INT8 QDQ with minmax / entropy / percentile calibration
              (300 training texts), FP16, INC static and dynamic INT8 of the PyTorch teacher
  search      --max-accuracy-drop 0.5: the candidate table and the pick
  bench       one `edgewise bench` run over all of them: 1 thread, batch 1, 128 tokens, accuracy on
              the test split; ONNX models on ORT, the PyTorch ones on torch

    python benchmarks/cpu_quantize_ort_minilm.py [--stages quantize,search,bench] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("quantize", "search", "bench")
DATA = "builtin:bbc-news"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def edgewise(*args) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgewise", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"edgewise {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr[-3000:]}")
    sys.stderr.write(done.stderr[-4000:])
    return time.perf_counter() - start


def manifest(path: Path) -> dict:
    return json.loads((path / "edgewise.json").read_text())


def _accuracy(m: dict) -> dict:
    out = {}
    for split, row in m["metrics"]["accuracy"].items():
        out[split] = {"source": row["source"]["accuracy"], "quantized": row["quantized"]["accuracy"],
                      "drop_points": row["drop_points"], "agreement": row["quantized"]["agreement_with_source"],
                      "max_abs_diff": row["quantized"]["max_abs_diff"]}
    return out


def stage_quantize(onnx: Path, teacher: Path, work: Path) -> dict:
    runs = {"dynamic": ("int8", [onnx])}
    for method in CALIBRATION_METHODS:
        runs[f"static-{method}"] = (f"s8-{method}", [onnx, "--method", "static", "--calibration", DATA,
                                                      "--calibration-method", method, "--samples", 300])
    runs["fp16"] = ("fp16", [onnx, "--method", "fp16"])
    runs["inc-static"] = ("inc-static", [teacher, "--method", "inc", "--inc-approach", "static", "--calibration", DATA,
                                         "--samples", 300])
    runs["inc-dynamic"] = ("inc-dynamic", [teacher, "--method", "inc", "--inc-approach", "dynamic"])
    results = {}
    for key, (name, args) in runs.items():
        print(f"-- {key}", flush=True)
        wall = edgewise("quantize", *args, "-o", work / name, "--overwrite")
        m = manifest(work / name)
        q = m["metrics"]["quantization"]
        results[key] = {"artifact": name, "wall_s": round(wall, 1), "size": m["metrics"]["size"],
                        "accuracy": _accuracy(m), "int8": q.get("int8"), "calibration": q.get("calibration"),
                        "preprocessed": q.get("preprocessed"), "package": q.get("package"),
                        "fp16_check": m["metrics"].get("fp16_check"), "kept_fp32_ops": q.get("kept_fp32_ops")}
    return results


def stage_search(onnx: Path, work: Path) -> dict:
    wall = edgewise("quantize", onnx, "-o", work / "best", "--max-accuracy-drop", 0.5, "--calibration", DATA,
                    "--samples", 300, "--overwrite")
    m = manifest(work / "best")
    search = m["metrics"]["quantization"]["search"]
    return {"wall_s": round(wall, 1), "pick": search["pick"], "source": search["source"],
            "candidates": search["candidates"],
            "sensitivity": {**search["sensitivity"], "layers": search["sensitivity"].get("layers", [])[:5]},
            "accuracy": _accuracy(m)}


def stage_bench(onnx: Path, teacher: Path, work: Path, best_static: str) -> dict:
    names = ["int8", f"s8-{best_static}", "best", "fp16", "inc-static", "inc-dynamic"]
    report_dir = work / "bench"
    edgewise("bench", onnx, *(work / n for n in names), teacher, "--data", DATA, "--split", "test",
             "--threads", 1, "--batch-sizes", 1, "--seq-len", 128, "--rounds", 7, "-o", report_dir, "--overwrite")
    report = json.loads((report_dir / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["results"] if r["status"] == "ok"}
    p50 = {name: row["latency_ms"]["p50"] for name, row in rows.items()}
    out_dir = HERE / "results" / "quantize_minilm_report"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    for name in ("report.md", "report.json", "pareto.png", "latency_cdf.png"):
        if (report_dir / name).is_file():
            shutil.copy2(report_dir / name, out_dir / name)
    fp32_ort, fp32_torch = p50[onnx.name], p50[teacher.name]
    return {
        "p50_ms": p50,
        "p50_ci95": {name: row["latency_ms"]["p50_ci95"] for name, row in rows.items()},
        "accuracy_test": {name: row.get("accuracy") for name, row in rows.items()},
        "size_mb": {a["name"]: round(a["size_bytes"] / 1e6, 1) for a in report["artifacts"]},
        "speedup_vs_ort_fp32": {n: fp32_ort / p50[n] for n in ("int8", f"s8-{best_static}", "best", "fp16")},
        "static_vs_dynamic": p50["int8"] / p50[f"s8-{best_static}"],
        "inc_vs_torch_fp32": {n: fp32_torch / p50[n] for n in ("inc-static", "inc-dynamic")},
        "skipped": [f"{r['artifact']}: {r.get('reason')}" for r in report["results"] if r["status"] != "ok"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=Path("/tmp/edgewise-bench-finetune/teacher"))
    parser.add_argument("--onnx", type=Path, default=Path("/tmp/edgewise-bench-export/onnx"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-quantize"))
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results_file = HERE / "results" / "quantize_minilm_bbc.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for stage in args.stages.split(","):
        print(f"== {stage}", flush=True)
        if stage == "quantize":
            results["quantize"] = stage_quantize(args.onnx, args.teacher, args.workdir)
        elif stage == "search":
            results["search"] = stage_search(args.onnx, args.workdir)
        elif stage == "bench":
            statics = {m: results["quantize"][f"static-{m}"]["accuracy"]["validation"]["quantized"]
                       for m in CALIBRATION_METHODS}
            best_static = max(statics, key=statics.get)  # chosen on validation, reported on test
            results["best_static"] = best_static
            results["bench"] = stage_bench(args.onnx, args.teacher, args.workdir, best_static)
        else:
            sys.exit(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
        print(json.dumps(results[stage], indent=2)[:4000], flush=True)
        results_file.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
