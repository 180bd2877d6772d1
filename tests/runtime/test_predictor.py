import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.runtime import Predictor
from edgewise.runtime.bench import bench, latency_stats
from tests.conftest import ort_has_cuda

# Modules the device runtime must never need: importing any of them raises ImportError.
BLOCK = ("torch", "transformers", "optimum", "pandas", "sklearn", "datasets", "click", "rich", "onnx", "yaml")



def run_runtime(*args):
    """`python -m edgewise.runtime ...` in a process where torch, transformers, click... cannot be imported."""
    code = (f"import sys\nfor m in {BLOCK!r}: sys.modules[m] = None\n"
            "from edgewise.runtime.__main__ import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)


@pytest.mark.slow
def test_runtime_predicts_without_torch_or_transformers(tiny_bundle):
    result = run_runtime("predict", tiny_bundle, "apple banana the", "hockey golf a", "--json", "--threads", "1")

    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["label"] for p in predictions] == ["fruit", "sport"]
    assert set(predictions[0]["scores"]) == {"colour", "fruit", "sport"}


@pytest.mark.slow
def test_runtime_bench_writes_the_report_schema_without_torch(tiny_bundle, tmp_path):
    result = run_runtime("bench", tiny_bundle, "--threads", "1", "--batch-sizes", "1,4", "--seq-len", "16",
                         "--min-runs", "20", "--min-time", "0", "--json", tmp_path / "bench.json")

    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["schema_version"] == 1 and report["tool"] == "edgewise.runtime"
    assert report["environment"]["cpu"]["logical_cores"] >= 1
    rows = report["results"]
    assert [(r["batch_size"], r["seq_len"], r["threads"], r["backend"]) for r in rows] == [
        (1, 16, 1, "ort-cpu"), (4, 16, 1, "ort-cpu")]
    assert len(rows[0]["latency_ms"]["samples"]) == rows[0]["latency_ms"]["runs"] >= 20
    assert "p50" in result.stdout


@pytest.mark.slow
def test_runtime_bench_times_the_recorded_real_lengths_by_default_and_says_so(tiny_bundle, tmp_path):
    result = run_runtime("bench", tiny_bundle, "--threads", "1", "--min-runs", "40", "--min-time", "0",
                         "--json", tmp_path / "bench.json")

    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    recorded = json.loads((tiny_bundle / "edgewise.json").read_text())["data"]["token_lengths"]["quantiles"]
    assert report["config"]["seq_len"] == "data" and report["results"][0]["seq_len"] == "data"
    assert report["config"]["lengths"] == [min(max(q, 2), 32) for q in recorded[1:]]
    assert "real token lengths" in result.stdout and "x real lengths" in result.stdout


def test_runtime_bench_without_recorded_lengths_times_the_max_length(tiny_bundle, tmp_path):
    bundle = tmp_path / "old"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "edgewise.json").read_text())
    manifest["data"].pop("token_lengths", None)  # a bundle of an older edgewise (not verified: no file hash)
    (bundle / "edgewise.json").write_text(json.dumps(manifest))

    report = bench(bundle, threads=1, warmup=0, min_runs=2, min_time_s=0, verify=False)

    assert report["config"]["seq_len"] == 32 and report["config"]["lengths"] is None
    with pytest.raises(EdgewiseError, match="records no token lengths"):
        bench(bundle, seq_len="data", threads=1, warmup=0, min_runs=2, min_time_s=0, verify=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [(("predict", "{tmp}/none", "x"), "is not a folder"),
     (("predict", "{bundle}", "a", "b", "--pair", "c"), "one --pair per text"),
     pytest.param(("predict", "{bundle}", "x", "--backend", "ort-cuda"), "needs CUDAExecutionProvider",
                  marks=pytest.mark.skipif(ort_has_cuda(), reason="this onnxruntime has CUDA")),
     (("bench", "{bundle}", "--seq-len", "999"), "--seq-len must be between 2"),
     (("bench", "{bundle}", "--threads", "0"), "--threads must be >= 1"),
     (("bench", "{bundle}", "--batch-sizes", "x"), "not a comma-separated list"),
     (("predict", "{notok}", "x"), "no tokenizer.json"),
     (("predict", "{corrupt}", "x"), "model.onnx: changed"),
     (("predict", "{corrupt}", "x", "--no-verify"), "cannot load")],
    ids=["missing", "pairs", "no-cuda", "seq-len", "threads", "batch-sizes", "no-tokenizer", "tampered-model",
         "corrupt-model"],
)
def test_runtime_bad_input_is_one_error_line(tiny_bundle, tmp_path, args, fragment):
    notok, corrupt = tmp_path / "notok", tmp_path / "corrupt"
    shutil.copytree(tiny_bundle, notok)
    (notok / "tokenizer.json").unlink()
    shutil.copytree(tiny_bundle, corrupt)
    (corrupt / "model.onnx").write_bytes(b"\x00garbage")
    args = [a.format(tmp=tmp_path, bundle=tiny_bundle, notok=notok, corrupt=corrupt) for a in args]

    result = run_runtime(*args)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.stderr


