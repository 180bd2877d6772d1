import json

import pytest

from edgewise.bench import BenchConfig, bench, compare
from edgewise.core.errors import EdgewiseError
from edgewise.evaluate import evaluate
from tests.conftest import ort_has_cuda

FAST = dict(warmup=2, min_runs=10, min_time_s=0.05, rounds=2)


@pytest.fixture(scope="module")
def report(tiny_teacher, tiny_onnx, tiny_bundle, tiny_data, tmp_path_factory):
    import shutil

    out = tmp_path_factory.mktemp("reports") / "today"
    # Named apart: two folders called `teacher` would be told apart by their parent folder.
    bundle = tmp_path_factory.mktemp("b") / "teacher-bundle"
    shutil.copytree(tiny_bundle, bundle)
    config = BenchConfig(backends=("torch", "ort-cpu"), batch_sizes=(1, 2), threads=1, **FAST)
    return bench([tiny_teacher, tiny_onnx, bundle], out, config, data=str(tiny_data)), out


def test_bench_rows_cover_every_artifact_backend_and_batch(report):
    result, _ = report
    rows = {(r["artifact"], r["backend"], r["batch_size"]): r for r in result["results"]}

    assert len(rows) == 3 * 2 * 2
    assert rows[("teacher", "torch", 1)]["status"] == "ok" and rows[("teacher-onnx", "ort-cpu", 2)]["status"] == "ok"
    skipped = rows[("teacher-onnx", "torch", 1)]
    assert skipped["status"] == "skipped" and "torch runs hf and inc artifacts" in skipped["reason"]
    assert "export this hf model first" in rows[("teacher", "ort-cpu", 1)]["reason"]


