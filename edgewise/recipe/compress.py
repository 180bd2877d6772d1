"""`edgewise compress TEACHER DATA -o OUT`: the main job in one command.

From a fine-tuned teacher, search the ladder of compressed candidates, measure every one on this
machine and keep the fastest within ``max_accuracy_drop`` points of the teacher (or the most
accurate within ``latency_budget``), chosen on the VALIDATION split; the chosen one is bundled and
reported on the test split.

The search is a recipe that grows phase by phase (the recipe runner's cache skips what is done, so
a rerun into the same folder is cheap), cheap phases first:

1. quantize: the teacher exported (with and without ONNX Runtime's transformer optimiser) and
   quantized (dynamic and static INT8). Minutes.
2. prune: the teacher pruned to ``teacher_flops`` (heads, FFN neurons, vocabulary), exported,
   quantized. Minutes, no training.
3. distill N layers (one phase per depth): a student of the teacher's own layers, and that student
   pruned to ``student_flops``, each exported and quantized. Training: the expensive phases.

After each phase every candidate so far and the teacher (PyTorch fp32, the reference) are timed in
ONE interleaved bench (so the last bench is the ladder of all candidates); the search stops as soon
as the goal is met (``min_speedup`` or ``latency_budget``), or when ``time_budget`` is spent (checked
before each family of candidates starts; a started family finishes). A candidate that fails is
recorded with its reason and the search goes on without it.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgewise.core.config import setting
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import TaskConfig

QUANT_METHODS = ("dynamic", "static")
BENCH_SETTABLE = ("warmup", "min_runs", "min_time_s", "accuracy_samples", "eval_batch_size")
RESULT_FILE = "compress.json"
SEARCH_REPORT = "report"  # the ladder of every candidate (validation split)
TEST_REPORT = "report-test"  # the teacher and the chosen bundle (test split)
BEST = "best"  # the id of the bundle step


@dataclass(frozen=True)
class CompressConfig:
    """The goal and the ladder of `edgewise compress`.

    Example:
        >>> CompressConfig(max_accuracy_drop=1).goal
        'fastest within 1 accuracy point(s) of the teacher'
    """

    SCHEMA_VERSION = 1

    max_accuracy_drop: float | None = setting(
        None, "Keep the fastest candidate whose validation quality is at most this many points below the "
              "teacher's (default 1 when no --latency-budget is given; with one, a bar the budget's pick must also "
              "clear for the search to stop early): accuracy points for a classifier; for an embedding model, points "
              "of the share of the teacher's STS Spearman (--pairs), else of its top-10 neighbours (2: keep 98 %).",
        aliases=("--max-quality-drop",))
    latency_budget: str | None = setting(
        None, "Keep the most accurate candidate whose p50 latency here is within this: milliseconds ('3ms') or a "
              "share of the teacher's p50 in PyTorch ('25%').")
    min_speedup: float | None = setting(
        None, "With --max-accuracy-drop: stop once a candidate within the drop is this many times faster than the "
              "teacher in PyTorch (default: search the whole ladder for the fastest).")
    threads: int = setting(1, "Threads of every timing (pinned, as on the target).")
    seq_len: str = setting("data", "Tokens per input when timing: 'data' (the validation texts at their real "
                                   "lengths, cut at the model's max length) or a number such as 128.")
    batch_size: int = setting(1, "Batch size the latency goal is measured at.")
    rounds: int = setting(5, "Interleaved timing rounds of each bench.")
    time_budget: str | None = setting(None, "Stop starting new candidates after this long, e.g. 45m, 2h or 900s "
                                            "(checked before each family of candidates; a started one finishes; "
                                            "the first, the teacher's, always runs).")
    depths: tuple[int, ...] = setting((3, 2), "Student depths (layers of the teacher's own) tried by distillation, "
                                              "in this order; empty: no distillation.", sep=",")
    teacher_flops: tuple[float, ...] = setting((0.5,), "FLOPs shares the teacher is pruned to (phase 2); empty: "
                                                       "no pruned teacher.", sep=",")
    student_flops: tuple[float, ...] = setting((0.7,), "FLOPs shares each student is also pruned to; empty: "
                                                       "unpruned students only.", sep=",")
    vocab: bool = setting(True, "Pruning also drops the tokens the training texts never produce (smaller files).")
    quantize: tuple[str, ...] = setting(QUANT_METHODS, "INT8 methods tried on every exported candidate.", sep=",")
    optimizer: bool = setting(True, "Also try ONNX Runtime's transformer optimiser on the teacher (dynamic INT8); "
                                    "later candidates use it only if it was faster there.")
    distill_epochs: float | None = setting(None, "Epochs of each distillation (default: distill's own).")
    options: tuple[str, ...] = setting((), "Options of the generated stages, STAGE.OPTION=VALUE (repeat the "
                                           "flag), e.g. distill.temperature=2 or prune.samples=512.",
                                       flag="--set", multiple=True)
    pairs: str | None = setting(None, "Embedding models: scored sentence pairs (sentence1, sentence2, score; e.g. "
                                      "STS-B, with validation and test splits) whose Spearman gates the choice.")
    static: bool = setting(True, "Embedding models: also try the static tier (a table of token vectors distilled "
                                 "from the teacher, no attention: edgewise distill --static); chosen only when it "
                                 "meets the goal.", flag="--static/--no-static")
    task: TaskConfig = field(default_factory=TaskConfig)

    def __post_init__(self) -> None:
        for name in ("depths", "teacher_flops", "student_flops", "quantize", "options"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))  # in order, once each
        problems = []
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            problems.append(f"max_accuracy_drop must be 0-100 points, got {self.max_accuracy_drop}")
        if self.latency_budget is not None:
            parse_latency_budget(self.latency_budget)
        if self.min_speedup is not None and self.min_speedup <= 0:
            problems.append(f"min_speedup must be > 0, got {self.min_speedup}")
        if self.min_speedup is not None and self.latency_budget is not None:
            problems.append("give --min-speedup or --latency-budget, not both (the budget is the latency goal)")
        for name in ("threads", "batch_size", "rounds"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len != "data" and not (str(self.seq_len).isdigit() and int(self.seq_len) >= 2):
            problems.append(f"seq_len must be 'data' or a number >= 2, got {self.seq_len!r}")
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        if any(d < 1 for d in self.depths):
            problems.append(f"depths must be >= 1 layer, got {list(self.depths)}")
        if any(not 0 < f < 1 for f in (*self.teacher_flops, *self.student_flops)):
            problems.append(f"FLOPs shares must be between 0 and 1 (e.g. 0.5), got "
                            f"{list(self.teacher_flops) + list(self.student_flops)}")
        unknown = [m for m in self.quantize if m not in QUANT_METHODS]
        if unknown:
            problems.append(f"quantize method(s) {', '.join(unknown)} unknown; choose from {', '.join(QUANT_METHODS)}")
        if self.distill_epochs is not None and self.distill_epochs <= 0:
            problems.append(f"distill_epochs must be > 0, got {self.distill_epochs}")
        for option in self.options:
            stage_options(option)
        if problems:
            raise EdgewiseError("; ".join(problems))

    @property
    def accuracy_bar(self) -> float | None:
        """The accuracy drop allowed, in points (1 when neither goal is given)."""
        if self.max_accuracy_drop is None and self.latency_budget is None:
            return 1.0
        return self.max_accuracy_drop

    @property
    def goal(self) -> str:
        return self.goal_for("accuracy")

    def goal_for(self, metric: str) -> str:
        """The goal in words, its quality counted in ``metric``: accuracy points; points of the share of the
        teacher's STS Spearman (spearman) or of full top-10 neighbour agreement (neighbour_overlap)."""
        if self.latency_budget is not None:
            bar = f" (stop early at <= {self.accuracy_bar:g} point(s) below)" if self.accuracy_bar is not None else ""
            best = {"spearman": "best STS Spearman", "neighbour_overlap": "best top-10 neighbour agreement"}.get(
                metric, "most accurate")
            return f"{best} within {self.latency_budget} p50{bar}"
        speed = f", stop at {self.min_speedup:g}x faster" if self.min_speedup else ""
        if metric == "spearman":
            return (f"fastest within {self.accuracy_bar:g} point(s) of the teacher's STS Spearman (at least "
                    f"{100 - self.accuracy_bar:g} % of it){speed}")
        if metric == "neighbour_overlap":
            return (f"fastest within {self.accuracy_bar:g} point(s) of full top-10 neighbour agreement with the "
                    f"teacher (at least {100 - self.accuracy_bar:g} %){speed}")
        return f"fastest within {self.accuracy_bar:g} accuracy point(s) of the teacher{speed}"


