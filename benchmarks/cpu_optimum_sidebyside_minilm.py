"""Side by side in one run: Optimum's CLI best practice and edgewise on the same fine-tuned teacher.

Optimum (as its documentation says to, every step its own CLI command):
    optimum-cli export onnx --model TEACHER --task text-classification optimum/onnx
    optimum-cli onnxruntime optimize --onnx_model optimum/onnx -O2 -o optimum/o2
    optimum-cli onnxruntime quantize --onnx_model optimum/onnx --<isa> -o optimum/int8      # isa: this CPU's
    optimum-cli onnxruntime quantize --onnx_model optimum/o2 --<isa> -o optimum/o2-int8     # (fails, recorded)
edgewise:
    edgewise export TEACHER -o edgewise/onnx --data DATA ; edgewise quantize edgewise/onnx -o edgewise/int8
    edgewise export TEACHER -o edgewise/o2 --data DATA --optimize ; edgewise quantize edgewise/o2 -o edgewise/o2-int8
    and, with --compress RUN, the bundle `edgewise compress` chose (RUN/NN-best).

Timing: batch 1, 1 thread (pinned for every model), the test texts at 128 tokens (BBC articles are longer,
so every input is 128), interleaved rounds (every model once per round, in turn), median per model.
Optimum's models run as its users run them: a default onnxruntime InferenceSession (threads pinned) fed
by the transformers tokenizer of the folder; ours run through edgewise's runtime (its Predictor, its
session options). The reference is the teacher in PyTorch fp32. Accuracy: the whole test split, each
model with its own tokenizer.

Writes results/optimum_sidebyside_minilm_NAME.json.

    python benchmarks/cpu_optimum_sidebyside_minilm.py --teacher TEACHER [--data builtin:bbc-news]
        [--compress RUN] [--name bbc] [--workdir DIR] [--rounds 7] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEQ = 128


def command(args: list[str], log: list[dict]) -> bool:
    """Run one CLI command (offline); record it, its time and its last error line; True when it worked."""
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    error = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] if done.returncode else []
    log.append({"command": " ".join(map(str, args)), "exit_code": done.returncode,
                "seconds": round(time.perf_counter() - started, 1), "error": error[0] if error else None})
    print(f"{'ok ' if done.returncode == 0 else 'FAILED'} {log[-1]['seconds']:6.1f} s  {log[-1]['command']}"
          + (f"\n        {error[0]}" if error else ""), file=sys.stderr)
    return done.returncode == 0


def isa_preset() -> str:
    from edgewise.core.env import cpu_info

    flags = set(cpu_info().get("isa") or [])
    if "avx512_vnni" in flags:
        return "--avx512_vnni"
    if "avx512f" in flags:
        return "--avx512"
    return "--avx2"


class OrtDefault:
    """An Optimum artifact run as its users run it: a default session, the folder's transformers tokenizer."""

    def __init__(self, folder: Path, model: str):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        self.session = ort.InferenceSession(str(folder / model), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.file = folder / model

    def encode(self, texts):
        encoded = self.tokenizer(texts, truncation=True, max_length=SEQ, padding="longest", return_tensors="np")
        return {name: encoded[name].astype("int64") for name in self.names}

    def run(self, feed):
        return self.session.run(None, feed)[0]


class Ours:
    """An edgewise artifact through edgewise's runtime."""

    def __init__(self, folder: Path):
        from edgewise.runtime.predictor import Predictor

        self.predictor = Predictor(folder, threads=1, max_length=SEQ)
        self.file = self.predictor.model_path

    def encode(self, texts):
        return self.predictor.encode(texts)

    def run(self, feed):
        return self.predictor.run(feed)


class Torch:
    """The teacher in PyTorch fp32, the reference."""

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(1)
        self.torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.file = folder / "model.safetensors"

    def encode(self, texts):
        return dict(self.tokenizer(texts, truncation=True, max_length=SEQ, padding="longest", return_tensors="pt"))

    def run(self, feed):
        with self.torch.inference_mode():
            return self.model(**feed).logits.numpy()


def accuracy(model, texts, truth, id2label, label2id_of_model) -> float:
    right = 0
    for start in range(0, len(texts), 16):
        logits = model.run(model.encode(texts[start:start + 16]))
        for row, label in zip(logits.argmax(axis=-1), truth[start:start + 16], strict=True):
            right += label2id_of_model.get(label) == int(row)
    return right / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", default="builtin:bbc-news")
    parser.add_argument("--compress", type=Path, help="A run folder of `edgewise compress` (its NN-best bundle).")
    parser.add_argument("--name", default="bbc")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-optimum"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=30, help="Timed runs per model per round.")
    args = parser.parse_args()
    work = args.workdir / args.name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    teacher = args.teacher.resolve()
    preset = isa_preset()
    log: list[dict] = []
    cli = shutil.which("optimum-cli") or str(Path(sys.executable).parent / "optimum-cli")
    ew = [sys.executable, "-m", "edgewise"]
    opt = work / "optimum"
    command([cli, "export", "onnx", "--model", teacher, "--task", "text-classification", opt / "onnx"], log)
    command([cli, "onnxruntime", "optimize", "--onnx_model", opt / "onnx", "-O2", "-o", opt / "o2"], log)
    command([cli, "onnxruntime", "quantize", "--onnx_model", opt / "onnx", preset, "-o", opt / "int8"], log)
    command([cli, "onnxruntime", "quantize", "--onnx_model", opt / "o2", preset, "-o", opt / "o2-int8"], log)
    mine = work / "edgewise"
    command([*ew, "export", teacher, "-o", mine / "onnx", "--data", args.data], log)
    command([*ew, "quantize", mine / "onnx", "-o", mine / "int8"], log)
    command([*ew, "export", teacher, "-o", mine / "o2", "--data", args.data, "--optimize"], log)
    command([*ew, "quantize", mine / "o2", "-o", mine / "o2-int8"], log)

    models = {"teacher, PyTorch fp32": ("reference", lambda: Torch(teacher))}
    for label, folder, file in (
            ("Optimum export", opt / "onnx", "model.onnx"), ("Optimum -O2", opt / "o2", "model_optimized.onnx"),
            (f"Optimum quantize {preset}", opt / "int8", "model_quantized.onnx"),
            (f"Optimum -O2 + quantize {preset}", opt / "o2-int8", "model_optimized_quantized.onnx")):
        if (folder / file).is_file():
            models[label] = ("optimum-cli", lambda f=folder, m=file: OrtDefault(f, m))
    for label, folder in (("edgewise export", mine / "onnx"), ("edgewise quantize (defaults)", mine / "int8"),
                          ("edgewise export --optimize", mine / "o2"),
                          ("edgewise export --optimize + quantize", mine / "o2-int8")):
        if (folder / "edgewise.json").is_file():
            models[label] = ("edgewise", lambda f=folder: Ours(f))
    if args.compress:
        chosen = json.loads((args.compress / "compress.json").read_text())["chosen"]
        models[f"edgewise compress: {chosen['what']}"] = ("edgewise", lambda f=Path(chosen["bundle"]): Ours(f))

    from edgewise.core.data import load_splits, select_split

    split = select_split(load_splits(args.data), "test", args.data)
    texts, truth = split.texts, split.labels
    loaded = {name: make() for name, (_, make) in models.items()}
    config = json.loads((teacher / "config.json").read_text())
    label2id = {v: int(k) for k, v in config["id2label"].items()}
    print(f"accuracy on {len(texts)} test texts, then {args.rounds} interleaved rounds x {args.runs} runs",
          file=sys.stderr)
    accuracies = {}
    for name, model in loaded.items():
        model_labels = label2id
        if isinstance(model, Ours):
            model_labels = {v: k for k, v in model.predictor.id2label.items()}
        accuracies[name] = accuracy(model, texts, truth, None, model_labels)
    feeds = {name: [model.encode([t]) for t in texts[:args.runs]] for name, model in loaded.items()}
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for name, model in loaded.items():  # warm-up
        for feed in feeds[name][:5]:
            model.run(feed)
    for round_ in range(args.rounds):
        for name, model in loaded.items():
            for feed in feeds[name]:
                started = time.perf_counter()
                model.run(feed)
                times[name].append((time.perf_counter() - started) * 1000)
        print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
    p50 = {name: statistics.median(values) for name, values in times.items()}
    reference = p50["teacher, PyTorch fp32"]
    optimum_int8 = p50.get(f"Optimum quantize {preset}")
    rows = []
    for name, (who, _) in models.items():
        size = loaded[name].file.stat().st_size
        rows.append({"model": name, "made_by": who, "p50_ms": round(p50[name], 3),
                     "speedup_vs_teacher": round(reference / p50[name], 3),
                     "latency_vs_optimum_int8": round(p50[name] / optimum_int8, 3) if optimum_int8 else None,
                     "accuracy": accuracies[name], "size_mb": round(size / 1e6, 2),
                     "tokens": int(next(iter(feeds[name][0].values())).shape[1])})
    from edgewise.core.env import fingerprint

    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "teacher": str(teacher),
              "data": args.data, "split": "test", "texts": len(texts), "batch_size": 1, "threads": 1,
              "seq_len": SEQ, "rounds": args.rounds, "runs_per_round": args.runs, "isa_preset": preset,
              "commands": log, "rows": rows, "environment": fingerprint()}
    (HERE / "results" / f"optimum_sidebyside_minilm_{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| model | made by | p50 | vs teacher PyTorch | vs Optimum INT8 | accuracy | file |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        vs = "—" if r["latency_vs_optimum_int8"] is None else f"{r['latency_vs_optimum_int8']:.2f}x its latency"
        print(f"| {r['model']} | {r['made_by']} | {r['p50_ms']:.2f} ms | {r['speedup_vs_teacher']:.2f}x faster | {vs} "
              f"| {r['accuracy']:.2%} | {r['size_mb']:.1f} MB |")
    for entry in log:
        if entry["exit_code"]:
            print(f"failed: {entry['command']}: {entry['error']}")


if __name__ == "__main__":
    main()
