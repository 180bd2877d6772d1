import json

import pytest
import yaml

from edgewise.core.errors import EdgewiseError
from edgewise.recipe.compress import (
    CompressConfig,
    _dependents,
    _goal_met,
    _optimiser_pays,
    choose,
    parse_duration,
    parse_latency_budget,
    plan_phases,
)
from tests.conftest import assert_user_error

# Tiny models: prune and bench settings that fit them; one epoch of distillation.
TINY = ("prune.samples=64", "prune.round_to=16", "prune.seq_len=32", "distill.trainer.epochs=1",
        "distill.trainer.batch_size=16", "bench.warmup=1", "bench.min_runs=3", "bench.min_time_s=0")


def _row(candidate, p50, accuracy, reference_p50=10.0, reference_accuracy=0.9):
    return {"candidate": candidate, "what": candidate, "p50_ms": p50, "speedup": reference_p50 / p50,
            "accuracy": accuracy, "macro_f1": accuracy, "accuracy_drop_points": (reference_accuracy - accuracy) * 100,
            "size_mb": 1.0, "size_ratio": 2.0}


ROWS = [_row("teacher", 10.0, 0.90), _row("a-int8", 4.0, 0.895), _row("b-student", 2.0, 0.87),
        _row("c-pruned", 3.0, 0.899)]


# --- the plan -----------------------------------------------------------------------------------


def test_plan_phases_puts_the_cheap_phases_before_distillation():
    phases = plan_phases(CompressConfig())

    assert [p for p, _ in phases] == ["quantize", "prune", "distill 3", "distill 2"]
    quantize = phases[0][1][0]
    assert list(quantize.candidates) == ["teacher-onnx", "teacher-int8-dynamic", "teacher-int8-static",
                                         "teacher-opt-onnx", "teacher-opt-int8-dynamic"]
    assert [f.name for f in phases[2][1]] == ["student3", "student3-flops70"]
    without = plan_phases(CompressConfig(optimizer=False))[0][1][0]
    assert list(without.candidates) == ["teacher-onnx", "teacher-int8-dynamic", "teacher-int8-static"]
    pruned_student = phases[2][1][1].entries[0]
    assert pruned_student == {"prune": {"flops": 0.7, "vocab": True}, "id": "student3-flops70", "input": "student3"}


def test_plan_phases_exports_later_candidates_with_the_optimiser_only_when_told():
    def exports(optimize):
        return [e["export"] for _, families in plan_phases(CompressConfig(), optimize=optimize)[1:]
                for f in families for e in f.entries if "export" in e]

    assert all(e == {} for e in exports(False))
    assert all(e == {"optimize": True} for e in exports(True))


def test_plan_phases_applies_set_options_to_every_stage_of_their_kind():
    config = CompressConfig(depths=(2,), teacher_flops=(), options=("prune.samples=64", "distill.trainer.epochs=5"))

    phases = plan_phases(config)

    entries = [e for _, families in phases for f in families for e in f.entries]
    assert [p for p, _ in phases] == ["quantize", "distill 2"]
    assert [e["prune"]["samples"] for e in entries if "prune" in e] == [64]
    assert [e["distill"] for e in entries if "distill" in e] == [{"layers": 2, "trainer": {"epochs": 5}}]


def test_set_options_reach_nested_settings_and_refuse_nesting_into_a_setting():
    from edgewise.recipe.compress import _apply_options

    entries = [{"distill": {"layers": 2}, "id": "s"}, {"bundle": None, "id": "best", "input": "s"}]

    changed = _apply_options(entries, ("distill.trainer.epochs=5", "bundle.max_length=64"))

    assert changed == [{"distill": {"layers": 2, "trainer": {"epochs": 5}}, "id": "s"},
                       {"bundle": {"max_length": 64}, "id": "best", "input": "s"}]
    assert entries[0] == {"distill": {"layers": 2}, "id": "s"}  # a copy
    with pytest.raises(EdgewiseError, match="layers is a setting, not a group"):
        _apply_options(entries, ("distill.layers.x=1",))


def test_compress_config_keeps_each_listed_value_once():
    config = CompressConfig(depths=(3, 2, 3), quantize=("dynamic", "dynamic"), teacher_flops=(0.5, 0.5))

    assert (config.depths, config.quantize, config.teacher_flops) == ((3, 2), ("dynamic",), (0.5,))


def test_dependents_of_a_failed_step_are_every_step_that_reads_it():
    family = plan_phases(CompressConfig())[1][1][0]

    assert _dependents(list(family.entries), "teacher-flops50-onnx") == {
        "teacher-flops50-onnx", "teacher-flops50-int8-dynamic", "teacher-flops50-int8-static"}


