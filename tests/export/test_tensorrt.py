import subprocess

import pytest

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.export import ExportConfig, ExportFormat, export
from edgewise.export.config import parse_profile
from edgewise.export.tensorrt import build_script, trtexec_command
from edgewise.runtime.tensorrt import ENGINE, SCRIPT, check_compatible

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def _has_gpu_tensorrt() -> bool:
    """What export itself decides: tensorrt imports (not merely found on disk) and a CUDA GPU is visible."""
    from edgewise.runtime.tensorrt import probe

    return probe()[0] is not None


TENSORRT_HERE = _has_gpu_tensorrt()
needs_tensorrt = pytest.mark.skipif(not TENSORRT_HERE, reason="needs the tensorrt package and a CUDA GPU")


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Export as on a machine without TensorRT, whatever this one has: these tests are about the
    folder written for the device, not about building an engine here."""
    import edgewise.export.tensorrt as trt_export

    monkeypatch.setattr(trt_export, "probe", lambda: (None, "no TensorRT (simulated by the test)"))


def test_parse_profile():
    assert parse_profile("1:4:16", "--batch") == (1, 4, 16)
    assert parse_profile("8", "--seq") == (8, 8, 8)
    for bad in ("0:1:2", "4:2:8", "1:2", "x"):
        with pytest.raises(EdgewiseError, match="MIN:OPT:MAX"):
            parse_profile(bad, "--batch")


def test_trtexec_command_carries_precision_and_profiles():
    config = ExportConfig(format=ExportFormat.TENSORRT, fp16=True, batch="1:4:16", seq="8:64:128", workspace_mb=1024)

    command = trtexec_command(INPUTS, config, int8=True)

    assert "--minShapes=input_ids:1x8,attention_mask:1x8,token_type_ids:1x8" in command
    assert "--optShapes=input_ids:4x64,attention_mask:4x64,token_type_ids:4x64" in command
    assert "--maxShapes=input_ids:16x128,attention_mask:16x128,token_type_ids:16x128" in command
    assert {"--fp16", "--int8", "--memPoolSize=workspace:1024", f"--saveEngine={ENGINE}"} <= set(command)
    assert "--int8" not in trtexec_command(INPUTS, ExportConfig(format=ExportFormat.TENSORRT), int8=False)


@pytest.mark.slow
def test_build_script_is_valid_bash(tmp_path):
    script = tmp_path / SCRIPT
    script.write_text(build_script(trtexec_command(INPUTS, ExportConfig(format=ExportFormat.TENSORRT), False)))

    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.slow
def test_build_script_runs_trtexec_with_the_command(tmp_path):
    fake = tmp_path / "trtexec"
    fake.write_text('#!/usr/bin/env bash\necho "$@" > args.txt\n')
    fake.chmod(0o755)
    script = tmp_path / SCRIPT
    script.write_text(build_script(trtexec_command(INPUTS, ExportConfig(format=ExportFormat.TENSORRT), False)))

    subprocess.run(["bash", str(script), "--verbose"], check=True, env={"TRTEXEC": str(fake), "PATH": "/usr/bin:/bin"})

    args = (tmp_path / "args.txt").read_text().split()
    assert args[0] == "--onnx=model.onnx" and args[-1] == "--verbose"


def test_check_compatible_refuses_other_tensorrt_or_gpu(tmp_path):
    built = {"tensorrt_version": "10.3.0", "compute_capability": "8.7", "gpu": "Orin"}
    check_compatible(built, {"tensorrt_version": "10.3.1", "compute_capability": "8.7", "gpu": "Orin"}, tmp_path)

    with pytest.raises(EdgewiseError) as info:
        check_compatible(built, {"tensorrt_version": "8.6.1", "compute_capability": "9.0", "gpu": "H200"}, tmp_path)
    assert "TensorRT 10.3.0 built it, this is 8.6.1" in str(info.value)
    assert "compute capability 8.7 (Orin), this GPU is 9.0 (H200)" in str(info.value)
    assert "build_engine.sh" in str(info.value)


@pytest.mark.skipif(TENSORRT_HERE, reason="TensorRT and a GPU are here: the engine path runs instead")
def test_export_tensorrt_without_tensorrt_writes_onnx_and_script_then_errors(tiny_onnx, tmp_path):
    config = ExportConfig(format=ExportFormat.TENSORRT, fp16=True, batch="1:4:16", seq="8:16:32")

    with pytest.raises(EdgewiseError) as info:
        export(tiny_onnx, tmp_path / "trt", config)

    assert "no TensorRT engine was built here" in str(info.value) and "build_engine.sh" in str(info.value)
    artifact = Artifact.load(tmp_path / "trt", kind="tensorrt")  # complete, hashes verified
    assert {"model.onnx", SCRIPT, "tokenizer.json", "config.json"} <= set(artifact.manifest.files)
    assert artifact.manifest.metrics["tensorrt"]["engine_built"] is False
    assert "--fp16" in (tmp_path / "trt" / SCRIPT).read_text()
    (tmp_path / "trt" / ENGINE).write_bytes(b"built on the device")
    Artifact.load(tmp_path / "trt")  # an engine built later by the script is expected, not tampering


@needs_tensorrt
def test_export_tensorrt_builds_an_engine_in_parity(tiny_onnx, tiny_data, tmp_path):
    manifest = export(tiny_onnx, tmp_path / "trt", ExportConfig(format=ExportFormat.TENSORRT, seq="8:16:32"),
                      data=str(tiny_data))

    assert (tmp_path / "trt" / ENGINE).is_file() and manifest.metrics["tensorrt"]["engine_built"]
    assert manifest.metrics["parity"]["label_agreement"] == 1.0


def test_trtexec_command_reuses_the_timing_cache_and_defaults_to_fp32():
    command = trtexec_command(INPUTS, ExportConfig(format=ExportFormat.TENSORRT), int8=False)

    assert "--timingCacheFile=timing.cache" in command and "--fp16" not in command


def test_profile_batches_cover_min_opt_and_max_shapes():
    from edgewise.export.tensorrt import fits, profile_batches

    config = ExportConfig(format=ExportFormat.TENSORRT, batch="1:2:4", seq="8:16:32")

    batches = profile_batches(INPUTS, vocab_size=100, pad_id=0, config=config)

    assert [b["input_ids"].shape for b in batches] == [(1, 8), (2, 16), (4, 32)]
    assert all(fits(b, config) for b in batches) and batches[2]["attention_mask"][-1, 16:].sum() == 0


def test_export_tensorrt_copies_the_timing_cache(tiny_onnx, tmp_path, no_tensorrt):
    (tmp_path / "old.cache").write_bytes(b"timings from an earlier build")

    with pytest.raises(EdgewiseError, match="no TensorRT engine"):  # the folder is written, then the Error
        export(tiny_onnx, tmp_path / "trt", ExportConfig(format=ExportFormat.TENSORRT,
                                                         timing_cache=str(tmp_path / "old.cache")))

    assert (tmp_path / "trt" / "timing.cache").read_bytes() == b"timings from an earlier build"


def test_load_engine_refuses_an_engine_from_another_gpu(tiny_onnx, tmp_path, monkeypatch, no_tensorrt):
    import json

    import edgewise.runtime.tensorrt as trt_runtime
    from edgewise.core.manifest import MANIFEST_NAME
    from edgewise.runtime.runners import Unavailable

    with pytest.raises(EdgewiseError, match="no TensorRT engine"):
        export(tiny_onnx, tmp_path / "trt", ExportConfig(format=ExportFormat.TENSORRT))
    folder = tmp_path / "trt"
    with pytest.raises(Unavailable, match="has no model.engine yet"):
        trt_runtime.load_engine(folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["metrics"]["tensorrt"].update(engine_built=True, tensorrt_version="10.3.0", gpu="Orin",
                                           compute_capability="8.7")
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    (folder / ENGINE).write_bytes(b"engine")

    class FakeTensorRT:
        __version__ = "10.3.0"

    monkeypatch.setattr(trt_runtime, "probe", lambda: (FakeTensorRT, None))
    monkeypatch.setattr(trt_runtime, "device_info", lambda: {"gpu": "H200", "compute_capability": "9.0"})

    with pytest.raises(Unavailable, match="compute capability 8.7 \\(Orin\\), this GPU is 9.0 \\(H200\\)"):
        trt_runtime.load_engine(folder)


def test_export_tensorrt_copies_external_weight_files(external_onnx, tmp_path, no_tensorrt):
    with pytest.raises(EdgewiseError, match="no TensorRT engine"):
        export(external_onnx, tmp_path / "trt", ExportConfig(format=ExportFormat.TENSORRT, verify=False))

    assert (tmp_path / "trt" / "model.onnx_data").stat().st_size > 0