def parse_latency_budget(text: str) -> tuple[float, str]:
    """'3ms' -> (3.0, 'ms'); '25%' -> (0.25, 'share')."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|%)\s*", str(text))
    if not match or float(match[1]) <= 0 or (match[2] == "%" and float(match[1]) > 100):
        raise EdgewiseError(f"latency budget {text!r} is not understood; write milliseconds such as 3ms or a share "
                            "of the teacher's latency such as 25%")
    value = float(match[1])
    return (value, "ms") if match[2] == "ms" else (value / 100, "share")


def parse_duration(text: str) -> float:
    """'45m' / '2h' / '900s' / '900' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match[1]) <= 0:
        raise EdgewiseError(f"time budget {text!r} is not understood; write e.g. 45m, 2h or 900s")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def stage_options(option: str) -> tuple[str, list[str], object]:
    """'distill.trainer.epochs=5' -> ('distill', ['trainer', 'epochs'], 5); the value is read as YAML."""
    import yaml

    key, sep, text = option.partition("=")
    stage, _, path = key.partition(".")
    stages = ("distill", "prune", "export", "quantize", "bundle", "bench")
    if not sep or stage not in stages or not path:
        raise EdgewiseError(f"--set {option!r}: write STAGE.OPTION=VALUE with STAGE one of {', '.join(stages)}, "
                            "e.g. distill.temperature=2 or bench.min_time_s=5")
    if stage == "bench" and path not in BENCH_SETTABLE:
        raise EdgewiseError(f"--set {option!r}: compress sets bench.{path} itself (the goal's threads, batch size, "
                            f"length and rounds are its own options; the split is validation, then test); --set "
                            f"bench takes {', '.join(BENCH_SETTABLE)}")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    return stage, path.split("."), value


