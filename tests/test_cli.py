import json
import os
import shutil
import subprocess
import sys

import pytest

from edgewise.cli import cli
from edgewise.core.artifact import Artifact
from edgewise.core.manifest import MANIFEST_NAME
from tests.conftest import assert_user_error, write_csv


def _command_paths(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _command_paths(command, (*prefix, name))


COMMANDS = list(_command_paths(cli))


@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS])
def test_every_command_has_help(cli_run, command):
    result = cli_run(*command.split(), "--help")

    assert result.exit_code == 0 and "Usage: " in result.output


def test_root_help(cli_run):
    result = cli_run("--help")

    assert result.exit_code == 0 and all(name in result.output for name in ("bench", "finetune", "quantize"))


# Every option the hand-written CLI had (before the commands were generated from the configs).
OPTIONS_BEFORE = {
    "finetune": "-o --output --epochs --learning-rate --lr --batch-size --eval-batch-size --warmup-ratio "
                "--weight-decay --gradient-accumulation-steps --seed --max-length --length-percentile "
                "--dynamic-padding --pad-to-max-length --best-metric --save-total-limit --split --text-column "
                "--text-pair-column --label-column --validation-fraction --encoding --allow-pickle --resume "
                "--overwrite",
    "distill": "-o --output --layers --layer-map --student --student-config --temperature --alpha --hidden-weight "
               "--attention-weight --cache-logits --no-cache-logits --unlabeled --epochs --learning-rate --lr "
               "--batch-size --eval-batch-size --warmup-ratio --weight-decay --gradient-accumulation-steps --seed "
               "--max-length --dynamic-padding --pad-to-max-length --best-metric --save-total-limit --split "
               "--text-column --text-pair-column --label-column --validation-fraction --encoding --allow-pickle "
               "--resume --overwrite",
    "evaluate": "--split --batch-size --max-length --backend --text-column --text-pair-column --label-column "
                "--encoding --allow-pickle --json",
    "export": "-o --output --format --opset --optimize --no-optimize --data --verify-samples --atol --verify "
              "--no-verify --max-length --ort-target --fp16 --no-fp16 --batch --seq --workspace-mb --timing-cache "
              "--text-column --text-pair-column --label-column --encoding --allow-pickle --overwrite",
    "bundle": "-o --output --model-format --max-length --overwrite",
    "quantize": "-o --output --method --per-channel --per-tensor --weight-type --activation-type --reduce-range "
                "--no-reduce-range --calibration --calibration-method --samples --calibration-batch-size "
                "--percentile --op-types --exclude-op --exclude-node --fp16-keep-ops --inc-approach --data "
                "--max-accuracy-drop --sensitivity-samples --fallback-layers --threads --seq-len --eval-batch-size "
                "--max-eval-samples --atol --text-column --text-pair-column --label-column --validation-fraction "
                "--encoding --allow-pickle --overwrite --json",
    "bench run": "--data --split --backend --batch-sizes --threads --seq-len --warmup --min-runs --min-time --rounds "
                 "--accuracy-samples --eval-batch-size --text-column --text-pair-column --label-column --encoding "
                 "-o --output --overwrite --json",
    "bench compare": "--max-latency-regression --max-accuracy-drop --allow-missing --json",
}


@pytest.mark.parametrize("command", sorted(OPTIONS_BEFORE))
def test_command_keeps_every_option_it_had(command):
    group = cli
    for name in command.split():
        group = group.commands[name]
    offered = {name for p in group.params for name in (*p.opts, *getattr(p, "secondary_opts", ()))}

    assert set(OPTIONS_BEFORE[command].split()) - offered == set()


def test_option_defaults_come_from_each_configs_default_instance():
    def option(command, name):
        group = cli
        for part in command.split():
            group = group.commands[part]
        return next(p for p in group.params if name in p.opts)

    # The nested TrainerConfig's default differs per outer config.
    assert option("finetune", "--lr").default == 5e-5 and option("distill", "--lr").default == 1e-4
    assert option("quantize", "--fallback-layers").default == "1,2,4"
    assert option("export", "--batch").default == "1:1:16" and option("bench run", "--batch-sizes").default == "1"
    assert option("bench compare", "--max-latency-regression").default == "10%"


def test_version(cli_run):
    assert cli_run("--version").output.strip() == "edgewise, version 0.1.0"


@pytest.mark.slow
def test_import_cli_loads_no_heavy_libraries():
    code = ("import sys, edgewise.cli; heavy = {'torch', 'transformers', 'onnxruntime', 'tensorrt', 'pandas', "
            "'sklearn', 'datasets', 'onnx', 'rich'} & set(sys.modules); print(sorted(heavy))")

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "[]"


@pytest.mark.slow
def test_help_of_every_command_loads_no_heavy_libraries():
    # What keeps `edgewise --help` fast, checked without a stopwatch: no heavy import on the way.
    code = ("import sys\nfrom click.testing import CliRunner\nfrom edgewise.cli import cli\n"
            "helps = [['--help'], ['bench', 'run', '--help'], ['bench', 'compare', '--help']]\n"
            "helps += [[name, '--help'] for name in cli.commands]\n"
            "for args in helps:\n"
            "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
            "heavy = {'torch', 'transformers', 'onnxruntime', 'tensorrt', 'pandas', 'sklearn', 'datasets', 'onnx'}\n"
            "print(sorted(heavy & set(sys.modules)))")

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "[]"


def test_env_json_reports_cpu_and_packages(cli_run):
    result = cli_run("env", "--json")

    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert report["cpu"]["logical_cores"] >= 1 and isinstance(report["cpu"]["isa"], list)
    assert "CPUExecutionProvider" in report["onnxruntime_providers"]
    assert report["packages"]["torch"] and "tensorrt" in report


def test_env_table(cli_run):
    result = cli_run("env")

    assert result.exit_code == 0 and "onnxruntime providers" in result.stdout and "isa" in result.stdout


