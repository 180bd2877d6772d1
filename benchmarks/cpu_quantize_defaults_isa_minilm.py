"""Default INT8 settings per CPU class, measured on the fine-tuned MiniLM teacher (BBC News).

Issue: defaults tuned on an AVX-512 VNNI machine must hold on AVX2-only CPUs too. This script runs
the `edgewise` commands a user would and measures, in ONE `edgewise bench` run (1 thread, batch 1,
128 tokens, 7 interleaved rounds, accuracy on the BBC test split):

  fp32            the ONNX export
  default         `quantize` with no flags: this machine's default
  vnni            --per-tensor --no-reduce-range   (the VNNI / ARM default, before and after)
  x86-before      --per-tensor --reduce-range      (the old default of x86 without VNNI)
  x86-after       --per-channel --reduce-range     (the new default of x86 without VNNI)
  vnni-pc         --per-channel --no-reduce-range  (per-channel with full 8 bits, for comparison)

The accuracy of a 7-bit-weight model does not depend on the CPU that runs it (the products cannot
saturate), so the x86 rows' accuracy holds for AVX2 machines; their latency here is a VNNI
machine's. Then INC (stage `inc`): `quantize --method inc` builds the oneDNN INT8 package here, and
a child process runs the package, INC's reference graph and the FP32 PyTorch teacher on the test
split, with oneDNN as it is and capped to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN choose the
kernels of a CPU without VNNI; capped: 8 texts, its kernels are ~900x slower; uncapped: 64). Stage
`inc-tiny` does the same for the test suite's tiny teacher (fine-tuned here), under no cap and the
caps AVX2, AVX512_CORE (AVX-512 without VNNI) and AVX512_CORE_VNNI.

    python benchmarks/cpu_quantize_defaults_isa_minilm.py [--teacher DIR] [--onnx DIR] [--workdir DIR]
        [--stages quantize,bench,inc,inc-tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cpu_quantize_ort_minilm import edgewise, manifest  # the sibling suite's `edgewise` runner

HERE = Path(__file__).resolve().parent
DATA = "builtin:bbc-news"
VARIANTS = {
    "default": [],
    "vnni": ["--per-tensor", "--no-reduce-range"],
    "x86-before": ["--per-tensor", "--reduce-range"],
    "x86-after": ["--per-channel", "--reduce-range"],
    "vnni-pc": ["--per-channel", "--no-reduce-range"],
}


def stage_quantize(onnx: Path, work: Path) -> dict:
    out = {}
    for name, flags in VARIANTS.items():
        print(f"-- quantize {name}", flush=True)
        wall = edgewise("quantize", onnx, "-o", work / name, "--overwrite", *flags)
        m = manifest(work / name)
        test = m["metrics"]["accuracy"]["test"]
        out[name] = {"flags": flags, "wall_s": round(wall, 1), "int8": m["metrics"]["quantization"]["int8"],
                     "test_accuracy": test["quantized"]["accuracy"], "test_macro_f1": test["quantized"]["macro_f1"],
                     "source_accuracy": test["source"]["accuracy"], "drop_points": test["drop_points"],
                     "agreement": test["quantized"]["agreement_with_source"],
                     "warnings": m["metrics"].get("warnings", [])}
    return out


def stage_bench(onnx: Path, work: Path) -> dict:
    report_dir = work / "bench"
    edgewise("bench", onnx, *(work / n for n in VARIANTS), "--data", DATA, "--split", "test", "--threads", 1,
             "--batch-sizes", 1, "--seq-len", 128, "--rounds", 7, "-o", report_dir, "--overwrite")
    report = json.loads((report_dir / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["results"] if r["status"] == "ok"}
    fp32 = rows[onnx.name]["latency_ms"]["p50"]
    return {name: {"p50_ms": row["latency_ms"]["p50"], "p50_ci95": row["latency_ms"]["p50_ci95"],
                   "speedup_vs_fp32": fp32 / row["latency_ms"]["p50"], "accuracy": row.get("accuracy"),
                   "macro_f1": row.get("macro_f1"), "label_agreement": row.get("label_agreement")}
            for name, row in rows.items()}


def probe_inc(package_dir: Path, teacher: Path, data: str, limit: int, max_length: int) -> None:
    """Child process: logits of the INC package, of INC's reference graph and of the FP32 teacher on the
    first ``limit`` test texts of ``data``, printed as one JSON line."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgewise.core.data import encode_labels, load_splits
    from edgewise.runtime.inc import quiet_inc

    torch.set_num_threads(1)
    split = load_splits(data)["test"]
    split = split.subset(range(min(limit, len(split))), "test")
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    fp32 = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    truth = np.array(encode_labels(split, {int(k): v for k, v in fp32.config.id2label.items()}))
    names = json.loads((package_dir / "inc_model.json").read_text())["inputs"]
    package = torch._inductor.aoti_load_package(str(package_dir / "model.pt2"))
    with quiet_inc():
        from neural_compressor.torch.quantization import load

        reference = load(str(package_dir))
    logits = {"package": [], "reference": [], "fp32": []}
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(split), 8):
            enc = tokenizer(split.texts[start:start + 8], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            inputs = [enc[n] for n in names]
            logits["package"].append(package(*inputs)[0].numpy())
            logits["reference"].append(reference(*inputs)[0].numpy())
            logits["fp32"].append(fp32(**enc).logits.numpy())
    out = {k: np.concatenate(v) for k, v in logits.items()}
    fp32_out = out["fp32"]
    print(json.dumps({
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)"), "texts": len(split),
        "wall_s": round(time.perf_counter() - started, 1), "fp32_logit_scale": float(np.abs(fp32_out).max()),
        "fp32_accuracy": float((fp32_out.argmax(-1) == truth).mean()),
        **{f"{name}_{what}": value for name in ("package", "reference") for what, value in (
            ("accuracy", float((out[name].argmax(-1) == truth).mean())),
            ("agreement", float((out[name].argmax(-1) == fp32_out.argmax(-1)).mean())),
            ("max_abs_logit_diff", float(np.abs(out[name] - fp32_out).max())))},
    }))


