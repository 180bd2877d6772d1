import copy
import json

import pytest

from edgewise.bench import BenchConfig, CompareConfig, bench, compare, load_report
from edgewise.bench.compare import markdown
from edgewise.bench.config import parse_percent
from edgewise.bench.plots import pareto_front
from edgewise.core.errors import EdgewiseError


def _report(p50, ci, accuracy=0.9, name="m"):
    return {"schema_version": 1, "results": [{
        "artifact": name, "backend": "ort-cpu", "batch_size": 1, "seq_len": 16, "status": "ok",
        "latency_ms": {"p50": p50, "p50_ci95": list(ci)}, "accuracy": accuracy}]}


def test_compare_flags_latency_only_when_slower_beyond_threshold_and_intervals_separate():
    baseline = _report(10.0, (9.8, 10.2))
    config = CompareConfig(max_latency_regression=0.10)

    assert compare(_report(10.5, (10.3, 10.7)), baseline, config)["passed"]  # +5 %: within threshold
    noisy = compare(_report(11.5, (9.0, 14.0)), baseline, config)  # +15 % but the intervals overlap
    assert noisy["passed"] and noisy["rows"][0]["latency"] == "slower, within noise"
    real = compare(_report(11.5, (11.3, 11.7)), baseline, config)
    assert not real["passed"] and real["rows"][0]["latency"] == "regression" and real["failures"] == 1
    assert compare(_report(5.0, (4.9, 5.1)), baseline, config)["passed"]  # faster is never a failure


def test_compare_flags_accuracy_drops_beyond_the_threshold_in_points():
    baseline = _report(10.0, (9.9, 10.1), accuracy=0.900)
    config = CompareConfig(max_accuracy_drop=0.5)

    assert compare(_report(10.0, (9.9, 10.1), accuracy=0.896), baseline, config)["passed"]  # -0.4 points
    result = compare(_report(10.0, (9.9, 10.1), accuracy=0.890), baseline, config)  # -1.0 point
    assert not result["passed"] and result["rows"][0]["accuracy_drop_points"] == pytest.approx(1.0)


def _scored(right: int, texts: int) -> dict:
    """A report whose accuracy is ``right`` of ``texts`` texts, computed as the accuracy metric computes it."""
    report = _report(10.0, (9.9, 10.1), accuracy=right / texts)
    report["data"] = {"sha256": "same-texts", "rows": texts}
    return report


@pytest.mark.parametrize("baseline_accuracy", [0.905, 0.87, 0.6, 0.995])
def test_compare_passes_a_drop_of_exactly_the_threshold_and_fails_one_text_more(baseline_accuracy):
    texts = 200  # 0.5 points of 200 texts is exactly 1 text
    right = round(baseline_accuracy * texts)
    config = CompareConfig(max_accuracy_drop=0.5)

    at = compare(_scored(right - 1, texts), _scored(right, texts), config)
    beyond = compare(_scored(right - 2, texts), _scored(right, texts), config)

    assert at["passed"] and at["rows"][0]["accuracy"] == "ok"
    assert at["rows"][0]["accuracy_drop_texts"] == 1 and at["rows"][0]["accuracy_drop_points"] == 0.5
    assert not beyond["passed"] and beyond["rows"][0]["accuracy"] == "regression"
    assert beyond["rows"][0]["accuracy_drop_texts"] == 2


@pytest.mark.parametrize(("texts", "max_drop", "allowed"), [(1000, 0.3, 3), (333, 0.5, 1), (60, 5.0, 3), (7, 0.0, 0)])
def test_compare_counts_the_texts_the_threshold_allows(texts, max_drop, allowed):
    right = texts - 1
    config = CompareConfig(max_accuracy_drop=max_drop)

    assert compare(_scored(right - allowed, texts), _scored(right, texts), config)["passed"]
    assert not compare(_scored(right - allowed - 1, texts), _scored(right, texts), config)["passed"]


def test_compare_tolerates_float_error_when_the_reports_do_not_say_how_many_texts_they_scored():
    config = CompareConfig(max_accuracy_drop=0.5)

    # 0.905 - 0.900 is 0.50000000000000044 points in floats; no data.rows: compared in points, with a tolerance.
    at = compare(_report(10.0, (9.9, 10.1), accuracy=0.900), _report(10.0, (9.9, 10.1), accuracy=0.905), config)
    beyond = compare(_report(10.0, (9.9, 10.1), accuracy=0.8999), _report(10.0, (9.9, 10.1), accuracy=0.905), config)

    assert at["passed"] and "accuracy_drop_texts" not in at["rows"][0]
    assert not beyond["passed"]