def test_bench_rows_hold_latency_statistics_and_throughput(report):
    result, _ = report
    row = next(r for r in result["results"] if r["artifact"] == "teacher-onnx" and r["status"] == "ok"
               and r["batch_size"] == 2)

    lat = row["latency_ms"]
    assert lat["runs"] >= 10 and len(lat["samples"]) == lat["runs"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    # Two rounds: the interval spans the two round medians (the only distribution-free choice).
    assert len(lat["round_p50"]) == 2 and lat["p50_ci95"] == sorted(lat["round_p50"])
    assert row["throughput_items_per_s"] == pytest.approx(2000 / lat["mean"])  # items over the timed time
    assert row["seq_len"] == "data" and row["threads"] == 1
    assert row["memory_mb"]["rss_now"] > 0 and row["memory_mb"]["gpu_peak"] is None  # no GPU row here
    assert result["process_peak_rss_mb"] >= row["memory_mb"]["rss_now"]


def test_bench_accuracy_matches_evaluate_and_agreement_is_against_the_reference(report, tiny_teacher, tiny_data):
    result, _ = report
    expected = evaluate(tiny_teacher, data=str(tiny_data))["accuracy"]

    for row in (r for r in result["results"] if r["status"] == "ok"):
        assert row["accuracy"] == pytest.approx(expected)
        assert row["label_agreement"] == 1.0  # ONNX and bundle label every text as PyTorch does
    reference = next(r for r in result["results"] if r["artifact"] == "teacher" and r["status"] == "ok")
    assert reference["reference"]["p50_ratio"] == 1.0 and result["reference"] == "teacher"


def test_bench_writes_json_markdown_and_plots(report):
    result, out = report

    assert json.loads((out / "report.json").read_text())["schema_version"] == 2
    markdown = (out / "report.md").read_text()
    assert "| teacher-onnx | ort-cpu | 1 |" in markdown
    assert "skipped: backend torch cannot run a 'onnx' artifact; torch runs hf and inc artifacts" in markdown
    for plot in ("pareto.png", "latency_cdf.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    artifacts = {a["name"]: a for a in result["artifacts"]}
    assert artifacts["teacher"]["parameters"] == artifacts["teacher-onnx"]["parameters"] > 10_000
    assert artifacts["teacher"]["size_bytes"] > 0 and result["environment"]["cpu"]["logical_cores"] >= 1


def test_bench_fixed_sequence_length_and_its_limits(tiny_onnx, tmp_path):
    result = bench([tiny_onnx], config=BenchConfig(seq_len="16", **FAST))

    assert result["results"][0]["seq_len"] == 16 and result["results"][0]["backend"] == "ort-cpu"
    with pytest.raises(EdgewiseError, match="exceeds the model's max_length 32"):
        bench([tiny_onnx], config=BenchConfig(seq_len="64", **FAST))
    with pytest.raises(EdgewiseError, match="--seq-len data times the evaluation texts: pass --data"):
        bench([tiny_onnx], config=BenchConfig(seq_len="data", **FAST))


def test_bench_names_same_named_folders_apart(tiny_teacher, tiny_bundle):
    result = bench([tiny_teacher, tiny_bundle], config=BenchConfig(**FAST))

    names = [a["name"] for a in result["artifacts"]]
    assert names[0] != names[1] and all(n.endswith("/teacher") for n in names)



@pytest.mark.skipif(ort_has_cuda(), reason="onnxruntime here has the CUDA provider: ort-cuda can run")
def test_bench_marks_a_backend_that_cannot_run_here_as_skipped(tiny_onnx):
    result = bench([tiny_onnx], config=BenchConfig(backends=("ort-cuda", "tensorrt"), **FAST))

    reasons = [r["reason"] for r in result["results"]]
    assert all(r["status"] == "skipped" for r in result["results"])
    assert "CUDAExecutionProvider" in reasons[0] and "runs tensorrt artifacts" in reasons[1]


def test_bench_marks_an_onnx_folder_onnxruntime_cannot_open_as_skipped(tiny_onnx, tmp_path):
    import shutil

    broken = tmp_path / "foreign"
    broken.mkdir()
    shutil.copy(tiny_onnx / "model.onnx", broken / "model.onnx")  # a folder edgewise did not write,
    shutil.copy(tiny_onnx / "config.json", broken / "config.json")  # with no tokenizer.json

    result = bench([tiny_onnx, broken], config=BenchConfig(backends=("ort-cpu",), **FAST))

    rows = {r["artifact"]: r for r in result["results"]}
    assert rows[tiny_onnx.name]["status"] == "ok"
    assert rows["foreign"]["status"] == "skipped" and "no tokenizer.json" in rows["foreign"]["reason"]


def test_bench_refuses_an_existing_report_folder(tiny_onnx, tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "notes.txt").write_text("mine")

    with pytest.raises(EdgewiseError, match="was not written by edgewise"):
        bench([tiny_onnx], tmp_path / "reports", BenchConfig(**FAST), overwrite=True)
    assert (tmp_path / "reports" / "notes.txt").read_text() == "mine"

    bench([tiny_onnx], tmp_path / "r2", BenchConfig(**FAST))
    with pytest.raises(EdgewiseError, match="already exists"):
        bench([tiny_onnx], tmp_path / "r2", BenchConfig(**FAST))
    bench([tiny_onnx], tmp_path / "r2", BenchConfig(**FAST), overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"backends": ("gpu",)}, "unknown"), ({"batch_sizes": (0,)}, "batch sizes"), ({"threads": 0}, "threads"),
     ({"seq_len": "long"}, "seq_len"), ({"rounds": 0}, "rounds"), ({"accuracy_samples": 0}, "accuracy_samples"),
     ({"eval_batch_size": 0}, "eval_batch_size"), ({"eval_batch_size": "many"}, "eval_batch_size")],
)
def test_bench_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(EdgewiseError, match=fragment):
        BenchConfig(**kwargs)