# --- the choice ---------------------------------------------------------------------------------


def test_choose_keeps_the_fastest_candidate_within_the_drop():
    best, why = choose(ROWS, CompressConfig(max_accuracy_drop=1), None)

    assert best["candidate"] == "c-pruned" and "fastest of 2" in why


def test_choose_keeps_the_most_accurate_when_none_is_within_the_drop():
    rows = [ROWS[0], _row("x", 2.0, 0.80), _row("y", 3.0, 0.85)]

    best, why = choose(rows, CompressConfig(max_accuracy_drop=1), None)

    assert best["candidate"] == "y" and "goal missed" in why


def _embedding_report(spearmans: dict) -> dict:
    """A bench report of embedding models (the first the reference), p50 10, 4, 2, ... ms in order."""
    names = list(spearmans)
    return {"task": {"name": "embedding", "pooling": "mean", "normalize": True, "dimension": 8},
            "quality_metric": "spearman", "artifacts": [{"name": n, "size_bytes": 1000} for n in names],
            "results": [{"artifact": n, "path": f"/runs/{n}", "backend": "ort-cpu", "batch_size": 1, "status": "ok",
                         "latency_ms": {"p50": 10.0 / (1 + 1.5 * i)}, "spearman": s, "quality": s}
                        for i, (n, s) in enumerate(spearmans.items())]}


def test_choose_reads_an_embedding_ladder_by_its_share_of_the_teachers_spearman_and_never_picks_a_nan():
    from edgewise.recipe.run import ladder_rows

    # "constant"'s vectors do not vary (Spearman NaN): it misses every bar and is never the most accurate.
    ladder = ladder_rows(_embedding_report({"teacher": 0.80, "constant": float("nan"), "int8": 0.792, "small": 0.70}))
    rows = [{**r, "candidate": r["artifact"], "what": r["artifact"]} for r in ladder]

    assert [r["quality_drop_points"] for r in rows[2:]] == [pytest.approx(1.0), pytest.approx(12.5)]
    assert rows[1]["quality_drop_points"] == float("inf")
    assert choose(rows, CompressConfig(max_accuracy_drop=2), None)[0]["candidate"] == "int8"
    best, why = choose(rows, CompressConfig(max_accuracy_drop=0.5), None)
    assert best["candidate"] == "int8" and "goal missed" in why  # the most accurate, not the NaN
    assert choose(rows, CompressConfig(latency_budget="5ms"), (5.0, "ms"))[0]["candidate"] == "int8"
    assert choose(rows, CompressConfig(latency_budget="2ms"), (2.0, "ms"))[0]["candidate"] == "small"


def test_a_recipe_gate_on_an_embedding_model_whose_spearman_is_nan_is_a_miss_saying_why():
    from pathlib import Path

    from edgewise.recipe.config import recipe_from_dict
    from edgewise.recipe.run import _gate, ladder_rows

    recipe = recipe_from_dict({"version": 1, "model": "/runs/teacher", "data": "d.csv",
                               "stages": [{"quantize": {}}], "gate": {"max_accuracy_drop": 2}})
    ladder = ladder_rows(_embedding_report({"teacher": 0.80, "constant": float("nan")}))

    gate = _gate(recipe, ladder, Path("/runs/constant"))

    assert not gate["passed"] and "spearman is not a number" in gate["misses"][0]


@pytest.mark.parametrize(("budget", "expected"), [("3.5ms", "c-pruned"), ("25%", "b-student"), ("50%", "c-pruned")])
def test_choose_keeps_the_most_accurate_candidate_within_the_latency_budget(budget, expected):
    config = CompressConfig(latency_budget=budget)

    best, _ = choose(ROWS, config, parse_latency_budget(budget))

    assert best["candidate"] == expected


def test_choose_keeps_the_fastest_when_none_is_within_the_latency_budget():
    best, why = choose(ROWS, CompressConfig(latency_budget="1ms"), (1.0, "ms"))

    assert best["candidate"] == "b-student" and "goal missed" in why


def test_the_goal_is_met_by_min_speedup_or_the_budget_never_by_the_drop_alone():
    assert not _goal_met(ROWS, CompressConfig(max_accuracy_drop=1), None)  # the fastest is wanted: search on
    assert _goal_met(ROWS, CompressConfig(max_accuracy_drop=1, min_speedup=3), None)
    assert not _goal_met(ROWS, CompressConfig(max_accuracy_drop=1, min_speedup=4), None)
    assert _goal_met(ROWS, CompressConfig(latency_budget="2ms"), (2.0, "ms"))
    assert not _goal_met(ROWS, CompressConfig(latency_budget="2ms", max_accuracy_drop=1), (2.0, "ms"))


