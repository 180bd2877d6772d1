"""The `edgewise` command line. Commands are thin: they map flags to a config and call a stage.

Nothing heavy is imported at module level, so `edgewise --help` stays fast.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import click

from edgewise import __version__
from edgewise.bench.config import BACKENDS as BENCH_BACKENDS
from edgewise.bench.config import BenchConfig, CompareConfig
from edgewise.core.errors import EdgewiseError
from edgewise.distill.config import DistillConfig
from edgewise.evaluate.config import BACKENDS, EvaluateConfig
from edgewise.export.config import BundleConfig, ExportConfig
from edgewise.finetune.config import FinetuneConfig
from edgewise.quantize.config import QuantizeConfig


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
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _one_line(e) from None


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


# --- shared options ------------------------------------------------------------------------------

def config_option(cls, name: str, *flags: str, **kwargs):
    """A Click option whose default and help come from field ``name`` of config class ``cls``."""
    import dataclasses
    import enum

    from edgewise.core.config import help_for

    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = None if f.default is dataclasses.MISSING else f.default
    if isinstance(default, tuple):  # a profile such as (1, 4, 16) is typed as 1:4:16
        default, kwargs["type"] = ":".join(map(str, default)), str
    if isinstance(default, enum.Enum):
        kwargs.setdefault("type", click.Choice([m.value for m in type(default)]))
        default = default.value
    if not any(flag.startswith("--") for flag in flags):
        flags = (*flags, "--" + name.replace("_", "-"))
    if default is not None and not isinstance(default, bool) and "type" not in kwargs:
        kwargs["type"] = type(default)
    return click.option(*flags, name, default=default, show_default=default is not None,
                        help=help_for(cls, name), **kwargs)


def help_for_field(cls, name: str) -> str:
    from edgewise.core.config import help_for

    return help_for(cls, name)


def data_options(validation: bool = False):
    """--text-column / --text-pair-column / --label-column (and --validation-fraction), --encoding."""
    from edgewise.core.data import DataConfig

    def decorate(f):
        names = (["text_column", "text_pair_column", "label_column"] + (["validation_fraction"] if validation else [])
                 + ["encoding"])
        for name in reversed(names):
            f = config_option(DataConfig, name)(f)
        return f

    return decorate


def trainer_options(cls):
    """The Trainer settings finetune and distill share (epochs ... save_total_limit, --split, the data
    columns, --allow-pickle, --resume, --overwrite), with defaults and help from ``cls``."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    options = [
        config_option(cls, "epochs"), config_option(cls, "learning_rate", "--learning-rate", "--lr"),
        config_option(cls, "batch_size"), config_option(cls, "eval_batch_size"), config_option(cls, "warmup_ratio"),
        config_option(cls, "weight_decay"), config_option(cls, "gradient_accumulation_steps"),
        config_option(cls, "seed"), config_option(cls, "max_length", type=int),
        *([config_option(cls, "length_percentile")] if "length_percentile" in fields else []),
        config_option(cls, "dynamic_padding", "--dynamic-padding/--pad-to-max-length"),
        config_option(cls, "best_metric"), config_option(cls, "save_total_limit"),
        config_option(cls, "train_split", "--split"), data_options(validation=True),
        config_option(cls, "allow_pickle", is_flag=True),
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint."),
        click.option("--overwrite", is_flag=True, help="Replace an existing output folder."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _data_config(text_column, text_pair_column, label_column, validation_fraction=0.1, seed=42, *, encoding):
    from edgewise.core.data import DataConfig

    return DataConfig(text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
                      validation_fraction=validation_fraction, seed=seed, encoding=encoding)


# --- commands ------------------------------------------------------------------------------------

@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def env(as_json):
    """Print versions, CPU model and ISA flags, GPUs and ONNX Runtime providers (for bug reports)."""
    from edgewise.core.env import full_report

    report = full_report()
    if as_json:
        _print_json(report)
        return
    from rich.console import Console
    from rich.table import Table

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
    Console().print(table)


@cli.command()
@click.argument("pretrained")
@click.argument("data")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Folder to write the fine-tuned model to.")
@trainer_options(FinetuneConfig)
def finetune(pretrained, data, output, epochs, learning_rate, batch_size, eval_batch_size, warmup_ratio,
             weight_decay, gradient_accumulation_steps, seed, max_length, length_percentile, dynamic_padding,
             best_metric, save_total_limit, train_split, text_column, text_pair_column, label_column,
             validation_fraction, encoding, allow_pickle, resume, overwrite):
    """Fine-tune PRETRAINED (builtin:all-minilm-l6-v2, a folder or a Hub id) on DATA into a teacher.

    DATA is a csv / tsv / jsonl / json / parquet file, a folder of train / validation / test
    files, a datasets.save_to_disk folder, hf:NAME[:CONFIG] or builtin:bbc-news.
    """
    from edgewise.finetune import finetune as run_finetune

    config = FinetuneConfig(
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, eval_batch_size=eval_batch_size,
        warmup_ratio=warmup_ratio, weight_decay=weight_decay, seed=seed, max_length=max_length,
        length_percentile=length_percentile, dynamic_padding=dynamic_padding, best_metric=best_metric,
        gradient_accumulation_steps=gradient_accumulation_steps, save_total_limit=save_total_limit,
        allow_pickle=allow_pickle, train_split=train_split,
        data=_data_config(text_column, text_pair_column, label_column, validation_fraction, seed, encoding=encoding),
    )
    run_finetune(pretrained, data, output, config, overwrite=overwrite, resume=resume)


@cli.command()
@click.argument("teacher", type=click.Path(path_type=Path))
@click.argument("data")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Folder to write the student to.")
@config_option(DistillConfig, "layers", type=int)
@config_option(DistillConfig, "layer_map", type=str)
@config_option(DistillConfig, "student", type=str)
@config_option(DistillConfig, "student_config", type=str)
@config_option(DistillConfig, "temperature")
@config_option(DistillConfig, "alpha")
@config_option(DistillConfig, "hidden_weight")
@config_option(DistillConfig, "attention_weight")
@config_option(DistillConfig, "cache_logits", "--cache-logits/--no-cache-logits")
@click.option("--unlabeled", default=None, help="Extra texts (a .txt file, one per line, or any DATA spec) the "
                                                "teacher labels with soft targets.")
@trainer_options(DistillConfig)
def distill(teacher, data, output, layers, layer_map, student, student_config, temperature, alpha, hidden_weight,
            attention_weight, cache_logits, unlabeled, epochs, learning_rate, batch_size, eval_batch_size,
            warmup_ratio, weight_decay, gradient_accumulation_steps, seed, max_length, dynamic_padding, best_metric,
            save_total_limit, train_split, text_column, text_pair_column, label_column, validation_fraction,
            encoding, allow_pickle, resume, overwrite):
    """Distil the fine-tuned TEACHER into a smaller student trained on DATA.

    The student is the teacher's own layers (--layers N or --layer-map 0,2,5), a given encoder
    (--student), or a fresh config (--student-config layers=4,hidden=256,heads=4,ffn=1024).
    """
    from edgewise.distill import distill as run_distill

    config = DistillConfig(
        layers=layers, layer_map=layer_map, student=student, student_config=student_config, temperature=temperature,
        alpha=alpha, hidden_weight=hidden_weight, attention_weight=attention_weight, cache_logits=cache_logits,
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, eval_batch_size=eval_batch_size,
        warmup_ratio=warmup_ratio, weight_decay=weight_decay, gradient_accumulation_steps=gradient_accumulation_steps,
        seed=seed, max_length=max_length, dynamic_padding=dynamic_padding, best_metric=best_metric,
        save_total_limit=save_total_limit, train_split=train_split, allow_pickle=allow_pickle,
        data=_data_config(text_column, text_pair_column, label_column, validation_fraction, seed, encoding=encoding),
    )
    run_distill(teacher, data, output, config, unlabeled=unlabeled, overwrite=overwrite, resume=resume)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("data")
@config_option(EvaluateConfig, "split")
@config_option(EvaluateConfig, "batch_size")
@config_option(EvaluateConfig, "max_length", type=int)
@config_option(EvaluateConfig, "backend", type=click.Choice(BACKENDS))
@data_options()
@config_option(EvaluateConfig, "allow_pickle", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def evaluate(model, data, split, batch_size, max_length, backend, text_column, text_pair_column, label_column,
             encoding, allow_pickle, as_json):
    """Score the classifier in MODEL on DATA: accuracy, macro-F1, per-class figures, confusion matrix."""
    from edgewise.evaluate import evaluate as run_evaluate

    config = EvaluateConfig(split=split, batch_size=batch_size, max_length=max_length, backend=backend,
                            allow_pickle=allow_pickle,
                            data=_data_config(text_column, text_pair_column, label_column, encoding=encoding))
    result = run_evaluate(model, data, config)
    if as_json:
        _print_json(result)
    else:
        _print_evaluation(result)


def _print_evaluation(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{result['artifact']}[/bold] on {result['data']} ({result['split']}, {result['samples']} texts, "
        f"{result['backend']}, max_length {result['max_length']}, {result['runtime_s']} s)"
    )
    console.print(f"accuracy [bold]{result['accuracy']:.4f}[/bold]   macro-F1 [bold]{result['macro_f1']:.4f}[/bold]")
    table = Table(title="per class")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, row in result["per_class"].items():
        table.add_row(label, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console.print(table)
    matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
    matrix.add_column("")
    for label in result["labels"]:
        matrix.add_column(label, justify="right")
    for label, row in zip(result["labels"], result["confusion_matrix"], strict=True):
        matrix.add_row(label, *map(str, row))
    console.print(matrix)


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
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lineage of {chain[0]['path']}")
    for column in ("stage", "kind", "path", "finished", "accuracy", "status"):
        table.add_column(column)
    for entry in chain:
        metrics = entry.get("metrics") or {}
        accuracy = f"{metrics['accuracy']:.4f} ({metrics['split']})" if metrics else ""
        path = entry["path"] if entry["kind"] != "source" else f"{entry['spec']} ({entry['path']})"
        table.add_row(entry["stage"], entry["kind"], path, entry.get("finished_at", ""), accuracy, entry["status"])
    Console().print(table)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Folder to write the exported model to.")
@config_option(ExportConfig, "format", "--format")
@config_option(ExportConfig, "opset")
@config_option(ExportConfig, "optimize", "--optimize/--no-optimize")
@click.option("--data", default=None, help="Data whose texts drive the parity check (any DATA spec).")
@config_option(ExportConfig, "verify_samples")
@config_option(ExportConfig, "atol")
@config_option(ExportConfig, "verify", "--verify/--no-verify")
@config_option(ExportConfig, "max_length", type=int)
@config_option(ExportConfig, "ort_target")
@config_option(ExportConfig, "fp16", "--fp16/--no-fp16")
@config_option(ExportConfig, "batch")
@config_option(ExportConfig, "seq")
@config_option(ExportConfig, "workspace_mb")
@config_option(ExportConfig, "timing_cache")
@data_options()
@config_option(ExportConfig, "allow_pickle", is_flag=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def export(src, output, format, opset, optimize, data, verify_samples, atol, verify, max_length, ort_target, fp16,
           batch, seq, workspace_mb, timing_cache, text_column, text_pair_column, label_column, encoding,
           allow_pickle, overwrite):
    """Export SRC: an hf model to ONNX (--format onnx), an ONNX model to ORT or TensorRT.

    Every export is checked against its source (max |logit diff| and label agreement in the
    manifest); a miss beyond --atol is an error unless --no-verify. Without TensorRT or a CUDA GPU,
    --format tensorrt writes model.onnx and build_engine.sh (the trtexec command) for the device.
    """
    from edgewise.export import export as run_export

    config = ExportConfig(
        format=format, opset=opset, optimize=optimize, verify=verify, atol=atol, verify_samples=verify_samples,
        max_length=max_length, ort_target=ort_target, fp16=fp16, batch=batch, seq=seq, workspace_mb=workspace_mb,
        timing_cache=timing_cache,
        allow_pickle=allow_pickle, data=_data_config(text_column, text_pair_column, label_column, encoding=encoding),
    )
    run_export(src, output, config, data=data, overwrite=overwrite)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Deploy folder to write.")
@config_option(BundleConfig, "model_format", type=click.Choice(["auto", "onnx", "ort"]))
@config_option(BundleConfig, "max_length", type=int)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def bundle(src, output, model_format, max_length, overwrite):
    """Write a deploy folder from the ONNX / ORT artifact SRC, runnable with `python -m edgewise.runtime`."""
    from edgewise.export import bundle as run_bundle

    run_bundle(src, output, BundleConfig(model_format=model_format, max_length=max_length), overwrite=overwrite)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Folder to write the quantized model to.")
@config_option(QuantizeConfig, "method")
@config_option(QuantizeConfig, "per_channel", "--per-channel/--per-tensor")
@config_option(QuantizeConfig, "weight_type")
@config_option(QuantizeConfig, "activation_type")
@config_option(QuantizeConfig, "reduce_range", "--reduce-range/--no-reduce-range")
@click.option("--calibration", default=None, help="Data whose texts calibrate static INT8 (any DATA spec; train "
                                                   "split first; labels not needed). Default: --data.")
@config_option(QuantizeConfig, "calibration_method")
@config_option(QuantizeConfig, "samples")
@config_option(QuantizeConfig, "calibration_batch_size")
@config_option(QuantizeConfig, "percentile")
@click.option("--op-types", default=None, help=help_for_field(QuantizeConfig, "op_types") + " Default: MatMul, Gemm, "
                                               "Gather, Attention, EmbedLayerNormalization.")
@click.option("--exclude-op", multiple=True, help=help_for_field(QuantizeConfig, "exclude_op"))
@click.option("--exclude-node", multiple=True, help=help_for_field(QuantizeConfig, "exclude_node"))
@click.option("--fp16-keep-ops", default=None,
              help=help_for_field(QuantizeConfig, "fp16_keep_ops") + " Default: normalisations, Softmax and the ops "
                   "of a decomposed LayerNorm.")
@config_option(QuantizeConfig, "inc_approach")
@click.option("--data", default=None, help="Labelled data whose validation / test splits measure accuracy (any DATA "
                                           "spec). Default: the data the model was trained on, if recorded.")
@config_option(QuantizeConfig, "max_accuracy_drop", type=float)
@config_option(QuantizeConfig, "sensitivity_samples")
@click.option("--fallback-layers", default="1,2,4", show_default=True,
              help=help_for_field(QuantizeConfig, "fallback_layers"))
@config_option(QuantizeConfig, "threads")
@config_option(QuantizeConfig, "seq_len")
@config_option(QuantizeConfig, "eval_batch_size")
@config_option(QuantizeConfig, "max_eval_samples", type=int)
@config_option(QuantizeConfig, "atol", type=float)
@data_options(validation=True)
@config_option(QuantizeConfig, "allow_pickle", is_flag=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (size, accuracy, search table) as JSON.")
def quantize(src, output, method, per_channel, weight_type, activation_type, reduce_range, calibration,
             calibration_method, samples, calibration_batch_size, percentile, op_types, exclude_op, exclude_node,
             fp16_keep_ops,
             inc_approach, data, max_accuracy_drop, sensitivity_samples, fallback_layers, threads, seq_len,
             eval_batch_size, max_eval_samples, atol, text_column, text_pair_column, label_column,
             validation_fraction, encoding, allow_pickle, overwrite, as_json):
    """Quantize SRC: an ONNX model to INT8 (dynamic / static QDQ) or FP16, an hf model with INC.

    Accuracy and agreement with the source are measured on --data (default: the training data
    recorded in the lineage). With --max-accuracy-drop, candidates are compared and the fastest
    within the drop is kept; the table of every candidate is printed and stored in the manifest.
    """
    from edgewise.quantize import quantize as run_quantize

    fields = {"fp16_keep_ops": fp16_keep_ops} if fp16_keep_ops is not None else {}
    if op_types is not None:
        fields["op_types"] = op_types
    config = QuantizeConfig(
        method=method, per_channel=per_channel, weight_type=weight_type, activation_type=activation_type,
        reduce_range=reduce_range, calibration_method=calibration_method, samples=samples,
        calibration_batch_size=calibration_batch_size, percentile=percentile, exclude_op=exclude_op,
        exclude_node=exclude_node, inc_approach=inc_approach, max_accuracy_drop=max_accuracy_drop,
        sensitivity_samples=sensitivity_samples, fallback_layers=fallback_layers, threads=threads, seq_len=seq_len,
        eval_batch_size=eval_batch_size, max_eval_samples=max_eval_samples, atol=atol, allow_pickle=allow_pickle,
        data=_data_config(text_column, text_pair_column, label_column, validation_fraction, encoding=encoding),
        **fields,
    )
    manifest = run_quantize(src, output, config, data=data, calibration=calibration, overwrite=overwrite)
    metrics = manifest.metrics
    result = {"artifact": str(manifest.path), "method": metrics["quantization"]["method"], "size": metrics["size"],
              "accuracy": metrics.get("accuracy", {}), "int8": metrics["quantization"].get("int8"),
              "search": metrics["quantization"].get("search"), "warnings": metrics.get("warnings", []),
              "config": manifest.config["values"]}
    if as_json:
        _print_json(result)
    else:
        _print_quantized(result)


def _print_quantized(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    size = result["size"]
    ratio = f", {size['ratio']:.1%} of the source" if size.get("ratio") else ""
    table = Table(title=f"{result['artifact']} ({result['method']}; {size['bytes'] / 1e6:.1f} MB{ratio}); "
                        "macro-F1, accuracy in %: source->quantized; drop in points")
    # Agreement and macro-F1 lead: accuracy alone hides a model that changed many labels both ways.
    for column in ("split", "agreement", "macro-F1", "accuracy", "drop", "max|diff|"):
        table.add_column(column, justify="left" if column == "split" else "right", no_wrap=True)
    for split, row in result["accuracy"].items():
        source, quantized = row["source"], row["quantized"]
        table.add_row(split, f"{quantized['agreement_with_source']:.1%}",
                      f"{source['macro_f1'] * 100:.2f}->{quantized['macro_f1'] * 100:.2f}",
                      f"{source['accuracy'] * 100:.2f}->{quantized['accuracy'] * 100:.2f}",
                      f"{row['drop_points']:.2f}", f"{quantized['max_abs_diff']:.2g}")
    if not result["accuracy"]:
        table.add_row("(no data)", "", "", "", "", "")
    Console().print(table)


class DefaultCommandGroup(EdgewiseGroup):
    """`edgewise bench A B ...` runs `bench run A B ...`; `edgewise bench compare ...` names its command."""

    default_command = "run"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@cli.group(cls=DefaultCommandGroup)
def bench():
    """Benchmark artifacts side by side (`edgewise bench ARTIFACT... [options]`) or gate a report
    against a baseline (`edgewise bench compare REPORT BASELINE`)."""


def _batch_sizes(ctx, param, value):
    try:
        return tuple(int(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 1,8") from None


@bench.command("run")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", default=None, help="Labelled data for accuracy (and --seq-len data); any DATA spec.")
@config_option(BenchConfig, "split")
@click.option("--backend", "backends", multiple=True, default=("auto",), show_default=True,
              type=click.Choice(BENCH_BACKENDS), help=help_for_field(BenchConfig, "backends"))
@click.option("--batch-sizes", default="1", show_default=True, callback=_batch_sizes,
              help=help_for_field(BenchConfig, "batch_sizes"))
@config_option(BenchConfig, "threads", type=int)
@config_option(BenchConfig, "seq_len")
@config_option(BenchConfig, "warmup")
@config_option(BenchConfig, "min_runs")
@config_option(BenchConfig, "min_time_s", "--min-time")
@config_option(BenchConfig, "rounds")
@config_option(BenchConfig, "accuracy_samples", type=int)
@config_option(BenchConfig, "eval_batch_size", type=int)
@data_options()
@click.option("-o", "--output", "output", default=None, type=click.Path(path_type=Path),
              help="Folder for report.json, report.md, pareto.png and latency_cdf.png.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the report JSON on stdout.")
def bench_run(artifacts, data, split, backends, batch_sizes, threads, seq_len, warmup, min_runs, min_time_s, rounds,
              accuracy_samples, eval_batch_size, text_column, text_pair_column, label_column, encoding, output,
              overwrite, as_json):
    """Time ARTIFACTS (the first is the reference) on every backend and batch size, interleaved in rounds,
    with accuracy from the same run when --data is given."""
    from edgewise.bench import bench as run_bench

    config = BenchConfig(backends=backends, batch_sizes=batch_sizes, threads=threads, seq_len=seq_len,
                         warmup=warmup, min_runs=min_runs, min_time_s=min_time_s, rounds=rounds, split=split,
                         accuracy_samples=accuracy_samples, eval_batch_size=eval_batch_size,
                         data=_data_config(text_column, text_pair_column, label_column, encoding=encoding))
    report = run_bench(list(artifacts), config, data=data, output=output, overwrite=overwrite)
    if as_json:
        _print_json(report)
    else:
        from edgewise.bench.report import markdown

        click.echo(markdown(report))


@bench.command("compare")
@click.argument("current", type=click.Path(path_type=Path))
@click.argument("baseline", type=click.Path(path_type=Path))
@click.option("--max-latency-regression", default="10%", show_default=True,
              help=help_for_field(CompareConfig, "max_latency_regression"))
@config_option(CompareConfig, "max_accuracy_drop")
@config_option(CompareConfig, "allow_missing", is_flag=True)
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
    cli(prog_name="edgewise")


if __name__ == "__main__":
    main()
