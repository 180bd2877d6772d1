from pathlib import Path

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.sessions import CPU_DISABLED_FUSIONS, session
from tests.conftest import ort_has_cuda


@pytest.fixture
def edgewise_sessions(monkeypatch):
    """Every onnxruntime.InferenceSession that edgewise code constructs: (calling file, options, keywords).

    Sessions third-party code builds for itself (optimum reads the exported graph's output shapes with
    optimisations off) are not edgewise's to configure and are left out.
    """
    import traceback

    import onnxruntime

    import edgewise

    package = str(Path(edgewise.__file__).parent)
    calls = []
    real = onnxruntime.InferenceSession

    def record(*args, **kwargs):
        caller = traceback.extract_stack(limit=2)[0].filename
        if caller.startswith(package):
            calls.append((Path(caller).relative_to(package).as_posix(),
                          args[1] if len(args) > 1 else kwargs.get("sess_options"), kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", record)
    return calls


def test_parity_check_and_predictor_build_sessions_alike(tiny_teacher, tmp_path, edgewise_sessions):
    from edgewise.export import ExportConfig, bundle, export
    from edgewise.runtime import Predictor

    export(tiny_teacher, tmp_path / "onnx", ExportConfig())  # its parity check runs the exported model
    parity_calls = len(edgewise_sessions)
    bundle(tmp_path / "onnx", tmp_path / "deploy")  # reads the model's inputs, then runs it once
    Predictor(tmp_path / "deploy").predict(["apple banana"])

    assert parity_calls >= 1 and len(edgewise_sessions) >= parity_calls + 2
    for caller, options, kwargs in edgewise_sessions:
        assert caller == "runtime/sessions.py"  # the one factory
        assert kwargs["disabled_optimizers"] == list(CPU_DISABLED_FUSIONS)
        assert kwargs["providers"] == ["CPUExecutionProvider"] and options.log_severity_level == 3


def test_session_applies_threads(tiny_onnx):
    options = session(tiny_onnx / "model.onnx", threads=2).get_session_options()

    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


@pytest.mark.parametrize(("backend", "fragment"), [
    ("tensorrt", "does not run onnxruntime sessions; choose one of ort-cpu, ort-cuda, ort-tensorrt"),
    ("onnx", "does not run onnxruntime sessions"),
    pytest.param("ort-cuda", "needs CUDAExecutionProvider, which this onnxruntime lacks",
                 marks=pytest.mark.skipif(ort_has_cuda(), reason="this onnxruntime has CUDA")),
])
def test_session_refuses_backends_it_cannot_run(tiny_onnx, backend, fragment):
    with pytest.raises(EdgewiseError, match=fragment):
        session(tiny_onnx / "model.onnx", backend)


def test_session_translates_a_corrupt_file(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x00not a model")

    with pytest.raises(EdgewiseError, match="cannot load .*model.onnx .*re-create it with edgewise export"):
        session(tmp_path / "model.onnx")
