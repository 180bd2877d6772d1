"""The `edgewise` command line, generated from the stage registry (`edgewise.core.stage.STAGES`).

Every stage is a command whose options are the fields of its config, nested configs flattened
(`FinetuneConfig.trainer.epochs` is `--epochs`); default and help come from the config's default
instance, the declaration from the field's `setting(flag=..., aliases=..., sep=...)`. A command
builds the config once and calls the stage. `env`, `lineage` and `bench compare` are written by hand.

Nothing heavy is imported at module level, so `edgewise --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import types
import typing
import warnings
from pathlib import Path

import click
from click.core import ParameterSource

from edgewise import __version__
from edgewise.bench.config import CompareConfig
from edgewise.core.config import config_from_dict, help_for
from edgewise.core.errors import INTERRUPTS, EdgewiseError, Terminated
from edgewise.core.stage import STAGES, Stage


class UserError(click.ClickException):
    """Printed as one `Error: ...` line on stderr; exit code 2 like click's usage errors."""

    exit_code = 2


def _one_line(e: click.UsageError) -> UserError:
    command = e.ctx.command_path if e.ctx else "edgewise"
    return UserError(f"{e.format_message()} (see '{command} --help')")


class EdgewiseGroup(click.Group):
    """Turns EdgewiseError (and click usage errors) into one line on stderr, exit code 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:  # a bad option of the group itself, e.g. `edgewise --bogus`
            raise _one_line(e) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgewiseError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise UserError(str(e)) from None
        except PermissionError as e:  # an input made unreadable (chmod 000), a folder this user may not write
            if ctx.obj and ctx.obj.get("debug"):
                raise
            what = e.filename or "a file"
            raise UserError(f"permission denied on {what} ({e.strerror or e}); make it readable (and its folder "
                            "writable, for an output) for this user with chmod / chown, or choose another "
                            "path") from None
        except INTERRUPTS as e:  # Ctrl-C, SIGTERM: one line on what was kept and how to go on, 130 / 143
            if ctx.obj and ctx.obj.get("debug"):
                raise
            ctrl_c = isinstance(e, KeyboardInterrupt)
            note = getattr(e, "edgewise_note", None) or "stopped before anything was written"
            click.echo(f"Interrupted ({'Ctrl-C' if ctrl_c else 'SIGTERM'}): {note}", err=True)
            ctx.exit(130 if ctrl_c else 143)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _one_line(e) from None


class DefaultCommandGroup(EdgewiseGroup):
    """`edgewise bench A B ...` runs `bench run A B ...`; `edgewise bench compare ...` names its command."""

    default_command = "run"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def _quiet_libraries(debug: bool) -> None:
    # torchao (pulled in by neural-compressor-pt) warns about CUDA-only kernels on CPU machines,
    # and transformers warns that a fresh classification head is untrained, which is the point
    # of fine-tuning. Neither helps a user; --debug shows them.
    if not debug:
        # (Quieting transformers.modeling_utils makes it run a tensor-parallel check that warns
        # on every load, hence the tensor_parallel logger too.)
        for name in ("torchao", "torch.utils._pytree", "transformers.modeling_utils",
                     "transformers.integrations.tensor_parallel"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # Trainer's checkpoint rotation says so on filesystems with coarse mtimes; it copes.
        warnings.filterwarnings("ignore", message="mtime may not be reliable")
        # The tracer flags a constant in transformers' mask code that is constant by design.
        warnings.filterwarnings("ignore", message="torch.tensor results are registered as constants")
        # optimum-onnx recommends opset 18 for BERT; 17 is our default on purpose (TensorRT 8.6 / JetPack 5).
        logging.getLogger("optimum.exporters.onnx.convert").addFilter(
            lambda record: "lower than the recommended minimum opset" not in record.getMessage())
        # optimum-onnx 0.1.0 still passes torch_dtype to transformers 4.57, which says so on every export.
        logging.getLogger("transformers.configuration_utils").addFilter(
            lambda record: "torch_dtype` is deprecated" not in record.getMessage())


@click.group(cls=EdgewiseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgewise")
@click.option("--debug", is_flag=True, help="Show full tracebacks and library warnings.")
@click.pass_context
def cli(ctx, debug):
    """Distil, prune, quantize, export and benchmark transformer text classifiers for the edge."""
    ctx.obj = {"debug": debug}
    _quiet_libraries(debug)


def _print_json(payload) -> None:
    click.echo(json.dumps(payload, indent=2))


# --- options from config fields ------------------------------------------------------------------

_SEPARATORS = {",": "comma-separated", ":": "colon-separated"}
_ELEMENTS = {int: "integers", float: "numbers", str: "names"}


class Separated(click.ParamType):
    """A tuple typed as one string, e.g. `1,8` or the profile `1:4:16`, split at ``sep``."""

    name = "text"

    def __init__(self, sep: str, element: type, example: str | None = None):
        self.sep, self.element, self.example = sep, element, example

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [item.strip() for item in str(value).split(self.sep)]
        try:
            return tuple(self.element(item) for item in items if item)  # "" is the empty list
        except ValueError:
            what = f"{_SEPARATORS.get(self.sep, repr(self.sep) + '-separated')} list of {_ELEMENTS[self.element]}"
            self.fail(f"{value!r} is not a {what}" + (f", e.g. {self.example}" if self.example else ""), param, ctx)


class FieldOption(click.Option):
    """An option that sets the config field ``path`` (dotted for a nested config's field)."""

    def __init__(self, *args, path: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = path


def _without_none(hint):
    """`int | None` -> int (None is then the default the stage reads as "decide for me")."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{hint} has more than one type besides None")
        return options[0]
    return hint


def _hidden(path: str, hidden: tuple[str, ...]) -> bool:
    return any(path == h or path.startswith(h + ".") for h in hidden)


def config_fields(cls: type, default, prefix: str = ""):
    """(dotted path, field, annotation, default value) of every field, nested configs flattened."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint, value = hints[f.name], getattr(default, f.name)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from config_fields(hint, value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, hint, value


def option_spec(path: str, f: dataclasses.Field, hint, default) -> tuple[list[str], dict]:
    """The declaration and settings of one config field's option: names, type, default and help from
    the field (``default`` is the field's value in the outer config's default instance)."""
    meta = f.metadata
    dashed = "--" + f.name.replace("_", "-")
    declaration = meta.get("flag") or dashed
    kwargs: dict = {"help": meta.get("help", ""), "show_default": True, "default": default}
    base = _without_none(hint)
    if base is bool:  # a flag pair; `bool | None` leaves the choice to the stage unless given
        if meta.get("flag") is None:
            declaration = f"{dashed}/--no-{dashed[2:]}"
        kwargs["is_flag"] = True
    elif isinstance(base, type) and issubclass(base, enum.Enum):
        kwargs["type"] = click.Choice([m.value for m in base])
        kwargs["default"] = default.value if default is not None else None
    elif typing.get_origin(base) is tuple:
        elements = {a for a in typing.get_args(base) if a is not Ellipsis}
        if len(elements) != 1 or not elements <= {int, float, str}:
            raise TypeError(f"{path}: a tuple option holds one of int, float, str, not {base}")
        element = elements.pop()
        if meta.get("multiple"):
            kwargs.update(multiple=True, type=click.Choice(meta["choices"]) if meta.get("choices") else element,
                          default=tuple(default) if default is not None else ())
        elif meta.get("sep"):
            sep = meta["sep"]
            # Names are shown "A, B" so that --help can wrap them; numbers stay "1,2,4" / "1:1:16".
            shown = (f"{sep} " if element is str else sep).join(map(str, default)) if default is not None else None
            kwargs.update(type=Separated(sep, element, shown if default and len(default) > 1 else None),
                          default=shown)
        else:
            raise TypeError(f"{path}: a tuple field needs setting(..., sep=...) or setting(..., multiple=True)")
    elif base in (int, float, str):
        kwargs["type"] = click.Choice(meta["choices"]) if meta.get("choices") else base
    else:
        raise TypeError(f"{path}: no command-line type for {hint}")
    return [declaration, *meta.get("aliases", ()), path.replace(".", "__")], {"path": path, **kwargs}


def field_option(cls: type, path: str) -> typing.Callable:
    """A decorator adding the option of field ``path`` of ``cls`` (for hand-written commands)."""
    _, f, hint, default = next(spec for spec in config_fields(cls, cls()) if spec[0] == path)
    declaration, kwargs = option_spec(path, f, hint, default)
    return click.option(*declaration, cls=FieldOption, **kwargs)


def config_options(cls: type, hidden: tuple[str, ...] = ()) -> list[FieldOption]:
    """One option per field of ``cls`` (nested configs flattened), minus the ``hidden`` dotted paths;
    defaults from ``cls()``, so a nested config's defaults are the outer config's."""
    fields = list(config_fields(cls, cls()))
    unknown = [h for h in hidden if not any(_hidden(path, (h,)) for path, *_ in fields)]
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)} to hide")
    options = []
    for path, f, hint, default in fields:
        if not _hidden(path, hidden):
            declaration, kwargs = option_spec(path, f, hint, default)
            options.append(FieldOption(declaration, **kwargs))
    return options


