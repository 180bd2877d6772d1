"""The YAML recipe: a model, data, ordered stages with the options of their commands, the ladder
report's bench settings and an optional gate (no torch imports here).

```yaml
version: 1
model: runs/teacher            # what the first stage reads (a pretrained spec when it is finetune)
data: builtin:bbc-news         # given to every stage that takes DATA
stages:
  - distill: {layers: 3}
  - prune: {flops: 0.5}
  - export: {}
  - quantize: {method: dynamic}
  - bundle: {}
  - quantize: {method: static} # a second one: id "quantize-2"
    input: export              # reads the export, not the bundle
bench: {threads: 1, batch_sizes: [1], seq_len: "128"}
gate: {min_speedup: 5, max_accuracy_drop: 1}
```

The top level is checked by pydantic (unknown keys rejected with the valid ones, wrong types with
their path in the file); each stage's options by the stage's own config (core.config.config_from_dict),
exactly as its command's options are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgewise.core.errors import EdgewiseError

RECIPE_VERSION = 1
PIPELINE_STAGES = ("finetune", "distill", "prune", "export", "quantize", "bundle")  # evaluate / bench: the report
ENTRY_KEYS = ("id", "input", "data")  # beside the stage's name in a stage entry
MODEL = "model"  # the id of the recipe's model, as an input


class Gate(BaseModel):
    """Thresholds the last stage's artifact must meet in the ladder report (batch ``batch_size``)
    against the reference (the recipe's model, or the first stage's output)."""

    model_config = ConfigDict(extra="forbid")

    max_latency_ms: float | None = Field(None, gt=0)
    min_speedup: float | None = Field(None, gt=0)
    max_accuracy_drop: float | None = Field(None, ge=0, description="points of accuracy")
    batch_size: int = Field(1, ge=1)


class RecipeFile(BaseModel):
    """The file as written (stage entries checked afterwards, per stage)."""

    model_config = ConfigDict(extra="forbid")

    version: int
    model: str = Field(min_length=1)
    data: str | None = None
    stages: list[dict[str, Any]] = Field(min_length=1)
    bench: dict[str, Any] = Field(default_factory=dict)
    gate: Gate | None = None
    targets: list[str] = Field(default_factory=lambda: ["local"])


@dataclass(frozen=True)
class Step:
    """One stage of a recipe, resolved: what it reads and where it writes."""

    index: int  # 1-based
    id: str
    stage: str
    config: Any  # the stage's frozen config
    options: dict  # as written (after --set)
    input: str  # MODEL or an earlier step's id
    data: str | None

    @property
    def folder(self) -> str:
        return f"{self.index:02d}-{self.id}"


@dataclass(frozen=True)
class Recipe:
    path: Path | None
    model: str
    data: str | None
    steps: tuple[Step, ...]
    bench: Any  # BenchConfig
    gate: Gate | None
    raw: dict  # the effective recipe (after --set), as YAML would hold it
    targets: tuple[str, ...] = ("local",)  # where the ladder is benched; the gate reads the first

    def step(self, name: str) -> Step:
        """The step with id ``name``, or numbered ``name`` (1-based), or folder ``name``."""
        for step in self.steps:
            if name in (step.id, str(step.index), step.folder):
                return step
        raise EdgewiseError(f"the recipe has no stage {name!r}; its stages are "
                            f"{', '.join(s.id for s in self.steps)}")


def report_dir(target: str) -> str:
    """The folder of a target's ladder report: report/ here, report-<target>/ for a device."""
    import re

    from edgewise.runtime.targets import target_name

    if target == "local":
        return "report"
    return "report-" + re.sub(r"[^A-Za-z0-9.]+", "-", target_name(target).split("://", 1)[-1]).strip("-")