def _set(node: dict, path: list[str], value, option: str) -> None:
    """node[path] = value, making the mappings on the way; a setting that is not a mapping is refused."""
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise EdgewiseError(f"--set {option!r}: {part} is a setting, not a group of settings; write "
                                f"{option.split('.')[0]}.{part}=VALUE")
    node[path[-1]] = value


def _apply_options(entries: list[dict], options: tuple[str, ...]) -> list[dict]:
    """A copy of the recipe entries with every --set STAGE.OPTION=VALUE applied to the entries of STAGE."""
    import copy

    entries = copy.deepcopy(entries)
    for option in options:
        stage, path, value = stage_options(option)
        for entry in entries:
            if stage in entry:
                if entry[stage] is None:
                    entry[stage] = {}
                _set(entry[stage], path, value, option)
    return entries


# --- the ladder: families of candidates ---------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """Steps that belong together (a model and its exports / quantizations): run, and dropped on failure, as one."""

    phase: str
    name: str
    entries: tuple[dict, ...]  # recipe stage entries, each with its id and input
    candidates: dict  # step id -> what the candidate is, for people


def _task(options: dict | None) -> dict:
    """The ``task`` entry of a stage that reads the teacher (when --task / --pooling describe a plain encoder)."""
    return {"task": dict(options)} if options else {}


def _chain(entries: list, source: str, prefix: str, what: str, optimize: bool, methods: tuple[str, ...],
           task_options: dict | None = None) -> dict:
    """Export ``source`` (with the optimiser when ``optimize``) and quantize it with every method; the
    candidates (id -> description) are the export and each quantization."""
    onnx = f"{prefix}-onnx"
    export = {**({"optimize": True} if optimize else {}), **(_task(task_options) if source == "model" else {})}
    entries.append({"export": export, "id": onnx, "input": source})
    shown = f"{what}, ONNX" + (" (ORT optimiser)" if optimize else "")
    candidates = {onnx: f"{shown}, fp32"}
    for method in methods:
        step = f"{prefix}-int8-{method}"
        entries.append({"quantize": {"method": method}, "id": step, "input": onnx})
        candidates[step] = f"{shown}, {method} INT8"
    return candidates