def _refuse_clashes(command: str, params: list[click.Parameter]) -> None:
    """Two fields (or a field and one of the command's own parameters) on one option name is a bug."""
    def label(param: click.Parameter) -> str:
        return param.path if isinstance(param, FieldOption) else f"the command's {'/'.join(param.opts)}"

    seen: dict[str, click.Parameter] = {}
    for param in params:
        for name in dict.fromkeys((*param.opts, *getattr(param, "secondary_opts", ()), param.name)):
            if name in seen:
                raise ValueError(f"edgewise {command}: {label(seen[name])} and {label(param)} both map to {name}")
            seen[name] = param


def _nest(flat: dict[str, typing.Any]) -> dict:
    """{"trainer.epochs": 2} -> {"trainer": {"epochs": 2}}."""
    nested: dict = {}
    for path, value in flat.items():
        *outer, name = path.split(".")
        level = nested
        for key in outer:
            level = level.setdefault(key, {})
        level[name] = value
    return nested


def stage_command(stage: Stage) -> click.Command:
    """The command of ``stage``: its input argument(s), DATA or --data, -o/--output, one option per
    config field, --overwrite, --resume and --json as the stage has them."""
    cls = stage.config_class
    source = stage.argument.lower()
    writes = bool(stage.outputs)
    params: list[click.Parameter] = [click.Argument(
        [source], nargs=-1 if stage.many else 1, required=True,
        type=str if "pretrained" in stage.inputs else click.Path(path_type=Path))]
    if stage.data == "required":
        params.append(click.Argument(["data"]))
    if writes:
        params.append(click.Option(["-o", "--output", "output"], required=stage.output_required,
                                   type=click.Path(path_type=Path), help=stage.output_help))
    if stage.data == "optional":
        params.append(click.Option(["--data"], default=None, help=stage.data_help))
    fields = config_options(cls, stage.hidden)
    params += fields
    if writes:
        params.append(click.Option(["--overwrite"], is_flag=True, help="Replace an existing output folder."))
    if stage.resumable:
        params.append(click.Option(["--resume"], is_flag=True,
                                   help="Continue an interrupted run from its last checkpoint."))
    if stage.render:
        params.append(click.Option(["--json", "as_json"], is_flag=True, help="Print the result as JSON on stdout."))
    name = stage.command or stage.name
    _refuse_clashes(name, params)

    def run(**values):
        ctx = click.get_current_context()
        # Only what was given: config_from_dict fills in the rest exactly as cls() has it.
        given = {f.path: values[f.name] for f in fields
                 if ctx.get_parameter_source(f.name) is not ParameterSource.DEFAULT}
        config = config_from_dict(cls, _nest(given))
        src = values[source]
        result = stage.run(list(src) if stage.many else src, values.get("output"), config, data=values.get("data"),
                           overwrite=values.get("overwrite", False), resume=values.get("resume", False))
        if values.get("as_json"):
            _print_json(stage.summarize(result))
        else:
            stage.show(result)

    return click.Command(name, params=params, callback=run, help=stage.help)


