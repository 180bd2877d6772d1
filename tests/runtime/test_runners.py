import numpy as np
import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.runners import BACKENDS, Unavailable, auto_backend, check_runs, open_runner
from tests.conftest import ort_has_cuda

# Of different lengths, so that the length-sorted batches of `logits` reorder them.
TEXTS = ["apple banana the very really", "red", "hockey golf a", "grape lemon is very and we like it today", "blue"]


def _torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture
def torch_threads():
    """Give back torch's thread count, which a runner opened with ``threads`` pins for the process."""
    import torch

    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_open_runner_torch_and_ort_cpu_give_the_same_logits(tiny_teacher, tiny_onnx, tiny_bundle):
    reference = open_runner(tiny_teacher, "hf", "torch")

    expected = reference.outputs(TEXTS)

    for folder, kind in ((tiny_onnx, "onnx"), (tiny_bundle, "bundle")):
        runner = open_runner(folder, kind, "ort-cpu")
        np.testing.assert_allclose(runner.outputs(TEXTS), expected, atol=1e-4)
        assert (runner.backend, runner.max_length, runner.id2label) == ("ort-cpu", 32, reference.id2label)
    assert (reference.backend, reference.max_length) == ("torch", 32)


@pytest.mark.parametrize("backend", ["torch", "ort-cpu"])
def test_logits_keep_the_input_order(tiny_teacher, tiny_onnx, backend):
    runner = open_runner(tiny_teacher if backend == "torch" else tiny_onnx, None, backend)
    one_by_one = np.concatenate([runner.outputs([text]) for text in TEXTS])
    batches = []

    batched = runner.outputs(TEXTS, batch_size=2, progress=batches.append)

    assert batches == [2, 2, 1]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
    np.testing.assert_allclose(runner.outputs(TEXTS[::-1], batch_size=2)[::-1], batched, atol=1e-4)
    assert runner.outputs([]).shape == (0, 3)


@pytest.mark.parametrize("backend", ["torch", "ort-cpu"])
def test_runner_times_synthetic_inputs_of_the_asked_shape(tiny_teacher, tiny_onnx, backend, torch_threads):
    runner = open_runner(tiny_teacher if backend == "torch" else tiny_onnx, None, backend, threads=1)

    feed = runner.synthetic(2, 16)

    assert tuple(feed["input_ids"].shape) == (2, 16) and runner.scores(feed).shape == (2, 3)
    assert runner.time_ms(feed) > 0
    assert runner.info.get("torch_threads", runner.info.get("threads")) == 1


def test_open_runner_reads_the_kind_and_picks_auto_from_the_folder(tiny_teacher, tiny_onnx):
    assert open_runner(tiny_teacher, None, "auto").backend == "torch"
    assert open_runner(tiny_onnx, None, "auto").backend == auto_backend("onnx")


def test_auto_backend_per_kind():
    onnx = "ort-cuda" if ort_has_cuda() else "ort-cpu"

    assert [auto_backend(kind) for kind in ("hf", "inc", "tensorrt", "onnx", "ort", "bundle")] == [
        "torch", "torch", "tensorrt", onnx, onnx, onnx]


def test_open_runner_refuses_an_unknown_backend_naming_the_list(tiny_onnx):
    with pytest.raises(EdgewiseError) as info:
        open_runner(tiny_onnx, "onnx", "gpu")

    assert not isinstance(info.value, Unavailable)
    assert f"unknown backend 'gpu'; choose one of {', '.join(BACKENDS)}" in str(info.value)


@pytest.mark.parametrize(("backend", "kind", "fragment"), [
    ("torch", "onnx", "torch runs hf and inc artifacts"),
    ("torch-cuda", "bundle", "torch-cuda runs hf and inc artifacts"),
    ("ort-cpu", "hf", "export this hf model first"),
    ("ort-cuda", "inc", "INC models run with --backend torch"),
    ("tensorrt", "onnx", "the tensorrt backend runs tensorrt artifacts"),
])
def test_a_backend_is_unavailable_for_kinds_it_does_not_run(backend, kind, fragment):
    with pytest.raises(Unavailable, match=fragment):
        check_runs(backend, kind)


