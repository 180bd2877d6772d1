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
    assert result["new"] == [{"artifact": "m", "backend": "ort-cpu", "batch_size": 8, "seq_len": 16}]
    with pytest.raises(EdgewiseError, match="no row of the report matches the baseline"):
        compare(_report(10.0, (9.9, 10.1), name="other"), baseline)


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


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 90), (5, 85), (20, 95), (12, 80), (5, 84)]

    assert pareto_front(points) == [1, 0, 2]


FAST = dict(warmup=5, min_runs=60, min_time_s=0.3, rounds=3, threads=1, seq_len="32", batch_sizes=(1,))


@pytest.fixture(scope="module")
def slow_model(tiny_teacher, tmp_path_factory):
    """A much larger classifier (hidden 256, 4 layers) exported to ONNX, in a folder also named `model`."""
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from edgewise.export import ExportConfig, export

    hf = tmp_path_factory.mktemp("slow-hf") / "hf"
    config = BertConfig(vocab_size=35, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=64,
                        id2label={0: "colour", 1: "fruit", 2: "sport"}, label2id={"colour": 0, "fruit": 1, "sport": 2})
    BertForSequenceClassification(config).save_pretrained(hf)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny_teacher / name, hf / name)
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

    assert compare(again, baseline, CompareConfig(max_latency_regression=0.25))["passed"]
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
