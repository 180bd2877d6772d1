"""`python -m edgewise.runtime predict|bench`: argparse only, so the runtime needs no click or torch."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.predictor import BACKENDS


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    return values


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one `Error:` line and exit code 2, like the edgewise CLI."""

    def error(self, message):
        self.exit(2, f"Error: {message} (see '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    top = OneLineParser(prog="python -m edgewise.runtime",
                        description="Run an edgewise bundle with onnxruntime + tokenizers + numpy only.")
    sub = top.add_subparsers(dest="command", required=True)
    common = OneLineParser(add_help=False)
    common.add_argument("bundle", type=Path, help="bundle (or ONNX artifact) folder")
    common.add_argument("--backend", default="ort-cpu", choices=BACKENDS)
    common.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    common.add_argument("--no-verify", dest="verify", action="store_false",
                        help="run even if the files differ from the hashes in edgewise.json (edited on purpose)")

    predict = sub.add_parser("predict", parents=[common], help="classify texts")
    predict.add_argument("texts", nargs="+", help="texts to classify")
    predict.add_argument("--pair", action="append", default=None, help="second text (once per text)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.add_argument("--aggregation", choices=("simple", "first"), default="simple",
                         help="a token classifier's grouping, as transformers' pipeline: simple (tokens of one type "
                              "join) or first (each word takes its first sub-token's tag)")
    predict.add_argument("--stride", type=int, default=None,
                         help="a token classifier: read a text longer than the model's max_length in windows that "
                              "overlap by this many tokens (default: cut it)")

    embed = sub.add_parser("embed", parents=[common], help="sentence vectors of texts (an embedding bundle)")
    embed.add_argument("texts", nargs="*", help="texts to embed (or --file)")
    embed.add_argument("--file", type=Path, default=None, help="a text file, one text per line ('-': stdin)")
    embed.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    embed.add_argument("--json", action="store_true", help="print JSON: one object per text with its vector")
    embed.add_argument("--npy", type=Path, default=None, help="write the vectors to this .npy file ([texts, dim])")

    bench = sub.add_parser("bench", parents=[common], help="measure model latency")
    bench.add_argument("--batch-sizes", type=_positive_ints, default=[1], help="e.g. 1,8 (default 1)")
    bench.add_argument("--seq-len", default=None,
                       help="tokens per input: a number, or 'data' (the token lengths of the training texts the "
                            "bundle records, timed in turn); default: data when recorded, else the bundle's max")
    bench.add_argument("--warmup", type=int, default=10)
    bench.add_argument("--min-runs", type=int, default=50)
    bench.add_argument("--min-time", type=float, default=2.0, help="seconds of timed runs at least")
    bench.add_argument("--json", dest="json_path", default=None, help="write the report here ('-' for stdout)")

    job = sub.add_parser("job", help="run a measuring job written by `edgewise bench/evaluate --target` (internal)")
    job.add_argument("job_file", type=Path, help="the job (JSON)")
    job.add_argument("--out", type=Path, required=True, help="where the result (JSON) goes")

    sub.add_parser("env", help="print this device's fingerprint as JSON (versions, CPU, governor, memory, Jetson "
                               "power mode)")

    engine = sub.add_parser("build-engine", help="build the TensorRT engine of a jetson bundle with trtexec, then "
                                                 "time it on the tensorrt backend")
    engine.add_argument("bundle", type=Path, help="jetson bundle folder (edgewise bundle --target jetson)")
    engine.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                        help="allow FP16 kernels (default: as the bundle decided, on for an FP32 model)")
    engine.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                        help="INT8 from the model's Q/DQ scales (default: as the bundle decided, on for static INT8)")
    engine.add_argument("--trtexec", default=None, help="the trtexec binary (default: trtexec on PATH, else "
                                                        "/usr/src/tensorrt/bin/trtexec)")
    engine.add_argument("--no-bench", dest="bench", action="store_false", help="build only")
    engine.add_argument("--batch-sizes", type=_positive_ints, default=[1], help="batch sizes timed, e.g. 1,8")
    engine.add_argument("--no-verify", dest="verify", action="store_false",
                        help="build even if the files differ from the hashes in edgewise.json (edited on purpose)")
    return top


ECHO_CHARS = 80  # of each text echoed beside its label; --json has the whole text


def _shown(text: str, result: dict) -> str:
    """The text as the table echoes it: one line, at most ECHO_CHARS characters, and what the model saw."""
    line = " ".join(text.split())
    shown = line if len(line) <= ECHO_CHARS else line[:ECHO_CHARS - 1] + "…"
    if result.get("empty"):
        return "(empty text: the label is the model's guess for no words)"
    if result.get("truncated"):
        return f"{shown}  (cut to its first {result['tokens']} tokens)"
    return shown