def test_the_optimiser_is_used_later_only_when_it_was_faster_on_the_teacher():
    plain, optimised = _row("teacher-int8-dynamic", 4.0, 0.9), _row("teacher-opt-int8-dynamic", 4.4, 0.9)

    assert not _optimiser_pays([ROWS[0], plain, optimised])
    assert _optimiser_pays([ROWS[0], plain, {**optimised, "p50_ms": 3.6}])


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("45m", 2700), ("2h", 7200), ("900s", 900), ("90", 90), ("1.5h", 5400)])
def test_parse_duration_reads_seconds_minutes_and_hours(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("changes", [
    {"max_accuracy_drop": -1}, {"latency_budget": "fast"}, {"latency_budget": "0ms"}, {"latency_budget": "150%"},
    {"min_speedup": 0}, {"latency_budget": "3ms", "min_speedup": 5}, {"threads": 0}, {"batch_size": 0},
    {"rounds": 0}, {"seq_len": "long"}, {"time_budget": "soon"}, {"time_budget": "0m"}, {"depths": (0,)},
    {"teacher_flops": (1.5,)}, {"student_flops": (0.0,)}, {"quantize": ("fp16",)}, {"distill_epochs": 0},
    {"options": ("layers=3",)}, {"options": ("finetune.epochs=3",)}, {"options": ("bench.threads=4",)},
    {"options": ("bench.split=test",)}, {"options": ("bench.backends=[torch]",)},
])
def test_compress_config_refuses_values_that_cannot_work(changes):
    with pytest.raises(EdgewiseError):
        CompressConfig(**changes)


def test_compress_config_defaults_to_one_point_without_a_latency_budget():
    assert CompressConfig().accuracy_bar == 1.0
    assert CompressConfig(latency_budget="3ms").accuracy_bar is None
    assert "within 3ms" in CompressConfig(latency_budget="3ms").goal


# --- the command: bad input ---------------------------------------------------------------------


def test_compress_refuses_a_missing_teacher(cli_run, tiny_data, tmp_path):
    result = cli_run("compress", tmp_path / "nope", tiny_data, "-o", tmp_path / "out")

    assert_user_error(result, "nope")
    assert not (tmp_path / "out").exists()


def test_compress_refuses_a_model_that_is_not_a_classifier(cli_run, tiny_encoder, tiny_data, tmp_path):
    result = cli_run("compress", tiny_encoder, tiny_data, "-o", tmp_path / "out")

    assert_user_error(result)
    assert not (tmp_path / "out").exists()


def test_compress_refuses_an_existing_folder_that_is_not_a_run(cli_run, tiny_teacher, tiny_data, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")

    result = cli_run("compress", tiny_teacher, tiny_data, "-o", out)

    assert_user_error(result, "not an edgewise run folder", "choose a new folder")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_compress_refuses_data_without_labels(cli_run, tiny_teacher, tmp_path):
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "".join(f"some words {i}\n" for i in range(20)))

    result = cli_run("compress", tiny_teacher, data, "-o", tmp_path / "out")

    assert_user_error(result, "label")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["prune.bogus=1", "bundle.bogus=1"])
def test_compress_refuses_unknown_stage_options_before_running(cli_run, tiny_teacher, tiny_data, tmp_path, option):
    result = cli_run("compress", tiny_teacher, tiny_data, "-o", tmp_path / "out", "--set", option)

    assert_user_error(result, "bogus", "valid settings are", "--set")
    assert not (tmp_path / "out").exists()


def test_compress_refuses_bench_settings_that_are_its_own(cli_run, tiny_teacher, tiny_data, tmp_path):
    result = cli_run("compress", tiny_teacher, tiny_data, "-o", tmp_path / "out", "--set", "bench.threads=4")

    assert_user_error(result, "compress sets bench.threads itself", "min_time_s")
    assert not (tmp_path / "out").exists()


def test_compress_refuses_a_timing_length_above_the_teachers(cli_run, tiny_teacher, tiny_data, tmp_path):
    result = cli_run("compress", tiny_teacher, tiny_data, "-o", tmp_path / "out", "--seq-len", "128")

    assert_user_error(result, "--seq-len 128", "max_length 32")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "value"), [("--latency-budget", "soon"), ("--time-budget", "-5m"),
                                             ("--depths", "two"), ("--max-accuracy-drop", "-1")])