def test_compare_reads_reports_from_before_rows_recorded_their_accuracy_batch_size():
    old = _scored(180, 200)
    old["config"] = {"eval_batch_size": 32}  # every row was scored in batches of 32 then
    new = _scored(180, 200)
    new["config"] = {"eval_batch_size": None}
    new["results"][0]["accuracy_batch_size"] = 1

    result = compare(new, old)
    same = compare(old, copy.deepcopy(old))

    assert result["passed"] and result["rows"][0]["accuracy"] == "ok"
    assert "baseline scored in batches of 32, this report in batches of 1" in result["warnings"][0]
    assert "refresh the baseline" in result["rows"][0]["accuracy_note"]
    assert same["passed"] and same["warnings"] == [] and "accuracy_note" not in same["rows"][0]


def _timed(p50: float, rounds: int, tool: str = "edgewise bench") -> dict:
    """A report whose latency figures come from the real statistics of ``rounds`` timing rounds around p50."""
    from edgewise.runtime.bench import latency_stats

    per_round = [[p50 * (1 + 0.01 * ((i + j) % 3 - 1)) for j in range(20)] for i in range(rounds)]
    report = _report(p50, (p50, p50))
    report["tool"] = tool
    report["results"][0]["latency_ms"] = latency_stats([x for r in per_round for x in r], per_round)
    return report


@pytest.mark.parametrize("single", ["current", "baseline"])
def test_compare_does_not_judge_latency_from_a_single_timing_round(single):
    # 20 % slower: with an interval from 1 round (zero width) this used to count as separated and fail.
    current = _timed(12.0, 1 if single == "current" else 5)
    baseline = _timed(10.0, 1 if single == "baseline" else 5)

    result = compare(current, baseline, CompareConfig(max_latency_regression=0.10))

    row = result["rows"][0]
    assert result["passed"] and row["verdict"] == "pass" and row["ci_separated"] is None
    which = "report" if single == "current" else "baseline"
    assert row["latency"].startswith(f"not judged: the {which} has 1 timing round: no interval")
    assert "bench with --rounds >= 3" in row["latency"] and "latency not judged" in result["warnings"][0]
    assert "not judged (too few rounds)" in markdown(result)


def test_compare_still_judges_accuracy_when_latency_is_not_judged():
    current, baseline = _timed(12.0, 1), _timed(10.0, 5)
    current["results"][0]["accuracy"] = 0.8  # baseline 0.9: -10 points

    result = compare(current, baseline)

    assert not result["passed"] and result["rows"][0]["accuracy"] == "regression"
    assert result["rows"][0]["latency"].startswith("not judged")


def test_compare_needs_three_rounds_on_both_sides_to_judge_latency():
    two = compare(_timed(12.0, 2), _timed(10.0, 5))
    three = compare(_timed(12.0, 3), _timed(10.0, 3))
    device = compare(_timed(12.0, 2, tool="edgewise.runtime"), _timed(10.0, 5))

    assert two["passed"] and "2 timing rounds: an interval of 50 % coverage" in two["rows"][0]["latency"]
    assert not three["passed"] and three["rows"][0]["latency"] == "regression"
    assert "--min-runs >= 3" in device["rows"][0]["latency"]


def test_compare_does_not_judge_a_zero_width_interval_without_round_medians():
    result = compare(_report(12.0, (12.0, 12.0)), _report(10.0, (9.9, 10.1)))

    assert result["passed"] and result["rows"][0]["latency"].startswith("not judged: the report has 1 timing round")


def test_compare_lists_rows_only_in_one_report_and_refuses_disjoint_reports():
    baseline = _report(10.0, (9.9, 10.1))
    current = copy.deepcopy(baseline)
    current["results"].append({**current["results"][0], "batch_size": 8})

    result = compare(current, baseline)
    assert result["passed"]
    assert result["new"] == [{"artifact": "m", "backend": "ort-cpu", "batch_size": 8, "seq_len": 16, "threads": None}]
    with pytest.raises(EdgewiseError, match="no row of the report matches the baseline"):
        compare(_report(10.0, (9.9, 10.1), name="other"), baseline)


def test_compare_fails_when_a_baseline_row_is_missing_or_skipped_now():
    baseline = _report(10.0, (9.9, 10.1))
    baseline["results"].append({**baseline["results"][0], "backend": "ort-cuda"})
    current = _report(10.0, (9.9, 10.1))
    current["results"].append({"artifact": "m", "backend": "ort-cuda", "batch_size": 1, "seq_len": 16,
                               "status": "skipped", "reason": "CUDAExecutionProvider did not start"})

    result = compare(current, baseline)

    assert not result["passed"] and result["missing"][0]["reason"] == "CUDAExecutionProvider did not start"
    assert compare(current, baseline, CompareConfig(allow_missing=True))["passed"]