def test_bench_accuracy_and_agreement_are_measured_per_artifact(tiny_teacher, tiny_onnx, tiny_data, tmp_path):
    from edgewise.core.data import load_splits
    from edgewise.export import ExportConfig, export
    from edgewise.runtime import Predictor
    from tests.conftest import random_classifier

    untrained = tmp_path / "untrained"
    export(random_classifier(tmp_path / "hf", tiny_teacher), untrained, ExportConfig(max_length=32))

    result = bench([tiny_teacher, untrained], config=BenchConfig(**FAST), data=str(tiny_data))

    rows = {r["artifact"]: r for r in result["results"]}
    assert rows["untrained"]["accuracy"] == pytest.approx(evaluate(untrained, data=str(tiny_data))["accuracy"])
    assert rows["untrained"]["accuracy"] < 0.7 < rows["teacher"]["accuracy"]
    texts = load_splits(str(tiny_data))["test"].texts
    theirs = Predictor(tiny_onnx).outputs(texts).argmax(-1)  # labels exactly as the PyTorch teacher's
    mine = Predictor(untrained).outputs(texts).argmax(-1)
    assert rows["untrained"]["label_agreement"] == pytest.approx(float((mine == theirs).mean()))
    assert rows["untrained"]["label_agreement"] < 1.0


def _stub_loader(behaviour: dict):
    """An `open_runner` whose runners label texts by their class words: correctly, or as label 0, per batch size.

    ``behaviour[folder name](batch size)`` is True for correct labels at that batch size. Every scored
    batch is recorded as (folder name, batch length).
    """
    import numpy as np

    from edgewise.core.artifact import Artifact
    from edgewise.runtime.runners import Runner
    from tests.conftest import CLASS_WORDS

    calls = []

    class StubRunner(Runner):
        def __init__(self, folder, backend):
            self.folder, self.backend, self.max_length, self.info = folder, backend, 32, {}
            self.id2label = Artifact.load(folder).labels
            label2id = {name: i for i, name in self.id2label.items()}
            self.word_label = {w: label2id[label] for label, words in CLASS_WORDS.items() for w in words}

        def encode(self, texts, pairs=None):
            return {"input_ids": np.zeros((len(texts), 8), dtype=np.int64), "texts": list(texts)}

        def synthetic(self, batch_size, seq_len):
            return self.encode(["x"] * batch_size)

        def run(self, feed):
            return None

        def scores(self, feed):
            calls.append((self.folder.name, len(feed["texts"])))
            out = np.zeros((len(feed["texts"]), len(self.id2label)), dtype=np.float32)
            if behaviour[self.folder.name](len(feed["texts"])):
                for i, text in enumerate(feed["texts"]):
                    out[i, next(self.word_label[w] for w in text.split() if w in self.word_label)] = 1.0
            return out

        def time_ms(self, feed):
            return 1.0

    def load(folder, kind, backend, **settings):
        return StubRunner(folder, backend)

    return load, calls


def test_bench_scores_every_row_at_its_own_batch_size_once(tiny_onnx, tiny_data, monkeypatch):
    load, calls = _stub_loader({"teacher-onnx": lambda batch: batch == 1})  # wrong whenever batched
    monkeypatch.setattr("edgewise.bench.stage.open_runner", load)

    result = bench([tiny_onnx], config=BenchConfig(batch_sizes=(1, 4), **FAST), data=str(tiny_data))

    rows = {r["batch_size"]: r for r in result["results"]}
    assert (rows[1]["accuracy"], rows[1]["accuracy_batch_size"]) == (1.0, 1)
    assert (rows[4]["accuracy"], rows[4]["accuracy_batch_size"]) == (pytest.approx(1 / 3), 4)  # all label 0
    # One pass per batch size over the 60 test texts: 60 batches of 1, 15 of 4.
    assert sorted(set(calls)) == [("teacher-onnx", 1), ("teacher-onnx", 4)]
    assert calls.count(("teacher-onnx", 1)) == 60 and calls.count(("teacher-onnx", 4)) == 15


