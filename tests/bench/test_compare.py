import copy
import json

import pytest

from edgewise.bench import BenchConfig, CompareConfig, bench, compare, load_report
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

    for name, fragment in (("dup.json", "holds two rows"), ("bad.json", "lacks artifact"),
                           ("nolat.json", "no latency p50 and interval")):
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
    """A much larger classifier (hidden 256, 4 layers) exported to ONNX, in a folder also named `model`."""
    from edgewise.export import ExportConfig, export
    from tests.conftest import random_classifier

    hf = random_classifier(tmp_path_factory.mktemp("slow-hf") / "hf", tiny_teacher, hidden=256, layers=4)
    dst = tmp_path_factory.mktemp("slow") / "model"
    export(hf, dst, ExportConfig(max_length=32))
    return dst


@pytest.fixture(scope="module")
def fast_model(tiny_onnx, tmp_path_factory):
    import shutil

    dst = tmp_path_factory.mktemp("fast") / "model"
    shutil.copytree(tiny_onnx, dst)
    return dst


def test_gate_passes_two_runs_of_the_same_artifact_and_fails_a_slower_swap(fast_model, slow_model):
    baseline = bench([fast_model], BenchConfig(**FAST))
    again = bench([fast_model], BenchConfig(**FAST))
    swapped = bench([slow_model], BenchConfig(**FAST))

    assert compare(again, baseline, CompareConfig(max_latency_regression=0.10))["passed"]
    result = compare(swapped, baseline, CompareConfig(max_latency_regression=0.10))
    assert not result["passed"] and result["rows"][0]["latency"] == "regression"
    assert result["rows"][0]["change"] > 1.0  # more than twice as slow


def test_runtime_bench_reports_compare_with_edgewise_bench_reports(fast_model, tmp_path):
    import subprocess
    import sys

    desktop = bench([fast_model], BenchConfig(**FAST))
    device = tmp_path / "device.json"
    subprocess.run([sys.executable, "-m", "edgewise.runtime", "bench", str(fast_model), "--threads", "1",
                    "--seq-len", "32", "--min-runs", "60", "--json", str(device)], check=True, capture_output=True)

    result = compare(load_report(device), desktop, CompareConfig(max_latency_regression=10.0))

    assert result["passed"] and [(r["artifact"], r["backend"], r["batch_size"]) for r in result["rows"]] == [
        ("model", "ort-cpu", 1)]
