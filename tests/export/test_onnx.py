import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.export import ExportConfig, export
from edgewise.export.parity import check, compare
from tests.conftest import ARCHITECTURES


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_export_onnx_matches_pytorch_for_each_architecture(teacher_of, tiny_data, tmp_path, arch):
    teacher = teacher_of(arch)

    manifest = export(teacher, tmp_path / "onnx", ExportConfig(verify_samples=40), data=str(tiny_data))

    parity = manifest.metrics["parity"]
    assert parity["max_abs_diff"] < 1e-4 and parity["label_agreement"] == 1.0 and parity["samples"] == 40
    inputs = manifest.metrics["onnx"]["inputs"]
    expected = {"input_ids", "attention_mask"} | ({"token_type_ids"} if arch == "bert" else set())
    assert set(inputs) == expected
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]  # dynamic batch and sequence axes
    assert manifest.metrics["onnx"]["opset"] == 17
    assert manifest.parent["manifest_sha256"] == Manifest.read(teacher).sha256
    assert Artifact.load(tmp_path / "onnx", kind="onnx").labels == Artifact.load(teacher).labels
    assert (tmp_path / "onnx" / "tokenizer.json").is_file() and manifest.data["max_length"] == 32


def test_export_without_data_checks_generated_shapes(tiny_teacher, tmp_path):
    manifest = export(tiny_teacher, tmp_path / "onnx", ExportConfig(opset=18))

    assert manifest.metrics["parity"]["samples"] == 1 + 2 + 4  # batches of 1, 2 and 4
    assert manifest.metrics["parity"]["max_abs_diff"] < 1e-4 and manifest.metrics["onnx"]["opset"] == 18


def test_export_optimize_fuses_attention_and_stays_in_parity(tiny_teacher, tmp_path):
    manifest = export(tiny_teacher, tmp_path / "opt", ExportConfig(optimize=True))

    fusions = manifest.metrics["fusions"]
    assert fusions["Attention"] == 2 and fusions["SkipLayerNormalization"] >= 2  # one per layer
    assert manifest.metrics["parity_optimized"]["max_abs_diff"] < 1e-4
    assert "warnings" not in manifest.metrics


def test_export_optimize_says_so_loudly_when_attention_does_not_fuse(tiny_teacher, tmp_path, monkeypatch, capfd):
    import edgewise.export.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "optimize", lambda path, cfg: dict.fromkeys(onnx_export.FUSED_OPS, 0))

    manifest = export(tiny_teacher, tmp_path / "opt", ExportConfig(optimize=True))

    assert "no Attention fusion" in manifest.metrics["warnings"][0]
    assert "WARNING" in capfd.readouterr().err


def test_export_parity_miss_is_an_error_and_leaves_nothing(tiny_teacher, tmp_path, monkeypatch):
    import edgewise.export.onnx as onnx_export

    real = onnx_export.torch_runner
    monkeypatch.setattr(onnx_export, "torch_runner", lambda model: (lambda batch: real(model)(batch) + 0.5))

    with pytest.raises(EdgewiseError) as info:
        export(tiny_teacher, tmp_path / "onnx", ExportConfig())
    assert "logits: max |diff| 0.5" in str(info.value) and "--no-verify" in str(info.value)
    assert list(tmp_path.iterdir()) == []

    manifest = export(tiny_teacher, tmp_path / "onnx", ExportConfig(verify=False))
    assert "parity" not in manifest.metrics


def test_compare_shape_mismatch_is_fatal_and_check_lists_outputs():
    import numpy as np

    batches = [{"input_ids": np.zeros((2, 4), dtype=np.int64)}]
    with pytest.raises(EdgewiseError, match=r"shape \(2, 3\) in the exported model but \(2, 2\)"):
        compare(lambda b: np.zeros((2, 2)), lambda b: np.zeros((2, 3)), batches)

    result = compare(lambda b: np.array([[1.0, 0.0], [0.0, 1.0]]), lambda b: np.array([[1.0, 0.2], [0.3, 0.0]]),
                     batches)
    assert result["label_agreement"] == 0.5 and result["max_abs_diff"] == pytest.approx(1.0)
    with pytest.raises(EdgewiseError, match="logits: max"):
        check(result, 1e-4, "x")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [("opset", 9, "opset must be between"), ("atol", 0, "atol"), ("verify_samples", 0, "verify_samples"),
     ("batch", "4:2:8", "MIN <= OPT <= MAX"), ("seq", "a:b:c", "not a profile"), ("workspace_mb", 1, "workspace"),
     ("optimize", True, "--optimize applies to --format onnx")],
)
def test_export_config_rejects_bad_values(field, value, fragment):
    kwargs = {field: value}
    if field == "optimize":
        kwargs["format"] = "ort"
    with pytest.raises(EdgewiseError) as info:
        ExportConfig(**kwargs)
    assert fragment in str(info.value)