def test_bench_eval_batch_size_overrides_every_row_with_one_shared_pass(tiny_onnx, tiny_data, monkeypatch):
    from edgewise.bench.report import markdown

    load, calls = _stub_loader({"teacher-onnx": lambda batch: batch == 1})
    monkeypatch.setattr("edgewise.bench.stage.open_runner", load)

    result = bench([tiny_onnx], config=BenchConfig(batch_sizes=(1, 4), eval_batch_size=4, **FAST),
                   data=str(tiny_data))

    assert [(r["accuracy"], r["accuracy_batch_size"]) for r in result["results"]] == [
        (pytest.approx(1 / 3), 4), (pytest.approx(1 / 3), 4)]
    assert calls == [("teacher-onnx", 4)] * 15
    text = markdown(result)
    assert "| teacher-onnx | ort-cpu | 1 |" in text and "33.33 % (batch 4) |" in text
    assert "in batches of 4 (--eval-batch-size)" in text


def test_bench_label_agreement_compares_predictions_made_at_the_same_batch_size(tiny_onnx, tiny_data, tmp_path,
                                                                                monkeypatch):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_onnx, other)
    # The reference is right only at batch 1; the other artifact is right at every batch size.
    load, _ = _stub_loader({"teacher-onnx": lambda batch: batch == 1, "other": lambda batch: True})
    monkeypatch.setattr("edgewise.bench.stage.open_runner", load)

    result = bench([tiny_onnx, other], config=BenchConfig(batch_sizes=(1, 4), **FAST), data=str(tiny_data))

    agreement = {r["batch_size"]: r["label_agreement"] for r in result["results"] if r["artifact"] == "other"}
    assert agreement == {1: 1.0, 4: pytest.approx(1 / 3)}  # at batch 4 the reference says label 0 throughout


def test_bench_markdown_shows_the_accuracy_batch_only_where_it_differs(report):
    from edgewise.bench.report import markdown

    result, _ = report
    text = markdown(result)

    assert all(r["accuracy_batch_size"] == r["batch_size"] for r in result["results"] if r["status"] == "ok")
    assert "% (batch " not in text and "at each row's own batch size" in text
    old = json.loads(json.dumps(result))  # a report written before rows recorded their accuracy batch size
    for row in old["results"]:
        row.pop("accuracy_batch_size", None)
    old["config"]["eval_batch_size"] = 2
    old_text = markdown(old)
    assert "(batch 2)" in old_text and "in batches of 2 (--eval-batch-size)" in old_text
    ran_at_1 = sum(r["status"] == "ok" and r["batch_size"] == 1 for r in old["results"])
    assert ran_at_1 == 3 and old_text.count("% (batch 2) |") == ran_at_1  # batch-1 rows scored in batches of 2


@pytest.mark.slow
def test_bench_scores_a_dynamic_int8_model_at_each_rows_batch_size(tiny_onnx, tiny_data, tmp_path):
    import numpy as np

    from edgewise.core.artifact import Artifact
    from edgewise.core.data import encode_labels, load_splits
    from edgewise.quantize import quantize
    from edgewise.quantize.config import QuantizeConfig
    from edgewise.runtime import Predictor

    int8 = tmp_path / "int8"
    quantize(tiny_onnx, int8, QuantizeConfig())

    result = bench([tiny_onnx, int8], config=BenchConfig(batch_sizes=(1, 8), threads=1, **FAST), data=str(tiny_data))

    split = load_splits(str(tiny_data))["test"]
    truth = np.asarray(encode_labels(split, Artifact.load(int8).labels))
    for row in (r for r in result["results"] if r["artifact"] == "int8"):
        batch = row["batch_size"]
        # The same texts in the same length-sorted batches of this row's size, scored independently.
        mine = Predictor(int8, threads=1).outputs(split.texts, batch_size=batch).argmax(-1)
        theirs = Predictor(tiny_onnx, threads=1).outputs(split.texts, batch_size=batch).argmax(-1)
        assert row["accuracy_batch_size"] == batch
        assert row["accuracy"] == pytest.approx(float((mine == truth).mean()))
        assert row["label_agreement"] == pytest.approx(float((mine == theirs).mean()))