def test_compress_refuses_bad_numbers(cli_run, tiny_teacher, tiny_data, tmp_path, flag, value):
    result = cli_run("compress", tiny_teacher, tiny_data, "-o", tmp_path / "out", flag, value)

    assert_user_error(result)
    assert not (tmp_path / "out").exists()


def test_compress_dry_run_lists_the_phases_and_writes_nothing(cli_run, tiny_teacher, tiny_data, tmp_path):
    result = cli_run("compress", tiny_teacher, tiny_data, "-o", tmp_path / "out", "--dry-run", "--depths", "2",
                     "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [p["phase"] for p in plan["phases"]] == ["quantize", "prune", "distill 2"]
    assert "student2-flops70-int8-dynamic" in plan["phases"][2]["families"][1]["candidates"]
    assert not (tmp_path / "out").exists()


# --- the search, end to end on a tiny teacher ---------------------------------------------------


@pytest.fixture(scope="module")
def searched(tiny_teacher, tiny_data, tmp_path_factory):
    from edgewise.recipe.compress import compress

    out = tmp_path_factory.mktemp("compress") / "run"
    config = CompressConfig(max_accuracy_drop=100, depths=(1,), teacher_flops=(0.6,), student_flops=(),
                            rounds=2, options=(*TINY, "bundle.max_length=24"))
    return out, compress(tiny_teacher, out, config, data=str(tiny_data))


@pytest.mark.slow
def test_compress_measures_every_candidate_and_bundles_the_fastest(searched, tiny_teacher):
    out, result = searched

    assert [p["phase"] for p in result["phases"]] == ["quantize", "prune", "distill 1"]
    assert result["failed"] == [] and "vocabulary pruning is off" in result["notes"][0]  # a WordLevel tokenizer
    ids = [c["candidate"] for c in result["candidates"]]
    assert {"teacher-int8-static", "teacher-flops60-int8-dynamic", "student1-int8-dynamic"} <= set(ids)
    chosen = [c for c in result["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["p50_ms"] == min(c["p50_ms"] for c in result["candidates"])
    assert result["goal_met"] and result["chosen"]["candidate"] == chosen[0]["candidate"]
    bundle = out / result["chosen"]["bundle"]
    assert (bundle / "edgewise.json").is_file() and bundle.name.endswith("-best")
    assert json.loads((bundle / "edgewise.json").read_text())["data"]["max_length"] == 24  # --set bundle.*
    assert [r["artifact"] for r in result["test"]] == [tiny_teacher.name, bundle.name]
    assert json.loads((out / "compress.json").read_text())["chosen"] == result["chosen"]
    assert "(chosen)" in (out / "compress.md").read_text()


@pytest.mark.slow
def test_compress_writes_the_recipe_it_ran_and_a_rerun_skips_every_step(searched, tiny_data):
    from edgewise.recipe import load_recipe, run_recipe

    out, result = searched
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["stages"][-1] == {"bundle": {"max_length": 24}, "id": "best", "input": result["chosen"]["candidate"]}
    assert recipe["bench"]["split"] == "validation" and recipe["gate"]["max_accuracy_drop"] == 100

    plan = run_recipe(load_recipe(out / "recipe.yaml"), out, dry_run=True)

    assert {s["status"] for s in plan["steps"]} == {"skip"}


@pytest.mark.slow
def test_compress_goes_on_without_a_candidate_that_fails(tiny_teacher, tiny_data, tmp_path, monkeypatch):
    import edgewise.quantize.stage
    from edgewise.recipe.compress import compress

    real = edgewise.quantize.stage.quantize

    def static_breaks(src, dst, config, **kwargs):
        if config.method.value == "static":
            raise EdgewiseError("calibration broke")
        return real(src, dst, config, **kwargs)

    monkeypatch.setattr(edgewise.quantize.stage, "quantize", static_breaks)
    config = CompressConfig(max_accuracy_drop=100, depths=(), teacher_flops=(), rounds=1, options=TINY)

    result = compress(tiny_teacher, tmp_path / "run", config, data=str(tiny_data))

    assert [f["step"] for f in result["failed"]] == ["teacher-int8-static"]
    assert "calibration broke" in result["failed"][0]["error"]
    assert "teacher-int8-dynamic" in [c["candidate"] for c in result["candidates"]]
    assert not any(p.name.endswith("teacher-int8-static") for p in (tmp_path / "run").iterdir())


@pytest.mark.slow
def test_compress_stops_after_the_cheap_phase_when_the_budget_is_met(tiny_teacher, tiny_data, tmp_path, cli_run):
    out = tmp_path / "run"
    args = [a for option in TINY for a in ("--set", option)]

    result = cli_run("compress", tiny_teacher, tiny_data, "-o", out, "--latency-budget", "100000ms",
                     "--quantize", "dynamic", "--rounds", "1", "--json", *args)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stopped_after"] == "quantize" and summary["goal_met"]
    assert not any("flops" in p.name or "student" in p.name for p in out.iterdir())


@pytest.mark.slow
def test_compress_stops_starting_families_when_the_time_budget_is_spent(tiny_teacher, tiny_data, tmp_path):
    from edgewise.recipe.compress import compress

    config = CompressConfig(max_accuracy_drop=100, depths=(1,), teacher_flops=(0.6,), quantize=("dynamic",),
                            rounds=1, time_budget="0.01s", options=TINY)

    result = compress(tiny_teacher, tmp_path / "run", config, data=str(tiny_data))

    assert [s["family"] for s in result["skipped"]] == ["teacher-flops60", "student1", "student1-flops70"]
    assert {s["reason"] for s in result["skipped"]} == {"time budget spent"}
    assert {c["family"] for c in result["candidates"]} == {"teacher"}


# --- an embedding teacher ----------------------------------------------------------------------


def test_plan_phases_of_an_embedding_teacher_adds_the_static_tier_after_the_quantized_teacher():
    phases = plan_phases(CompressConfig(depths=(2,), teacher_flops=()), embedding=True)

    assert [p for p, _ in phases] == ["quantize", "static", "distill 2"]
    static = phases[1][1][0]
    assert static.entries[0] == {"distill": {"static": True}, "id": "static", "input": "model"}
    assert list(static.candidates) == ["static", "static-int8-dynamic"]
    assert [p for p, _ in plan_phases(CompressConfig(depths=(), teacher_flops=(), static=False), embedding=True)] == [
        "quantize"]


def test_compress_hands_a_plain_encoders_task_to_every_stage_that_reads_it():
    phases = plan_phases(CompressConfig(depths=(2,), teacher_flops=(0.5,)), embedding=True,
                         task_options={"task": "embedding", "pooling": "cls"})

    readers = [e for _, families in phases for f in families for e in f.entries if e["input"] == "model"]
    assert readers and all(e[next(k for k in e if k not in ("id", "input"))]["task"] == {
        "task": "embedding", "pooling": "cls"} for e in readers)


def test_compress_of_an_embedding_teacher_refuses_pairs_it_cannot_choose_and_report_on(cli_run, tiny_embedder,
                                                                                     tiny_corpus, tiny_pairs,
                                                                                     tiny_teacher, tiny_data, tmp_path):
    one_file = cli_run("compress", tiny_embedder, tiny_corpus, "-o", tmp_path / "out", "--pairs",
                       tiny_pairs / "test.csv")
    classifier = cli_run("compress", tiny_teacher, tiny_data, "-o", tmp_path / "out", "--pairs", tiny_pairs)

    assert_user_error(one_file, "has one split", "validation.csv and test.csv")
    assert_user_error(classifier, "--pairs scores sentence-embedding models", "drop --pairs")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compress_an_embedding_teacher_chooses_on_spearman_and_reports_on_test_pairs(tiny_embedder, tiny_corpus,
                                                                                    tiny_pairs, tmp_path):
    from edgewise.recipe.compress import compress

    config = CompressConfig(max_accuracy_drop=100, depths=(1,), teacher_flops=(), student_flops=(), rounds=2,
                            quantize=("dynamic",), optimizer=False, pairs=str(tiny_pairs),
                            options=(*TINY, "distill.static_dims=16"))

    result = compress(tiny_embedder, tmp_path / "run", config, data=str(tiny_corpus))

    assert [p["phase"] for p in result["phases"]] == ["quantize", "static", "distill 1"] and result["failed"] == []
    assert result["task"]["name"] == "embedding" and "STS Spearman" in result["goal"]
    ids = {c["candidate"] for c in result["candidates"]}
    assert {"teacher-int8-dynamic", "static", "static-int8-dynamic", "student1-int8-dynamic"} <= ids
    assert all(c["quality_metric"] == "spearman" for c in result["candidates"])
    assert result["reference"]["quality_drop_points"] == 0
    assert result["goal_met"] and [r["artifact"] for r in result["test"]][0] == tiny_embedder.name
    assert result["test"][1]["spearman"] is not None  # the chosen bundle on the test pairs
    markdown = (tmp_path / "run" / "compress.md").read_text()
    assert "| STS Spearman | of teacher's gate |" in markdown and "(chosen)" in markdown