def _record(monkeypatch, module: str, name: str, result=None) -> dict:
    """Patch the stage function the registry resolves; what the command passed lands in the dict."""
    import importlib

    seen = {}

    def fake(src, dst, config, *, data=None, overwrite=False, resume=False):
        seen.update(args=(src, dst, config), kw={"data": data, "overwrite": overwrite, "resume": resume})
        return result

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return seen


def _record_quantize(monkeypatch) -> dict:
    import edgewise.quantize.report

    monkeypatch.setattr(edgewise.quantize.report, "render", lambda manifest: None)  # the fake writes no manifest
    return _record(monkeypatch, "edgewise.quantize.stage", "quantize")


def test_finetune_maps_flags_to_config(cli_run, monkeypatch, tmp_path):
    seen = _record(monkeypatch, "edgewise.finetune.stage", "finetune")

    result = cli_run("finetune", "builtin:all-minilm-l6-v2", "data.csv", "-o", tmp_path / "t", "--epochs", "2",
                     "--lr", "1e-4", "--batch-size", "8", "--max-length", "128", "--pad-to-max-length",
                     "--text-pair-column", "q2", "--label-column", "y", "--best-metric", "accuracy",
                     "--seed", "7", "--resume", "--overwrite")

    assert result.exit_code == 0, result.output
    pretrained, dst, config = seen["args"]
    assert (pretrained, dst) == ("builtin:all-minilm-l6-v2", tmp_path / "t")
    trainer = config.trainer
    assert (trainer.epochs, trainer.learning_rate, trainer.batch_size, config.max_length) == (2.0, 1e-4, 8, 128)
    assert trainer.dynamic_padding is False and trainer.best_metric.value == "accuracy"
    assert (config.data.text_pair_column, config.data.label_column, config.data.seed) == ("q2", "y", 7)
    assert seen["kw"] == {"data": "data.csv", "overwrite": True, "resume": True}


def test_finetune_and_distill_keep_their_own_trainer_defaults(cli_run, monkeypatch, tmp_path):
    finetuned = _record(monkeypatch, "edgewise.finetune.stage", "finetune")
    distilled = _record(monkeypatch, "edgewise.distill.stage", "distill")

    cli_run("finetune", "builtin:all-minilm-l6-v2", "data.csv", "-o", tmp_path / "t", "--epochs", "1")
    cli_run("distill", "teacher", "data.csv", "-o", tmp_path / "s", "--epochs", "1", "--split", "extra")

    from edgewise.distill.config import DistillConfig
    from edgewise.finetune.config import FinetuneConfig

    finetune_config, distill_config = finetuned["args"][2], distilled["args"][2]
    assert finetune_config.trainer.learning_rate == FinetuneConfig().trainer.learning_rate == 5e-5
    assert distill_config.trainer.learning_rate == DistillConfig().trainer.learning_rate == 1e-4
    assert (distill_config.trainer.epochs, distill_config.trainer.train_split) == (1.0, "extra")
    assert distill_config.trainer.batch_size == DistillConfig().trainer.batch_size


def test_defaults_on_the_command_line_build_the_default_config(cli_run, monkeypatch, tmp_path):
    from edgewise.quantize.config import QuantizeConfig

    seen = _record_quantize(monkeypatch)

    assert cli_run("quantize", "onnx", "-o", tmp_path / "q").exit_code == 0
    assert seen["args"][2] == QuantizeConfig()


@pytest.mark.slow
def test_finetune_cli_happy_path_keeps_stdout_clean(cli_run, tiny_encoder, tiny_data, tmp_path):
    result = cli_run("finetune", tiny_encoder, tiny_data, "-o", tmp_path / "t", "--epochs", "1", "--max-length", "16")

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "wrote" in result.stderr and (tmp_path / "t" / MANIFEST_NAME).is_file()


def test_evaluate_cli_prints_tables_and_json(cli_run, tiny_teacher, tiny_data):
    table = cli_run("evaluate", tiny_teacher, tiny_data, "--split", "validation")
    as_json = cli_run("evaluate", tiny_teacher, tiny_data, "--json")

    assert table.exit_code == 0 and "confusion matrix" in table.stdout and "macro-F1" in table.stdout
    result = json.loads(as_json.stdout)
    assert result["split"] == "test" and 0.9 <= result["accuracy"] <= 1.0 and len(result["confusion_matrix"]) == 3


def test_lineage_cli_table_and_json(cli_run, tiny_teacher):
    table = cli_run("lineage", tiny_teacher)
    chain = json.loads(cli_run("lineage", tiny_teacher, "--json").stdout)

    assert table.exit_code == 0 and "finetune" in table.stdout and "pretrained" in table.stdout
    assert [e["stage"] for e in chain] == ["finetune", "pretrained"]
    assert "macro-F1" in table.stdout and f"{chain[0]['metrics']['macro_f1']:.4f}" in table.stdout


def test_lineage_never_cuts_a_long_path_when_the_output_is_not_a_terminal(cli_run, tiny_teacher, tmp_path):
    deep = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / "and-another-level-below-it" / "teacher"
    shutil.copytree(tiny_teacher, deep)

    table = cli_run("lineage", deep)

    assert table.exit_code == 0 and "…" not in table.stdout
    assert str(deep) in table.stdout.replace("\n", "") or str(deep) in "".join(
        line.strip(" │┃") for line in table.stdout.splitlines())


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgewise", "--debug", "lineage", str(tmp_path)],
                            capture_output=True, text=True)

    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "EdgewiseError" in result.stderr


# --- bad inputs: one `Error:` line, exit 2, no traceback, nothing overwritten ---------------------

@pytest.fixture
def existing_output(tmp_path):
    """An output folder from an earlier run, which no failed command may touch."""
    out = tmp_path / "runs" / "old"
    out.mkdir(parents=True)
    (out / MANIFEST_NAME).write_text("{}")
    (out / "model.safetensors").write_bytes(b"old weights")
    return out


def _untouched(path):
    return (path / "model.safetensors").read_bytes() == b"old weights" and not list(
        path.parent.glob(".*.partial"))


