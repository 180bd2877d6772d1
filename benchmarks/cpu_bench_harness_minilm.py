"""Trust in `edgewise bench`: harness overhead, run-to-run stability, the CI gate on real models, a full report.

Needs the teacher of cpu_finetune_torch_minilm.py and the exports of cpu_export_ort_minilm.py
(their default work folders). All at 1 thread, batch 1, 128 tokens unless said otherwise.

1. Overhead: edgewise's p50 for the ORT teacher vs a bare 10-line onnxruntime loop on the same
   inputs, alternated 5 times in one process.
2. Stability: the same bench (PyTorch and ORT teacher) twice; p50 difference and CVs.
3. Gate: the FP32 ONNX teacher against a dynamic-INT8 copy as baseline (same folder name): must
   fail (exit 1); the INT8 model against itself: must pass (exit 0).
4. The report a user reads: teacher, ONNX, optimised ONNX and the bundle, PyTorch and ORT, batch
   1 and 8 at real text lengths, accuracy on the BBC test split, plots (committed under results/).

    python benchmarks/cpu_bench_harness_minilm.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
TEACHER = Path("/tmp/edgewise-bench-finetune/teacher")
EXPORTS = Path("/tmp/edgewise-bench-export")
WORK = Path("/tmp/edgewise-bench-harness")


def edgewise(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgewise", *map(str, args)], capture_output=True, text=True)


def overhead(onnx: Path) -> dict:
    import numpy as np
    import onnxruntime as ort

    from edgewise.bench import BenchConfig, bench
    from edgewise.runtime.runners import open_runner

    feed = open_runner(onnx, None, "ort-cpu", threads=1).synthetic(1, 128)  # the very inputs edgewise times

    # The bare loop a user would write.
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(onnx / "model.onnx"), options, providers=["CPUExecutionProvider"])
    def bare(n=200):
        for _ in range(20):
            session.run(None, feed)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - t) * 1000)
        return float(np.median(times))

    config = BenchConfig(backends=("ort-cpu",), threads=1, seq_len="128", warmup=20, min_runs=200, min_time_s=0,
                         rounds=1)
    pairs = [(bare(), bench([onnx], config=config)["results"][0]["latency_ms"]["p50"]) for _ in range(5)]
    bare_p50 = float(np.median([p[0] for p in pairs]))
    edgewise_p50 = float(np.median([p[1] for p in pairs]))
    return {"pairs_ms": pairs, "bare_p50_ms": bare_p50, "edgewise_p50_ms": edgewise_p50,
            "ratio_edgewise_over_bare": edgewise_p50 / bare_p50}


def stability(teacher: Path, onnx: Path) -> dict:
    from edgewise.bench import BenchConfig, bench

    config = BenchConfig(backends=("auto",), threads=1, seq_len="128")
    runs = [bench([teacher, onnx], config=config) for _ in range(2)]
    rows = {}
    for index, report in enumerate(runs):
        for row in report["results"]:
            entry = rows.setdefault(f"{row['artifact']} / {row['backend']}", {})
            entry[f"run{index + 1}_p50_ms"] = row["latency_ms"]["p50"]
            entry[f"run{index + 1}_cv"] = row["latency_ms"]["cv"]
    for entry in rows.values():
        entry["p50_change"] = entry["run2_p50_ms"] / entry["run1_p50_ms"] - 1
    return rows


def gate(onnx: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, int8 = WORK / "fp32" / "model", WORK / "int8" / "model"
    shutil.copytree(onnx, fp32)
    (fp32 / "edgewise.json").unlink()
    shutil.copytree(fp32, int8)
    (int8 / "model.onnx").unlink()
    quantize_dynamic(str(onnx / "model.onnx"), str(int8 / "model.onnx"), weight_type=QuantType.QInt8)
    common = ["--backend", "ort-cpu", "--threads", "1", "--seq-len", "128", "--data", "builtin:bbc-news"]
    for name, folder in (("int8-a", int8), ("int8-b", int8), ("fp32", fp32)):
        done = edgewise("bench", folder, *common, "-o", WORK / f"report-{name}")
        if done.returncode != 0:
            sys.exit(done.stderr)
    swapped = edgewise("bench", "compare", WORK / "report-fp32", WORK / "report-int8-a",
                       "--max-latency-regression", "10%", "--json")
    same = edgewise("bench", "compare", WORK / "report-int8-b", WORK / "report-int8-a",
                    "--max-latency-regression", "10%", "--json")
    result = {"fp32_vs_int8_baseline_exit": swapped.returncode, "int8_vs_int8_exit": same.returncode,
              "fp32_vs_int8": json.loads(swapped.stdout)["rows"], "int8_vs_int8": json.loads(same.stdout)["rows"]}
    return result


def full_report(teacher: Path) -> dict:
    out = HERE / "results" / "minilm_teacher_report"
    done = edgewise("bench", teacher, EXPORTS / "onnx", EXPORTS / "onnx-opt", EXPORTS / "deploy",
                    "--data", "builtin:bbc-news", "--batch-sizes", "1,8", "--threads", "1", "-o", out, "--overwrite")
    if done.returncode != 0:
        sys.exit(done.stderr)
    report = json.loads((out / "report.json").read_text())
    return {"folder": str(out.relative_to(HERE.parent)), "rows": [
        {k: r.get(k) for k in ("artifact", "backend", "batch_size", "accuracy", "label_agreement")}
        | {"p50_ms": r["latency_ms"]["p50"], "cv": r["latency_ms"]["cv"]} for r in report["results"]]}


def main() -> None:
    if not (TEACHER / "edgewise.json").is_file() or not (EXPORTS / "onnx").is_dir():
        sys.exit("run cpu_finetune_torch_minilm.py and cpu_export_ort_minilm.py first")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    onnx = EXPORTS / "onnx"
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    result["overhead"] = overhead(onnx)
    print("overhead", json.dumps(result["overhead"], indent=1))
    result["stability"] = stability(TEACHER, onnx)
    print("stability", json.dumps(result["stability"], indent=1))
    result["gate"] = gate(onnx)
    print("gate exits: fp32 vs int8 baseline", result["gate"]["fp32_vs_int8_baseline_exit"],
          "| int8 vs int8", result["gate"]["int8_vs_int8_exit"])
    print(json.dumps(result["gate"]["fp32_vs_int8"], indent=1))
    result["report"] = full_report(TEACHER)
    print(json.dumps(result["report"], indent=1))
    (HERE / "results" / "bench_harness_minilm.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