def run(args) -> int:
    if args.command == "job":
        return _job(args.job_file, args.out)
    if args.command == "env":
        from edgewise.core.env import measurement_environment

        print(json.dumps(measurement_environment(device=True), indent=2))
        return 0
    if args.command == "build-engine":
        from edgewise.runtime.engine_build import run as build_engine

        return build_engine(args)
    if args.threads is not None and args.threads < 1:
        raise EdgewiseError(f"--threads must be >= 1, got {args.threads}")
    if args.command == "embed":
        return _embed(args)
    if args.command == "predict":
        from edgewise.runtime.predictor import Predictor

        if args.pair is not None and len(args.pair) != len(args.texts):
            raise EdgewiseError(f"give one --pair per text: {len(args.texts)} texts, {len(args.pair)} pairs")
        results = Predictor(args.bundle, backend=args.backend, threads=args.threads,
                            verify=args.verify).predict(args.texts, args.pair, aggregation=args.aggregation,
                                                        stride=args.stride)
        if args.json:
            print(json.dumps([{"text": t, **r} for t, r in zip(args.texts, results, strict=True)], indent=2))
        elif results and "entities" in results[0]:
            for text, result in zip(args.texts, results, strict=True):
                print(_shown(text, result) + ("" if result["entities"] else "\t(no entities)"))
                for entity in result["entities"]:
                    print(f"  {entity['type']}\t{entity['score']:.4f}\t{entity['start']}-{entity['end']}\t"
                          f"{entity['text']}")
        else:
            for text, result in zip(args.texts, results, strict=True):
                print(f"{result['label']}\t{result['score']:.4f}\t{_shown(text, result)}")
        return 0
    from edgewise.runtime.bench import bench, row_line

    report = bench(args.bundle, backend=args.backend, threads=args.threads, batch_sizes=args.batch_sizes,
                   seq_len=args.seq_len, warmup=args.warmup, min_runs=args.min_runs, min_time_s=args.min_time,
                   verify=args.verify)
    if args.json_path == "-":
        print(json.dumps(report, indent=2))
    else:
        lengths = report["config"].get("lengths")
        if lengths:
            print(f"timed at the real token lengths of the bundle's training texts (their 5th-100th percentiles, "
                  f"{min(lengths)}-{max(lengths)} tokens, in turn); --seq-len N times a fixed length")
        else:
            print(f"timed at a fixed {report['config']['seq_len']} tokens per text")
        for row in report["results"]:
            print(row_line(row))
        if args.json_path:
            path = Path(args.json_path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(report, indent=2) + "\n")
            except OSError as e:
                raise EdgewiseError(f"cannot write {path}: {e.strerror}; choose another --json path") from None
    return 0


def _embed(args) -> int:
    """`embed`: the vectors as JSON (--json), a .npy file (--npy) or, for people, a short line per text."""
    import numpy as np

    from edgewise.runtime.predictor import Predictor

    texts = list(args.texts)
    if args.file is not None:
        try:
            lines = (sys.stdin.read() if str(args.file) == "-" else args.file.read_text(encoding="utf-8")).splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise EdgewiseError(f"cannot read --file {args.file}: {e}; pass a UTF-8 text file, one text per "
                                "line") from None
        texts += [line for line in lines if line.strip()]
    if not texts:
        raise EdgewiseError("no texts to embed: give them as arguments or with --file (one per line)")
    if args.batch_size < 1:
        raise EdgewiseError(f"--batch-size must be >= 1, got {args.batch_size}")
    predictor = Predictor(args.bundle, backend=args.backend, threads=args.threads, verify=args.verify)
    vectors = predictor.embed(texts, batch_size=args.batch_size)
    if args.npy is not None:
        try:
            args.npy.parent.mkdir(parents=True, exist_ok=True)
            np.save(args.npy, vectors)
        except OSError as e:
            raise EdgewiseError(f"cannot write {args.npy}: {e.strerror}; choose another --npy path") from None
    counts = predictor.token_counts(texts)
    if args.json:
        print(json.dumps([{"text": t, **c, "embedding": [round(float(v), 7) for v in row]}
                          for t, c, row in zip(texts, counts, vectors, strict=True)]))
    elif args.npy is None:
        for text, count, row in zip(texts, counts, vectors, strict=True):
            head = " ".join(f"{v:+.4f}" for v in row[:4])
            print(f"[{head} ...] dim {len(row)} norm {float(np.linalg.norm(row)):.4f}\t{_shown(text, count)}")
    else:
        print(f"wrote {args.npy}: {len(texts)} vectors of {vectors.shape[1]} dimensions")
    return 0


def _job(job_file: Path, out: Path) -> int:
    from edgewise.runtime.job import run_job

    try:
        job = json.loads(job_file.read_text())
    except (OSError, ValueError) as e:
        raise EdgewiseError(f"cannot read the job {job_file}: {e}; write it with edgewise bench --target") from None
    if not isinstance(job, dict):
        raise EdgewiseError(f"the job {job_file} is not a JSON object; write it with edgewise bench --target")
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if job.get("stop_on_eof"):
        # The host keeps our stdin open while it waits: end-of-file means it stopped (Ctrl-C, a lost
        # connection), and the job must not go on using the device unseen.
        import os
        import threading

        def watch():
            # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read aborts the
            # interpreter at exit (it holds the buffer's lock).
            while os.read(0, 1 << 16):
                pass
            os._exit(130)

        threading.Thread(target=watch, daemon=True).start()
    limit = job.get("timeout_s")
    if isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0 and hasattr(signal, "SIGALRM"):
        def expired(signum, frame):  # the host gives up after this too
            raise EdgewiseError(f"the job ran past its timeout of {limit:g} s and was stopped; give it more time "
                                "with ?timeout=SECONDS in the target")

        signal.signal(signal.SIGALRM, expired)
        signal.alarm(max(1, math.ceil(limit)))
    with DeviceLock(job.get("lock"), log):
        result = run_job(job, log=log)
    if hasattr(signal, "SIGALRM"):
        signal.alarm(0)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(result) + "\n")
    tmp.replace(out)  # the host fetches `out` only when it is whole
    return 0


class DeviceLock:
    """Jobs on one device take turns (an flock on ``path``), so that two runs never time each other."""

    def __init__(self, path: str | None, log):
        self.path, self.log, self.handle = path, log, None

    def __enter__(self):
        if not self.path:
            return self
        try:
            import fcntl
        except ImportError:  # not a POSIX device: no turns to take
            return self
        self.handle = open(self.path, "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.log(f"waiting for another edgewise job on this device to finish ({self.path})")
            fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()  # closing releases the lock
        return False


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except EdgewiseError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