def test_bench_cannot_resume(tiny_onnx, tmp_path):
    with pytest.raises(EdgewiseError, match="cannot resume"):
        bench([tiny_onnx], config=BenchConfig(**FAST), resume=True)
    with pytest.raises(EdgewiseError, match="cannot resume"):
        bench([tiny_onnx], tmp_path / "report", BenchConfig(**FAST), resume=True)


def test_bench_of_embedding_models_scores_spearman_and_agreement_with_the_reference(
        tiny_embedder, tiny_embedder_onnx, tiny_corpus, tiny_pairs, tiny_retrieval, tmp_path):
    config = BenchConfig(threads=1, split="validation", pairs=str(tiny_pairs), retrieval=str(tiny_retrieval), **FAST)

    result = bench([tiny_embedder, tiny_embedder_onnx], tmp_path / "report", config, data=str(tiny_corpus))

    rows = {r["artifact"]: r for r in result["results"]}
    assert result["task"]["name"] == "embedding" and result["quality_metric"] == "spearman"
    assert result["data"]["pairs"] == 40 and result["data"]["corpus"] == 16  # validation carved from the corpus
    teacher, onnx = rows[tiny_embedder.name], rows["onnx"]
    assert teacher["quality"] == teacher["spearman"] and onnx["spearman"] == pytest.approx(teacher["spearman"],
                                                                                           abs=1e-3)
    assert teacher["cosine_mean"] == pytest.approx(1.0) and onnx["cosine_min"] > 0.9999
    assert onnx["neighbour_overlap"] == pytest.approx(1.0) and "accuracy" not in onnx
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| STS Spearman | of ref | cosine mean | cosine p1 | top-10 overlap |" in markdown
    assert onnx["spearman_share"] == pytest.approx(1.0, abs=1e-3)
    assert result["data"]["queries"] == 6 and onnx["ndcg_at_10"] == pytest.approx(teacher["ndcg_at_10"], abs=1e-3)
    # The CI gate reads this report: the same report passes on its Spearman; a lower one fails.
    lowered = json.loads(json.dumps(result))
    next(r for r in lowered["results"] if r["artifact"] == "onnx")["quality"] -= 0.02
    assert compare(result, result)["passed"]
    gated = {r["artifact"]: r for r in compare(lowered, result)["rows"]}
    assert gated["onnx"]["accuracy"] == "regression" and gated["onnx"]["quality_drop_points"] == pytest.approx(2)


def test_bench_reference_is_benched_first_and_every_row_is_compared_with_it(tiny_embedder, tiny_embedder_onnx,
                                                                           tiny_corpus, tiny_pairs, cli_run):
    config = BenchConfig(threads=1, split="validation", pairs=str(tiny_pairs), reference=str(tiny_embedder), **FAST)

    result = bench([tiny_embedder_onnx], None, config, data=str(tiny_corpus))

    assert result["reference"] == tiny_embedder.name and [a["name"] for a in result["artifacts"]] == [
        tiny_embedder.name, "onnx"]
    onnx = next(r for r in result["results"] if r["artifact"] == "onnx")
    assert onnx["reference"]["p50_ratio"] > 0 and onnx["spearman_share"] == pytest.approx(1.0, abs=1e-3)
    twice = cli_run("bench", tiny_embedder, "--reference", tiny_embedder)
    assert twice.exit_code == 2 and "(--reference names it too)" in twice.stderr


def test_bench_refuses_models_of_two_tasks_and_pairs_for_a_classifier(tiny_teacher, tiny_embedder, tiny_pairs):
    with pytest.raises(EdgewiseError, match="bench compares models of one task"):
        bench([tiny_teacher, tiny_embedder], None, BenchConfig(**FAST))
    with pytest.raises(EdgewiseError, match="--pairs and --retrieval score sentence-embedding models"):
        bench([tiny_teacher], None, BenchConfig(pairs=str(tiny_pairs), **FAST))