def plan_phases(config: CompressConfig, *, optimize: bool = False, embedding: bool = False,
                task_options: dict | None = None) -> list[tuple[str, list[Family]]]:
    """The phases of the search, cheap first; ``optimize``: later phases export with the ORT optimiser
    (decided by the first phase's measurement). ``embedding``: an embedding teacher, with the static tier after
    the quantized teacher; ``task_options``: the --task / --pooling the stages that read the teacher need."""
    model = "model"
    methods = config.quantize
    entries: list[dict] = []
    candidates = _chain(entries, model, "teacher", "teacher", False, methods, task_options)
    if config.optimizer and "dynamic" in methods:  # the optimiser on / off, measured on the teacher (dynamic INT8)
        opt: list[dict] = []
        extra = _chain(opt, model, "teacher-opt", "teacher", True, ("dynamic",), task_options)
        entries += opt
        candidates.update(extra)
    phases = [("quantize", [Family("quantize", "teacher", tuple(entries), candidates)])]

    if embedding and config.static:  # no attention at all: cheap to make (no training), so early
        entries = [{"distill": {"static": True, **_task(task_options)}, "id": "static", "input": model}]
        candidates = {"static": "static student (token table, no attention), ONNX fp32"}
        if "dynamic" in methods:
            entries.append({"quantize": {"method": "dynamic"}, "id": "static-int8-dynamic", "input": "static"})
            candidates["static-int8-dynamic"] = "static student, dynamic INT8"
        phases.append(("static", [Family("static", "static", tuple(entries), candidates)]))

    pruned = []
    for share in config.teacher_flops:
        name = f"teacher-flops{round(share * 100)}"
        entries = [{"prune": {"flops": share, "vocab": config.vocab, **_task(task_options)}, "id": name,
                    "input": model}]
        what = f"teacher pruned to {share:.0%} FLOPs" + (" + vocabulary" if config.vocab else "")
        candidates = _chain(entries, name, name, what, optimize, methods)
        pruned.append(Family("prune", name, tuple(entries), candidates))
    if pruned:
        phases.append(("prune", pruned))

    for depth in config.depths:
        student = f"student{depth}"
        distill: dict = {"layers": depth}
        if config.distill_epochs is not None:
            distill["trainer"] = {"epochs": config.distill_epochs}
        entries = [{"distill": {**distill, **_task(task_options)}, "id": student, "input": model}]
        what = f"{depth}-layer student"
        candidates = _chain(entries, student, student, what, optimize, methods)
        families = [Family(f"distill {depth}", student, tuple(entries), candidates)]
        for share in config.student_flops:
            name = f"{student}-flops{round(share * 100)}"
            entries = [{"prune": {"flops": share, "vocab": config.vocab}, "id": name, "input": student}]
            shown = f"{what} pruned to {share:.0%} FLOPs" + (" + vocabulary" if config.vocab else "")
            candidates = _chain(entries, name, name, shown, optimize, methods)
            families.append(Family(f"distill {depth}", name, tuple(entries), candidates))
        phases.append((f"distill {depth}", families))
    return [(phase, [_with_options(f, config.options) for f in families]) for phase, families in phases]


def _with_options(family: Family, options: tuple[str, ...]) -> Family:
    return Family(family.phase, family.name, tuple(_apply_options(list(family.entries), options)), family.candidates)


# --- the search ---------------------------------------------------------------------------------


