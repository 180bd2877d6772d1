"""The stage contract in code: the registry of stages and the output protocol every stage follows.

Every stage is one function with one signature,

    stage(src, dst, config, *, data=None, overwrite=False, resume=False)

where ``src`` is the input (an artifact folder; a pretrained spec for finetune; a list of folders for
bench), ``dst`` the output folder (None for evaluate; optional for bench), ``config`` the stage's
frozen config and ``data`` a data spec (required or optional per stage). Artifact stages return the
Manifest they wrote; measuring stages (evaluate, bench) return their JSON-ready report.

A stage writes through ``StageOutput``: it checks ``dst`` before any heavy work, writes into a work
folder next to it, and on ``commit`` carries the tokenizer files forward, inherits the parent's
runtime settings (core.lengths.RUNTIME_SETTINGS) unless the stage set them, writes edgewise.json and
renames the folder into place. Anything raised inside ``with`` removes what was written (checkpoints
of a resumable stage stay for ``--resume``).

Adding a stage: a config (frozen dataclass of ``setting`` fields), a function with the signature
above that writes through ``StageOutput``, an entry in ``STAGES``, and tests; the CLI command and
its options are generated from the entry and the config.
"""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgewise.core.artifact import FILESYSTEM_ERRORS, Artifact, OutputDir, carry_forward
from edgewise.core.errors import INTERRUPTS, EdgewiseError, add_interrupt_note
from edgewise.core.lengths import RUNTIME_SETTINGS
from edgewise.core.manifest import MANIFEST_NAME, Manifest, now

RUN_FILE = "run.json"  # in the work folder of a resumable stage: what the interrupted run was started with
CHECKPOINTS = "checkpoints"

# --- resuming -----------------------------------------------------------------------------------


# Settings a resumed run may change: fewer (or more) epochs ends the training at that epoch, keeping the best
# checkpoint so far, so a user who stopped a long run keeps what was trained (`--resume --epochs 2`).
MAY_CHANGE_ON_RESUME = ("config.trainer.epochs",)


