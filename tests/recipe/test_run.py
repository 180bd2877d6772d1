import json

import pytest
import yaml

from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.recipe import load_recipe, run_recipe

FAST_BENCH = {"threads": 1, "warmup": 1, "min_runs": 3, "min_time_s": 0, "rounds": 2}


def _recipe(tmp_path, teacher, data, **change):
    raw = {"version": 1, "model": str(teacher), "data": str(data),
           "stages": [{"prune": {"flops": 0.6, "samples": 64, "round_to": 16, "seq_len": 32}}, {"export": {}},
                      {"quantize": {"method": "dynamic"}}, {"bundle": None}],
           "bench": FAST_BENCH, **change}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def finished(tiny_teacher, tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe")
    path = _recipe(folder, tiny_teacher, tiny_data)
    result = run_recipe(load_recipe(path), folder / "run")
    return path, folder / "run", result


def test_a_recipe_run_writes_one_artifact_per_stage_and_the_ladder(finished, tiny_teacher):
    _, run, result = finished

    assert [s["status"] for s in result["steps"]] == ["ran"] * 4
    folders = ["01-prune", "02-export", "03-quantize", "04-bundle"]
    assert [s["folder"] for s in result["steps"]] == folders
    parents = [Manifest.read(run / f).parent["path"] for f in folders]
    assert parents == [str(tiny_teacher), *(str(run / f) for f in folders[:-1])]
    ladder = result["ladder"]
    assert [r["artifact"] for r in ladder][0] == "teacher" and len(ladder) == 5
    assert ladder[0]["speedup"] == 1.0 and all(r["accuracy"] is not None and r["size_ratio"] for r in ladder)
    ladder_md = (run / "ladder.md").read_text()
    assert ladder_md.count("x faster") == 4 and "| reference |" in ladder_md
    assert (run / "report" / "report.json").is_file()
    assert yaml.safe_load((run / "recipe.yaml").read_text())["stages"][0]["prune"]["flops"] == 0.6


def test_a_recipe_with_device_targets_writes_a_ladder_per_target(finished, tmp_path, monkeypatch):
    import os
    import sys

    from tests.fake_devices import install_fake_adb

    path, run, _ = finished
    monkeypatch.setenv("PATH", f"{install_fake_adb(tmp_path / 'bin').parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R58M123")
    raw = yaml.safe_load(path.read_text())
    device = f"adb://R58M123?python={sys.executable}&cache={tmp_path / 'cache'}"
    raw["targets"] = ["local", device]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))

    result = run_recipe(load_recipe(tmp_path / "recipe.yaml"), run)

    ladder = json.loads((run / "ladder.json").read_text())
    assert [s["status"] for s in result["steps"]] == ["skip"] * 4  # where a ladder is benched is no stage input
    assert list(ladder["targets"]) == ["local", device] and ladder["ladder"] == ladder["targets"]["local"]
    # The device runs ONNX and bundles only: the teacher and the pruned PyTorch model are left out there.
    assert [r["artifact"] for r in ladder["targets"][device]] == ["02-export", "03-quantize", "04-bundle"]
    assert json.loads((run / "report-R58M123" / "report.json").read_text())["target"] == device
    assert "## On adb://R58M123" in (run / "ladder.md").read_text()