def compress(teacher: Path, dst: Path, config: CompressConfig, *, data: str, dry_run: bool = False) -> dict:
    """Search the ladder from ``teacher`` on ``data`` into the run folder ``dst`` and keep the best candidate.

    Args:
        teacher: a fine-tuned classifier (hf artifact); it is the reference (PyTorch fp32).
        dst: the run folder: one artifact folder per step, ``best`` (the chosen candidate's bundle), the
            effective recipe.yaml, compress.json / compress.md, report/ (every candidate, validation) and
            report-test/ (teacher and bundle, test). A run folder of an earlier compress is reused (its
            finished steps are skipped); any other existing folder is refused.
        config: the goal and the ladder (CompressConfig).
        data: labelled data with a validation split (or a train split it is carved from, as the training
            stages carve it) and ideally a test split.
        dry_run: return the phases and their candidates without running anything.

    Returns the result (compress.json): the candidates with their validation figures, the choice, the
    test figures, the phases run and skipped, failures, and whether the goal was met.

    Example:
        >>> compress(Path("runs/teacher"), Path("runs/best"), CompressConfig(max_accuracy_drop=1),
        ...          data="builtin:bbc-news")  # doctest: +SKIP
    """
    from edgewise.core.artifact import Artifact, output_folder
    from edgewise.core.progress import console
    from edgewise.core.tasks import refuse_unless

    teacher = Path(teacher).expanduser()
    artifact = Artifact.load(teacher, kind=("hf",))
    task = refuse_unless(artifact.task_for(config.task), ("classification", "embedding"), str(artifact.path),
                         "compress")
    embedding = task.name == "embedding"
    if not embedding:
        artifact.classifier_labels()
        if config.pairs is not None:
            raise EdgewiseError("--pairs scores sentence-embedding models against gold similarity scores; a "
                                "classifier is scored on its labelled DATA: drop --pairs")
    task_options = _task_options(config, artifact)
    teacher = artifact.path.resolve()
    if config.seq_len != "data":
        from edgewise.core.lengths import artifact_lengths

        working, _ = artifact_lengths(teacher, artifact.manifest.data if artifact.manifest else None)
        if int(config.seq_len) > working:
            raise EdgewiseError(f"--seq-len {config.seq_len} is above the teacher's max_length {working}: its "
                                f"candidates take at most {working} tokens; time {working} or fewer, or --seq-len data")
    dst = output_folder(dst)
    data = _data_spec(data)
    notes = []
    if config.vocab:
        from edgewise.prune.vocab import load_tokenizer_json

        try:
            load_tokenizer_json(teacher)
        except EdgewiseError as e:  # pruning itself still works: go on without the vocabulary part
            import dataclasses

            config = dataclasses.replace(config, vocab=False)
            notes.append(f"vocabulary pruning is off: {e}")
    pairs = _data_spec(config.pairs) if config.pairs else None
    plan = plan_phases(config, embedding=embedding, task_options=task_options)
    _check_plan(plan, teacher, data, config, pairs)
    goal = config.goal_for(task.gate_metric if not embedding or pairs else "neighbour_overlap")
    if dry_run:
        return {"run": str(dst), "teacher": str(teacher), "goal": goal, "dry_run": True, "notes": notes,
                "phases": [{"phase": phase, "families": [{"name": f.name, "candidates": f.candidates,
                                                           "stages": [_stage_of(e) for e in f.entries]}
                                                          for f in families]} for phase, families in plan]}
    _check_run_folder(dst)
    has_test = _check_data(data, teacher, task, pairs)
    say = console().print
    started = time.perf_counter()
    deadline = started + parse_duration(config.time_budget) if config.time_budget else None
    budget = parse_latency_budget(config.latency_budget) if config.latency_budget else None
    raw = _recipe(teacher, data, config, pairs)
    if embedding and pairs is None:
        notes.append("no --pairs: candidates are gated on their top-10 neighbour agreement with the teacher on the "
                     "validation texts (give scored pairs to gate on STS Spearman)")
    search = {"candidates": {}, "families": [], "failed": [], "skipped": [], "phases": [], "notes": notes}
    for note in notes:
        say(note)
    rows: list[dict] = []
    optimize = False
    stopped_after = None
    say(f"compress {teacher} -> {dst}: {goal}")
    for number, (phase, _) in enumerate(plan):
        families = plan_phases(config, optimize=optimize, embedding=embedding, task_options=task_options)[number][1]
        phase_started = time.perf_counter()
        ran = []
        for family in families:
            if deadline is not None and time.perf_counter() > deadline and search["families"]:
                search["skipped"].append({"family": family.name, "phase": phase, "reason": "time budget spent"})
                say(f"{phase} / {family.name}: skipped, the time budget ({config.time_budget}) is spent")
                continue
            if _run_family(raw, family, dst, search, say):
                ran.append(family.name)
        if not ran:
            continue
        say(f"phase {phase}: {len(ran)} famil{'y' if len(ran) == 1 else 'ies'} in "
            f"{time.perf_counter() - phase_started:.0f} s; timing the teacher and all "
            f"{len(search['candidates'])} candidates")
        rows = _measure(teacher, dst, raw, search, config, data)
        if number == 0:
            optimize = _optimiser_pays(rows)
            search["optimize"] = optimize
        met = _goal_met(rows, config, budget)
        search["phases"].append({"phase": phase, "families": ran, "goal_met": met,
                                 "seconds": round(time.perf_counter() - phase_started, 1)})
        if met:
            if number + 1 < len(plan):
                stopped_after = phase
                later = ", ".join(p for p, _ in plan[number + 1:])
                say(f"phase {phase}: the goal is met; the phases after it ({later}) are not needed")
            break
    if not rows:
        raise EdgewiseError("no candidate could be made (see the failures above); fix the cause and run again: "
                            "the finished steps are kept")
    chosen, reason = choose(rows, config, budget)
    say(f"chosen: {chosen['candidate']} ({reason})")
    raw["stages"].extend(_apply_options([_bundle_entry(chosen["candidate"])], config.options))
    _run(raw, dst)
    test = _test_report(teacher, dst, raw, config, data) if has_test else None
    result = _result(dst, teacher, data, config, search, rows, chosen, reason, stopped_after, test,
                     _folders(raw, dst)[BEST], time.perf_counter() - started, task, goal, pairs)
    _write_result(dst, result)
    return result


def _task_options(config: CompressConfig, artifact) -> dict | None:
    """The --task / --pooling / --normalize the stages reading the teacher need: given only for a folder that does
    not say what it is (a plain encoder); None otherwise."""
    from edgewise.core.config import config_to_dict
    from edgewise.core.tasks import TaskConfig

    if config.task == TaskConfig() or artifact.task is not None:
        return None
    return {k: v for k, v in config_to_dict(config.task).items() if v is not None}


def _check_plan(plan, teacher: Path, data: str, config: CompressConfig, pairs: str | None = None) -> None:
    """Every generated stage's options (the --set ones included) and the bench settings, checked before
    anything runs."""
    from edgewise.recipe.config import recipe_from_dict

    raw = _recipe(teacher, data, config, pairs)
    raw["stages"] = [entry for _, families in plan for family in families for entry in family.entries]
    raw["stages"] += _apply_options([_bundle_entry(raw["stages"][-1]["id"])], config.options)
    try:
        recipe_from_dict(raw, Path("the generated recipe"))
        _bench_config(config, "validation", pairs)
    except EdgewiseError as e:
        raise EdgewiseError(f"{e} (check the --set options)" if config.options else str(e)) from None