def test_compare_fails_when_accuracy_is_no_longer_measured():
    current = _report(10.0, (9.9, 10.1), accuracy=None)

    result = compare(current, _report(10.0, (9.9, 10.1), accuracy=0.9))

    assert not result["passed"] and result["rows"][0]["accuracy"].startswith("regression: not measured")


def _embedding_report(quality, metric="spearman"):
    report = _report(10.0, (9.9, 10.1), accuracy=None)
    del report["results"][0]["accuracy"]
    report["results"][0]["quality"] = quality
    report["quality_metric"] = metric
    return report


def test_compare_gates_an_embedding_model_on_its_quality_metric_in_points():
    baseline, config = _embedding_report(0.80), CompareConfig(max_accuracy_drop=0.5)

    within = compare(_embedding_report(0.796), baseline, config)  # -0.4 Spearman points
    worse = compare(_embedding_report(0.79), baseline, config)  # -1.0 points
    gone = compare(_embedding_report(None), baseline, config)

    assert within["passed"] and within["rows"][0]["accuracy"] == "ok"
    assert within["rows"][0]["quality_drop_points"] == pytest.approx(0.4)
    assert not worse["passed"] and worse["rows"][0]["accuracy"] == "regression"
    assert not gone["passed"] and gone["rows"][0]["accuracy"].startswith("regression: spearman not measured")
    assert "spearman 0.8000 -> 0.7900" in markdown(worse)
    with pytest.raises(EdgewiseError, match="scored neighbour_overlap and the baseline spearman"):
        compare(_embedding_report(0.8, metric="neighbour_overlap"), baseline)


def test_load_report_refuses_a_quality_outside_a_correlation(tmp_path):
    report = _embedding_report(1.5)
    (tmp_path / "r.json").write_text(json.dumps(report))
    with pytest.raises(EdgewiseError, match="has quality 1.5"):
        load_report(tmp_path / "r.json")


def test_compare_refuses_reports_scored_on_different_data_and_warns_about_other_machines():
    current, baseline = _report(10.0, (9.9, 10.1)), _report(10.0, (9.9, 10.1))
    current["data"], baseline["data"] = {"sha256": "a", "rows": 10}, {"sha256": "b", "rows": 20}
    with pytest.raises(EdgewiseError, match="scored accuracy on other texts"):
        compare(current, baseline)

    current["data"] = baseline["data"]
    current["environment"] = {"cpu": {"model": "Jetson Orin", "logical_cores": 6}}
    baseline["environment"] = {"cpu": {"model": "AMD EPYC", "logical_cores": 2}}
    assert "measured on AMD EPYC (2 cores)" in compare(current, baseline)["warnings"][0]


def test_load_report_refuses_duplicate_and_damaged_rows(tmp_path):
    report = _report(10.0, (9.9, 10.1))
    report["results"].append(dict(report["results"][0]))
    (tmp_path / "dup.json").write_text(json.dumps(report))
    (tmp_path / "bad.json").write_text(json.dumps({"schema_version": 1, "results": [{"artifact": "m"}]}))
    (tmp_path / "nolat.json").write_text(json.dumps({"schema_version": 1, "results": [
        {"artifact": "m", "backend": "b", "batch_size": 1, "status": "ok", "latency_ms": {"p50": 1}}]}))

    damaged_accuracy = _report(10.0, (9.9, 10.1))
    damaged_accuracy["results"][0]["accuracy"] = "97%"
    (tmp_path / "acc.json").write_text(json.dumps(damaged_accuracy))
    (tmp_path / "env.json").write_text(json.dumps({**_report(10.0, (9.9, 10.1)), "environment": 0}))
    nan = _report(10.0, (9.9, 10.1))
    nan["results"][0]["latency_ms"]["p50"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(nan))

    for name, fragment in (("dup.json", "holds two rows"), ("bad.json", "lacks artifact"),
                           ("nolat.json", "no latency p50"), ("acc.json", "has accuracy '97%', not a number"),
                           ("env.json", "its environment is not a mapping"), ("nan.json", "no latency p50")):
        with pytest.raises(EdgewiseError, match=fragment):
            load_report(tmp_path / name)


def test_load_report_rejects_files_that_are_not_reports(tmp_path):
    (tmp_path / "a.json").write_text("{oops")
    (tmp_path / "b.json").write_text(json.dumps({"results": "x"}))
    (tmp_path / "c.json").write_text(json.dumps({"schema_version": 99, "results": []}))

    for name, fragment in (("a.json", "not a readable JSON"), ("b.json", "not a bench report"),
                           ("c.json", "schema 99"), ("none.json", "does not exist")):
        with pytest.raises(EdgewiseError, match=fragment):
            load_report(tmp_path / name)