def _pickle_model(src, dst):
    shutil.copytree(src, dst)
    (dst / "model.safetensors").rename(dst / "pytorch_model.bin")
    return dst


BAD_FINETUNE = {
    "missing-model": (lambda t, enc, data: ["finetune", t / "nope", data],
                      ["does not exist"]),
    "not-a-model-folder": (lambda t, enc, data: ["finetune", data, data],
                           ["not a transformers model folder", "save_pretrained"]),
    "pickle-refused": (lambda t, enc, data: ["finetune", _pickle_model(enc, t / "pk"), data],
                       ["pickle", "--allow-pickle"]),
    "unknown-builtin": (lambda t, enc, data: ["finetune", "builtin:gpt5", data],
                        ["builtin:all-minilm-l6-v2"]),
    "missing-data": (lambda t, enc, data: ["finetune", enc, t / "nope.csv"],
                     ["does not exist", "builtin:bbc-news"]),
    "wrong-text-column": (lambda t, enc, data: ["finetune", enc, data, "--text-column", "sentence"],
                          ["no text column 'sentence'", "text, label"]),
    "wrong-label-column": (lambda t, enc, data: ["finetune", enc, data, "--label-column", "y"],
                           ["no label column 'y'"]),
    "empty-data": (lambda t, enc, data: ["finetune", enc, write_csv(t / "empty.csv", [])],
                   ["is empty"]),
    "single-label": (lambda t, enc, data: ["finetune", enc, write_csv(t / "one.csv", [("a", "x")] * 5)],
                     ["single label"]),
    "unknown-validation-label": (
        lambda t, enc, data: ["finetune", enc, _folder(t, [("a", "x"), ("b", "y")], [("c", "z")])],
        ["'z'", "never in the train split"]),
    "bad-extension": (lambda t, enc, data: ["finetune", enc, _touch(t / "data.xlsx")],
                      ["unsupported extension .xlsx"]),
    "bad-epochs": (lambda t, enc, data: ["finetune", enc, data, "--epochs", "0"],
                   ["epochs must be > 0"]),
    "negative-seed": (lambda t, enc, data: ["finetune", enc, data, "--seed", "-1"],
                      ["seed must be >= 0"]),
    "missing-train-split": (lambda t, enc, data: ["finetune", enc, data, "--split", "extra"],
                            ["no 'extra' split to train on"]),
    "bad-validation-fraction": (lambda t, enc, data: ["finetune", enc, data, "--validation-fraction", "1.5"],
                                ["validation_fraction"]),
    "max-length-too-long": (lambda t, enc, data: ["finetune", enc, data, "--max-length", "4096"],
                            ["exceeds the model's limit of 64"]),
    "resume-nothing": (lambda t, enc, data: ["finetune", enc, data, "--resume"],
                       ["nothing to resume"]),
}


def _touch(path):
    path.write_text("x")
    return path


def _folder(t, train, validation):
    folder = t / "split"
    folder.mkdir()
    write_csv(folder / "train.csv", train * 3)
    write_csv(folder / "validation.csv", validation)
    return folder


@pytest.mark.parametrize("case", sorted(BAD_FINETUNE))
def test_finetune_bad_input_is_one_error_line(cli_run, tmp_path, tiny_encoder, tiny_data, case):
    make, fragments = BAD_FINETUNE[case]
    args = make(tmp_path, tiny_encoder, tiny_data)

    result = cli_run(*args, "-o", tmp_path / "out", "--epochs" if "--epochs" not in args else "--seed", "1")

    assert_user_error(result, *fragments)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.partial"))


def test_finetune_refuses_existing_output(cli_run, tiny_encoder, tiny_data, existing_output):
    result = cli_run("finetune", tiny_encoder, tiny_data, "-o", existing_output, "--epochs", "1")

    assert_user_error(result, "already exists", "--overwrite")
    assert _untouched(existing_output)


def test_finetune_refuses_output_equal_to_model(cli_run, tiny_encoder, tiny_data):
    before = sorted(p.name for p in tiny_encoder.iterdir())

    result = cli_run("finetune", tiny_encoder, tiny_data, "-o", tiny_encoder, "--overwrite")

    assert_user_error(result, "is the input")
    assert sorted(p.name for p in tiny_encoder.iterdir()) == before


def test_finetune_refuses_leftover_partial_without_resume(cli_run, tiny_encoder, tiny_data, tmp_path):
    (tmp_path / ".t.partial" / "checkpoints" / "checkpoint-5").mkdir(parents=True)

    result = cli_run("finetune", tiny_encoder, tiny_data, "-o", tmp_path / "t")

    assert_user_error(result, "interrupted run", "--resume", "--overwrite")
    assert (tmp_path / ".t.partial" / "checkpoints" / "checkpoint-5").is_dir()


def test_finetune_missing_output_option_is_one_error_line(cli_run, tiny_encoder, tiny_data):
    result = cli_run("finetune", tiny_encoder, tiny_data)

    assert_user_error(result, "Missing option '-o'", "edgewise finetune --help")


def test_finetune_bad_choice_is_one_error_line(cli_run, tiny_encoder, tiny_data, tmp_path):
    result = cli_run("finetune", tiny_encoder, tiny_data, "-o", tmp_path / "o", "--best-metric", "loss")

    assert_user_error(result, "'loss' is not one of")


def test_unknown_command_is_one_error_line(cli_run):
    assert_user_error(cli_run("distil"), "No such command 'distil'")


def test_unknown_group_option_is_one_error_line(cli_run):
    assert_user_error(cli_run("--bogus", "env"), "No such option '--bogus'")


