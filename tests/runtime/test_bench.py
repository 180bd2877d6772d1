import pytest

from edgewise.runtime.bench import bench, result_row
from edgewise.runtime.sizes import model_size

DEVICE_ROW = {"artifact", "path", "kind", "status", "model_file", "backend", "providers", "threads", "batch_size",
              "seq_len", "warmup", "latency_ms", "throughput_items_per_s", "memory_mb"}


def test_result_row_of_a_timed_run_holds_its_statistics():
    row = result_row("teacher", "/runs/teacher", "onnx", "ort-cpu", 4, 16, 1, samples=[1.0, 2.0, 3.0],
                     memory={"rss_now": 10.0}, info={"threads": 1})

    assert row["status"] == "ok" and row["path"] == "/runs/teacher" and row["info"] == {"threads": 1}
    assert row["latency_ms"]["p50"] == 2.0 and row["throughput_items_per_s"] == pytest.approx(2000.0)
    assert set(row) == {"artifact", "path", "kind", "status", "backend", "batch_size", "seq_len", "threads", "info",
                        "latency_ms", "throughput_items_per_s", "memory_mb"}


def test_result_row_of_a_skipped_backend_names_the_reason():
    row = result_row("teacher", "/runs/teacher", "hf", "ort-cpu", 1, 16, None, reason="export it first")

    assert row == {"artifact": "teacher", "path": "/runs/teacher", "kind": "hf", "status": "skipped",
                   "reason": "export it first", "backend": "ort-cpu", "batch_size": 1, "seq_len": None,
                   "threads": None}


def test_runtime_bench_rows_keep_their_keys_and_size(tiny_bundle):
    report = bench(tiny_bundle, threads=1, batch_sizes=(1, 2), seq_len=8, warmup=0, min_runs=2, min_time_s=0)

    assert [set(row) for row in report["results"]] == [DEVICE_ROW, DEVICE_ROW]
    assert report["results"][0]["providers"] == ["CPUExecutionProvider"] and report["results"][1]["batch_size"] == 2
    assert report["artifacts"][0]["size_bytes"] == (tiny_bundle / "model.onnx").stat().st_size
    assert report["artifacts"][0]["kind"] == "bundle"


def test_runtime_bench_refuses_a_torch_backend(tiny_bundle):
    from edgewise.core.errors import EdgewiseError

    with pytest.raises(EdgewiseError, match="the runtime runs backends ort-cpu, ort-cuda, ort-tensorrt, tensorrt"):
        bench(tiny_bundle, backend="torch")


def test_model_size_of_a_file_a_folder_and_external_data(tiny_teacher, tiny_onnx, external_onnx):
    onnx_bytes = (tiny_onnx / "model.onnx").stat().st_size

    assert model_size(tiny_onnx) == model_size(tiny_onnx / "model.onnx") == onnx_bytes
    assert model_size(tiny_onnx, "onnx") == onnx_bytes
    assert model_size(tiny_teacher) == (tiny_teacher / "model.safetensors").stat().st_size
    external = model_size(external_onnx)  # no manifest: the kind is detected, the data file counted
    assert external == sum(p.stat().st_size for p in external_onnx.glob("model.onnx*")) > onnx_bytes / 2