def _bundle_entry(source: str) -> dict:
    return {"bundle": {}, "id": BEST, "input": source}


def _stage_of(entry: dict) -> str:
    return next(k for k in entry if k not in ("id", "input", "data"))


def _data_spec(data: str) -> str:
    path = Path(str(data)).expanduser()
    return str(path.resolve()) if path.exists() else str(data)


def _check_run_folder(dst: Path) -> None:
    from edgewise.recipe.run import STATE_FILE

    if dst.is_dir() and any(dst.iterdir()) and not (dst / STATE_FILE).is_file():
        raise EdgewiseError(f"{dst} exists and is not an edgewise run folder (no {STATE_FILE}); nothing was "
                            "changed: choose a new folder with -o (or the folder of an earlier compress to reuse "
                            "its finished steps)")


def _check_data(data: str, teacher: Path, task=None, pairs: str | None = None) -> bool:
    """The data must give a validation split (the choice; labelled for a classifier) before anything runs; True
    when it has a test split (the report): the data's, or the scored pairs' for an embedding model."""
    from edgewise.core.data import DataConfig, load_splits, require_labels
    from edgewise.core.lineage import carve_validation

    if task is not None and not task.labelled:
        from edgewise.core.data import load_pairs

        splits = load_splits(data, DataConfig())
        if not any(len(split) for split in splits.values()):
            raise EdgewiseError(f"{data} holds no texts; compress distils and measures on texts: pass a corpus")
        scored = load_pairs(pairs) if pairs else {}
        if scored and len(scored) == 1:
            raise EdgewiseError(f"--pairs {pairs} has one split ({next(iter(scored))}); compress chooses on "
                                "validation pairs and reports on test pairs: give a folder with validation.csv and "
                                "test.csv (e.g. benchmarks/data/stsb)")
        if scored and not {"validation", "test"} <= set(scored):
            raise EdgewiseError(f"--pairs {pairs} has splits {', '.join(scored)}; compress needs validation and test "
                                "pairs: name the files validation.* and test.*")
        return "test" in splits or "test" in scored

    splits, _ = carve_validation(load_splits(data, DataConfig()), data, teacher, DataConfig())
    if "validation" not in splits:
        raise EdgewiseError(f"{data} has splits {', '.join(splits)}; compress needs a labelled train split (and "
                            "ideally validation and test): name the files train.* / validation.* / test.*")
    require_labels(splits["validation"])
    return "test" in splits


def _recipe(teacher: Path, data: str, config: CompressConfig, pairs: str | None = None) -> dict:
    bench = {**_bench_options(config, pairs), "split": "validation"}
    gate: dict = {"batch_size": config.batch_size}
    if config.accuracy_bar is not None:
        gate["max_accuracy_drop"] = config.accuracy_bar
    budget = parse_latency_budget(config.latency_budget) if config.latency_budget else None
    if budget and budget[1] == "ms":
        gate["max_latency_ms"] = budget[0]
    elif budget:
        gate["min_speedup"] = round(1 / budget[0], 4)
    elif config.min_speedup:
        gate["min_speedup"] = config.min_speedup
    return {"version": 1, "model": str(teacher), "data": data, "stages": [], "bench": bench, "gate": gate}


def _run(raw: dict, dst: Path) -> dict:
    from edgewise.recipe.config import recipe_from_dict
    from edgewise.recipe.run import run_recipe

    return run_recipe(recipe_from_dict(raw, dst / "recipe.yaml"), dst, report=False, show_skipped=False)


def _run_family(raw: dict, family: Family, dst: Path, search: dict, say) -> bool:
    """Add the family's steps to the recipe and run it; a failing step is dropped with every step that
    reads it (and recorded), the rest of the family still runs. True when a candidate was made."""
    from edgewise.recipe.run import StageFailed

    entries = [dict(e) for e in family.entries]
    started = time.perf_counter()
    while entries:
        raw["stages"].extend(entries)
        try:
            _run(raw, dst)
            break
        except StageFailed as e:
            failed = e.step.id
            if not any(entry["id"] == failed for entry in entries):
                raise  # an earlier family's step (it ran again and failed): not this family's to drop
            dropped = _dependents(entries, failed)
            search["failed"].append({"family": family.name, "step": failed, "dropped": sorted(dropped - {failed}),
                                     "error": str(e)})
            say(f"{family.name}: {failed} failed, going on without {', '.join(sorted(dropped))}: {e}")
            del raw["stages"][len(raw["stages"]) - len(entries):]
            entries = [x for x in entries if x["id"] not in dropped]
    made = {step: what for step, what in family.candidates.items() if any(x["id"] == step for x in entries)}
    for step in made:
        search["candidates"][step] = {"family": family.name, "phase": family.phase, "what": made[step]}
    search["families"].append({"name": family.name, "phase": family.phase, "candidates": list(made),
                               "seconds": round(time.perf_counter() - started, 1)})
    say(f"{family.phase} / {family.name}: {len(made)} candidate(s) in {time.perf_counter() - started:.0f} s")
    return bool(made)