def test_failed_overwrite_keeps_the_old_output(cli_run, tiny_encoder, tmp_path, existing_output):
    bad = write_csv(tmp_path / "bad.csv", [("apple", "fruit")] * 4 + [("red", "colour")] * 4)
    (tmp_path / "split").mkdir()
    write_csv(tmp_path / "split" / "train.csv", [("apple", "fruit"), ("red", "colour")] * 4)
    write_csv(tmp_path / "split" / "test.csv", [("car", "vehicle")])

    for data in (tmp_path / "split", bad):
        args = ["--max-length", "4096"] if data == bad else []
        result = cli_run("finetune", tiny_encoder, data, "-o", existing_output, "--overwrite", *args)

        assert_user_error(result)
        assert _untouched(existing_output)


def test_finetune_model_folder_without_tokenizer_is_one_error_line(cli_run, tiny_encoder, tiny_data, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_encoder / name, bare / name)

    result = cli_run("finetune", bare, tiny_data, "-o", tmp_path / "o")

    assert_user_error(result, "no tokenizer files", "tokenizer.save_pretrained")
    assert not (tmp_path / "o").exists()


BAD_EVALUATE = {
    "unknown-label": (lambda t, m, d: [m, write_csv(t / "d.csv", [("apple", "fruit"), ("car", "vehicle")])],
                      ["'vehicle'", "unknown to the model"]),
    "missing-label-column": (lambda t, m, d: [m, d, "--label-column", "gold"], ["no label column 'gold'"]),
    "missing-split": (lambda t, m, d: [m, d, "--split", "holdout"], ["no 'holdout' split"]),
    "not-a-model": (lambda t, m, d: [d, d], ["not a model folder"]),
    "missing-model": (lambda t, m, d: [t / "none", d], ["does not exist"]),
    "model-is-a-file": (lambda t, m, d: [m / "config.json", d], ["is a file"]),
    "tampered": (lambda t, m, d: [_tamper(m, t), d], ["changed since edgewise wrote it", "config.json"]),
    "corrupt-manifest": (lambda t, m, d: [_corrupt_manifest(m, t), d], ["not valid JSON"]),
    "bad-batch-size": (lambda t, m, d: [m, d, "--batch-size", "0"], ["batch_size must be >= 1"]),
    "max-length-too-long": (lambda t, m, d: [m, d, "--max-length", "100000"], ["exceeds the model's limit of 64"]),
    "file-added": (lambda t, m, d: [_add_file(m, t), d], ["pytorch_model.bin: added"]),
}


def _copy(m, t):
    dst = t / "copy"
    shutil.copytree(m, dst)
    return dst


def _add_file(m, t):
    dst = _copy(m, t)
    (dst / "pytorch_model.bin").write_bytes(b"not from edgewise")
    return dst


def _tamper(m, t):
    dst = _copy(m, t)
    (dst / "config.json").write_text((dst / "config.json").read_text().replace("fruit", "fruits"))
    return dst


def _corrupt_manifest(m, t):
    dst = _copy(m, t)
    (dst / MANIFEST_NAME).write_text("{truncated")
    return dst


@pytest.mark.parametrize("case", sorted(BAD_EVALUATE))
def test_evaluate_bad_input_is_one_error_line(cli_run, tmp_path, tiny_teacher, tiny_data, case):
    make, fragments = BAD_EVALUATE[case]

    result = cli_run("evaluate", *make(tmp_path, tiny_teacher, tiny_data))

    assert_user_error(result, *fragments)
    assert result.stdout == ""


def test_lineage_of_a_foreign_folder_is_one_error_line(cli_run, tiny_encoder):
    assert_user_error(cli_run("lineage", tiny_encoder), "has no edgewise.json")


@pytest.mark.slow
def test_python_m_edgewise_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgewise", "lineage", str(tmp_path)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})

    assert result.returncode == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1 and result.stdout == ""


# --- export / bundle -------------------------------------------------------------------------------

def test_export_maps_flags_to_config(cli_run, monkeypatch, tmp_path):
    seen = _record(monkeypatch, "edgewise.export.stage", "export")

    result = cli_run("export", tmp_path / "onnx", "-o", tmp_path / "trt", "--format", "tensorrt", "--fp16",
                     "--batch", "1:4:16", "--seq", "8:64:128", "--opset", "18", "--atol", "1e-3",
                     "--data", "builtin:bbc-news", "--verify-samples", "500", "--workspace-mb", "512",
                     "--timing-cache", "old.cache", "--max-length", "64", "--no-verify", "--ort-target", "amd64",
                     "--text-column", "sentence", "--text-pair-column", "q2")

    assert result.exit_code == 0, result.output
    src, dst, config = seen["args"]
    assert (config.format.value, config.fp16, config.batch, config.seq) == ("tensorrt", True, (1, 4, 16), (8, 64, 128))
    assert (config.opset, config.atol, config.verify_samples, config.workspace_mb) == (18, 1e-3, 500, 512)
    assert (config.timing_cache, config.max_length, config.verify, config.ort_target.value) == (
        "old.cache", 64, False, "amd64")
    assert (config.data.text_column, config.data.text_pair_column) == ("sentence", "q2")
    assert seen["kw"] == {"data": "builtin:bbc-news", "overwrite": False, "resume": False}


def test_export_single_number_profile_means_all_three(cli_run, monkeypatch, tmp_path):
    seen = _record(monkeypatch, "edgewise.export.stage", "export")

    result = cli_run("export", tmp_path / "onnx", "-o", tmp_path / "trt", "--format", "tensorrt", "--batch", "4")

    assert result.exit_code == 0, result.output
    assert seen["args"][2].batch == (4, 4, 4)


def test_export_bad_profile_is_one_error_line(cli_run, tmp_path):
    result = cli_run("export", tmp_path / "onnx", "-o", tmp_path / "trt", "--seq", "8:x:128")

    assert_user_error(result, "--seq", "not a colon-separated list of integers", "8:64:128")