def probe_under_caps(package_dir: Path, teacher: Path, data: str, max_length: int, runs: dict) -> dict:
    """``probe_inc`` in a child process per oneDNN cap: ``runs`` maps a label to (cap or None, texts)."""
    out = {}
    for label, (cap, texts) in runs.items():
        env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
        if cap:
            env["ONEDNN_MAX_CPU_ISA"] = cap
        print(f"-- {package_dir.name}: package, reference graph and FP32 on {texts} test texts, oneDNN {label}",
              flush=True)
        done = subprocess.run([sys.executable, __file__, "--probe-inc", str(package_dir), "--teacher", str(teacher),
                               "--probe-data", data, "--limit", str(texts), "--max-length", str(max_length)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"INC probe ({label}) failed:\n{done.stderr[-3000:]}")
        out[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# oneDNN capped to AVX2 runs the BBC teacher's INT8 package with very slow kernels (452 s for 8 texts,
# against 6.1 s for 64 uncapped, the three models included; a first try on the 213 test texts was
# stopped after 23 minutes), so the capped run scores the first 8 test texts and the uncapped one 64.
INC_PROBE_TEXTS = {"native": (None, 64), "onednn-avx2": ("AVX2", 8)}


def stage_inc(teacher: Path, work: Path) -> dict:
    if not (work / "inc-static" / "model.pt2").is_file():
        print("-- quantize --method inc (static)", flush=True)
        edgewise("quantize", teacher, "-o", work / "inc-static", "--method", "inc", "--inc-approach", "static",
                 "--calibration", DATA, "--samples", 300, "--overwrite")
    return probe_under_caps(work / "inc-static", teacher, DATA, 128, INC_PROBE_TEXTS)


def stage_inc_tiny(work: Path) -> dict:
    """The same on the tiny teacher of the test suite (2 layers, width 32), on every oneDNN cap that matters."""
    sys.path.insert(0, str(HERE.parent))
    from tests.conftest import TINY_FINETUNE, build_encoder, make_texts, write_csv

    root = work / "tiny"
    if not (root / "inc-static" / "model.pt2").is_file():
        root.mkdir(parents=True, exist_ok=True)
        build_encoder(root / "encoder")
        (root / "data").mkdir(exist_ok=True)
        for split, (rows, seed) in {"train": (240, 1), "validation": (60, 2), "test": (60, 3)}.items():
            write_csv(root / "data" / f"{split}.csv", make_texts(rows, seed=seed))
        flags = {"epochs": "--epochs", "learning_rate": "--lr", "batch_size": "--batch-size",
                 "max_length": "--max-length", "warmup_ratio": "--warmup-ratio"}
        edgewise("finetune", root / "encoder", root / "data", "-o", root / "teacher", "--overwrite",
                 *[v for key, flag in flags.items() for v in (flag, TINY_FINETUNE[key])])
        edgewise("quantize", root / "teacher", "-o", root / "inc-static", "--method", "inc", "--inc-approach",
                 "static", "--calibration", root / "data", "--samples", 32, "--overwrite")
    caps = {"native": None, "AVX2": "AVX2", "AVX512_CORE": "AVX512_CORE", "AVX512_CORE_VNNI": "AVX512_CORE_VNNI"}
    return probe_under_caps(root / "inc-static", root / "teacher", str(root / "data"), TINY_FINETUNE["max_length"],
                            {label: (cap, 60) for label, cap in caps.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=Path("/tmp/edgewise-bench-finetune/teacher"))
    parser.add_argument("--onnx", type=Path, default=Path("/tmp/edgewise-bench-export/teacher-onnx"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-defaults"))
    parser.add_argument("--stages", default="quantize,bench,inc,inc-tiny")
    parser.add_argument("--probe-inc", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-data", default=DATA, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--max-length", type=int, default=128, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_inc:
        probe_inc(args.probe_inc, args.teacher, args.probe_data, args.limit, args.max_length)
        return
    sys.path.insert(0, str(HERE.parent))
    from edgewise.core.env import fingerprint

    args.workdir.mkdir(parents=True, exist_ok=True)
    results_file = HERE / "results" / "quantize_defaults_isa_minilm.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results.update({"date": time.strftime("%Y-%m-%d"), "environment": fingerprint()})
    for stage in args.stages.split(","):
        print(f"== {stage}", flush=True)
        results[stage] = {"quantize": lambda: stage_quantize(args.onnx, args.workdir),
                          "bench": lambda: stage_bench(args.onnx, args.workdir),
                          "inc": lambda: stage_inc(args.teacher, args.workdir),
                          "inc-tiny": lambda: stage_inc_tiny(args.workdir)}[stage]()
        print(json.dumps(results[stage], indent=2)[:4000], flush=True)
        results_file.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