def test_parse_percent():
    assert parse_percent("10%", "x") == pytest.approx(0.10) and parse_percent("2.5", "x") == pytest.approx(0.025)
    with pytest.raises(EdgewiseError, match="not a percentage"):
        parse_percent("ten", "x")
    with pytest.raises(EdgewiseError, match="not a finite percentage"):
        parse_percent("nan", "x")


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 90), (5, 85), (20, 95), (12, 80), (5, 84)]

    assert pareto_front(points) == [1, 0, 2]


FAST = dict(warmup=5, min_runs=60, min_time_s=0.3, rounds=3, threads=1, seq_len="32", batch_sizes=(1,))


@pytest.fixture(scope="module")
def slow_model(tiny_teacher, tmp_path_factory):
    """A classifier with 4x the tiny teacher's layers and 4x its width (8 x 128), exported to ONNX."""
    from edgewise.export import ExportConfig, export
    from tests.conftest import random_classifier

    hf = random_classifier(tmp_path_factory.mktemp("slow-hf") / "hf", tiny_teacher, hidden=128, layers=8)
    dst = tmp_path_factory.mktemp("slow") / "student-8-layers"
    export(hf, dst, ExportConfig(max_length=32))
    return dst


@pytest.fixture(scope="module")
def fast_model(tiny_onnx, tmp_path_factory):
    import shutil

    dst = tmp_path_factory.mktemp("fast") / "model"
    shutil.copytree(tiny_onnx, dst)
    return dst


def _zero_classifier(folder, labels: int = 3) -> int:
    """Zero every float weight with a dimension of ``labels`` (the classifier's): logits all 0, label 0 for all."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / "model.onnx"))
    zeroed = 0
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and labels in tensor.dims:
            tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(tensor)), tensor.name))
            zeroed += 1
    onnx.save(model, str(folder / "model.onnx"))
    return zeroed


def _only(report: dict, artifact: str) -> dict:
    """The report cut down to one artifact's rows, as if that artifact alone had been benched."""
    kept = copy.deepcopy(report)
    kept["results"] = [r for r in kept["results"] if r["artifact"] == artifact]
    kept["artifacts"] = [a for a in kept["artifacts"] if a["name"] == artifact]
    kept["reference"] = artifact
    return kept


def _write(path, report: dict):
    path.write_text(json.dumps(report))
    return path


@pytest.mark.slow
def test_gate_on_real_reports_fails_a_slower_model_and_passes_the_same_artifact(fast_model, slow_model, tiny_data,
                                                                                 tmp_path, cli_run):
    import shutil

    twin = tmp_path / "twin" / "model-twin"  # the same model again, under another name
    shutil.copytree(fast_model, twin)
    # One interleaved run times all three, so the gaps between them are the models', not machine drift.
    # 5 rounds: two runs of one model then separate by chance once in 252 (and must differ by > 10 % too).
    runs = bench([fast_model, slow_model, twin], config=BenchConfig(**{**FAST, "rounds": 5}), data=str(tiny_data))
    fast_row, slow_row, twin_row = (next(r for r in runs["results"] if r["artifact"] == name)
                                    for name in ("model", "student-8-layers", "model-twin"))
    baseline = _write(tmp_path / "baseline.json", _only(runs, "model"))
    swapped = _only(runs, "model")  # the slow model's measured latency under the fast model's name
    swapped["results"][0]["latency_ms"] = slow_row["latency_ms"]
    current = _write(tmp_path / "current.json", swapped)
    again = _only(runs, "model")  # the same artifact measured a second time, in the same run
    again["results"][0]["latency_ms"] = twin_row["latency_ms"]
    again_path = _write(tmp_path / "again.json", again)

    slower = cli_run("bench", "compare", current, baseline, "--json")
    same = cli_run("bench", "compare", again_path, baseline, "--json")

    assert slow_row["latency_ms"]["p50"] > fast_row["latency_ms"]["p50"]
    assert slower.exit_code == 1, slower.output
    row = json.loads(slower.stdout)["rows"][0]
    assert row["latency"] == "regression" and row["ci_separated"] and row["change"] > 0.10
    assert row["accuracy"] == "ok" and row["verdict"] == "FAIL"
    assert same.exit_code == 0, same.output
    assert [(r["latency"], r["accuracy"], r["verdict"]) for r in json.loads(same.stdout)["rows"]] == [
        ("ok", "ok", "pass")]