# --- commands ------------------------------------------------------------------------------------

@cli.group(cls=DefaultCommandGroup)
def bench():
    """Benchmark artifacts side by side (`edgewise bench ARTIFACT... [options]`) or gate a report
    against a baseline (`edgewise bench compare REPORT BASELINE`)."""


GROUPS = {"bench": bench}  # the groups a stage may name as its `group`

for _stage in STAGES.values():
    (GROUPS[_stage.group] if _stage.group else cli).add_command(stage_command(_stage))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def env(as_json):
    """Print versions, CPU model and ISA flags, GPUs and ONNX Runtime providers (for bug reports)."""
    from edgewise.core.env import full_report

    report = full_report()
    if as_json:
        _print_json(report)
        return
    from rich.table import Table

    from edgewise.core.progress import report_console

    table = Table(title="edgewise environment", show_header=False)
    table.add_row("python", report["python"])
    table.add_row("os", report["os"])
    for name, version in report["packages"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    cpu = report["cpu"]
    table.add_row("cpu", f"{cpu['model']} ({cpu['arch']}, {cpu['logical_cores']} logical cores)")
    table.add_row("isa", " ".join(cpu["isa"]) or "-")
    gpus = report["gpu"]
    table.add_row("gpu", ", ".join(f"{g['name']} (sm {g['compute_capability']})" for g in gpus)
                  if isinstance(gpus, list) and gpus else "none" if isinstance(gpus, list) else gpus)
    providers = report["onnxruntime_providers"]
    table.add_row("onnxruntime providers", ", ".join(providers) if isinstance(providers, list) else providers)
    table.add_row("tensorrt", report["tensorrt"])
    report_console().print(table)


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the chain as JSON on stdout.")
def lineage(artifact, as_json):
    """Print the chain of artifacts from ARTIFACT back to the teacher and its pretrained encoder."""
    from edgewise.core.lineage import lineage as run_lineage

    chain = run_lineage(artifact)
    if as_json:
        _print_json(chain)
        return
    from rich.table import Table

    from edgewise.core.progress import report_console

    table = Table(title=f"lineage of {chain[0]['path']}")
    for column in ("stage", "kind", "path", "finished", "accuracy", "macro-F1", "status"):
        # Paths are what a reader copies: never cut with an ellipsis, wrapped instead.
        table.add_column(column, overflow="fold")
    for entry in chain:
        metrics = entry.get("metrics") or {}
        accuracy = f"{metrics['accuracy']:.4f} ({metrics['split']})" if metrics else ""
        macro_f1 = f"{metrics['macro_f1']:.4f}" if metrics.get("macro_f1") is not None else ""
        path = entry["path"] if entry["kind"] != "source" else f"{entry['spec']} ({entry['path']})"
        table.add_row(entry["stage"], entry["kind"], path, entry.get("finished_at", ""), accuracy, macro_f1,
                      entry["status"])
    report_console().print(table)


@cli.command("run")
@click.argument("recipe_file", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Run folder: one artifact folder per stage, the ladder report and recipe-state.json. "
                   "Default: runs/<recipe name>.")
@click.option("--from", "start", metavar="STAGE", default=None,
              help="Rerun from this stage (its id, number or folder) on, even if unchanged.")
@click.option("--dry-run", is_flag=True, help="Print the plan (what would run, what would be skipped and why).")
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override a recipe field, e.g. stages.distill.layers=3 or data=my.csv (repeat the flag).")
@click.option("--no-report", is_flag=True, help="Skip the ladder report (the interleaved bench of every artifact).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def run(ctx, recipe_file, output, start, dry_run, overrides, no_report, as_json):
    """Run the stages of the YAML RECIPE in order, each into its own artifact folder, then the ladder
    report; a rerun skips the stages whose config, input, data and library versions are unchanged.
    Exit 0 done, 1 the recipe's gate failed, 2 an error."""
    from edgewise.recipe import load_recipe, run_recipe

    recipe = load_recipe(recipe_file, tuple(overrides))
    _show_run(ctx, run_recipe(recipe, output or Path("runs") / Path(recipe_file).stem, start=start,
                              dry_run=dry_run, report=not no_report), as_json)


def _show_run(ctx, result: dict, as_json: bool) -> None:
    """Print a recipe run's result; exit 1 when its gate failed."""
    from edgewise.recipe.report import render

    if as_json:
        _print_json(result)
    else:
        render(result)
    if result.get("gate") and not result["gate"]["passed"]:
        ctx.exit(1)


def _compress_command() -> click.Command:
    """`edgewise compress TEACHER DATA -o OUT`: options from CompressConfig's fields."""
    from edgewise.recipe.compress import CompressConfig

    fields = config_options(CompressConfig)
    params = [click.Argument(["teacher"], type=click.Path(path_type=Path)), click.Argument(["data"]),
              click.Option(["-o", "--output"], required=True, type=click.Path(path_type=Path),
                           help="Run folder: every candidate's artifact folder, the chosen bundle (NN-best), "
                                "compress.md / compress.json, the reports and the recipe that ran. The folder of "
                                "an earlier compress is reused: its finished steps are skipped."),
              *fields,
              click.Option(["--dry-run"], is_flag=True, help="Print the phases and their candidates; run nothing."),
              click.Option(["--json", "as_json"], is_flag=True, help="Print the result as JSON on stdout.")]
    _refuse_clashes("compress", params)

    def run(teacher, data, output, dry_run, as_json, **values):
        from edgewise.recipe.compress import compress
        from edgewise.recipe.report import render_compress

        ctx = click.get_current_context()
        given = {f.path: values[f.name] for f in fields
                 if ctx.get_parameter_source(f.name) is not ParameterSource.DEFAULT}
        config = config_from_dict(CompressConfig, _nest(given))
        result = compress(teacher, output, config, data=data, dry_run=dry_run)
        if as_json:
            _print_json(result)
        elif dry_run:
            for phase in result["phases"]:
                click.echo(f"phase {phase['phase']}:")
                for family in phase["families"]:
                    click.echo(f"  {family['name']} ({' -> '.join(dict.fromkeys(family['stages']))}): "
                               + "; ".join(f"{k} = {v}" for k, v in family["candidates"].items()))
        else:
            render_compress(result)
        if not dry_run and not result["goal_met"]:
            ctx.exit(1)

    return click.Command("compress", params=params, callback=run, help=(
        "Compress the fine-tuned TEACHER for this machine: search the ladder of candidates (the teacher "
        "quantized, pruned, and distilled students of a few depths, each pruned, exported and quantized), cheap "
        "ones first, time them all side by side with the teacher, and keep the fastest within "
        "--max-accuracy-drop (default 1 point) or the most accurate within --latency-budget, chosen on DATA's "
        "validation split and reported on its test split; the choice is bundled.\n\n"
        "Exit 0 goal met, 1 goal missed (the best candidate is still bundled and reported), 2 an error."))


cli.add_command(_compress_command())


@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Demo folder: teacher/ (the fine-tuned teacher) and compress/ (the search, the chosen bundle and "
                   "compress.md); a second demo into the same folder skips what is done.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def demo(ctx, output, as_json):
    """The built-in offline default, nothing to download: MiniLM-L6 fine-tuned on BBC News (the teacher),
    then `edgewise compress` on it (the teacher quantized, a 2-layer student pruned and quantized; it stops
    once a candidate is 10x faster than the teacher in PyTorch within 2 accuracy points), the chosen one
    bundled and reported against the teacher. Exit 0 goal met, 1 missed, 2 an error."""
    import edgewise.recipe.demo as packaged
    from edgewise.recipe.report import render_compress

    result = packaged.demo(output)
    if as_json:
        _print_json(result)
    else:
        render_compress(result)
    if not result["goal_met"]:
        ctx.exit(1)


@cli.group()
def recipe():
    """Check recipes (`edgewise recipe validate RECIPE`)."""


@recipe.command("validate")
@click.argument("recipe_file", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True, help="Override a field, as `edgewise run`.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved stages as JSON on stdout.")
def recipe_validate(recipe_file, overrides, as_json):
    """Check RECIPE (keys, types, every stage's options, inputs) without running anything."""
    from edgewise.core.config import config_to_dict
    from edgewise.recipe import load_recipe

    loaded = load_recipe(recipe_file, tuple(overrides))
    steps = [{"folder": s.folder, "id": s.id, "stage": s.stage, "input": s.input, "data": s.data,
              "config": config_to_dict(s.config)} for s in loaded.steps]
    if as_json:
        _print_json({"recipe": str(recipe_file), "valid": True, "model": loaded.model, "steps": steps})
        return
    click.echo(f"{recipe_file}: valid; model {loaded.model}, {len(steps)} stage(s): "
               + ", ".join(f"{s['folder']} <- {s['input']}" for s in steps))


@bench.command("compare")
@click.argument("current", type=click.Path(path_type=Path))
@click.argument("baseline", type=click.Path(path_type=Path))
@click.option("--max-latency-regression", show_default=True, help=help_for(CompareConfig, "max_latency_regression"),
              default=f"{CompareConfig().max_latency_regression * 100:g}%")
@field_option(CompareConfig, "max_accuracy_drop")
@field_option(CompareConfig, "allow_missing")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
@click.pass_context
def bench_compare(ctx, current, baseline, max_latency_regression, max_accuracy_drop, allow_missing, as_json):
    """Gate the bench report CURRENT against BASELINE: exit 0 pass, 1 regression, 2 usage error.

    Writes the Markdown table to $GITHUB_STEP_SUMMARY too when that is set (GitHub Actions).
    """
    import os

    from edgewise.bench import compare, load_report
    from edgewise.bench.compare import markdown
    from edgewise.bench.config import parse_percent

    config = CompareConfig(max_latency_regression=parse_percent(max_latency_regression, "--max-latency-regression"),
                           max_accuracy_drop=max_accuracy_drop, allow_missing=allow_missing)
    result = compare(load_report(current), load_report(baseline), config)
    text = markdown(result)
    if as_json:
        _print_json(result)
    else:
        click.echo(text)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a") as f:
                f.write(text)
        except OSError as e:  # the verdict must still decide the exit code, not a summary file
            click.echo(f"warning: could not write $GITHUB_STEP_SUMMARY ({summary}): {e.strerror}", err=True)
    if not result["passed"]:
        ctx.exit(1)


def main() -> None:
    import signal

    def terminated(signum, frame):
        raise Terminated()

    # SIGTERM (a CI job cancelled, `kill`, a container stopping) cleans up like Ctrl-C instead of leaving a
    # work folder behind.
    signal.signal(signal.SIGTERM, terminated)
    cli(prog_name="edgewise")


if __name__ == "__main__":
    main()
