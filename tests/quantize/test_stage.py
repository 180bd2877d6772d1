import json
import shutil

import numpy as np
import onnx
import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import MANIFEST_NAME, Manifest
from edgewise.quantize import quantize
from edgewise.quantize.config import QuantizeConfig
from edgewise.runtime.predictor import Predictor


def _ops(path):
    return [n.op_type for n in onnx.load(str(path / "model.onnx")).graph.node]


def test_quantize_dynamic_defaults_record_cpu_choice_size_and_accuracy(tiny_onnx, tmp_path):
    manifest = quantize(tiny_onnx, tmp_path / "int8")

    record = manifest.metrics["quantization"]
    assert record["method"] == "dynamic" and record["preprocessed"] == "symbolic"
    assert record["int8"]["chosen_by"] == "cpu" and record["int8"]["cpu_family"] in ("x86", "x86-vnni", "arm")
    assert manifest.metrics["size"]["ratio"] < 0.8
    assert "MatMulInteger" in _ops(tmp_path / "int8") or "DynamicQuantizeMatMul" in _ops(tmp_path / "int8")
    # The data the teacher was trained on (recorded in the lineage) measures accuracy by default.
    assert manifest.data["eval_data_from"] == "lineage" and set(manifest.metrics["accuracy"]) == {"validation", "test"}
    test = manifest.metrics["accuracy"]["test"]
    assert test["source"]["accuracy"] > 0.8 and abs(test["drop_points"]) <= 5
    assert test["quantized"]["agreement_with_source"] >= 0.95 and test["quantized"]["samples"] == 60
    assert manifest.parent["manifest_sha256"] == Manifest.read(tiny_onnx).sha256
    assert manifest.data["max_length"] == 32 and Artifact.load(tmp_path / "int8").kind == "onnx"
    assert Predictor(tmp_path / "int8").predict(["the sky is blue"])[0]["label"] in ("colour", "fruit", "sport")


def test_quantize_dynamic_per_channel_on_an_optimized_graph(tiny_teacher, tmp_path):
    from edgewise.export import ExportConfig, export

    export(tiny_teacher, tmp_path / "opt", ExportConfig(optimize=True))

    manifest = quantize(tmp_path / "opt", tmp_path / "int8", QuantizeConfig(per_channel=True))

    assert "Attention" in manifest.metrics["quantization"]["optimized_graph_ops"]
    assert manifest.metrics["accuracy"]["test"]["quantized"]["agreement_with_source"] >= 0.95


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_quantize_static_writes_qdq_calibrated_on_the_chosen_samples(tiny_onnx, tiny_data, tmp_path, method):
    config = QuantizeConfig(method="static", calibration_method=method, samples=40, calibration_batch_size=16,
                            calibration=str(tiny_data))

    manifest = quantize(tiny_onnx, tmp_path / "s8", config)

    ops = _ops(tmp_path / "s8")
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    calibration = manifest.metrics["quantization"]["calibration"]
    assert calibration == {"data": str(tiny_data), "split": "train", "samples": 40, "batches": 3, "batch_size": 16,
                           "method": method}
    assert manifest.metrics["accuracy"]["test"]["quantized"]["agreement_with_source"] >= 0.9


def test_quantize_static_feeds_calibration_one_batch_at_a_time(tiny_onnx, tiny_data, tmp_path, monkeypatch):
    from edgewise.quantize import ort

    ranges = []
    original = ort.TextBatches.set_range
    def spy(self, start_index, end_index):
        ranges.append(end_index - start_index)
        original(self, start_index, end_index)

    monkeypatch.setattr(ort.TextBatches, "set_range", spy)

    quantize(tiny_onnx, tmp_path / "s8", QuantizeConfig(method="static", samples=24, calibration_batch_size=8,
                                                        calibration=str(tiny_data)))

    assert ranges[-3:] == [1, 1, 1]  # three batches, each collected on its own


def test_quantize_static_on_an_optimized_graph(tiny_teacher, tiny_data, tmp_path):
    from edgewise.export import ExportConfig, export

    export(tiny_teacher, tmp_path / "opt", ExportConfig(optimize=True))

    manifest = quantize(tmp_path / "opt", tmp_path / "s8", QuantizeConfig(method="static", samples=16))

    assert manifest.metrics["accuracy"]["validation"]["quantized"]["agreement_with_source"] >= 0.9