def load_recipe(path: Path, overrides: tuple[str, ...] = ()) -> Recipe:
    """Read, override (``--set stages.distill.layers=3``) and check the recipe at ``path``."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise EdgewiseError(f"recipe {path} does not exist or is not a file; pass the path of a recipe YAML "
                            "(examples: recipes/ in the edgewise repository, or docs/recipes.md)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EdgewiseError(f"recipe {path} is not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EdgewiseError(f"recipe {path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}; "
                            "fix the file") from None
    return recipe_from_dict(raw, path, overrides)


def recipe_from_dict(raw: Any, path: Path | None = None, overrides: tuple[str, ...] = ()) -> Recipe:
    """Check a recipe given as a dict (what the YAML holds); ``path`` names it in messages."""
    import copy

    where = str(path) if path else "recipe"
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise EdgewiseError(f"{where} must be a mapping with version, model, data and stages; got {got} (examples: "
                            "recipes/ in the edgewise repository, or docs/recipes.md)")
    raw = copy.deepcopy(raw)
    for override in overrides:
        _apply(raw, override, where)
    version = raw.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > RECIPE_VERSION:
        raise EdgewiseError(f"{where} is recipe version {version}; this edgewise reads version {RECIPE_VERSION} "
                            "and older: upgrade edgewise")
    try:
        parsed = RecipeFile.model_validate(raw)
    except ValidationError as e:
        raise EdgewiseError(f"{where}: " + "; ".join(_problem(err) for err in e.errors()) + "; valid top-level "
                            f"keys are {', '.join(RecipeFile.model_fields)}") from None
    if parsed.version < 1:
        raise EdgewiseError(f"{where}: version must be {RECIPE_VERSION}, got {parsed.version}")
    from edgewise.runtime.targets import parse_target

    if not parsed.targets or len(set(parsed.targets)) != len(parsed.targets):
        raise EdgewiseError(f"{where}: targets {parsed.targets}: name each target once, at least one (local, "
                            "ssh://[user@]host[:port], adb://SERIAL)")
    for target in parsed.targets:
        try:
            parse_target(target)
        except EdgewiseError as e:
            raise EdgewiseError(f"{where}: targets: {e}") from None
    folders = [report_dir(t) for t in parsed.targets]
    shared = sorted({f for f in folders if folders.count(f) > 1})
    if shared:
        raise EdgewiseError(f"{where}: targets {parsed.targets} would share the report folder {shared[0]}/ (it is "
                            "named after the host); bench one device once per recipe, or use two recipes")
    if "target" in parsed.bench:
        raise EdgewiseError(f"{where}: bench.target: where the ladder is benched is the recipe's top-level "
                            f"`targets:` list (e.g. targets: [local, {parsed.bench['target']}]); move it there")
    from edgewise.bench.config import BenchConfig
    from edgewise.core.config import config_from_dict

    try:
        bench = config_from_dict(BenchConfig, parsed.bench, f"{where}: bench")
    except EdgewiseError as e:
        raise EdgewiseError(str(e) if str(e).startswith(f"{where}: bench") else f"{where}: bench: {e}") from None
    steps = _steps(parsed, where)
    if parsed.gate is not None and parsed.gate.batch_size not in bench.batch_sizes:
        raise EdgewiseError(f"{where}: gate.batch_size {parsed.gate.batch_size} is not benched (bench.batch_sizes "
                            f"{list(bench.batch_sizes)}); add it to bench.batch_sizes or gate another batch size")
    return Recipe(path, parsed.model, parsed.data, steps, bench, parsed.gate, raw, tuple(parsed.targets))


def _problem(error: dict) -> str:
    parts = list(error["loc"])
    if len(parts) > 1 and parts[0] == "stages" and isinstance(parts[1], int):  # numbered from 1, as in messages
        parts = [f"stages[{parts[1] + 1}]", *parts[2:]]
    location = ".".join(str(p) for p in parts) or "the file"
    if error["type"] == "extra_forbidden":
        return f"unknown key {location}"
    if error["type"] == "missing":
        return f"{location} is missing"
    return f"{location}: {error['msg']} (got {error.get('input')!r})"


def _steps(parsed: RecipeFile, where: str) -> tuple[Step, ...]:
    from edgewise.core.config import config_from_dict
    from edgewise.core.stage import stage as registered

    steps: list[Step] = []
    kinds = {MODEL: None}  # id -> the artifact kind it holds (None: known when the run starts)
    automatic = _automatic_ids(parsed.stages)
    for index, entry in enumerate(parsed.stages, start=1):
        at = f"{where}: stages[{index}]"
        names = [k for k in entry if k not in ENTRY_KEYS]
        unknown = [k for k in names if k not in PIPELINE_STAGES]
        if unknown or len(names) != 1:
            raise EdgewiseError(
                f"{at} must name one stage ({', '.join(PIPELINE_STAGES)}) beside optional "
                f"{', '.join(ENTRY_KEYS)}; got {', '.join(map(str, entry)) or 'nothing'}"
                + ("; evaluate and bench are the ladder report's (recipe key bench)"
                   if any(k in ("evaluate", "bench") for k in unknown) else ""))
        name = names[0]
        options = entry[name] if entry[name] is not None else {}
        if not isinstance(options, dict):
            raise EdgewiseError(f"{at}.{name} must be a mapping of {name}'s options (or empty), got {options!r}")
        try:
            config = config_from_dict(registered(name).config_class, options, f"{at}.{name}")
        except EdgewiseError as e:  # the config's own checks do not know where in the file they are
            raise EdgewiseError(str(e) if str(e).startswith(at) else f"{at}.{name}: {e}") from None
        step_id = entry.get("id") or automatic[index - 1]
        if not isinstance(step_id, str) or not step_id.replace("-", "").replace("_", "").isalnum():
            raise EdgewiseError(f"{at}.id must be letters, digits, - or _, got {step_id!r}")
        if step_id in kinds:
            raise EdgewiseError(f"{at}: two stages are called {step_id!r}; give this one another id")
        source = entry.get("input") or (steps[-1].id if steps else MODEL)
        if not isinstance(source, str):
            raise EdgewiseError(f"{at}.input must name an earlier stage (or model), got {source!r}")
        if source not in kinds:
            raise EdgewiseError(
                f"{at}.input {source!r} names no earlier stage (a stage reads the model or a stage before it); "
                f"earlier: {', '.join(kinds)}")
        if name == "finetune" and source != MODEL:
            raise EdgewiseError(f"{at}: finetune reads a pretrained encoder, so it can only read the model")
        kind = kinds[source]
        readable = registered(name).inputs
        if kind is not None and kind not in readable:
            raise EdgewiseError(f"{at}: {name} reads {', '.join(readable)}, but {source!r} writes a {kind!r} "
                                f"artifact; give an input that does (input: <stage id>)")
        data = entry.get("data", parsed.data)
        if data is not None and not isinstance(data, str):
            raise EdgewiseError(f"{at}.data must be a data spec (text: a path, hf:NAME or builtin:NAME), got {data!r}")
        if registered(name).data == "required" and not data:
            raise EdgewiseError(f"{at}: {name} needs data; add data: to the recipe or to this stage")
        kinds[step_id] = _output_kind(name, config, kind)
        steps.append(Step(index, step_id, name, config, options, source,
                          data if registered(name).data != "none" else None))
    return tuple(steps)


def _output_kind(name: str, config, source_kind: str | None) -> str:
    if name == "export":
        return str(getattr(config.format, "value", config.format))
    if name == "quantize":
        return "inc" if source_kind == "hf" else "onnx"
    if name == "bundle":
        return "bundle"
    if name == "distill" and getattr(config, "static", False):
        return "onnx"  # a static student is written as ONNX (distill.static)
    return "hf"


def _apply(raw: dict, override: str, where: str) -> None:
    """``stages.<id|number>.<option>[.<option>]=value`` (or ``data=...``, ``bench.threads=1``); the value
    is read as YAML (numbers, booleans, lists)."""
    import yaml

    key, sep, text = override.partition("=")
    if not sep or not key:
        raise EdgewiseError(f"--set {override!r}: expected KEY=VALUE, e.g. stages.distill.layers=3")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node: Any = raw
    if parts[0] == "stages":
        if len(parts) < 3:
            raise EdgewiseError(f"--set {override!r}: name the stage and its option, e.g. stages.distill.layers=3")
        entries = raw.get("stages") or []
        entry = _entry(entries, parts[1])
        if entry is None:
            raise EdgewiseError(f"--set {override!r}: {where} has no stage {parts[1]!r}")
        if parts[2] in ENTRY_KEYS and len(parts) == 3:
            entry[parts[2]] = value
            return
        name = next(k for k in entry if k not in ENTRY_KEYS)
        if entry.get(name) is None:
            entry[name] = {}
        node, parts = entry[name], parts[2:]
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _entry(entries: list, name: str) -> dict | None:
    """The stage entry called ``name`` (its id, its number, or its stage's name with the automatic -N)."""
    for number, (entry, auto) in enumerate(zip(entries, _automatic_ids(entries), strict=True), start=1):
        if auto is not None and name in (str(number), entry.get("id"), auto):
            return entry
    return None


def _automatic_ids(entries: list) -> list[str | None]:
    """Each entry's id when it gives none: its stage's name, "-2", "-3"... for the stage's later entries
    (None for an entry that names no stage)."""
    counts: dict[str, int] = {}
    ids = []
    for entry in entries:
        names = [k for k in entry if k not in ENTRY_KEYS] if isinstance(entry, dict) else []
        if not names:
            ids.append(None)
            continue
        counts[names[0]] = counts.get(names[0], 0) + 1
        ids.append(names[0] if counts[names[0]] == 1 else f"{names[0]}-{counts[names[0]]}")
    return ids
