import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.evaluate import EvaluateConfig, evaluate
from tests.conftest import ort_has_cuda


def test_evaluate_onnx_and_bundle_agree_with_pytorch(tiny_teacher, tiny_onnx, tiny_bundle, tiny_data):
    reference = evaluate(tiny_teacher, data=str(tiny_data))

    for artifact in (tiny_onnx, tiny_bundle):
        result = evaluate(artifact, data=str(tiny_data))
        assert result["backend"] == "ort-cpu" and result["kind"] in ("onnx", "bundle")
        assert result["confusion_matrix"] == reference["confusion_matrix"]
        assert result["max_length"] == reference["max_length"] == 32


def test_evaluate_refuses_a_backend_that_cannot_run_the_artifact(tiny_onnx, tiny_teacher, tiny_data):
    with pytest.raises(EdgewiseError, match="backend torch cannot run a 'onnx' artifact"):
        evaluate(tiny_onnx, config=EvaluateConfig(backend="torch"), data=str(tiny_data))
    with pytest.raises(EdgewiseError, match="backend ort-cpu cannot run a 'hf' artifact"):
        evaluate(tiny_teacher, config=EvaluateConfig(backend="ort-cpu"), data=str(tiny_data))



@pytest.mark.skipif(ort_has_cuda(), reason="onnxruntime here has the CUDA provider")
def test_evaluate_on_ort_cuda_without_the_cuda_provider_says_so(tiny_onnx, tiny_data):
    with pytest.raises(EdgewiseError, match="needs CUDAExecutionProvider"):
        evaluate(tiny_onnx, config=EvaluateConfig(backend="ort-cuda"), data=str(tiny_data))