@pytest.mark.slow
def test_predictor_feeds_only_the_model_inputs(teacher_of, tmp_path):
    from edgewise.export import ExportConfig, export

    export(teacher_of("distilbert"), tmp_path / "onnx", ExportConfig())

    predictor = Predictor(tmp_path / "onnx")

    assert set(predictor.inputs) == {"input_ids", "attention_mask"}
    assert predictor.predict(["apple banana"])[0]["label"] in {"colour", "fruit", "sport"}


def test_predictor_pairs_are_encoded_as_second_segment(tiny_bundle):
    predictor = Predictor(tiny_bundle)

    feed = predictor.encode(["apple banana"], ["red"])

    assert feed["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1]]
    assert feed["attention_mask"].tolist() == [[1] * 6]


def test_predictor_truncates_to_max_length(tiny_bundle):
    predictor = Predictor(tiny_bundle, max_length=8)

    assert predictor.encode(["apple " * 50])["input_ids"].shape == (1, 8)


def test_latency_stats_known_values():
    stats = latency_stats([1.0, 2.0, 3.0, 4.0])

    assert (stats["p50"], stats["mean"], stats["min"], stats["max"], stats["runs"]) == (2.5, 2.5, 1.0, 4.0, 4)
    assert stats["std"] == pytest.approx(1.2909944)  # sample standard deviation
    assert (stats["p90"], stats["p95"], stats["p99"]) == pytest.approx((3.7, 3.85, 3.97))
    assert stats["cv"] == pytest.approx(stats["std"] / 2.5) and stats["samples"] == [1.0, 2.0, 3.0, 4.0]


def test_bench_rejects_bad_settings(tiny_bundle):
    with pytest.raises(EdgewiseError, match="--min-runs must be >= 1, got 0"):
        bench(tiny_bundle, min_runs=0)


def test_predictor_encodes_like_transformers_on_truncated_pairs(tiny_teacher, tiny_bundle):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tiny_teacher)
    predictor = Predictor(tiny_bundle, max_length=10)
    texts, pairs = ["apple banana cherry grape lemon mango", "red"], ["the a is very and we like", "golf"]

    ours = predictor.encode(texts, pairs)
    theirs = reference(texts, pairs, truncation=True, max_length=10, padding=True, return_tensors="np")

    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[name].tolist() == theirs[name].tolist(), name


def test_pad_id_comes_from_the_tokenizer_files(tmp_path):
    from tokenizers import Tokenizer, models

    from edgewise.runtime.predictor import pad_token_id

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "<pad>": 2, "[PAD]": 3}, unk_token="[UNK]"))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "<pad>"}}))

    assert pad_token_id(tmp_path, tokenizer, {}) == 2
    assert pad_token_id(tmp_path, tokenizer, {"pad_token_id": 7}) == 7
    (tmp_path / "special_tokens_map.json").unlink()
    assert pad_token_id(tmp_path, tokenizer, {}) == 3  # "[PAD]" by name