def check_resume(work: Path, run: dict) -> list[tuple[str, str, str]]:
    """A resumed run must use the same model, data and settings as the interrupted one, but for
    MAY_CHANGE_ON_RESUME; returns those that changed (path, then, now)."""
    try:
        previous = json.loads((work / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise EdgewiseError(
            f"{work} holds no readable record of the interrupted run; start over with --overwrite"
        ) from None
    found = differences(previous, run)
    allowed = [d for d in found if d[0] in MAY_CHANGE_ON_RESUME]
    found = [d for d in found if d[0] not in MAY_CHANGE_ON_RESUME]
    if found:
        changed = "; ".join(f"{path} ({was} then, {now} now)" for path, was, now in found[:6])
        changed += f"; and {len(found) - 6} more" if len(found) > 6 else ""
        raise EdgewiseError(
            f"--resume needs the same settings as the interrupted run, but these differ: {changed}; rerun with "
            "the original settings or start over with --overwrite"
        )
    return allowed


MISSING = object()


def differences(before, after, path: str = "") -> list[tuple[str, str, str]]:
    """Every setting that differs between two JSON-like records, as (dotted path, old, new) with the values
    shown short; nested mappings are compared key by key, so the path names the setting itself."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after), key=str):
            found += differences(before.get(key, MISSING), after.get(key, MISSING), f"{path}.{key}" if path else key)
        return found
    if before == after:
        return []

    def shown(value) -> str:
        text = "unset" if value is MISSING else json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    return [(path or "the record", shown(before), shown(after))]


def drop_incomplete_checkpoints(checkpoints: Path) -> list[str]:
    """Remove checkpoints a kill interrupted while saving (Trainer writes trainer_state.json last)."""
    dropped = []
    for folder in sorted(checkpoints.glob("checkpoint-*")):
        if not (folder / "trainer_state.json").is_file():
            shutil.rmtree(folder)
            dropped.append(folder.name)
    return dropped


def has_checkpoint(checkpoints: Path) -> bool:
    return checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))


# --- the output protocol ------------------------------------------------------------------------


class StageOutput:
    """Where a stage writes, and how it finishes (see the module docstring).

    Args:
        stage: the stage's name, recorded in the manifest.
        dst: the output folder; refused when it exists unless ``overwrite``, and when it is (or is
            nested with) an input.
        parent: the artifact the output derives from: the manifest's parent, the source of the
            tokenizer files and runtime settings carried forward, and an input ``dst`` must differ from.
        sources: further inputs ``dst`` must differ from (a pretrained folder, bench's artifacts).
        derived: the output is the parent transformed (export, quantize, bundle): its runtime settings
            (and, with ``carry``, its tokenizer files and config.json) come forward. Training stages
            write their own (False).
        carry: copy the parent's tokenizer files and config.json (a bundle ships tokenizer.json alone).
        resumable / resume / run: checkpoints under ``checkpoints`` survive a failure; ``resume``
            continues from them when ``run`` (the settings) equals the interrupted run's.
        active: False on the non-zero ranks of a multi-process run, which never touch the folder.
        marker: the file that shows an existing ``dst`` was written by edgewise.

    Example:
        >>> out = StageOutput("quantize", dst, parent=artifact)  # doctest: +SKIP
        >>> with out:
        ...     write_model(out.artifact / "model.onnx")
        ...     manifest = out.commit(kind="onnx", config=config, metrics=metrics)
    """

    def __init__(self, stage: str, dst: Path, *, parent: Artifact | None = None, sources: tuple = (),
                 derived: bool = True, carry: bool = True, overwrite: bool = False, resumable: bool = False,
                 resume: bool = False, run: dict | None = None, active: bool = True, marker: str = MANIFEST_NAME):
        self.stage = stage
        self.started = now()
        self.parent = parent
        self.derived = derived
        self.carry = carry
        self.resumable = resumable
        self.resume = resume and active
        self.run = run
        self.active = active
        self.committed = False
        self.dropped: list[str] = []  # incomplete checkpoints removed when resuming
        self.manifest: Manifest | None = None
        if resume and not resumable:
            raise EdgewiseError(f"{stage} cannot resume an interrupted run; run it again without --resume")
        inputs = tuple(Path(s) for s in sources) + ((parent.path,) if parent is not None else ())
        self.dir = OutputDir.prepare(Path(dst), sources=inputs, overwrite=overwrite,
                                     resumable=resumable and active, resume=self.resume, marker=marker)

    @property
    def dst(self) -> Path:
        return self.dir.dst

    @property
    def work(self) -> Path:
        return self.dir.work

    @property
    def artifact(self) -> Path:
        """The folder being written; renamed to ``dst`` by ``commit``."""
        return self.dir.artifact

    @property
    def checkpoints(self) -> Path:
        return self.dir.work / CHECKPOINTS

    def __enter__(self) -> StageOutput:
        if self.active:
            if self.resume:
                from edgewise.core.progress import console

                for path, was, now in check_resume(self.work, self.run or {}):
                    console().print(f"resuming with {path.removeprefix('config.')} {now} (the interrupted run had "
                                    f"{was}): training ends there, with the best checkpoint so far")
                self.dropped = drop_incomplete_checkpoints(self.checkpoints)
            self.dir.begin(resume=self.resume)
            if self.resumable:
                (self.work / RUN_FILE).write_text(json.dumps(self.run or {}, indent=2))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and self.active and not self.committed:
            kept = self.resumable and has_checkpoint(self.checkpoints)
            earlier = self.dst.is_dir() and (self.dst / MANIFEST_NAME).is_file()  # what --overwrite would replace
            self.dir.abort(keep_checkpoints=kept)
            if issubclass(exc_type, INTERRUPTS):
                add_interrupt_note(exc, f"the checkpoints so far are kept in {self.work}: run the same command "
                                        "with --resume to continue from the last one" if kept else
                                        f"{self.dst} was not written (nothing half-written is left"
                                        + ("; the earlier one there is kept as it was)" if earlier else ")"))
            elif issubclass(exc_type, OSError) and exc.errno in FILESYSTEM_ERRORS:
                raise EdgewiseError(
                    f"{exc.strerror} ({exc.filename or self.dst}) while writing {self.dst}: nothing was written"
                    + ("; the checkpoints so far are kept for --resume" if kept else "")
                    + f"; {FILESYSTEM_ERRORS[exc.errno]}"
                ) from None
        elif exc_type is None and self.active and not self.committed:
            self.dir.abort()
            raise RuntimeError(f"stage {self.stage} left its output without committing it")
        return False

    def carry_forward(self) -> list[str]:
        """Copy the parent's tokenizer files and config.json into the output (what the stage wrote stays)."""
        if self.parent is None or not self.derived or not self.carry:
            return []
        return carry_forward(self.parent.path, self.artifact)

    def inherited(self) -> dict:
        """The parent's runtime settings (working length, position limit, pad id, token lengths)."""
        if self.parent is None or not self.derived or self.parent.manifest is None:
            return {}
        recorded = self.parent.manifest.data or {}
        return {k: recorded[k] for k in RUNTIME_SETTINGS if k in recorded}

    def seal(self, *, kind: str, config: Any, metrics: dict | None = None, data: dict | None = None,
             labels: dict | None = None, source: dict | None = None, history: list | None = None,
             expected_files: list | None = None, task=None) -> Manifest:
        """Carry forward, write the task's own files and edgewise.json, the last file (the output is not in place
        yet: a stage that checks its sealed output before publishing it calls ``seal``, the check, then
        ``publish``).

        ``data`` is merged over the inherited runtime settings; ``labels`` default to the parent's;
        ``source`` defaults to a description of a parent edgewise did not write; ``task`` (core.tasks.Task)
        to the parent's.
        """
        self.carry_forward()
        parent_manifest = self.parent.manifest if self.parent is not None else None
        if source is None and self.parent is not None and parent_manifest is None:
            source = {"model": self.parent.describe()}
        if task is None and self.parent is not None:
            task = self.parent.task
        settings = {**self.inherited(), **(data or {})}
        if task is not None and kind != "bundle":  # a bundle writes what its model file needs itself
            task.write_files(self.artifact, settings.get("max_length"))
        self.manifest = Manifest.write(
            self.artifact, kind=kind, stage=self.stage, config=config,
            labels=labels if labels is not None else (self.parent.labels if self.parent is not None else {}),
            started_at=self.started, parent=parent_manifest, source=source,
            data=settings, metrics=metrics, history=history,
            expected_files=expected_files, task=task.record() if task is not None else None,
        )
        return self.manifest

    def commit(self, **manifest: Any) -> Manifest:
        """``seal`` (same arguments) and ``publish``: the usual end of a stage."""
        self.seal(**manifest)
        self.publish()
        return self.manifest

    def publish(self) -> Path:
        """Put the output in place (after ``seal``; alone for bench's report folder, which has no manifest)."""
        self.dir.commit()
        self.committed = True
        if self.manifest is not None:
            self.manifest.path = self.dst
        return self.dst


# --- the registry -------------------------------------------------------------------------------


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads and writes, its config and function (as import paths, so that the
    registry loads nothing heavy), and how the CLI offers it."""

    name: str
    config: str  # "module:ConfigClass"
    function: str  # "module:function" with the stage signature
    inputs: tuple[str, ...]  # artifact kinds read; "pretrained" is a builtin:NAME, folder or Hub id
    outputs: tuple[str, ...]  # artifact kinds written; "report" for a report folder; () for none
    data: str = "none"  # "required" (a DATA argument), "optional" (--data) or "none"
    resumable: bool = False
    many: bool = False  # several inputs (bench)
    output_required: bool = True  # -o/--output is required (bench: optional; evaluate: none)
    argument: str = "SRC"  # the input's name in the CLI usage line
    group: str | None = None  # the command group the CLI puts the command in ("bench")
    command: str | None = None  # the command's name (default: the stage's)
    hidden: tuple[str, ...] = ()  # config fields (dotted for nested ones) the CLI does not offer
    summary: str | None = None  # "module:function": result -> the JSON-ready dict --json prints
    render: str | None = None  # "module:function": prints the result for people
    help: str = ""
    data_help: str = ""  # the help of --data (data="optional")
    output_help: str = ""  # the help of -o/--output

    @property
    def config_class(self) -> type:
        return _resolve(self.config)

    @property
    def run(self):
        return _resolve(self.function)

    def summarize(self, result) -> Any:
        return _resolve(self.summary)(result) if self.summary else result

    def show(self, result) -> None:
        if self.render:
            _resolve(self.render)(result)


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("finetune", "edgewise.finetune.config:FinetuneConfig", "edgewise.finetune.stage:finetune",
          inputs=("pretrained",), outputs=("hf",), data="required", resumable=True, argument="PRETRAINED",
          output_help="Folder to write the fine-tuned model to.",
          help="Fine-tune PRETRAINED (builtin:all-minilm-l6-v2, a folder or a Hub id) on DATA into a teacher.\n\n"
               "DATA is a csv / tsv / jsonl / json / parquet file, a folder of train / validation / test files, a "
               "datasets.save_to_disk folder, hf:NAME[:CONFIG] or builtin:bbc-news."),
    Stage("distill", "edgewise.distill.config:DistillConfig", "edgewise.distill.stage:distill",
          inputs=("hf",), outputs=("hf", "onnx"), data="required", resumable=True, argument="TEACHER",
          output_help="Folder to write the student to.",
          help="Distil the TEACHER (a fine-tuned classifier or a sentence-embedding model) into a smaller student "
               "trained on DATA (a classifier's labelled texts; any texts for an embedding model).\n\n"
               "The student is the teacher's own layers (--layers N or --layer-map 0,2,5), a given encoder "
               "(--student), a fresh config (--student-config layers=4,hidden=256,heads=4,ffn=1024) or, for an "
               "embedding teacher, a static table of token vectors (--static, written as ONNX)."),
    Stage("evaluate", "edgewise.evaluate.config:EvaluateConfig", "edgewise.evaluate.stage:evaluate",
          inputs=("hf", "inc", "onnx", "ort", "bundle", "tensorrt"), outputs=(), data="required",
          output_required=False, argument="MODEL",
          render="edgewise.evaluate.report:render",
          help="Score MODEL on DATA as its task scores: a classifier's accuracy, macro-F1, per-class figures and "
               "confusion matrix on labelled texts; an embedding model's STS Spearman on scored pairs (columns "
               "sentence1, sentence2, score) and its cosine and top-10 neighbour agreement with the teacher "
               "(--reference, default: the teacher its lineage names)."),
    Stage("export", "edgewise.export.config:ExportConfig", "edgewise.export.stage:export",
          inputs=("hf", "onnx"), outputs=("onnx", "ort", "tensorrt"), data="optional",
          data_help="Data whose texts drive the parity check (any DATA spec).",
          output_help="Folder to write the exported model to.",
          hidden=("data.validation_fraction", "data.seed"),
          help="Export SRC: an hf model to ONNX (--format onnx), an ONNX model to ORT or TensorRT.\n\n"
               "Every export is checked against its source (max |output diff| and label agreement, or an embedding "
               "model's cosine, in the manifest); a miss beyond --atol is an error unless --no-verify. An embedding "
               "model's pooling and normalisation are computed inside the graph (output sentence_embedding). "
               "Without TensorRT or a CUDA GPU, --format tensorrt writes model.onnx and build_engine.sh (the "
               "trtexec command) for the device."),
    Stage("bundle", "edgewise.export.config:BundleConfig", "edgewise.export.bundle:bundle",
          inputs=("onnx", "ort"), outputs=("bundle",), output_help="Deploy folder to write.",
          help="Write a deploy folder from the ONNX / ORT artifact SRC, runnable with `python -m edgewise.runtime`."),
    Stage("quantize", "edgewise.quantize.config:QuantizeConfig", "edgewise.quantize.stage:quantize",
          inputs=("onnx", "hf"), outputs=("onnx", "inc"), data="optional",
          data_help="Data whose validation / test splits measure quality (any DATA spec; labelled for a "
                    "classifier). Default: the data the model was trained on, if recorded.",
          output_help="Folder to write the quantized model to.",
          summary="edgewise.quantize.report:summary", render="edgewise.quantize.report:render",
          help="Quantize SRC: an ONNX model to INT8 (dynamic / static QDQ) or FP16, an hf model with INC.\n\n"
               "Quality (accuracy; an embedding model's STS Spearman with --pairs) and agreement with the source "
               "(labels; cosine and top-10 neighbours) are measured on --data (default: the training data recorded "
               "in the lineage). With --max-accuracy-drop, candidates are compared and the fastest within the drop "
               "is kept; the table of every candidate is printed and stored in the manifest."),
    Stage("prune", "edgewise.prune.config:PruneConfig", "edgewise.prune.stage:prune",
          inputs=("hf",), outputs=("hf",), data="required",
          output_help="Folder to write the pruned model to.",
          help="Prune the fine-tuned classifier or sentence-embedding model SRC: remove the attention heads and FFN "
               "neurons that matter least on DATA's texts (Fisher importance, Kwon et al. 2022), physically, to "
               "--flops or --heads / --ffn.\n\n"
               "DATA gives the sample texts (labels used when present; an embedding model's loss is an in-batch "
               "contrastive one against its unpruned vectors) and the validation / test splits quality is measured "
               "on before and after."),
    Stage("bench", "edgewise.bench.config:BenchConfig", "edgewise.bench.stage:bench",
          inputs=("hf", "inc", "onnx", "ort", "bundle", "tensorrt"), outputs=("report",), data="optional",
          many=True, output_required=False, argument="ARTIFACTS", group="bench", command="run",
          data_help="Data for quality (labelled for a classifier; texts for an embedding model's agreement with "
                    "the reference) and --seq-len data; any DATA spec.",
          output_help="Folder for report.json, report.md, pareto.png and latency_cdf.png.",
          hidden=("data.validation_fraction", "data.seed"), render="edgewise.bench.report:render",
          help="Time ARTIFACTS (the first is the reference) on every backend and batch size, interleaved in rounds, "
               "with quality from the same run when --data (or --pairs) is given: accuracy and label agreement; an "
               "embedding model's STS Spearman (--pairs), cosine and top-10 neighbour agreement."),
)}


def stage(name: str) -> Stage:
    """The registered stage ``name``."""
    try:
        return STAGES[name]
    except KeyError:
        raise EdgewiseError(f"unknown stage {name!r}; the stages are {', '.join(STAGES)}") from None