@pytest.mark.slow
def test_gate_on_real_reports_fails_a_model_whose_classifier_was_zeroed(fast_model, tiny_data, tmp_path, cli_run):
    import shutil

    from edgewise.core.manifest import MANIFEST_NAME

    baseline = _write(tmp_path / "baseline.json", bench([fast_model], config=BenchConfig(**FAST), data=str(tiny_data)))
    broken = tmp_path / "broken" / "model"  # the same artifact name, so its rows match the baseline's
    shutil.copytree(fast_model, broken)
    (broken / MANIFEST_NAME).unlink()  # its model file changes: a foreign folder now
    assert _zero_classifier(broken) >= 1
    current = _write(tmp_path / "current.json", bench([broken], config=BenchConfig(**FAST), data=str(tiny_data)))

    # Latency is left out of this verdict (two separate runs): only accuracy may fail it.
    result = cli_run("bench", "compare", current, baseline, "--json", "--max-latency-regression", "1000%")

    assert result.exit_code == 1, result.output
    row = json.loads(result.stdout)["rows"][0]
    assert row["latency"] != "regression" and row["accuracy"] == "regression" and row["verdict"] == "FAIL"
    assert row["current_accuracy"] < row["baseline_accuracy"] - 0.2  # every text labelled as label 0 now
    assert row["accuracy_drop_texts"] >= 10  # counted in whole texts of the 60 scored


@pytest.mark.slow
def test_runtime_bench_reports_compare_with_edgewise_bench_reports(fast_model, tmp_path):
    import subprocess
    import sys

    desktop = bench([fast_model], config=BenchConfig(**FAST))
    device = tmp_path / "device.json"
    subprocess.run([sys.executable, "-m", "edgewise.runtime", "bench", str(fast_model), "--threads", "1",
                    "--seq-len", "32", "--min-runs", "60", "--json", str(device)], check=True, capture_output=True)

    result = compare(load_report(device), desktop, CompareConfig(max_latency_regression=10.0))

    assert result["passed"] and [(r["artifact"], r["backend"], r["batch_size"]) for r in result["rows"]] == [
        ("model", "ort-cpu", 1)]


def _plot_row(name, p50, accuracy, macro_f1=None):
    return {"artifact": name, "backend": "ort-cpu", "status": "ok", "batch_size": 1, "latency_ms": {"p50": p50},
            "accuracy": accuracy, "macro_f1": accuracy if macro_f1 is None else macro_f1}


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_pareto_labels_stay_beside_their_points_inside_the_axes(metric):
    import matplotlib.pyplot as plt

    from edgewise.bench.plots import pareto_figure

    rows = [_plot_row("01-teacher", 40.0, 0.98), _plot_row("02-student-with-a-long-name", 13.6, 0.98),
            _plot_row("03-prune", 9.8, 0.98), _plot_row("04-export", 7.4, 0.98, 0.90),
            _plot_row("05-quantize", 3.0, 0.97), _plot_row("06-bundle", 3.0, 0.97)]

    fig = pareto_figure({"results": rows}, metric)

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    frame, title = ax.get_window_extent(renderer), ax.title.get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text()]
    assert "\n" in next(t.get_text() for t in labels if "05-quantize" in t.get_text())  # coinciding: one label
    for label in labels:
        box = label.get_window_extent(renderer)
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 and box.y1 <= frame.y1 + 1, label.get_text()
        assert not box.overlaps(title), label.get_text()
        point = ax.transData.transform(label.xy)
        nearest = min(abs(point[0] - box.x0), abs(point[0] - box.x1))
        assert nearest <= 12 and box.y0 - 1 <= point[1] + 12, label.get_text()  # beside its own point
    assert ax.get_ylabel() == ("accuracy (%)" if metric == "accuracy" else "macro-F1 (%)")
    plt.close(fig)


def test_pareto_with_many_points_labels_the_frontier_and_the_reference_without_overlaps():
    import matplotlib.pyplot as plt

    from edgewise.bench.plots import pareto_figure, pareto_front

    rows = [_plot_row(f"{i:02d}-candidate-with-a-long-name", 40.0 - 1.9 * i, 0.95 + (i % 4) * 0.002)
            for i in range(20)]

    fig = pareto_figure({"results": rows}, "accuracy")

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts if t.get_text()]
    front = pareto_front([(r["latency_ms"]["p50"], r["accuracy"] * 100) for r in rows])
    named = {line.split(" (")[0] for t in labels for line in t.get_text().splitlines()}
    assert named <= {rows[i]["artifact"] for i in {0, *front}} and rows[0]["artifact"] in named
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)