def test_every_backend_runs_its_own_kinds():
    for backend, kinds in {"torch": ("hf", "inc"), "torch-cuda": ("hf", "inc"), "tensorrt": ("tensorrt",),
                           "ort-cpu": ("onnx", "ort", "bundle", "tensorrt")}.items():
        for kind in kinds:
            check_runs(backend, kind)


@pytest.mark.skipif(_torch_has_cuda(), reason="torch sees a CUDA GPU here: torch-cuda can run")
def test_torch_cuda_is_unavailable_without_a_gpu(tiny_teacher):
    with pytest.raises(Unavailable, match="no CUDA GPU is visible to torch"):
        open_runner(tiny_teacher, "hf", "torch-cuda")


@pytest.mark.skipif(ort_has_cuda(), reason="onnxruntime here has the CUDA provider: ort-cuda can run")
def test_ort_cuda_is_unavailable_without_the_cuda_provider(tiny_onnx):
    with pytest.raises(Unavailable, match="needs CUDAExecutionProvider"):
        open_runner(tiny_onnx, "onnx", "ort-cuda")


def test_tensorrt_is_unavailable_without_an_engine(tiny_onnx, tmp_path, monkeypatch):
    import edgewise.export.tensorrt as trt_export
    from edgewise.export import ExportConfig, ExportFormat, export

    monkeypatch.setattr(trt_export, "probe", lambda: (None, "no TensorRT in this test"))
    with pytest.raises(EdgewiseError, match="no TensorRT engine was built here"):
        export(tiny_onnx, tmp_path / "trt", ExportConfig(format=ExportFormat.TENSORRT, verify=False))

    with pytest.raises(Unavailable, match="has no model.engine yet"):
        open_runner(tmp_path / "trt", "tensorrt", "tensorrt")
    assert open_runner(tmp_path / "trt", "tensorrt", "ort-cpu").outputs(["apple"]).shape == (1, 3)  # its model.onnx


def test_ort_falling_back_to_another_provider_is_unavailable(tiny_onnx, monkeypatch):
    from edgewise.runtime.predictor import Predictor

    monkeypatch.setattr(Predictor, "providers", lambda self: ["SomeOtherExecutionProvider"])

    with pytest.raises(Unavailable, match="CPUExecutionProvider did not start .*fell back to SomeOther"):
        open_runner(tiny_onnx, "onnx", "ort-cpu")


def test_onnx_scores_drops_inputs_the_graph_lacks(tiny_onnx):
    from edgewise.runtime.runners import onnx_scores

    runner = open_runner(tiny_onnx, "onnx", "ort-cpu")
    feed = runner.encode(["apple banana"])

    scores = onnx_scores(tiny_onnx / "model.onnx")({**feed, "labels": np.zeros(1, dtype=np.int64)})

    np.testing.assert_allclose(scores, runner.scores(feed), atol=1e-6)


def test_torch_runner_of_a_loaded_model_takes_numpy_feeds(tiny_teacher, tiny_onnx):
    from transformers import AutoModelForSequenceClassification

    from edgewise.runtime.pytorch import model_runner

    feed = open_runner(tiny_onnx, "onnx", "ort-cpu").encode(["apple banana", "red"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher)

    scores = model_runner(model).scores(feed)

    np.testing.assert_allclose(scores, open_runner(tiny_onnx, "onnx", "ort-cpu").scores(feed), atol=1e-4)


def test_torch_runner_feeds_the_device_the_model_is_on(tiny_teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgewise.runtime.pytorch import TorchRunner

    # Not the CPU and not CUDA (as a teacher on an MPS or XPU Trainer device would be).
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher).to("meta")

    feed = TorchRunner(model, AutoTokenizer.from_pretrained(tiny_teacher), max_length=16).encode(["apple red"])

    assert {tensor.device.type for tensor in feed.values()} == {"meta"}


@pytest.mark.parametrize("kind", ["onnx", "hf"])
def test_logits_of_a_head_that_does_not_match_the_label_map_are_refused(kind, tiny_onnx, tiny_teacher):
    folder = tiny_onnx if kind == "onnx" else tiny_teacher
    runner = open_runner(folder, kind, "ort-cpu" if kind == "onnx" else "torch")
    runner.id2label = {0: "colour", 1: "fruit"}  # the model has three outputs

    with pytest.raises(EdgewiseError, match="has 3 outputs but names 2 labels; fix its label map"):
        runner.outputs(["a red apple"])
