import dataclasses
import inspect
import typing

import pytest

from edgewise.bench.config import CompareConfig
from edgewise.cli import cli, config_options, stage_command
from edgewise.core.config import config_from_dict, config_to_dict, setting
from edgewise.core.data import DataConfig
from edgewise.core.stage import STAGES, Stage
from edgewise.finetune.config import TrainerConfig


def _command(stage):
    group = cli.commands[stage.group] if stage.group else cli
    return group.commands[stage.command or stage.name]


def _field_paths(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _field_paths(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_is_a_command_with_an_option_per_config_field(name):
    stage = STAGES[name]
    hidden = lambda path: any(path == h or path.startswith(h + ".") for h in stage.hidden)  # noqa: E731

    command = _command(stage)

    expected = {path for path in _field_paths(stage.config_class) if not hidden(path)}
    offered = {p.path for p in command.params if hasattr(p, "path")}
    assert offered == expected
    assert command.help == stage.help


@pytest.mark.parametrize("name", sorted(STAGES))
def test_command_offers_data_output_resume_and_json_as_the_stage_has_them(name):
    stage = STAGES[name]

    options = {o for p in _command(stage).params for o in p.opts}
    arguments = [p.name for p in _command(stage).params if p.param_type_name == "argument"]

    assert arguments == [stage.argument.lower()] + (["data"] if stage.data == "required" else [])
    assert ("--data" in options) == (stage.data == "optional")
    assert ("--output" in options) == ("--overwrite" in options) == bool(stage.outputs)
    assert ("--resume" in options) == stage.resumable
    assert ("--json" in options) == bool(stage.render)


# Non-default settings per config class, as a manifest or recipe would hold them.
ROUND_TRIP = {
    "FinetuneConfig": {"trainer": {"learning_rate": 1e-3, "epochs": 2}, "max_length": 128, "data": {"seed": 7}},
    "DistillConfig": {"layer_map": [0, 2], "trainer": {"epochs": 1}, "unlabeled": "more.txt", "cache_logits": False},
    "PruneConfig": {"flops": 0.5, "samples": 512, "round_to": 16, "data": {"text_column": "sentence"}},
    "EvaluateConfig": {"split": "test", "backend": "ort-cpu", "data": {"label_column": "y"}},
    "ExportConfig": {"format": "tensorrt", "batch": [1, 4, 16], "fp16": True, "ort_target": "amd64"},
    "BundleConfig": {"model_format": "onnx", "max_length": 64},
    "QuantizeConfig": {"method": "static", "per_channel": False, "fallback_layers": [1, 3], "exclude_op": ["Gather"],
                       "calibration": "cal.csv", "data": {"validation_fraction": 0.2}},
    "BenchConfig": {"backends": ["torch", "ort-cpu"], "batch_sizes": [1, 8], "min_time_s": 0.5, "threads": 2},
    "DataConfig": {"text_column": "sentence", "text_pair_column": "q2", "seed": 7, "encoding": "latin-1"},
    "TrainerConfig": {"learning_rate": 1e-3, "best_metric": "accuracy", "train_split": "extra"},
    "CompareConfig": {"max_latency_regression": 0.2, "allow_missing": True},
}
CONFIGS = {cls.__name__: cls for cls in (*(s.config_class for s in STAGES.values()), DataConfig, TrainerConfig,
                                         CompareConfig)}


def test_every_registered_config_has_a_round_trip_case():
    assert set(CONFIGS) - set(ROUND_TRIP) == set()


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_config_survives_a_round_trip_through_a_dict(name):
    cls = CONFIGS[name]

    changed = config_from_dict(cls, ROUND_TRIP[name])

    assert config_from_dict(cls, config_to_dict(cls())) == cls()
    assert config_from_dict(cls, config_to_dict(changed)) == changed != cls()


def test_partly_given_nested_config_keeps_the_outer_default():
    from edgewise.distill.config import DistillConfig

    config = config_from_dict(DistillConfig, ROUND_TRIP["DistillConfig"])

    assert config.trainer.learning_rate == DistillConfig().trainer.learning_rate != TrainerConfig().learning_rate


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_function_has_the_stage_signature(name):
    parameters = inspect.signature(STAGES[name].run).parameters

    assert list(parameters) == ["src", "dst", "config", "data", "overwrite", "resume"]
    assert [p.kind for p in parameters.values()] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 3 + [
        inspect.Parameter.KEYWORD_ONLY] * 3
    assert [parameters[n].default for n in ("data", "overwrite", "resume")] == [None, False, False]


def test_stage_lookup_names_the_stages():
    from edgewise.core.errors import EdgewiseError
    from edgewise.core.stage import stage

    with pytest.raises(EdgewiseError, match="the stages are finetune"):
        stage("shrink")


# --- what the command generator refuses (at CLI build time) ----------------------------------------

@dataclasses.dataclass(frozen=True)
class Inner:
    split: str = setting("train", "Split to train on.", flag="--split")


@dataclasses.dataclass(frozen=True)
class Clashing:
    split: str | None = setting(None, "Split to score.")
    inner: Inner = dataclasses.field(default_factory=Inner)


@dataclasses.dataclass(frozen=True)
class ClashingWithTheData:
    data: str = setting("x", "A field where --data is the stage's own option.")


@dataclasses.dataclass(frozen=True)
class BareTuple:
    sizes: tuple[int, ...] = setting((1,), "Neither sep nor multiple.")


def _stage(config: str, **kwargs) -> Stage:
    return Stage("fake", f"{__name__}:{config}", "edgewise.quantize.stage:quantize", inputs=("onnx",),
                 outputs=("onnx",), **kwargs)


def test_two_fields_on_one_option_fail_when_the_cli_is_built():
    with pytest.raises(ValueError, match="split and inner.split both map to --split"):
        stage_command(_stage("Clashing"))


def test_a_field_on_a_stage_option_fails_when_the_cli_is_built():
    with pytest.raises(ValueError, match="both map to --data"):
        stage_command(_stage("ClashingWithTheData", data="optional"))


def test_a_hidden_field_resolves_the_clash():
    assert [o.path for o in config_options(Clashing, hidden=("inner",))] == ["split"]


def test_a_tuple_field_without_sep_or_multiple_fails_when_the_cli_is_built():
    with pytest.raises(TypeError, match="sizes: a tuple field needs"):
        stage_command(_stage("BareTuple"))


def test_hiding_an_unknown_field_fails_when_the_cli_is_built():
    with pytest.raises(ValueError, match="no field"):
        config_options(Clashing, hidden=("inner.nope",))