def test_export_and_bundle_cli_happy_path(cli_run, tiny_teacher, tiny_data, tmp_path):
    exported = cli_run("export", tiny_teacher, "-o", tmp_path / "onnx", "--data", tiny_data, "--optimize")
    bundled = cli_run("bundle", tmp_path / "onnx", "-o", tmp_path / "deploy")
    evaluated = cli_run("evaluate", tmp_path / "deploy", tiny_data, "--json")

    assert exported.exit_code == 0 and "ONNX vs PyTorch: max |diff|" in exported.stderr and exported.stdout == ""
    assert bundled.exit_code == 0 and (tmp_path / "deploy" / "model.onnx").is_file()
    assert json.loads(evaluated.stdout)["backend"] == "ort-cpu"


def _optimized(teacher, t):
    from edgewise.export import ExportConfig, export

    export(teacher, t / "opt", ExportConfig(optimize=True, verify=False))
    return t / "opt"


def _foreign_onnx(t):
    folder = t / "foreign-onnx"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage that is not protobuf")
    (folder / "config.json").write_text('{"id2label": {"0": "a", "1": "b"}}')
    return folder


BAD_EXPORT = {
    "onnx-from-onnx": (lambda t, teacher, onnx: ["export", onnx], ["needs an 'hf' artifact"]),
    "ort-from-hf": (lambda t, teacher, onnx: ["export", teacher, "--format", "ort"], ["export it to ONNX first"]),
    "bad-profile": (lambda t, teacher, onnx: ["export", onnx, "--format", "tensorrt", "--batch", "4:2:1"],
                    ["MIN <= OPT <= MAX"]),
    "optimize-ort": (lambda t, teacher, onnx: ["export", onnx, "--format", "ort", "--optimize"],
                     ["--optimize applies to --format onnx"]),
    "corrupt-onnx": (lambda t, teacher, onnx: ["export", _foreign_onnx(t), "--format", "ort"],
                     ["not a readable ONNX model"]),
    "bad-format": (lambda t, teacher, onnx: ["export", teacher, "--format", "tflite"], ["'tflite' is not one of"]),
    "missing-src": (lambda t, teacher, onnx: ["export", t / "nope"], ["does not exist"]),
    "bundle-from-hf": (lambda t, teacher, onnx: ["bundle", teacher], ["this step needs 'onnx' or 'ort'"]),
    "bundle-ort-missing": (lambda t, teacher, onnx: ["bundle", onnx, "--model-format", "ort"], ["has no model.ort"]),
    "max-length-over-limit": (lambda t, teacher, onnx: ["export", teacher, "--max-length", "1024"],
                              ["exceeds the model's limit of 64"]),
    "bundle-max-length-over-limit": (lambda t, teacher, onnx: ["bundle", onnx, "--max-length", "1024"],
                                     ["exceeds the model's limit of 64"]),
    "trt-from-optimized": (lambda t, teacher, onnx: ["export", _optimized(teacher, t), "--format", "tensorrt"],
                           ["only ONNX Runtime has", "without --optimize"]),
    "missing-timing-cache": (lambda t, teacher, onnx: ["export", onnx, "--format", "tensorrt", "--timing-cache",
                                                       t / "none.cache"], ["does not exist"]),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPORT))
def test_export_bad_input_is_one_error_line(cli_run, tmp_path, tiny_teacher, tiny_onnx, case):
    make, fragments = BAD_EXPORT[case]

    result = cli_run(*make(tmp_path, tiny_teacher, tiny_onnx), "-o", tmp_path / "out")

    assert_user_error(result, *fragments)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.partial"))


def test_export_refuses_existing_output(cli_run, tiny_teacher, existing_output):
    result = cli_run("export", tiny_teacher, "-o", existing_output)

    assert_user_error(result, "already exists")
    assert _untouched(existing_output)


def test_export_tensorrt_without_tensorrt_is_one_error_line_with_the_script(cli_run, tiny_onnx, tmp_path):
    from edgewise.export.tensorrt import probe

    if probe()[0] is not None:
        pytest.skip("TensorRT and a CUDA GPU are here: the engine is built")

    result = cli_run("export", tiny_onnx, "-o", tmp_path / "trt", "--format", "tensorrt", "--fp16")

    assert_user_error(result, "no TensorRT engine was built here", "bash build_engine.sh")
    assert (tmp_path / "trt" / "build_engine.sh").is_file() and (tmp_path / "trt" / "model.onnx").is_file()


def test_evaluate_tensorrt_artifact_without_engine_is_one_error_line(cli_run, tiny_onnx, tiny_data, tmp_path):
    from edgewise.export.tensorrt import probe

    if probe()[0] is not None:
        pytest.skip("TensorRT and a CUDA GPU are here: the engine is built")
    cli_run("export", tiny_onnx, "-o", tmp_path / "trt", "--format", "tensorrt")

    assert_user_error(cli_run("evaluate", tmp_path / "trt", tiny_data), "has no model.engine yet",
                      "bash " + str(tmp_path / "trt" / "build_engine.sh"))
    # Its model.onnx still evaluates through onnxruntime.
    assert json.loads(cli_run("evaluate", tmp_path / "trt", tiny_data, "--backend", "ort-cpu", "--json").stdout)[
        "samples"] == 60


