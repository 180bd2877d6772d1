"""Score an artifact as its task scores: a classifier on labelled data (accuracy, macro-F1, per-class figures,
confusion), an embedding model on scored pairs (STS Spearman) and against a reference model's vectors."""

from __future__ import annotations

import time
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.stage import stage
from edgewise.evaluate.config import EvaluateConfig
from edgewise.runtime.runners import auto_backend, check_runs, open_runner
from edgewise.runtime.targets import check_device_inputs, parse_target

RESULT_SCHEMA_VERSION = 1


def evaluate(src: Path, dst: Path | None = None, config: EvaluateConfig = EvaluateConfig(), *,
             data: str | None = None, overwrite: bool = False, resume: bool = False) -> dict:
    """Run the model in ``src`` on the chosen split and score it as its task scores: a classifier's predicted
    labels against the data's (accuracy, macro-F1, per class, confusion), an embedding model's vectors against
    gold similarity scores (STS Spearman, when DATA is scored pairs) and against a reference model's vectors
    (cosine, top-10 neighbour agreement; the teacher of its lineage unless ``config.reference``).

    The model runs on ``config.backend`` through edgewise.runtime.open_runner, as bench and the
    device runtime run it: `hf` and `inc` artifacts in PyTorch (auto: torch-cuda for hf when torch
    sees a GPU, else torch, the CPU), `onnx`, `ort` and `bundle` artifacts in ONNX Runtime, a
    `tensorrt` artifact's engine with tensorrt.

    Args:
        src: the artifact folder.
        dst: must be None: evaluate writes no folder (the stage signature has it for every stage).
        config: split, batch size, max_length, backend, reference (default: EvaluateConfig()).
        data: labelled data, or an embedding model's texts / scored pairs (any DATA spec); required.
        overwrite: unused (evaluate writes nothing); resume: refused (nothing to resume).

    Returns a JSON-ready dict: the artifact, data, split, backend, max_length, timing and the task's metrics
    (a classifier's: ``edgewise.core.metrics.classification_metrics``).

    Example:
        >>> result = evaluate(Path("runs/teacher"), config=EvaluateConfig(split="test"),
        ...                   data="builtin:bbc-news")  # doctest: +SKIP
        >>> result["accuracy"]  # doctest: +SKIP
    """
    from edgewise.core.progress import progress_bar
    from edgewise.core.tasks import refuse_unless

    if resume:
        raise EdgewiseError("evaluate has no interrupted run to resume; run it without --resume")
    if dst is not None:
        raise EdgewiseError(f"evaluate writes no folder, so it takes no output ({dst}); drop -o/--output")
    if not data:
        raise EdgewiseError("evaluate needs data: pass DATA (a file, a folder of splits, hf:NAME or builtin:bbc-news; "
                            "for an embedding model, texts or scored pairs sentence1, sentence2, score)")
    artifact = Artifact.load(Path(src), kind=stage("evaluate").inputs)
    task = refuse_unless(artifact.task_for(config.task), ("classification", "embedding", "token-classification"),
                         str(artifact.path), "evaluate")
    target = parse_target(config.target)
    if target is not None and "expand" in task.pending:
        raise EdgewiseError(f"evaluate --target does not serve {task.name} models yet (a device job cannot send back "
                            "their per-word outputs); evaluate here, or on the device with python -m edgewise.runtime")
    if target is not None:
        check_device_inputs(target, [artifact], [config.backend])
        backend = config.backend
    else:
        backend = _backend(config.backend, artifact.kind)
        check_runs(backend, artifact.kind)  # before the data is read
    labels = task.labels_of(artifact)
    if config.retrieval and task.name != "embedding":
        raise EdgewiseError("--retrieval scores an embedding model's vectors; a classifier is scored on its labels: "
                            "drop --retrieval")
    reference = _reference(artifact, config) if config.reference or task.default_reference else None
    extra = {"retrieval": config.retrieval} if config.retrieval else {}
    eval_set, carved = task.eval_data(data, config.split, config.data, artifact.path, labels, require_truth=True,
                                      **extra)
    if eval_set.truth is None and reference is None:
        raise EdgewiseError(_nothing_to_score(artifact, data))
    start = time.perf_counter()
    if target is None:
        runner = open_runner(artifact.path, artifact.kind, backend, max_length=config.max_length,
                             allow_pickle=config.allow_pickle, task=task)
        with progress_bar(transient=True) as bar:
            step = bar.add_task(f"evaluating {eval_set.name}", total=len(eval_set), info="")
            outputs = runner.outputs(eval_set.texts, eval_set.pairs, batch_size=config.batch_size,
                                     progress=lambda n: bar.advance(step, n))
        backend, max_length, device = runner.backend, runner.max_length, None
    else:
        outputs, backend, max_length, device = _predict_on(target, artifact, task, eval_set, config)
    elapsed = time.perf_counter() - start
    result = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "artifact": str(artifact.path),
        "kind": artifact.kind,
        "backend": backend,
        "data": data,
        "split": eval_set.name,
        "split_sha256": eval_set.sha256(),
        "carved_validation": carved,
        "max_length": max_length,
        "runtime_s": round(elapsed, 2),
        "samples": len(eval_set),
    }
    scored = task.score(eval_set, outputs, labels, full=True) or {}
    result.update(task=task.record(), **scored)
    if reference is not None:
        result["reference"] = _compare_to(reference, task, eval_set, outputs, scored, labels, config)
    if target is not None:
        result.update(target=str(target), environment=device)
    return result


