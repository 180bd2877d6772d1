"""Export of the fine-tuned MiniLM teacher: parity, fusions, latency, ORT format, bundle, runtime-only env.

Needs the teacher written by cpu_finetune_torch_minilm.py (default: its work folder). Runs the
`edgewise` commands a user would, then times PyTorch fp32, ORT fp32 and ORT fp32 optimised side by
side at 1 thread, batch 1, interleaved in rounds over the same real test texts, and finally installs
only the `runtime` extra into a fresh virtualenv and runs the bundle there.

    python benchmarks/cpu_export_ort_minilm.py [--teacher DIR] [--workdir DIR] [--rounds 7]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # pinned before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EDGEWISE = [sys.executable, "-m", "edgewise"]


def edgewise(*args, expect=0) -> subprocess.CompletedProcess:
    done = subprocess.run(EDGEWISE + [str(a) for a in args], capture_output=True, text=True)
    if done.returncode != expect:
        sys.exit(f"edgewise {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def manifest(path: Path) -> dict:
    return json.loads((path / "edgewise.json").read_text())


def latency(teacher: Path, onnx: Path, optimized: Path, rounds: int, per_round: int) -> dict:
    """Median batch-1 latency at 1 thread over the same real texts, the backends interleaved per round."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgewise.core.data import load_splits

    torch.set_num_threads(1)
    texts = load_splits("builtin:bbc-news")["test"].texts[:per_round]
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    inputs = [dict(tokenizer(t, truncation=True, max_length=128, return_tensors="np")) for t in texts]
    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()

    def session(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        return ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])

    sessions = {"ort-fp32": session(onnx), "ort-fp32-optimized": session(optimized)}
    feeds = {name: [{k: v.astype(np.int64) for k, v in x.items() if k in {i.name for i in s.get_inputs()}}
                    for x in inputs] for name, s in sessions.items()}
    torch_inputs = [{k: torch.from_numpy(v) for k, v in x.items()} for x in inputs]

    def ort_runner(session, session_feeds):
        return lambda i: session.run(None, session_feeds[i])

    runners = {"torch-fp32": lambda i: model(**torch_inputs[i])}
    runners.update({name: ort_runner(s, feeds[name]) for name, s in sessions.items()})
    samples = {name: [] for name in runners}
    with torch.inference_mode():
        for run in runners.values():  # warm-up
            for i in range(min(10, len(inputs))):
                run(i)
        for _ in range(rounds):
            for name, run in runners.items():
                for i in range(len(inputs)):
                    start = time.perf_counter()
                    run(i)
                    samples[name].append((time.perf_counter() - start) * 1000)
    medians = {name: float(np.median(v)) for name, v in samples.items()}
    return {
        "texts": len(inputs), "rounds": rounds, "threads": 1, "batch_size": 1,
        "mean_tokens": float(np.mean([x["input_ids"].shape[1] for x in inputs])),
        "p50_ms": medians,
        "ratio_torch_over_ort": medians["torch-fp32"] / medians["ort-fp32"],
        "ratio_plain_over_optimized": medians["ort-fp32"] / medians["ort-fp32-optimized"],
    }