def test_predictor_refuses_max_length_over_the_model_limit(tiny_onnx):
    with pytest.raises(EdgewiseError, match="exceeds the model's limit of 64"):
        Predictor(tiny_onnx, max_length=1000)


def test_predictor_refuses_graphs_with_unknown_inputs(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["pixels"], ["logits"])], "g",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    (tmp_path / "tokenizer.json").write_text("{}")

    with pytest.raises(EdgewiseError, match="takes input\\(s\\) pixels"):
        Predictor(tmp_path)


@pytest.mark.slow
def test_runtime_bench_creates_the_report_folder(tiny_bundle, tmp_path):
    result = run_runtime("bench", tiny_bundle, "--min-runs", "5", "--min-time", "0", "--json",
                         tmp_path / "new" / "dir" / "bench.json")

    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "new" / "dir" / "bench.json").read_text())["results"]


def test_median_ci_uses_order_statistics_of_round_medians():
    from edgewise.runtime.bench import median_ci

    assert median_ci([3.0, 1.0, 2.0, 5.0, 4.0]) == ([1.0, 5.0], pytest.approx(0.9375))
    interval, coverage = median_ci(list(range(10)))
    assert interval == [1.0, 8.0] and coverage == pytest.approx(0.978515625)


def test_latency_stats_interval_reflects_rounds_not_samples():
    # Two runs that drift apart: thousands of samples cannot make the interval narrower than the drift.
    rounds = [[10.0] * 500, [10.5] * 500, [10.2] * 500, [10.4] * 500, [10.1] * 500]

    stats = latency_stats([x for r in rounds for x in r], rounds)

    assert stats["p50_ci95"] == [10.0, 10.5] and stats["round_p50"] == [10.0, 10.5, 10.2, 10.4, 10.1]


def test_predictor_on_a_folder_without_manifest_uses_the_models_own_limit(external_onnx):
    predictor = Predictor(external_onnx)

    assert predictor.max_length == 64  # max_position_embeddings of the tiny model, not a blanket 512


def test_predictor_on_cpu_turns_off_the_slow_skip_layernorm_fusion(tiny_onnx, monkeypatch):
    import onnxruntime

    seen = {}
    real = onnxruntime.InferenceSession

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)

    predictor = Predictor(tiny_onnx)

    assert seen["disabled_optimizers"] == ["SkipLayerNormFusion"] == predictor.disabled_optimizers
    assert predictor.predict(["the sky is blue"])[0]["label"] in ("colour", "fruit", "sport")


def _copy(folder, dst):
    shutil.copytree(folder, dst)
    return dst