def _dependents(entries: list[dict], failed: str) -> set[str]:
    gone = {failed}
    for entry in entries:  # in order: an entry reads an earlier one
        if entry.get("input") in gone:
            gone.add(entry["id"])
    return gone


def _folders(raw: dict, dst: Path) -> dict[str, Path]:
    return {entry["id"]: dst / f"{index:02d}-{entry['id']}" for index, entry in enumerate(raw["stages"], start=1)}


def _bench_options(config: CompressConfig, pairs: str | None = None) -> dict:
    """The bench settings of every timing: the goal's (and the scored pairs), then --set bench.OPTION=VALUE."""
    options: dict = {"threads": config.threads, "batch_sizes": [config.batch_size], "seq_len": str(config.seq_len),
                     "rounds": config.rounds}
    if pairs:
        options["pairs"] = pairs
    if config.task != TaskConfig():
        from edgewise.core.config import config_to_dict

        options["task"] = {k: v for k, v in config_to_dict(config.task).items() if v is not None}
    for option in config.options:
        stage, path, value = stage_options(option)
        if stage == "bench":
            _set(options, path, value, option)
    return options


def _bench_config(config: CompressConfig, split: str, pairs: str | None = None):
    from edgewise.bench.config import BenchConfig
    from edgewise.core.config import config_from_dict

    return config_from_dict(BenchConfig, {**_bench_options(config, pairs), "split": split}, "--set bench")


def _measure(teacher: Path, dst: Path, raw: dict, search: dict, config: CompressConfig, data: str) -> list[dict]:
    """The teacher and every candidate so far in one interleaved bench on the validation split; a row
    per candidate (first: the teacher) with its id."""
    from edgewise.bench.stage import bench
    from edgewise.recipe.run import ladder_rows

    folders = _folders(raw, dst)
    ids = [step for step in search["candidates"]]
    report = bench([teacher, *(folders[i] for i in ids)], dst / SEARCH_REPORT,
                   _bench_config(config, "validation", raw["bench"].get("pairs")), data=data, overwrite=True)
    search["validation_rows"] = (report.get("data") or {}).get("rows")
    by_path = {str(folders[i].resolve()): i for i in ids}
    rows = ladder_rows(report, batch_size=config.batch_size)
    for row in rows:
        step = by_path.get(str(Path(row["path"]).resolve()))
        row["candidate"] = step or "teacher"
        row["what"] = search["candidates"][step]["what"] if step else "teacher, PyTorch fp32 (reference)"
        row["family"] = search["candidates"][step]["family"] if step else None
    reasons = {str(Path(r["path"]).resolve()): r.get("reason") for r in report["results"] if r.get("status") != "ok"}
    if not rows or rows[0]["candidate"] != "teacher":
        raise EdgewiseError(f"the teacher could not be timed here ({reasons.get(str(teacher), 'no row')}); compress "
                            "measures every candidate against it: fix that, then run compress again (finished steps "
                            "are kept)")
    timed = {row["candidate"] for row in rows}
    search["unmeasured"] = [{"candidate": i, "reason": reasons.get(str(folders[i].resolve()), "not timed")}
                            for i in ids if i not in timed]
    return rows


def _optimiser_pays(rows: list[dict]) -> bool:
    """Whether the teacher's dynamic INT8 ran faster with the ORT optimiser than without (measured, not assumed:
    on the EPYC machines of 2026-11 it ran slower)."""
    by_id = {r["candidate"]: r for r in rows}
    plain, optimised = by_id.get("teacher-int8-dynamic"), by_id.get("teacher-opt-int8-dynamic")
    return bool(plain and optimised and optimised["p50_ms"] < plain["p50_ms"])


def _within(row: dict, config: CompressConfig, budget: tuple[float, str] | None, reference: dict) -> dict:
    """Whether a candidate meets the accuracy bar and the latency budget (None: not set)."""
    bar = config.accuracy_bar
    drop = row.get("quality_drop_points", row.get("accuracy_drop_points"))
    accurate = None if bar is None else (drop is not None and drop <= bar + 1e-9)
    fast = None
    if budget is not None:
        limit = budget[0] if budget[1] == "ms" else reference["p50_ms"] * budget[0]
        fast = row["p50_ms"] <= limit
    return {"accurate": accurate, "fast": fast}