def test_missing_full_extra_names_the_pip_command(cli_run, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optimum.exporters.onnx", None)

    result = cli_run("export", tiny_teacher, "-o", tmp_path / "onnx")

    assert_user_error(result, "optimum.exporters.onnx", "pip install 'edgewise[full]'")


# --- bench ----------------------------------------------------------------------------------------

def test_bench_maps_flags_to_config(cli_run, monkeypatch, tmp_path):
    seen = _record(monkeypatch, "edgewise.bench.stage", "bench", result={"results": []})

    result = cli_run("bench", "a", "b", "--backend", "torch", "--backend", "ort-cpu", "--batch-sizes", "1,8",
                     "--threads", "1", "--seq-len", "128", "--data", "builtin:bbc-news", "--rounds", "7",
                     "--min-runs", "20", "--min-time", "0.5", "-o", tmp_path / "r", "--json", "--warmup", "3",
                     "--split", "validation", "--accuracy-samples", "100", "--eval-batch-size", "16",
                     "--text-column", "sentence", "--label-column", "y")

    assert result.exit_code == 0, result.output
    artifacts, output, config = seen["args"]
    assert [str(a) for a in artifacts] == ["a", "b"] and output == tmp_path / "r"
    assert (config.backends, config.batch_sizes, config.threads, config.seq_len) == (
        ("torch", "ort-cpu"), (1, 8), 1, "128")
    assert (config.rounds, config.min_runs, config.min_time_s, config.warmup) == (7, 20, 0.5, 3)
    assert (config.split, config.accuracy_samples, config.eval_batch_size) == ("validation", 100, 16)
    assert (config.data.text_column, config.data.label_column) == ("sentence", "y")
    assert seen["kw"] == {"data": "builtin:bbc-news", "overwrite": False, "resume": False}
    assert json.loads(result.stdout) == {"results": []}


def test_bench_without_output_passes_none(cli_run, monkeypatch):
    seen = _record(monkeypatch, "edgewise.bench.stage", "bench", result={"results": []})

    result = cli_run("bench", "run", "a", "--json")

    assert result.exit_code == 0, result.output
    assert seen["args"][1] is None and [str(a) for a in seen["args"][0]] == ["a"]


def test_bench_cli_writes_a_report_and_prints_the_ladder(cli_run, tiny_onnx, tmp_path):
    result = cli_run("bench", tiny_onnx, "--threads", "1", "--min-runs", "5", "--min-time", "0", "--rounds", "1",
                     "-o", tmp_path / "r")

    assert result.exit_code == 0, result.output
    assert "| teacher-onnx | ort-cpu | 1 |" in result.stdout and (tmp_path / "r" / "pareto.png").is_file()


def _report_file(path, p50, low, high, accuracy=0.9):
    path.write_text(json.dumps({"schema_version": 1, "results": [{
        "artifact": "m", "backend": "ort-cpu", "batch_size": 1, "seq_len": 16, "status": "ok",
        "latency_ms": {"p50": p50, "p50_ci95": [low, high]}, "accuracy": accuracy}]}))
    return path


def test_bench_compare_exit_codes_and_step_summary(cli_run, tmp_path, monkeypatch):
    baseline = _report_file(tmp_path / "base.json", 10.0, 9.9, 10.1)
    same = _report_file(tmp_path / "same.json", 10.2, 10.0, 10.4)
    slower = _report_file(tmp_path / "slow.json", 20.0, 19.8, 20.2)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    passed = cli_run("bench", "compare", same, baseline, "--max-latency-regression", "10%")
    failed = cli_run("bench", "compare", slower, baseline, "--max-latency-regression", "10%")

    assert passed.exit_code == 0 and "passed" in passed.stdout
    assert failed.exit_code == 1 and "FAILED (1 regression(s))" in failed.stdout and "+100.0 %" in failed.stdout
    assert summary.read_text().count("## edgewise bench compare") == 2
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no" / "such" / "dir" / "summary.md"))
    unwritable = cli_run("bench", "compare", slower, baseline)
    assert unwritable.exit_code == 1 and "could not write $GITHUB_STEP_SUMMARY" in unwritable.stderr


BAD_BENCH = {
    "missing-artifact": (lambda t, onnx: ["bench", t / "none"], ["does not exist"]),
    "bad-backend": (lambda t, onnx: ["bench", onnx, "--backend", "gpu"], ["'gpu' is not one of"]),
    "bad-batch-sizes": (lambda t, onnx: ["bench", onnx, "--batch-sizes", "1,x"], ["not a comma-separated list"]),
    "bad-seq-len": (lambda t, onnx: ["bench", onnx, "--seq-len", "long"], ["seq_len must be"]),
    "seq-len-data-without-data": (lambda t, onnx: ["bench", onnx, "--seq-len", "data"], ["pass --data"]),
    "compare-missing-report": (lambda t, onnx: ["bench", "compare", t / "a.json", t / "b.json"], ["does not exist"]),
    "compare-bad-threshold": (lambda t, onnx: ["bench", "compare", _report_file(t / "a.json", 1, 1, 1),
                                               _report_file(t / "b.json", 1, 1, 1), "--max-latency-regression",
                                               "lots"], ["not a percentage"]),
    "compare-not-a-report": (lambda t, onnx: ["bench", "compare", _touch(t / "a.json"), _touch(t / "b.json")],
                             ["not a readable JSON report"]),
    "same-artifact-twice": (lambda t, onnx: ["bench", onnx, onnx], ["is given twice"]),
    "too-few-texts-for-batch": (lambda t, onnx: ["bench", onnx, "--data", write_csv(t / "d.csv", [("apple", "fruit")]),
                                                 "--batch-sizes", "8"], ["needs at least 8 evaluation texts"]),
}


@pytest.mark.parametrize("case", sorted(BAD_BENCH))
def test_bench_bad_input_is_one_error_line(cli_run, tmp_path, tiny_onnx, case):
    make, fragments = BAD_BENCH[case]

    assert_user_error(cli_run(*make(tmp_path, tiny_onnx)), *fragments)


# --- distill --------------------------------------------------------------------------------------

def test_distill_maps_flags_to_config(cli_run, monkeypatch, tmp_path):
    seen = _record(monkeypatch, "edgewise.distill.stage", "distill")

    result = cli_run("distill", "runs/teacher", "data.csv", "-o", tmp_path / "s", "--layer-map", "0,2,5",
                     "--temperature", "2", "--alpha", "0.5", "--hidden-weight", "1", "--attention-weight", "0.5",
                     "--no-cache-logits", "--unlabeled", "more.txt", "--epochs", "5", "--lr", "2e-4", "--resume")

    assert result.exit_code == 0, result.output
    teacher, dst, config = seen["args"]
    assert (str(teacher), dst) == ("runs/teacher", tmp_path / "s")
    assert (config.layer_map, config.temperature, config.alpha, config.hidden_weight, config.attention_weight) == (
        (0, 2, 5), 2.0, 0.5, 1.0, 0.5)
    assert (config.cache_logits, config.trainer.epochs, config.trainer.learning_rate) == (False, 5.0, 2e-4)
    assert config.unlabeled == "more.txt"
    assert seen["kw"] == {"data": "data.csv", "overwrite": False, "resume": True}


@pytest.mark.slow
def test_distill_cli_happy_path(cli_run, tiny_teacher, tiny_data, tmp_path):
    result = cli_run("distill", tiny_teacher, tiny_data, "-o", tmp_path / "s", "--layers", "1", "--epochs", "1")

    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "wrote" in result.stderr and "of the teacher's parameters" in result.stderr


BAD_DISTILL = {
    "two-student-kinds": (lambda t, teacher, data: ["distill", teacher, data, "--layers", "1", "--layer-map", "0"],
                          ["choose one kind of student"]),
    "bad-layer-map": (lambda t, teacher, data: ["distill", teacher, data, "--layer-map", "1,0"],
                      ["increasing order"]),
    "too-many-layers": (lambda t, teacher, data: ["distill", teacher, data, "--layers", "9"],
                        ["exceeds the teacher's 2 layers"]),
    "bad-student-config": (lambda t, teacher, data: ["distill", teacher, data, "--student-config", "depth=2"],
                           ["KEY=N pairs"]),
    "alpha-out-of-range": (lambda t, teacher, data: ["distill", teacher, data, "--alpha", "2"], ["alpha must be"]),
    "missing-unlabeled": (lambda t, teacher, data: ["distill", teacher, data, "--unlabeled", t / "none.txt"],
                          ["does not exist"]),
    "teacher-not-hf": (lambda t, teacher, data: ["distill", data, data], ["not a model folder"]),
    "missing-student": (lambda t, teacher, data: ["distill", teacher, data, "--student", t / "none"],
                        ["does not exist"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DISTILL))
def test_distill_bad_input_is_one_error_line(cli_run, tmp_path, tiny_teacher, tiny_data, case):
    make, fragments = BAD_DISTILL[case]

    assert_user_error(cli_run(*make(tmp_path, tiny_teacher, tiny_data), "-o", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.partial"))


def _unrecorded_onnx(t, onnx):
    """The ONNX model without its manifest: no lineage, so no recorded training data."""
    folder = t / "unrecorded-onnx"
    shutil.copytree(onnx, folder)
    (folder / MANIFEST_NAME).unlink()
    return folder


def _csv(t, rows, header=("text", "label")):
    return write_csv(t / "q.csv", rows, header)


def _int8(onnx, t):
    from edgewise.quantize import quantize

    quantize(onnx, t / "int8")
    return t / "int8"


BAD_QUANTIZE = {
    "inc-from-onnx": (lambda t, teacher, onnx: ["quantize", onnx, "--method", "inc"], ["needs an 'hf' artifact"]),
    "dynamic-from-hf": (lambda t, teacher, onnx: ["quantize", teacher], ["export it first"]),
    "corrupt-onnx": (lambda t, teacher, onnx: ["quantize", _foreign_onnx(t)], ["not a readable ONNX model"]),
    "static-without-calibration": (lambda t, teacher, onnx: ["quantize", _unrecorded_onnx(t, onnx), "--method",
                                                             "static"], ["pass --calibration DATA"]),
    "bad-calibration-method": (lambda t, teacher, onnx: ["quantize", onnx, "--calibration-method", "kl"],
                               ["'kl' is not one of"]),
    "unknown-labels": (lambda t, teacher, onnx: ["quantize", onnx, "--data", _csv(t, [("rain", "weather")] * 4)],
                       ["weather"]),
    "wrong-columns": (lambda t, teacher, onnx: ["quantize", onnx, "--data", _csv(t, [("a", "b")], ("q", "y"))],
                      ["text"]),
    "empty-data": (lambda t, teacher, onnx: ["quantize", onnx, "--data", _csv(t, [])], ["q.csv"]),
    "already-quantized": (lambda t, teacher, onnx: ["quantize", _int8(onnx, t)], ["already quantized",
                                                                                   "FP32 parent"]),
    "unknown-exclude-node": (lambda t, teacher, onnx: ["quantize", onnx, "--exclude-node", "/bert/nope/MatMul"],
                             ["--exclude-node names no node", "/bert/nope/MatMul"]),
    "fallback-layers-not-numbers": (lambda t, teacher, onnx: ["quantize", onnx, "--fallback-layers", "a,b"],
                                    ["--fallback-layers", "not a comma-separated list of integers", "1,2,4"]),
    "search-without-validation-data": (lambda t, teacher, onnx: ["quantize", _unrecorded_onnx(t, onnx),
                                                                 "--max-accuracy-drop", "1"],
                                       ["labelled validation data", "--data"]),
    "missing-calibration": (lambda t, teacher, onnx: ["quantize", onnx, "--method", "static", "--calibration",
                                                      t / "none.csv"], ["does not exist"]),
    "fp16-search": (lambda t, teacher, onnx: ["quantize", onnx, "--method", "fp16", "--max-accuracy-drop", "1"],
                    ["drop --method fp16"]),
    "negative-drop": (lambda t, teacher, onnx: ["quantize", onnx, "--max-accuracy-drop", "-1"],
                      ["max_accuracy_drop must be between 0 and 100"]),
    "bad-fallback-layers": (lambda t, teacher, onnx: ["quantize", onnx, "--fallback-layers", "0"],
                            ["fallback_layers must be counts >= 1"]),
    "missing-src": (lambda t, teacher, onnx: ["quantize", t / "nope"], ["does not exist"]),
}


@pytest.mark.parametrize("case", sorted(BAD_QUANTIZE))
def test_quantize_bad_input_is_one_error_line(cli_run, tmp_path, tiny_teacher, tiny_onnx, case):
    make, fragments = BAD_QUANTIZE[case]

    assert_user_error(cli_run(*make(tmp_path, tiny_teacher, tiny_onnx), "-o", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.partial"))


def test_quantize_refuses_existing_output(cli_run, tiny_onnx, existing_output):
    result = cli_run("quantize", tiny_onnx, "-o", existing_output)

    assert_user_error(result, "already exists", "--overwrite")
    assert _untouched(existing_output)


def test_quantize_without_inc_installed_names_the_extra(cli_run, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "neural_compressor.torch.quantization", None)

    result = cli_run("quantize", tiny_teacher, "--method", "inc", "-o", tmp_path / "out")

    assert_user_error(result, "pip install 'edgewise[full]'")
    assert not (tmp_path / "out").exists()


def test_quantize_json_reports_size_and_accuracy(cli_run, tiny_onnx, tmp_path, monkeypatch):
    from edgewise.quantize import stage

    monkeypatch.setattr(stage, "MIN_AGREEMENT", 0.0)  # 7-bit weights may change a label or two: not tested here
    result = cli_run("quantize", tiny_onnx, "-o", tmp_path / "int8", "--json", "--per-channel")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == "dynamic" and report["int8"]["per_channel"] is True
    assert set(report["accuracy"]) == {"validation", "test"} and report["size"]["ratio"] < 1
    assert Artifact.load(tmp_path / "int8").manifest.config["values"]["per_channel"] is True
    assert report["warnings"] == []


def test_quantize_table_leads_with_agreement_and_macro_f1_and_warns(cli_run, tiny_onnx, tmp_path, monkeypatch):
    from edgewise.quantize import stage

    monkeypatch.setattr(stage, "MIN_AGREEMENT", 1.01)  # every split now counts as changed too much

    result = cli_run("quantize", tiny_onnx, "-o", tmp_path / "int8")

    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "split" in line)
    assert header.index("agreement") < header.index("macro-F1") < header.index("accuracy")
    assert result.stderr.count("warning:") == 2 and "--max-accuracy-drop" in result.stderr


def test_quantize_command_maps_flags_to_the_config(cli_run, tmp_path, monkeypatch):
    seen = _record_quantize(monkeypatch)

    result = cli_run("quantize", tmp_path / "onnx", "-o", tmp_path / "x", "--method", "static", "--calibration",
                     "cal.csv", "--calibration-method", "percentile", "--samples", "300", "--exclude-op", "Gather",
                     "--exclude-op", "Softmax", "--op-types", "MatMul,Gemm", "--exclude-node", "a,b",
                     "--max-accuracy-drop", "0.5", "--fallback-layers", "1,3", "--per-tensor", "--no-reduce-range",
                     "--data", "d.csv", "--seed", "3")

    assert result.exit_code == 0, result.output
    src, dst, config = seen["args"]
    assert (src, dst) == (tmp_path / "onnx", tmp_path / "x")
    assert config.method.value == "static" and config.calibration_method.value == "percentile"
    assert config.samples == 300 and config.exclude_op == ("Gather", "Softmax") and config.exclude_node == ("a", "b")
    assert config.op_types == ("MatMul", "Gemm") and config.per_channel is False and config.reduce_range is False
    assert config.max_accuracy_drop == 0.5 and config.fallback_layers == (1, 3) and config.calibration == "cal.csv"
    assert config.data.seed == 3 and seen["kw"] == {"data": "d.csv", "overwrite": False, "resume": False}


def test_quantize_leaves_per_channel_to_the_cpu_unless_given(cli_run, tmp_path, monkeypatch):
    seen = _record_quantize(monkeypatch)

    cli_run("quantize", tmp_path / "onnx", "-o", tmp_path / "x")
    default = seen["args"][2]
    cli_run("quantize", tmp_path / "onnx", "-o", tmp_path / "x", "--per-channel")

    assert default.per_channel is None and default.reduce_range is None and seen["args"][2].per_channel is True


def test_config_errors_from_the_command_line_are_one_error_line(cli_run, tmp_path, monkeypatch):
    _record_quantize(monkeypatch)

    result = cli_run("quantize", tmp_path / "onnx", "-o", tmp_path / "x", "--samples", "0")

    assert_user_error(result, "samples must be >= 1")


def test_quantize_json_stays_clean_when_calibration_prints_progress(cli_run, tiny_onnx, tiny_data, tmp_path):
    result = cli_run("quantize", tiny_onnx, "-o", tmp_path / "s8", "--method", "static", "--calibration-method",
                     "entropy", "--samples", "16", "--calibration", tiny_data, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["method"] == "static"


def test_ctrl_c_in_a_stage_says_what_was_kept_and_exits_130(cli_run, tiny_onnx, tmp_path, monkeypatch):
    from edgewise.core.artifact import Artifact
    from edgewise.core.stage import StageOutput

    def stopped_quantize(src, dst, config, **kwargs):
        out = StageOutput("quantize", dst, parent=Artifact.load(src))
        with out:
            (out.artifact / "model.onnx").write_text("half a model")
            raise KeyboardInterrupt

    monkeypatch.setattr("edgewise.quantize.stage.quantize", stopped_quantize)

    result = cli_run("quantize", tiny_onnx, "-o", tmp_path / "int8")

    assert result.exit_code == 130 and "Traceback" not in result.output
    expected = f"Interrupted (Ctrl-C): {tmp_path / 'int8'} was not written (nothing half-written is left)"
    assert result.stderr.strip() == expected
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_a_recipe_says_how_to_go_on(cli_run, tiny_onnx, tmp_path, monkeypatch):
    import yaml

    def stopped(src, dst, config, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("edgewise.quantize.stage.quantize", stopped)
    recipe = tmp_path / "recipe.yaml"
    stages = [{"bundle": {}}, {"quantize": {}, "input": "model"}]
    recipe.write_text(yaml.safe_dump({"version": 1, "model": str(tiny_onnx), "stages": stages}))

    result = cli_run("run", recipe, "-o", tmp_path / "run")

    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (
        f"Interrupted (Ctrl-C): 1 finished stage(s) are kept in {tmp_path / 'run'}: run the same command again to "
        "continue (finished stages are skipped, an interrupted training resumes from its checkpoints)")