def _scale_classifier(model_path, factor: float = 3.0) -> None:
    """Rewrite model.onnx as another valid model: the classifier weights scaled."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    weight = next(t for t in model.graph.initializer if t.name == "classifier.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * factor, weight.name))
    onnx.save(model, str(model_path))


def _runtime_main(capsys, *args):
    """`python -m edgewise.runtime ARGS` in this process: (exit code, stdout, stderr lines)."""
    from edgewise.runtime.__main__ import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_runtime_predict_refuses_a_replaced_model(tiny_bundle, tmp_path, capsys):
    folder = _copy(tiny_bundle, tmp_path / "deploy")
    _scale_classifier(folder / "model.onnx")

    code, out, err = _runtime_main(capsys, "predict", folder, "apple banana")

    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("Error: "), err
    assert "model.onnx: changed" in err[0] and "tokenizer.json" not in err[0]
    assert "re-create the bundle with `edgewise bundle`" in err[0] and "--no-verify" in err[0]


def test_runtime_predict_refuses_a_replaced_tokenizer(tiny_bundle, tmp_path, capsys):
    folder = _copy(tiny_bundle, tmp_path / "deploy")
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["apple"], tokenizer["model"]["vocab"]["red"] = (
        tokenizer["model"]["vocab"]["red"], tokenizer["model"]["vocab"]["apple"])
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))

    code, _, err = _runtime_main(capsys, "predict", folder, "apple banana")

    assert code == 2 and len(err) == 1 and err[0].startswith("Error: ")
    assert "tokenizer.json: changed" in err[0] and "model.onnx" not in err[0]


def test_runtime_no_verify_runs_an_edited_bundle(tiny_bundle, tmp_path, capsys):
    folder = _copy(tiny_bundle, tmp_path / "deploy")
    _scale_classifier(folder / "model.onnx")

    code, out, err = _runtime_main(capsys, "predict", folder, "apple banana", "--no-verify", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["label"] == "fruit"  # scaling the logits keeps their argmax

    assert _runtime_main(capsys, "bench", folder, "--min-runs", "2", "--min-time", "0", "--warmup", "0")[0] == 2
    code, out, err = _runtime_main(capsys, "bench", folder, "--no-verify", "--min-runs", "2", "--min-time", "0",
                                   "--warmup", "0", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["results"][0]["latency_ms"]["runs"] >= 2


def test_runtime_predict_runs_an_untouched_bundle(tiny_bundle, capsys):
    code, out, err = _runtime_main(capsys, "predict", tiny_bundle, "apple banana", "hockey golf")

    assert code == 0 and err == []
    assert [line.split("\t")[0] for line in out.splitlines()] == ["fruit", "sport"]


def test_predictor_hashes_a_folder_once_until_a_file_changes(tiny_bundle, tmp_path, monkeypatch):
    import edgewise.core.manifest as manifest_module

    folder = _copy(tiny_bundle, tmp_path / "deploy")
    hashed = []
    real = manifest_module.sha256_file

    def counting(path, *args, **kwargs):
        hashed.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(manifest_module, "sha256_file", counting)

    Predictor(folder)
    first = len(hashed)
    Predictor(folder, threads=1)
    Predictor(folder, max_length=16)

    assert "model.onnx" in hashed and len(hashed) == first  # the later two reuse the first verification
    (folder / "README.txt").write_text("edited, and longer than before " * 100)
    with pytest.raises(EdgewiseError, match="README.txt: changed"):
        Predictor(folder)
    assert len(hashed) > first  # a changed file is hashed again


def test_predictor_verifies_the_folder_not_a_candidate_model_elsewhere(tiny_onnx, tmp_path):
    candidate = tmp_path / "candidate.onnx"
    shutil.copy(tiny_onnx / "model.onnx", candidate)
    _scale_classifier(candidate)  # a quantize candidate: not in the manifest, and different

    predictor = Predictor(tiny_onnx, model=candidate)

    assert predictor.model_path == candidate and predictor.predict(["apple banana"])[0]["label"] == "fruit"


def test_predictor_on_a_folder_without_manifest_is_not_verified(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path / "foreign")
    (folder / "edgewise.json").unlink()
    _scale_classifier(folder / "model.onnx")  # nothing records what it was

    # Without edgewise.json the bundle's labels.json still names the labels (index 1 is "fruit").
    assert Predictor(folder, max_length=32).predict(["apple banana"])[0]["label"] == "fruit"
    (folder / "labels.json").unlink()  # nothing names them any more
    assert Predictor(folder, max_length=32).predict(["apple banana"])[0]["label"] == "1"


def test_predictor_accepts_an_engine_built_on_the_device_but_not_an_edited_script(tiny_onnx, tmp_path, monkeypatch):
    import edgewise.export.tensorrt as trt_export
    from edgewise.export import ExportConfig, ExportFormat, export

    monkeypatch.setattr(trt_export, "probe", lambda: (None, "no TensorRT in this test"))
    with pytest.raises(EdgewiseError, match="no TensorRT engine was built here"):
        export(tiny_onnx, tmp_path / "trt", ExportConfig(format=ExportFormat.TENSORRT, verify=False))
    folder = tmp_path / "trt"
    (folder / trt_export.ENGINE).write_bytes(b"built later by build_engine.sh")  # an expected file

    assert Predictor(folder).predict(["apple banana"])[0]["label"] == "fruit"  # model.onnx on ort-cpu
    (folder / trt_export.SCRIPT).write_text("#!/usr/bin/env bash\necho edited\n")
    with pytest.raises(EdgewiseError, match="build_engine.sh: changed.*`edgewise export`"):
        Predictor(folder)


def test_runtime_predict_says_when_a_text_was_cut_or_empty_and_does_not_echo_long_texts(tiny_bundle, capsys):
    long_text = "apple banana " * 2000  # 26,000 characters, far over the bundle's max_length

    code, out, _ = _runtime_main(capsys, "predict", tiny_bundle, long_text, "   ", "golf")

    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3 and max(len(line) for line in lines) < 200
    assert lines[0].endswith("…  (cut to its first 32 tokens)") and "(empty text" in lines[1]
    assert lines[2].endswith("\tgolf")

    code, out, _ = _runtime_main(capsys, "predict", tiny_bundle, long_text, "golf", "--json")
    results = json.loads(out)
    assert [r["truncated"] for r in results] == [True, False] and results[0]["tokens"] == 32
    assert results[1]["tokens"] == 3 and results[0]["text"] == long_text and not results[0]["empty"]


def test_an_embedding_bundle_embeds_and_refuses_to_predict_labels(tiny_embedder_bundle, tiny_bundle):
    import numpy as np

    vectors = Predictor(tiny_embedder_bundle).embed(["apple banana", "golf"])

    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5)
    with pytest.raises(EdgewiseError, match="gives vectors, not labels; use embed"):
        Predictor(tiny_embedder_bundle).predict(["apple"])
    with pytest.raises(EdgewiseError, match="gives labels, not vectors; use predict"):
        Predictor(tiny_bundle).embed(["apple"])


@pytest.mark.slow
def test_runtime_embeds_without_torch_as_json_and_npy(tiny_embedder_bundle, tmp_path):
    import numpy as np

    (tmp_path / "texts.txt").write_text("apple banana the\n\nhockey golf a\n")

    shown = run_runtime("embed", tiny_embedder_bundle, "apple banana the", "--json")
    saved = run_runtime("embed", tiny_embedder_bundle, "--file", tmp_path / "texts.txt", "--npy", tmp_path / "v.npy")

    assert shown.returncode == 0 and saved.returncode == 0, shown.stderr + saved.stderr
    rows = json.loads(shown.stdout)
    expected = Predictor(tiny_embedder_bundle).embed(["apple banana the", "hockey golf a"])
    assert rows[0]["text"] == "apple banana the" and len(rows[0]["embedding"]) == 32 and rows[0]["tokens"] == 5
    assert np.abs(np.array(rows[0]["embedding"]) - expected[0]).max() < 1e-6
    assert np.abs(np.load(tmp_path / "v.npy") - expected).max() == 0  # the blank line is no text
    assert "wrote" in saved.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    ((), "no texts to embed: give them as arguments or with --file"),
    (("a", "--batch-size", "0"), "--batch-size must be >= 1"),
    (("a", "--file", "/no/such/file.txt"), "cannot read --file /no/such/file.txt"),
])
def test_runtime_embed_bad_input_is_one_error_line(tiny_embedder_bundle, args, message):
    result = run_runtime("embed", tiny_embedder_bundle, *args)

    assert result.returncode == 2 and result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_runtime_predict_on_an_embedding_bundle_says_to_embed(tiny_embedder_bundle):
    result = run_runtime("predict", tiny_embedder_bundle, "apple")

    assert result.returncode == 2 and "use embed" in result.stderr and "Traceback" not in result.stderr
