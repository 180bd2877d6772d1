from edgewise.export import ExportConfig, ExportFormat, export
from edgewise.runtime import Predictor


def test_export_ort_format_matches_onnx_and_lists_operators(tiny_onnx, tiny_data, tmp_path):
    manifest = export(tiny_onnx, tmp_path / "ort", ExportConfig(format=ExportFormat.ORT), data=str(tiny_data))

    assert (tmp_path / "ort" / "model.ort").is_file() and manifest.kind == "ort"
    operators = (tmp_path / "ort" / "required_operators.config").read_text()
    assert "ai.onnx;" in operators and "MatMul" in operators and "/tmp" not in operators
    assert manifest.metrics["parity"]["max_abs_diff"] < 1e-5 and manifest.metrics["parity"]["label_agreement"] == 1.0
    texts = ["apple banana the", "red blue a"]
    assert abs(Predictor(tmp_path / "ort").outputs(texts) - Predictor(tiny_onnx).outputs(texts)).max() < 1e-5


def test_export_ort_format_of_an_int8_model_is_judged_by_label_agreement(tiny_int8, tiny_data, tmp_path):
    manifest = export(tiny_int8, tmp_path / "ort", ExportConfig(format=ExportFormat.ORT), data=str(tiny_data))

    parity = manifest.metrics["parity"]
    assert parity["judged_by"].startswith("label agreement") and parity["label_agreement"] >= 0.98