def runtime_only_env(work: Path, bundle: Path) -> dict:
    """A fresh virtualenv with only `edgewise[runtime]`: predict, bench, and its size."""
    venv = work / "runtime-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    install = subprocess.run(pip + ["install", "-q", "-c", str(REPO / "constraints.txt"), f"{REPO}[runtime]"],
                             capture_output=True, text=True)
    if install.returncode != 0:
        sys.exit(f"installing the runtime extra failed:\n{install.stderr[-3000:]}")
    python = str(venv / "bin" / "python")
    freeze = subprocess.run(pip + ["freeze"], capture_output=True, text=True, check=True).stdout.split()
    torch_import = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True).returncode
    predict = subprocess.run([python, "-m", "edgewise.runtime", "predict", str(bundle),
                              "Shares in the bank rose after record quarterly profits",
                              "The striker scored twice in the cup final", "--json"],
                             capture_output=True, text=True, check=True)
    bench = subprocess.run([python, "-m", "edgewise.runtime", "bench", str(bundle), "--threads", "1",
                            "--json", str(work / "runtime-bench.json")], capture_output=True, text=True, check=True)
    size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True).stdout.split()[0]
    report = json.loads((work / "runtime-bench.json").read_text())
    return {
        "pip_freeze": freeze, "packages": len(freeze), "venv_mb": int(size),
        "torch_importable": torch_import == 0,
        "predict": [{"label": p["label"], "score": round(p["score"], 4)} for p in json.loads(predict.stdout)],
        "bench_line": bench.stdout.strip(),
        "bench_p50_ms": report["results"][0]["latency_ms"]["p50"],
        "bench_cv": report["results"][0]["latency_ms"]["cv"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=Path("/tmp/edgewise-bench-finetune/teacher"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-export"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--texts", type=int, default=40, help="test texts timed per round and backend")
    args = parser.parse_args()
    if not (args.teacher / "edgewise.json").is_file():
        sys.exit(f"no teacher at {args.teacher}: run benchmarks/cpu_finetune_torch_minilm.py first")
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    w = args.workdir

    t0 = time.perf_counter()
    edgewise("export", args.teacher, "-o", w / "onnx", "--data", "builtin:bbc-news", "--verify-samples", 500)
    export_s = time.perf_counter() - t0
    edgewise("export", args.teacher, "-o", w / "onnx-opt", "--optimize", "--data", "builtin:bbc-news",
             "--verify-samples", 500)
    edgewise("export", w / "onnx", "-o", w / "ort", "--format", "ort", "--data", "builtin:bbc-news")
    edgewise("bundle", w / "ort", "-o", w / "deploy")
    trt = edgewise("export", w / "onnx", "-o", w / "trt", "--format", "tensorrt", "--fp16", "--batch", "1:4:16",
                   "--seq", "8:64:128", expect=2)
    evaluation = json.loads(edgewise("evaluate", w / "deploy", "builtin:bbc-news", "--split", "test", "--json").stdout)

    plain, opt, ort_format = manifest(w / "onnx"), manifest(w / "onnx-opt"), manifest(w / "ort")
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "teacher": str(args.teacher),
        "export_wall_s": round(export_s, 1),
        "parity_onnx": plain["metrics"]["parity"],
        "parity_optimized": opt["metrics"]["parity_optimized"],
        "fusions": opt["metrics"]["fusions"],
        "nodes": {"plain": plain["metrics"]["onnx"]["nodes"], "optimized": opt["metrics"]["onnx"]["nodes"]},
        "onnx_mb": round(plain["metrics"]["onnx"]["size_bytes"] / 2**20, 1),
        "ort_format": {"parity": ort_format["metrics"]["parity"], "mb": round(ort_format["metrics"]["ort"]["size_bytes"]
                                                                               / 2**20, 1)},
        "bundle_test_accuracy": evaluation["accuracy"],
        "tensorrt": {"exit_code": 2, "error": trt.stderr.strip().splitlines()[-1],
                     "script": (w / "trt" / "build_engine.sh").read_text()},
        "latency": latency(args.teacher, w / "onnx", w / "onnx-opt", args.rounds, args.texts),
        "runtime_only_env": runtime_only_env(w, w / "deploy"),
        "environment": plain["environment"],
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "export_minilm_bbc.json").write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency"]
    print(json.dumps({k: result[k] for k in ("parity_onnx", "parity_optimized", "fusions", "nodes", "ort_format",
                                             "bundle_test_accuracy")}, indent=2))
    print(json.dumps(lat, indent=2))
    env = result["runtime_only_env"]
    print(f"runtime-only venv: {env['packages']} packages, {env['venv_mb']} MB, torch importable: "
          f"{env['torch_importable']}; predict {env['predict']}; {env['bench_line']}")
    print(result["tensorrt"]["error"])


if __name__ == "__main__":
    main()