def test_a_device_that_cannot_be_reached_still_leaves_the_local_ladder(finished, tmp_path, monkeypatch):
    import os

    from tests.fake_devices import install_fake_adb

    path, run, _ = finished
    monkeypatch.setenv("PATH", f"{install_fake_adb(tmp_path / 'bin').parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    raw = yaml.safe_load(path.read_text())
    raw["targets"] = ["local", "adb://GONE"]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    (run / "ladder.md").unlink()

    with pytest.raises(EdgewiseError, match="the ladder could not be measured on adb://GONE: adb has no usable device"):
        run_recipe(load_recipe(tmp_path / "recipe.yaml"), run)

    assert "| reference |" in (run / "ladder.md").read_text()  # the local ladder, measured before the device failed


def test_a_rerun_skips_every_unchanged_stage(finished):
    path, run, _ = finished
    before = {f: (run / f / "edgewise.json").read_bytes() for f in ("01-prune", "04-bundle")}

    result = run_recipe(load_recipe(path), run, report=False)

    assert [s["status"] for s in result["steps"]] == ["skip"] * 4
    assert {f: (run / f / "edgewise.json").read_bytes() for f in before} == before


def test_a_changed_option_reruns_from_the_stage_it_affects(finished):
    path, run, _ = finished

    plan = run_recipe(load_recipe(path, ("stages.quantize.per_channel=false",)), run, dry_run=True)
    assert [s["status"] for s in plan["steps"]] == ["skip", "skip", "run", "run"]
    assert plan["steps"][3]["reason"] == "its input (quantize) is made in this run"

    result = run_recipe(load_recipe(path, ("stages.quantize.per_channel=false",)), run, report=False)
    assert [s["status"] for s in result["steps"]] == ["skip", "skip", "ran", "ran"]
    assert Manifest.read(run / "03-quantize").config["values"]["per_channel"] is False

    again = run_recipe(load_recipe(path), run, start="export", report=False)  # back, forced from export on
    assert [s["status"] for s in again["steps"]] == ["skip", "ran", "ran", "ran"]


def test_a_skipped_stage_whose_folder_changed_runs_again(finished):
    path, run, _ = finished
    (run / "04-bundle" / "labels.json").write_text("{}")

    plan = run_recipe(load_recipe(path), run, dry_run=True)

    assert plan["steps"][3]["status"] == "run" and "does not verify" in plan["steps"][3]["reason"]


def test_a_dry_run_writes_nothing(tiny_teacher, tiny_data, tmp_path, cli_run):
    path = _recipe(tmp_path, tiny_teacher, tiny_data)

    result = cli_run("run", path, "-o", tmp_path / "run", "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    assert [s["status"] for s in json.loads(result.stdout)["steps"]] == ["run"] * 4
    assert not (tmp_path / "run").exists()


def test_the_first_failing_stage_stops_the_run_and_is_named(tiny_teacher, tiny_data, tmp_path, cli_run):
    path = _recipe(tmp_path, tiny_teacher, tiny_data, stages=[
        {"export": {}}, {"quantize": {"method": "static", "calibration": str(tmp_path / "missing.csv")}},
        {"bundle": None}])

    result = cli_run("run", path, "-o", tmp_path / "run", "--no-report")

    # a line per stage on stderr (CI logs), then the one error line
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "[1/3] 01-export (export): running (not run yet)" and lines[-2].startswith("[2/3] 02-quantize")
    assert [line for line in lines if line.startswith("Error: ")] == [lines[-1]]
    for fragment in ("stage 02-quantize (quantize) failed", "missing.csv", "skips the finished stages"):
        assert fragment in lines[-1]
    assert (tmp_path / "run" / "01-export" / "edgewise.json").is_file()
    assert not (tmp_path / "run" / "02-quantize").exists() and not (tmp_path / "run" / "03-bundle").exists()
    state = json.loads((tmp_path / "run" / "recipe-state.json").read_text())
    assert state["steps"]["export"]["status"] == "done" and state["steps"]["quantize"]["status"] == "running"


def test_a_missed_gate_exits_1(tiny_teacher, tiny_data, tmp_path, cli_run):
    path = _recipe(tmp_path, tiny_teacher, tiny_data, stages=[{"export": {}}],
                   gate={"min_speedup": 1000, "max_accuracy_drop": 100})

    result = cli_run("run", path, "-o", tmp_path / "run")

    assert result.exit_code == 1, result.output
    ladder = json.loads((tmp_path / "run" / "ladder.json").read_text())
    assert ladder["gate"]["passed"] is False and ladder["gate"]["misses"][0].endswith("< 1000.0x")
    assert "Gate on 01-export: **failed**" in (tmp_path / "run" / "ladder.md").read_text()


def test_a_model_that_is_no_folder_is_refused_before_anything_runs(tiny_data, tmp_path, cli_run):
    path = _recipe(tmp_path, tmp_path / "no-teacher", tiny_data)

    result = cli_run("run", path, "-o", tmp_path / "run")

    assert result.exit_code == 2 and result.stderr.startswith("Error: the recipe's model")
    assert "01-prune read(s) it" in result.stderr and not (tmp_path / "run").exists()


def test_a_stage_whose_last_run_failed_is_not_reused_with_the_key_before(tiny_teacher, tiny_data, tmp_path):
    stages = [{"export": {}}, {"quantize": {"method": "dynamic"}}]
    path = _recipe(tmp_path, tiny_teacher, tiny_data, stages=stages)
    run_recipe(load_recipe(path), tmp_path / "run", report=False)
    missing = str(tmp_path / "missing.csv")

    with pytest.raises(EdgewiseError, match="stage 02-quantize"):  # the old folder stays in place
        run_recipe(load_recipe(path, ("stages.quantize.method=static", f"stages.quantize.calibration={missing}")),
                   tmp_path / "run", report=False)
    plan = run_recipe(load_recipe(path), tmp_path / "run", dry_run=True)

    assert [s["status"] for s in plan["steps"]] == ["skip", "run"]
    assert plan["steps"][1]["reason"] == "its last run did not finish"


def test_a_folder_made_by_another_step_is_not_reused(tiny_teacher, tiny_data, tmp_path):
    path = _recipe(tmp_path, tiny_teacher, tiny_data, stages=[{"export": {}}, {"quantize": {"method": "dynamic"}}])
    run_recipe(load_recipe(path), tmp_path / "run", report=False)
    moved = _recipe(tmp_path, tiny_teacher, tiny_data, stages=[
        {"export": {}}, {"bundle": None}, {"quantize": {"method": "dynamic"}, "input": "export"}])

    plan = run_recipe(load_recipe(moved), tmp_path / "run", dry_run=True)

    assert [s["status"] for s in plan["steps"]] == ["skip", "run", "run"]
    assert plan["steps"][2]["reason"] == "it was made as 02-quantize, not 03-quantize"


def test_a_finetune_recipe_benches_against_its_teacher_not_the_pretrained_encoder(tiny_encoder, tiny_teacher):
    from edgewise.recipe.config import recipe_from_dict
    from edgewise.recipe.run import _model_is_reference

    finetune = recipe_from_dict({"version": 1, "model": str(tiny_encoder), "data": "d.csv",
                                 "stages": [{"finetune": {}}, {"export": {}}]})
    prune = recipe_from_dict({"version": 1, "model": str(tiny_teacher), "data": "d.csv", "stages": [{"export": {}}]})

    assert not _model_is_reference(finetune) and _model_is_reference(prune)


def test_demo_fine_tunes_the_teacher_then_compresses_it_and_exits_1_when_the_goal_is_missed(
        cli_run, monkeypatch, tmp_path):
    import edgewise.recipe.compress
    import edgewise.recipe.run
    from edgewise.recipe.demo import DEMO

    seen = {}

    def fake_run(recipe, run_dir, **kwargs):
        seen.update(recipe=recipe, run_dir=run_dir)
        return {"run": str(run_dir), "steps": [], "ladder": None, "gate": None, "dry_run": False}

    def fake_compress(teacher, dst, config, *, data, dry_run=False):
        seen.update(teacher=teacher, dst=dst, config=config, data=data)
        row = {"candidate": "student2-int8-dynamic", "what": "2-layer student, ONNX, dynamic INT8", "p50_ms": 5.0,
               "speedup": 8.0, "accuracy": 0.97, "macro_f1": 0.97, "accuracy_drop_points": 0.5, "size_mb": 20.0,
               "size_ratio": 4.5, "accurate": True, "fast": None, "chosen": True}
        reference = {**row, "candidate": "teacher", "what": "teacher", "speedup": 1.0, "size_ratio": 1.0}
        return {"run": str(dst), "teacher": str(teacher), "goal": config.goal, "goal_met": False,
                "chosen": {"candidate": row["candidate"], "what": row["what"], "reason": "r", "bundle": "b"},
                "test": None, "reference": reference, "candidates": [row], "phases": [], "failed": [],
                "skipped": [], "notes": [], "optimize": None, "recipe": "r.yaml", "seconds": 1.0,
                "stopped_after": None, "validation_rows": 212}

    monkeypatch.setattr(edgewise.recipe.run, "run_recipe", fake_run)
    monkeypatch.setattr(edgewise.recipe.compress, "compress", fake_compress)

    result = cli_run("demo", "-o", tmp_path / "demo")

    assert result.exit_code == 1, result.output
    assert [s.stage for s in seen["recipe"].steps] == ["finetune"]
    assert seen["recipe"].model == "builtin:all-minilm-l6-v2" and seen["run_dir"] == tmp_path / "demo" / "teacher"
    assert seen["teacher"] == tmp_path / "demo" / "teacher" / "01-teacher" and seen["data"] == "builtin:bbc-news"
    assert seen["dst"] == tmp_path / "demo" / "compress" and seen["config"] == DEMO and DEMO.min_speedup == 10
    assert "**missed**" in result.output and "student2-int8-dynamic" in result.output