def _nothing_to_score(artifact: Artifact, data: str) -> str:
    return (f"{data} holds no scored pairs and no reference model was found to compare {artifact.path}'s vectors "
            "with; pass scored pairs (columns sentence1, sentence2, score) as DATA, or --reference MODEL (e.g. the "
            "teacher)")


def _reference(artifact: Artifact, config: EvaluateConfig) -> Path | None:
    """The model an embedding model is compared with: --reference, else the teacher its lineage names."""
    from edgewise.core.lineage import teacher_of

    if config.reference:
        reference = Artifact.load(Path(config.reference), kind=stage("evaluate").inputs)
        if reference.path == artifact.path:
            raise EdgewiseError(f"--reference {config.reference} is the evaluated model itself; name another model")
        return reference.path
    return teacher_of(artifact.path)


def _compare_to(reference: Path, task, eval_set, outputs, scored: dict, labels: dict, config: EvaluateConfig) -> dict:
    """The reference model's own figures on the same texts and this model's agreement with it (labels; cosine and
    neighbours); ``scored`` is this model's own score."""
    loaded = Artifact.load(reference, kind=stage("evaluate").inputs)
    # A plain encoder says nothing of its pooling: the model it taught records it (its own task).
    theirs_task = loaded.task_for(None, str(reference)) or task
    if theirs_task.name != task.name:
        raise EdgewiseError(f"the reference {reference} is not a {task.describe()} model; pass --reference with the "
                            "teacher the model came from")
    runner = open_runner(loaded.path, loaded.kind, _backend("auto", loaded.kind), allow_pickle=config.allow_pickle,
                         task=theirs_task)
    theirs = runner.outputs(eval_set.texts, eval_set.pairs, batch_size=config.batch_size)
    own = task.score(eval_set, theirs, labels) or {}
    found = {"path": str(loaded.path), "backend": runner.backend, **own,
             **task.agreement_on(eval_set, outputs, theirs)}
    gate = task.gate_of(own)
    if own.get(gate) and scored.get(gate) is not None:  # this model's gate figure as a share of the reference's
        found[f"{gate}_share"] = scored[gate] / own[gate]
    return found


def _predict_on(target, artifact: Artifact, task, eval_set, config: EvaluateConfig):
    """The outputs the device computes (runtime.job without timing): (outputs, backend, max_length, its
    environment). A classifier's outputs come back as label ids; an embedding model's as its vectors."""
    from edgewise.core.progress import console
    from edgewise.runtime.job import new_job

    job = new_job([artifact.path.name], eval_set.texts, eval_set.pairs, [task.record()], backends=[config.backend],
                  batch_sizes=[config.batch_size], time=False, eval_batch_size=config.batch_size,
                  max_length=config.max_length)
    result = target.run_job([artifact.path], job, log=lambda line: console().print(line, markup=False))
    if not result["slots"]:
        reasons = "; ".join(f"{s['backend']}: {s['reason']}" for s in result["skipped"]) or "no backend ran"
        raise EdgewiseError(f"{artifact.path} cannot run on {target.url} ({reasons}); choose another --backend")
    slot = result["slots"][0]
    outputs = task.expand(slot["predictions"], artifact.labels)
    return outputs, slot["backend"], slot["max_length"], result["environment"]


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
