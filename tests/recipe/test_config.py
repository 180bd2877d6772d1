import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.recipe.config import load_recipe, recipe_from_dict
from tests.conftest import assert_user_error

BASE = {"version": 1, "model": "runs/teacher", "data": "data.csv",
        "stages": [{"prune": {"flops": 0.5}}, {"export": {}}, {"quantize": {"method": "dynamic"}}, {"bundle": None},
                   {"quantize": {"method": "static"}, "input": "export"}]}


def _error(raw, *fragments, overrides=()):
    with pytest.raises(EdgewiseError) as info:
        recipe_from_dict(raw, overrides=overrides)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_a_recipe_resolves_to_numbered_steps_that_read_the_one_before():
    recipe = recipe_from_dict(BASE)

    assert [s.folder for s in recipe.steps] == ["01-prune", "02-export", "03-quantize", "04-bundle", "05-quantize-2"]
    assert [s.input for s in recipe.steps] == ["model", "prune", "export", "quantize", "export"]
    assert recipe.steps[0].config.flops == 0.5 and recipe.steps[4].config.method.value == "static"
    assert recipe.steps[0].data == "data.csv" and recipe.steps[3].data is None  # bundle takes no data
    assert recipe.bench.batch_sizes == (1,) and recipe.gate is None
    assert recipe.step("2").id == "export" and recipe.step("05-quantize-2").id == "quantize-2"


def test_list_options_take_the_command_line_text_or_one_value():
    recipe = recipe_from_dict({**BASE, "bench": {"batch_sizes": "1,8", "seq_len": 128, "backends": "ort-cpu"},
                               "gate": {"batch_size": 8}})

    assert recipe.bench.batch_sizes == (1, 8) and recipe.bench.seq_len == "128"
    assert recipe.bench.backends == ("ort-cpu",) and recipe.gate.batch_size == 8


def test_set_overrides_a_stage_option_the_data_and_the_bench():
    recipe = recipe_from_dict(BASE, overrides=("stages.prune.flops=0.6", "stages.quantize-2.method=dynamic",
                                               "data=other.csv", "bench.threads=1", "stages.4.id=deploy"))

    assert recipe.steps[0].config.flops == 0.6 and recipe.steps[4].config.method.value == "dynamic"
    assert recipe.data == "other.csv" and recipe.bench.threads == 1 and recipe.steps[3].id == "deploy"
    assert BASE["stages"][0]["prune"]["flops"] == 0.5  # the caller's dict is not changed