def test_quantize_excluded_ops_and_nodes_stay_fp32(tiny_onnx, tmp_path):
    source = onnx.load(str(tiny_onnx / "model.onnx"))
    matmul = next(n.name for n in source.graph.node if n.op_type == "MatMul")

    quantize(tiny_onnx, tmp_path / "int8", QuantizeConfig(exclude_op=("Gather",), exclude_node=(matmul,)))

    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    assert any(n.name == matmul and n.op_type == "MatMul" for n in graph.node)
    int8 = {i.name for i in graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    gathers = [n for n in graph.node if n.op_type == "Gather"]
    assert gathers and not any(n.input[0] in int8 for n in gathers)


def test_quantize_fp16_keeps_io_types_and_layernorm_in_fp32(tiny_onnx, tmp_path):
    manifest = quantize(tiny_onnx, tmp_path / "fp16", QuantizeConfig(method="fp16"))

    model = onnx.load(str(tmp_path / "fp16" / "model.onnx"))
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types.values()
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ln = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert ln and all(types.get(n.input[1]) == onnx.TensorProto.FLOAT for n in ln)
    check = manifest.metrics["fp16_check"]
    assert check["passed"] and check["max_abs_diff"] < 0.05
    assert "LayerNormalization" in manifest.metrics["quantization"]["kept_fp32_ops"]
    assert manifest.metrics["size"]["ratio"] < 1  # tiny graphs are mostly structure; MiniLM halves


def test_quantize_fp16_beyond_atol_is_an_error_and_writes_nothing(tiny_onnx, tmp_path):
    with pytest.raises(EdgewiseError, match="differ from the FP32 model's"):
        quantize(tiny_onnx, tmp_path / "fp16", QuantizeConfig(method="fp16", atol=1e-9))

    assert not (tmp_path / "fp16").exists() and not list(tmp_path.glob(".*.partial"))


def test_quantize_without_any_data_checks_generated_inputs(external_onnx, tmp_path):
    manifest = quantize(external_onnx, tmp_path / "int8")

    assert manifest.metrics["accuracy"] == {} and manifest.data["eval_data"] is None
    assert manifest.metrics["parity_generated"]["samples"] == 7


def test_quantize_counts_external_weight_files_in_the_size(external_onnx, tmp_path):
    manifest = quantize(external_onnx, tmp_path / "int8")

    on_disk = sum(p.stat().st_size for p in external_onnx.iterdir() if p.name.startswith("model.onnx"))
    assert manifest.metrics["size"]["source_bytes"] == on_disk and manifest.metrics["size"]["ratio"] < 0.8


def test_quantize_static_without_calibration_data_is_an_error(external_onnx, tmp_path):
    with pytest.raises(EdgewiseError, match="pass --calibration DATA"):
        quantize(external_onnx, tmp_path / "s8", QuantizeConfig(method="static"))


def test_quantize_never_modifies_the_source(tiny_onnx, tmp_path):
    before = {p.name: p.read_bytes() for p in tiny_onnx.iterdir()}

    quantize(tiny_onnx, tmp_path / "int8")

    assert {p.name: p.read_bytes() for p in tiny_onnx.iterdir()} == before


def _static_misses_the_drop(monkeypatch):
    """Make every static candidate without FP32 layers lose 10 points, so the search must rescue one."""
    from edgewise.quantize import search

    current = {}
    real_build, real_score = search._build, search.score

    def build(candidate, *args, **kwargs):
        current["candidate"] = candidate
        return real_build(candidate, *args, **kwargs)

    def score(task, logits, split, id2label, reference=None):
        result = real_score(task, logits, split, id2label, reference)
        candidate = current.get("candidate")
        if reference is not None and candidate is not None and candidate.method == "static" \
                and not candidate.fp32_nodes:
            result["accuracy"] -= 0.10
            result["quality"] = result["accuracy"]
        return result

    monkeypatch.setattr(search, "_build", build)
    monkeypatch.setattr(search, "score", score)


def test_quantize_search_rescues_the_fastest_failing_candidate_and_keeps_the_fastest_passing(
        tiny_onnx, tmp_path, monkeypatch):
    _static_misses_the_drop(monkeypatch)
    config = QuantizeConfig(max_accuracy_drop=5, samples=16, sensitivity_samples=8, fallback_layers="2,1,1")

    manifest = quantize(tiny_onnx, tmp_path / "best", config)

    search = manifest.metrics["quantization"]["search"]
    rows = {c["name"]: c for c in search["candidates"]}
    assert list(rows)[:5] == ["dynamic", "dynamic-pc", "static-minmax", "static-entropy", "static-percentile"]
    statics = [rows[n] for n in ("static-minmax", "static-entropy", "static-percentile")]
    assert all(r["drop_points"] >= 10 - 1e-6 for r in statics)
    rescued = min(statics, key=lambda r: r["latency_p50_ms"])["name"]  # the fastest that failed
    assert search["sensitivity"]["of"] == rescued
    fallbacks = [rows[f"{rescued}+fp32x{n}"] for n in (1, 2)]  # counts de-duplicated and sorted
    assert [len(r["fp32_nodes"]) for r in fallbacks] == [1, 2] and len(rows) == 7
    scan = [layer["name"] for layer in search["sensitivity"]["layers"]]
    assert fallbacks[1]["fp32_nodes"] == scan[:2]  # the most sensitive layers, worst first
    mse = [layer["logit_mse"] for layer in search["sensitivity"]["layers"]]
    assert mse == sorted(mse, reverse=True) and len(set(mse)) > 1
    assert all(r["timing_session"] == 2 for r in fallbacks)
    passing = [r for r in rows.values() if r["drop_points"] <= 5]
    best = max(r["speedup_vs_source"] for r in passing)
    assert search["pick"] in {r["name"] for r in passing}
    assert rows[search["pick"]]["speedup_vs_source"] >= best * 0.97
    record = manifest.metrics["quantization"]
    assert record["picked"] == search["pick"] and record["method"] == rows[search["pick"]]["method"]
    assert record["int8"]["per_channel"] == rows[search["pick"]]["per_channel"]


def test_quantize_search_skips_the_scan_when_every_candidate_passes(tiny_onnx, tmp_path):
    manifest = quantize(tiny_onnx, tmp_path / "best", QuantizeConfig(max_accuracy_drop=100, samples=8))

    search = manifest.metrics["quantization"]["search"]
    assert "skipped" in search["sensitivity"] and len(search["candidates"]) == 5
    assert len(search["timing"]["sessions"]) == 1


def test_quantize_search_with_no_candidate_within_the_drop_names_the_closest(tiny_onnx, tmp_path, monkeypatch):
    from edgewise.quantize import search

    real_score = search.score

    def worse(task, logits, split, id2label, reference=None):  # every candidate loses a third of its accuracy
        result = real_score(task, logits, split, id2label, reference)
        if reference is not None:
            result["accuracy"] -= 0.34
            result["quality"] = result["accuracy"]
        return result

    monkeypatch.setattr(search, "score", worse)

    with pytest.raises(EdgewiseError, match="no candidate stays within 1 accuracy points.*the closest is"):
        quantize(tiny_onnx, tmp_path / "best", QuantizeConfig(max_accuracy_drop=1, samples=8, sensitivity_samples=4,
                                                              fallback_layers=(1,)))

    assert not (tmp_path / "best").exists() and not list(tmp_path.glob(".*.partial"))


def test_quantize_search_needs_validation_data(external_onnx, tmp_path, tiny_data):
    shutil.copy(tiny_data / "test.csv", tmp_path / "only-test.csv")
    (tmp_path / "d").mkdir()
    shutil.copy(tiny_data / "test.csv", tmp_path / "d" / "test.csv")

    with pytest.raises(EdgewiseError, match="needs|validation"):
        quantize(external_onnx, tmp_path / "best", QuantizeConfig(max_accuracy_drop=1), data=str(tmp_path / "d"))


def test_quantize_manifest_is_json_and_verifies(tiny_onnx, tmp_path):
    quantize(tiny_onnx, tmp_path / "int8")

    data = json.loads((tmp_path / "int8" / MANIFEST_NAME).read_text())
    assert data["stage"] == "quantize" and data["config"]["values"]["method"] == "dynamic"
    assert Manifest.read(tmp_path / "int8").verify() == []
    assert np.isfinite(data["metrics"]["accuracy"]["validation"]["quantized"]["max_abs_diff"])


@pytest.mark.slow
@pytest.mark.parametrize("given", ["lineage", "--data"])
def test_quantize_scores_the_validation_split_training_carved(teacher_without_validation, tmp_path, given):
    data, teacher, onnx_dir = teacher_without_validation
    recorded = Manifest.read(teacher).data["splits"]["validation"]

    manifest = quantize(onnx_dir, tmp_path / "int8", data=str(data) if given == "--data" else None)

    carved = manifest.data["carved_validation"]
    assert carved["settings_from"] == "lineage" and (carved["fraction"], carved["seed"]) == (0.2, 7)
    assert (carved["rows"], carved["sha256"]) == (recorded["rows"], recorded["sha256"])  # the very texts held out
    assert set(manifest.metrics["accuracy"]) == {"validation", "test"}
    assert manifest.metrics["accuracy"]["validation"]["source"]["samples"] == 48


@pytest.mark.slow
def test_quantize_search_runs_on_train_and_test_files_alone(teacher_without_validation, tmp_path):
    data, _, onnx_dir = teacher_without_validation

    manifest = quantize(onnx_dir, tmp_path / "best", QuantizeConfig(max_accuracy_drop=100, samples=8),
                        data=str(data))

    assert manifest.metrics["quantization"]["search"]["samples"] == 48


@pytest.mark.slow
def test_evaluate_validation_split_is_the_one_training_carved(teacher_without_validation):
    from edgewise.evaluate import EvaluateConfig, evaluate

    data, teacher, _ = teacher_without_validation

    result = evaluate(teacher, config=EvaluateConfig(split="validation"), data=str(data))

    recorded = Manifest.read(teacher).data["splits"]["validation"]
    assert result["split_sha256"] == recorded["sha256"] and result["samples"] == recorded["rows"]
    assert result["accuracy"] == pytest.approx(Manifest.read(teacher).metrics["validation"]["accuracy"])


def _fake_timing(monkeypatch, latencies: dict[str, float]):
    """Candidates timed at the given p50s (the source at 10 ms); their quantization and scores stay real."""
    from edgewise.quantize import search

    def time_side_by_side(folder, models, *, threads, seq_len, **kwargs):
        return {name: {"p50": latencies[name], "p50_ci95": [latencies[name]] * 2, "seq_len": seq_len}
                for name in models}

    monkeypatch.setattr(search, "time_side_by_side", time_side_by_side)


def _search_with_failing_statics(tiny_onnx, tmp_path, monkeypatch, latencies: dict[str, float]):
    """The search with every static candidate 10 points short, the statics fastest (1.0-1.4 ms) and the other
    candidates timed as given; returns the manifest, the search record and its candidates by name."""
    _static_misses_the_drop(monkeypatch)
    _fake_timing(monkeypatch, {"source": 10.0, "static-minmax": 1.0, "static-entropy": 1.2, "static-percentile": 1.4,
                               **latencies})
    config = QuantizeConfig(max_accuracy_drop=5, samples=16, sensitivity_samples=8, fallback_layers=(1,))

    manifest = quantize(tiny_onnx, tmp_path / "best", config)

    search = manifest.metrics["quantization"]["search"]
    return manifest, search, {c["name"]: c for c in search["candidates"]}


def test_search_keeps_the_fastest_passing_candidate_never_a_faster_failing_one(tiny_onnx, tmp_path, monkeypatch):
    _, search, rows = _search_with_failing_statics(tiny_onnx, tmp_path, monkeypatch,
                                                   {"dynamic": 2.5, "dynamic-pc": 2.0, "static-minmax+fp32x1": 4.0})

    assert rows["static-minmax"]["drop_points"] > 5 and rows["dynamic-pc"]["drop_points"] <= 5
    assert search["sensitivity"]["of"] == "static-minmax"  # the fastest failing one is the one rescued
    assert search["pick"] == "dynamic-pc" and rows["dynamic-pc"]["speedup_vs_source"] == pytest.approx(5.0)


def test_search_breaks_a_timing_tie_toward_fewer_fp32_layers(tiny_onnx, tmp_path, monkeypatch):
    # The rescued static model is 1 % faster than dynamic: a tie, so the model without FP32 layers wins.
    manifest, search, rows = _search_with_failing_statics(tiny_onnx, tmp_path, monkeypatch,
                                                          {"dynamic": 2.0, "dynamic-pc": 3.0,
                                                           "static-minmax+fp32x1": 1.98})

    assert rows["static-minmax+fp32x1"]["drop_points"] <= 5 and len(rows["static-minmax+fp32x1"]["fp32_nodes"]) == 1
    assert search["pick"] == "dynamic" and manifest.metrics["quantization"]["fp32_nodes"] == []


def test_search_breaks_a_timing_tie_toward_the_smaller_file(tiny_onnx, tmp_path, monkeypatch):
    sizes = {}
    for name, per_channel in (("dynamic", False), ("dynamic-pc", True)):
        sizes[name] = quantize(tiny_onnx, tmp_path / name, QuantizeConfig(per_channel=per_channel)
                               ).metrics["size"]["bytes"]
    smaller, larger = sorted(sizes, key=sizes.get)
    assert sizes[smaller] < sizes[larger]
    # The larger file is 2 % faster: a tie, which the smaller file wins.
    _fake_timing(monkeypatch, {"source": 10.0, larger: 1.96, smaller: 2.0, "static-minmax": 5.0,
                               "static-entropy": 5.0, "static-percentile": 5.0})

    manifest = quantize(tiny_onnx, tmp_path / "best", QuantizeConfig(max_accuracy_drop=100, samples=8))

    assert manifest.metrics["quantization"]["search"]["pick"] == smaller
    _fake_timing(monkeypatch, {"source": 10.0, larger: 1.80, smaller: 2.0, "static-minmax": 5.0,
                               "static-entropy": 5.0, "static-percentile": 5.0})  # 10 % faster: no tie
    manifest = quantize(tiny_onnx, tmp_path / "best", QuantizeConfig(max_accuracy_drop=100, samples=8),
                        overwrite=True)
    assert manifest.metrics["quantization"]["search"]["pick"] == larger


def _row(source_acc, quantized_acc, agreement, source_f1=0.9, quantized_f1=0.88):
    return {"source": {"accuracy": source_acc, "macro_f1": source_f1},
            "quantized": {"accuracy": quantized_acc, "macro_f1": quantized_f1, "agreement_with_source": agreement},
            "drop_points": round((source_acc - quantized_acc) * 100, 4)}


def test_agreement_warnings_name_the_changed_labels_and_the_search():
    from edgewise.quantize.stage import agreement_warnings

    accuracy = {"validation": _row(0.90, 0.893, 0.923), "test": _row(0.90, 0.90, 0.99)}

    warnings = agreement_warnings(accuracy, QuantizeConfig())

    assert warnings == ["the quantized model gives another label than its source on 7.7% of the validation texts "
                        "(agreement 92.3%, below 98%; macro-F1 -2.00 points, accuracy -0.70); compare candidates "
                        "with --max-accuracy-drop 1 (it keeps the fastest within the drop)"]
    assert agreement_warnings({"test": _row(0.9, 0.9, 0.98)}, QuantizeConfig()) == []


def test_quantize_warns_on_stderr_and_in_the_manifest_when_labels_change(tiny_onnx, tmp_path, monkeypatch, capfd):
    from edgewise.quantize import stage

    monkeypatch.setattr(stage, "MIN_AGREEMENT", 1.01)  # any agreement now counts as too low

    manifest = quantize(tiny_onnx, tmp_path / "int8")

    assert len(manifest.metrics["warnings"]) == 2 and "--max-accuracy-drop" in manifest.metrics["warnings"][0]
    assert "warning:" in capfd.readouterr().err


def test_quantize_an_embedding_model_scores_its_agreement_and_spearman(tiny_embedder_onnx, tiny_corpus, tiny_pairs,
                                                                        tmp_path):
    manifest = quantize(tiny_embedder_onnx, tmp_path / "int8", QuantizeConfig(pairs=str(tiny_pairs)),
                        data=str(tiny_corpus))

    assert manifest.task["name"] == "embedding" and manifest.data["carved_validation"]["from"] == "train"
    row = manifest.metrics["accuracy"]["validation"]  # validation carved from the corpus, with the pairs' validation
    assert row["source"]["quality"] == row["source"]["spearman"] and row["quantized"]["samples"] == 16 + 2 * 40
    assert row["quantized"]["cosine_p1"] > 0.9 and 0 <= row["quantized"]["neighbour_overlap"] <= 1
    assert row["drop_points"] == pytest.approx((1 - row["quantized"]["spearman"] / row["source"]["spearman"]) * 100,
                                               abs=1e-3)
    assert "test" in manifest.metrics["accuracy"]  # the corpus has no test split: the pairs' test still scores
    assert Predictor(tmp_path / "int8").embed(["apple"]).shape == (1, 32)


def test_quantize_search_of_an_embedding_model_gates_on_its_agreement_without_pairs(tiny_embedder_onnx, tiny_corpus,
                                                                                    tmp_path):
    manifest = quantize(tiny_embedder_onnx, tmp_path / "best",
                        QuantizeConfig(max_accuracy_drop=50, samples=16, sensitivity_samples=4, fallback_layers=(1,)),
                        data=str(tiny_corpus))

    search = manifest.metrics["quantization"]["search"]
    assert search["quality"].startswith("neighbour_overlap") and search["source"]["quality"] == 1.0
    assert all(0 <= c["drop_points"] <= 100 for c in search["candidates"]) and search["pick"]


def test_quantize_with_inc_refuses_an_embedding_model(tiny_embedder, tmp_path):
    with pytest.raises(EdgewiseError, match="--method inc serves classification models: quantize its ONNX export"):
        quantize(tiny_embedder, tmp_path / "inc", QuantizeConfig(method="inc"))
    assert not (tmp_path / "inc").exists()
