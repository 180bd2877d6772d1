"""Score a classifier artifact on labelled data: accuracy, macro-F1, per-class figures, confusion."""

from __future__ import annotations

import time
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.data import SPLIT_ALIASES, encode_labels, load_splits, select_split
from edgewise.core.errors import EdgewiseError
from edgewise.core.stage import stage
from edgewise.evaluate.config import EvaluateConfig
from edgewise.runtime.runners import auto_backend, check_runs, open_runner
from edgewise.runtime.targets import check_device_inputs, parse_target

RESULT_SCHEMA_VERSION = 1


def evaluate(src: Path, dst: Path | None = None, config: EvaluateConfig = EvaluateConfig(), *,
             data: str | None = None, overwrite: bool = False, resume: bool = False) -> dict:
    """Predict every text of the chosen split with the model in ``src`` and score it.

    The model runs on ``config.backend`` through edgewise.runtime.open_runner, as bench and the
    device runtime run it: `hf` and `inc` artifacts in PyTorch (auto: torch-cuda for hf when torch
    sees a GPU, else torch, the CPU), `onnx`, `ort` and `bundle` artifacts in ONNX Runtime, a
    `tensorrt` artifact's engine with tensorrt.

    Args:
        src: the artifact folder.
        dst: must be None: evaluate writes no folder (the stage signature has it for every stage).
        config: split, batch size, max_length, backend (default: EvaluateConfig()).
        data: labelled data (any DATA spec); required.
        overwrite: unused (evaluate writes nothing); resume: refused (nothing to resume).

    Returns a JSON-ready dict: the artifact, data, split, backend, max_length, timing and the metrics
    of ``edgewise.core.metrics.classification_metrics``.

    Example:
        >>> result = evaluate(Path("runs/teacher"), config=EvaluateConfig(split="test"),
        ...                   data="builtin:bbc-news")  # doctest: +SKIP
        >>> result["accuracy"]  # doctest: +SKIP
    """
    from edgewise.core.metrics import classification_metrics
    from edgewise.core.progress import progress_bar

    if resume:
        raise EdgewiseError("evaluate has no interrupted run to resume; run it without --resume")
    if dst is not None:
        raise EdgewiseError(f"evaluate writes no folder, so it takes no output ({dst}); drop -o/--output")
    if not data:
        raise EdgewiseError("evaluate needs labelled data: pass DATA (a file, a folder of splits, hf:NAME or "
                            "builtin:bbc-news)")
    artifact = Artifact.load(Path(src), kind=stage("evaluate").inputs)
    target = parse_target(config.target)
    if target is not None:
        check_device_inputs(target, [artifact], [config.backend])
        backend = config.backend
    else:
        backend = _backend(config.backend, artifact.kind)
        check_runs(backend, artifact.kind)  # before the data is read
    id2label = artifact.classifier_labels()
    splits = load_splits(data, config.data)
    carved = None
    if config.split is not None and config.split.lower() in SPLIT_ALIASES["validation"]:
        from edgewise.core.lineage import carve_validation

        splits, carved = carve_validation(splits, data, artifact.path, config.data)
    split = select_split(splits, config.split, data)
    truth = encode_labels(split, id2label, config.data.label_column)
    start = time.perf_counter()
    if target is None:
        runner = open_runner(artifact.path, artifact.kind, backend, max_length=config.max_length,
                             allow_pickle=config.allow_pickle)
        with progress_bar(transient=True) as bar:
            task = bar.add_task(f"evaluating {split.name}", total=len(split), info="")
            logits = runner.logits(split.texts, split.pairs, batch_size=config.batch_size,
                                   progress=lambda n: bar.advance(task, n))
        predicted, backend, max_length, device = logits.argmax(-1).tolist(), runner.backend, runner.max_length, None
    else:
        predicted, backend, max_length, device = _predict_on(target, artifact, split, config)
    elapsed = time.perf_counter() - start
    result = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "artifact": str(artifact.path),
        "kind": artifact.kind,
        "backend": backend,
        "data": data,
        "split": split.name,
        "split_sha256": split.sha256(),
        "carved_validation": carved,
        "max_length": max_length,
        "runtime_s": round(elapsed, 2),
        **classification_metrics(truth, predicted, id2label),
    }
    if target is not None:
        result.update(target=str(target), environment=device)
    return result


def _predict_on(target, artifact: Artifact, split, config: EvaluateConfig):
    """The labels the device predicts (runtime.job without timing): (labels, backend, max_length, its environment)."""
    from edgewise.core.progress import console
    from edgewise.runtime.job import new_job

    job = new_job([artifact.path.name], split.texts, split.pairs, backends=[config.backend],
                  batch_sizes=[config.batch_size], time=False, eval_batch_size=config.batch_size,
                  max_length=config.max_length)
    result = target.run_job([artifact.path], job, log=lambda line: console().print(line, markup=False))
    if not result["slots"]:
        reasons = "; ".join(f"{s['backend']}: {s['reason']}" for s in result["skipped"]) or "no backend ran"
        raise EdgewiseError(f"{artifact.path} cannot run on {target.url} ({reasons}); choose another --backend")
    slot = result["slots"][0]
    return slot["predictions"], slot["backend"], slot["max_length"], result["environment"]


def _backend(wanted: str, kind: str) -> str:
    """``wanted``, or for auto the runtime's choice, except that an hf model runs on the GPU where torch sees one."""
    if wanted != "auto":
        return wanted
    backend = auto_backend(kind)
    if backend == "torch" and kind == "hf" and _torch_sees_gpu():
        return "torch-cuda"
    return backend


def _torch_sees_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False  # the torch runner then says it is missing
    return torch.cuda.is_available()