@pytest.mark.parametrize(("change", "fragments"), [
    ({"stagess": []}, ["unknown key stagess", "valid top-level keys are version, model, data, stages"]),
    ({"version": 2}, ["recipe version 2", "upgrade edgewise"]),
    ({"version": "one"}, ["version: Input should be a valid integer", "'one'"]),
    ({"stages": []}, ["stages: List should have at least 1 item"]),
    ({"gate": {"min_speedup": -1}}, ["gate.min_speedup: Input should be greater than 0"]),
    ({"gate": {"speedup": 2}}, ["unknown key gate.speedup"]),
    ({"stages": [{"prune": {"flops": 2}}]}, ["flops must be a fraction in (0, 1], got 2"]),
    ({"stages": [{"prune": {"flop": 0.5}}]}, ["stages[1].prune: unknown setting(s) flop", "valid settings are flops"]),
    ({"stages": [{"prune": {"flops": "half"}}]}, ["stages[1].prune.flops: expected a number, got 'half'"]),
    ({"stages": [{"prune": {"flops": 0.5, "samples": 1.5}}]}, ["stages[1].prune.samples: expected a whole number"]),
    ({"stages": [{"evaluate": {}}]}, ["must name one stage (finetune, distill, prune", "the ladder report's"]),
    ({"stages": [{"prune": {}, "export": {}}]}, ["must name one stage"]),
    ({"stages": [{"export": {}, "input": "quantize"}, {"quantize": {}}]},
     ["stages[1].input 'quantize' names no earlier stage", "earlier: model"]),
    ({"stages": [{"export": {}}, {"bundle": {}}, {"quantize": {}}]},
     ["stages[3]: quantize reads onnx, hf, but 'bundle' writes a 'bundle' artifact"]),
    ({"stages": [{"export": {}, "id": "x"}, {"quantize": {}, "id": "x"}]}, ["two stages are called 'x'"]),
    ({"stages": [{"export": {}, "id": "../up"}]}, ["id must be letters, digits"]),
    ({"data": None, "stages": [{"prune": {"flops": 0.5}}]}, ["prune needs data"]),
    ({"targets": ["ftp://pi"]}, ["recipe: targets: unknown target 'ftp://pi'", "adb://SERIAL"]),
    ({"targets": ["ssh://pi:port"]}, ["targets: target 'ssh://pi:port' is not ssh://[user@]host[:port]"]),
    ({"targets": ["local", "local"]}, ["name each target once"]),
    ({"targets": []}, ["name each target once, at least one"]),
    ({"stages": [{"export": {}, "input": {"a": 1}}]}, ["stages[1].input must name an earlier stage", "{'a': 1}"]),
    ({"targets": ["ssh://pi@h?python=/a", "ssh://pi@h?python=/b"]}, ["would share the report folder report-pi-h/"]),
    ({"bench": {"target": "ssh://pi"}}, ["bench.target: ", "top-level `targets:` list", "targets: [local, ssh://pi]"]),
    ({"stages": ["prune"]}, ["stages[1]: Input should be a valid dictionary"]),
    ({"stages": [{"prune": [0.5]}]}, ["stages[1].prune must be a mapping of prune's options"]),
    ({"stages": [{"prune": {"flops": 0.5}, "data": 5}]}, ["stages[1].data must be a data spec"]),
    ({"gate": {"batch_size": 8}}, ["gate.batch_size 8 is not benched", "bench.batch_sizes [1]"]),
    ({"bench": {"rounds": 0}}, ["recipe: bench: ", "rounds must be >= 1, got 0"]),
    ({"bench": {"batch_sizes": [1, "x"]}}, ["bench.batch_sizes[1]: expected a whole number"]),
])
def test_bad_recipes_are_refused_with_their_place_in_the_file(change, fragments):
    _error({**BASE, **change}, *fragments)


@pytest.mark.parametrize(("override", "fragment"), [
    ("stages.prune=1", "name the stage and its option"), ("flops", "expected KEY=VALUE"),
    ("stages.nothing.flops=1", "has no stage 'nothing'"),
])
def test_bad_overrides_are_refused(override, fragment):
    _error(BASE, fragment, overrides=(override,))


def test_recipe_files_are_read_safely_and_their_errors_point_at_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodel: [unclosed\n")
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("version: 1\nmodel: !!python/object/apply:os.system ['true']\n")

    with pytest.raises(EdgewiseError, match=r"not valid YAML at line \d+, column \d+"):
        load_recipe(bad)
    with pytest.raises(EdgewiseError, match="not valid YAML"):  # safe_load: no Python objects
        load_recipe(tagged)
    with pytest.raises(EdgewiseError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- prune\n")
    with pytest.raises(EdgewiseError, match="must be a mapping"):
        load_recipe(tmp_path / "list.yaml")


def test_recipe_validate_prints_the_stages_or_one_error_line(cli_run, tmp_path):
    import json

    import yaml

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "gate": {"speedup": 2}}))

    result = cli_run("recipe", "validate", good, "--json")
    assert result.exit_code == 0, result.output
    assert [s["folder"] for s in json.loads(result.stdout)["steps"]][-1] == "05-quantize-2"
    assert_user_error(cli_run("recipe", "validate", bad), "unknown key gate.speedup")
    assert_user_error(cli_run("recipe", "validate", good, "--set", "stages.prune.flops=7"), "flops must be")


def test_the_shipped_recipes_are_valid():
    from pathlib import Path

    shipped = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))

    assert [p.name for p in shipped] == ["bbc-demo.yaml", "movies.yaml"]
    for path in shipped:
        assert load_recipe(path).steps[0].stage == "finetune"
    packaged = Path(__file__).parents[2] / "edgewise" / "recipe" / "bbc-demo.yaml"  # what `edgewise demo` runs
    assert packaged.read_text() == shipped[0].read_text()