def _goal_met(rows: list[dict], config: CompressConfig, budget) -> bool:
    if not rows:
        return False
    reference, candidates = rows[0], rows[1:]
    for row in candidates:
        ok = _within(row, config, budget, reference)
        if budget is not None:
            if ok["fast"] and ok["accurate"] in (None, True):
                return True
        elif ok["accurate"] and config.min_speedup is not None and row["speedup"] >= config.min_speedup:
            return True
    return False


def choose(rows: list[dict], config: CompressConfig, budget: tuple[float, str] | None) -> tuple[dict, str]:
    """The chosen candidate and why (rows: the teacher first, then the candidates, validation figures)."""
    reference, candidates = rows[0], rows[1:]
    if not candidates:
        raise EdgewiseError("no candidate was measured; see the failures above")

    def accuracy(row):  # the gate metric's value (accuracy; an embedding model's Spearman or neighbour overlap)
        value = row.get("quality", row.get("accuracy"))
        return value if value is not None and math.isfinite(value) else -1.0  # NaN: constant vectors, no Spearman

    checks = {row["candidate"]: _within(row, config, budget, reference) for row in candidates}
    if budget is not None:
        fast = [r for r in candidates if checks[r["candidate"]]["fast"]]
        if fast:
            best = max(fast, key=lambda r: (accuracy(r), -r["p50_ms"]))
            return best, f"the most accurate of {len(fast)} candidate(s) within {config.latency_budget}"
        best = min(candidates, key=lambda r: r["p50_ms"])
        return best, f"no candidate is within {config.latency_budget}: the fastest (goal missed)"
    accurate = [r for r in candidates if checks[r["candidate"]]["accurate"]]
    if accurate:
        best = min(accurate, key=lambda r: (r["p50_ms"], -accuracy(r)))
        return best, f"the fastest of {len(accurate)} candidate(s) within {config.accuracy_bar:g} point(s)"
    best = max(candidates, key=lambda r: (accuracy(r), -r["p50_ms"]))
    return best, f"no candidate is within {config.accuracy_bar:g} point(s): the most accurate (goal missed)"


def _test_report(teacher: Path, dst: Path, raw: dict, config: CompressConfig, data: str) -> list[dict]:
    """The teacher and the chosen bundle side by side on the test split."""
    from edgewise.bench.stage import bench
    from edgewise.recipe.run import ladder_rows

    report = bench([teacher, _folders(raw, dst)[BEST]], dst / TEST_REPORT,
                   _bench_config(config, "test", raw["bench"].get("pairs")), data=data, overwrite=True)
    return ladder_rows(report, batch_size=config.batch_size)


def _result(dst, teacher, data, config, search, rows, chosen, reason, stopped_after, test, bundle, seconds, task=None,
            goal=None, pairs=None) -> dict:
    from edgewise.core.config import config_to_dict

    budget = parse_latency_budget(config.latency_budget) if config.latency_budget else None
    reference = rows[0]
    candidates = []
    for row in rows[1:]:
        checks = _within(row, config, budget, reference)
        candidates.append({**row, **checks, "chosen": row["candidate"] == chosen["candidate"]})
    goal_met = all(v in (None, True) for v in _within(chosen, config, budget, reference).values()) and (
        config.min_speedup is None or chosen["speedup"] >= config.min_speedup)
    return {
        "run": str(dst), "teacher": str(teacher), "data": data, "goal": goal or config.goal,
        "task": task.record() if task is not None else {"name": "classification"}, "pairs": pairs,
        "config": config_to_dict(config), "goal_met": goal_met, "stopped_after": stopped_after,
        "chosen": {"candidate": chosen["candidate"], "what": chosen["what"], "reason": reason,
                   "bundle": str(bundle),
                   "validation": {k: chosen.get(k) for k in ("p50_ms", "speedup", "accuracy", "macro_f1",
                                                               "accuracy_drop_points", "quality_metric", "quality",
                                                               "quality_drop_points", "spearman", "cosine_mean",
                                                               "neighbour_overlap", "size_mb", "size_ratio")}},
        "test": test, "reference": reference, "candidates": candidates,
        "phases": search["phases"], "families": search["families"], "failed": search["failed"],
        "skipped": search["skipped"], "unmeasured": search.get("unmeasured", []), "optimize": search.get("optimize"),
        "recipe": str(dst / "recipe.yaml"),
        "validation_rows": search.get("validation_rows"), "notes": search["notes"],
        "seconds": round(seconds, 1),
    }


def _write_result(dst: Path, result: dict) -> None:
    import json

    from edgewise.recipe.report import compress_markdown

    (dst / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (dst / "compress.md").write_text(compress_markdown(result), encoding="utf-8")
