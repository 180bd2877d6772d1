"""`python -m edgewise.runtime build-engine`: a jetson bundle's engine built with trtexec on the device.

A fake trtexec (a Python script put first on PATH) records its arguments and writes the engine file,
so the command, its shapes and precision and the error paths are checked without TensorRT.
"""

import json
import shutil
import sys

import pytest

from edgewise.core.manifest import Manifest
from edgewise.runtime.__main__ import main
from edgewise.runtime.tensorrt import ENGINE, TIMING_CACHE

FAKE_TRTEXEC = """#!{python}
import json, os, sys
with open(os.environ["FAKE_TRTEXEC_LOG"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd()}}, f)
if os.environ.get("FAKE_TRTEXEC_FAIL"):
    print("[E] [TRT] ModelImporter.cpp:949: ERROR: some node failed to import")
    sys.exit(1)
for arg in sys.argv[1:]:
    if arg.startswith("--saveEngine="):
        open(arg.split("=", 1)[1], "wb").write(b"fake engine")
    if arg.startswith("--timingCacheFile="):
        open(arg.split("=", 1)[1], "wb").write(b"fake cache")
"""


def _tensorrt_here() -> bool:
    from edgewise.runtime.tensorrt import probe

    return probe()[0] is not None


@pytest.fixture(scope="module")
def jetson_bundles(tiny_onnx, tmp_path_factory):
    """A jetson bundle of the tiny FP32 teacher (max batch 4), kept pristine: tests copy it."""
    from edgewise.export import BundleConfig, bundle

    root = tmp_path_factory.mktemp("jetson")
    bundle(tiny_onnx, root / "fp32", BundleConfig(target="jetson", max_batch=4))
    return root


@pytest.fixture
def jetson(jetson_bundles, tmp_path):
    folder = tmp_path / "jetson"
    shutil.copytree(jetson_bundles / "fp32", folder)
    return folder


@pytest.fixture
def fake_trtexec(tmp_path, monkeypatch):
    """trtexec first on PATH; returns the file where it records its argv and working folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(FAKE_TRTEXEC.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "trtexec-call.json"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    return log


@pytest.fixture
def no_trtexec(tmp_path, monkeypatch):
    """No trtexec on PATH, and none where JetPack puts it."""
    import edgewise.runtime.engine_build as engine_build

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setattr(engine_build, "TRTEXEC_DEFAULT", str(tmp_path / "no" / "trtexec"))


def _one_error(captured) -> str:
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), captured.err
    return lines[0]


def test_build_engine_runs_trtexec_with_the_bundles_shapes_and_precision(jetson, fake_trtexec, capsys):
    assert main(["build-engine", str(jetson), "--no-bench"]) == 0

    call = json.loads(fake_trtexec.read_text())
    median = Manifest.read(jetson).data["token_lengths"]["p50"]
    shapes = "input_ids:{0},attention_mask:{0},token_type_ids:{0}"
    assert call["cwd"] == str(jetson)
    assert call["argv"] == [
        "--onnx=model.onnx", f"--saveEngine={ENGINE}", f"--minShapes={shapes.format('1x2')}",
        f"--optShapes={shapes.format(f'1x{median}')}", f"--maxShapes={shapes.format('4x32')}",
        "--memPoolSize=workspace:2048", f"--timingCacheFile={TIMING_CACHE}", "--fp16"]
    assert (jetson / ENGINE).read_bytes() == b"fake engine"
    assert Manifest.read(jetson).verify() == []  # the engine and timing cache are expected files
    assert f"built {jetson / ENGINE}" in capsys.readouterr().out


@pytest.mark.slow
def test_build_engine_is_the_same_build_as_build_engine_sh(jetson, fake_trtexec):
    import subprocess

    main(["build-engine", str(jetson), "--no-bench"])
    from_python = json.loads(fake_trtexec.read_text())["argv"]

    subprocess.run(["bash", str(jetson / "build_engine.sh")], check=True)

    assert json.loads(fake_trtexec.read_text())["argv"] == from_python


def test_build_engine_precision_flags_override_the_bundles(jetson, fake_trtexec):
    assert main(["build-engine", str(jetson), "--no-fp16", "--int8", "--no-bench"]) == 0

    argv = json.loads(fake_trtexec.read_text())["argv"]
    assert "--int8" in argv and "--fp16" not in argv


def test_build_engine_uses_the_given_trtexec(jetson, fake_trtexec, tmp_path, monkeypatch):
    elsewhere = tmp_path / "tensorrt" / "trtexec"
    elsewhere.parent.mkdir()
    shutil.copy2(tmp_path / "bin" / "trtexec", elsewhere)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")

    assert main(["build-engine", str(jetson), "--trtexec", str(elsewhere), "--no-bench"]) == 0
    assert (jetson / ENGINE).is_file()


def test_build_engine_takes_trtexec_from_the_environment_as_build_engine_sh_does(jetson, fake_trtexec, tmp_path,
                                                                                monkeypatch):
    elsewhere = tmp_path / "tensorrt" / "trtexec"
    elsewhere.parent.mkdir()
    shutil.copy2(tmp_path / "bin" / "trtexec", elsewhere)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("TRTEXEC", str(elsewhere))

    assert main(["build-engine", str(jetson), "--no-bench"]) == 0
    assert (jetson / ENGINE).is_file()


def test_build_engine_without_trtexec_is_one_error_line(jetson, no_trtexec, capsys):
    assert main(["build-engine", str(jetson)]) == 2

    error = _one_error(capsys.readouterr())
    assert "trtexec was found neither on PATH nor at" in error and "--trtexec PATH" in error
    assert "nvidia-jetpack" in error and not (jetson / ENGINE).exists()


def test_build_engine_refuses_a_missing_given_trtexec(jetson, capsys, tmp_path):
    assert main(["build-engine", str(jetson), "--trtexec", str(tmp_path / "nope")]) == 2

    assert "does not exist" in _one_error(capsys.readouterr())


def test_build_engine_reports_a_failed_build_and_leaves_no_engine(jetson, fake_trtexec, monkeypatch, capsys):
    (jetson / ENGINE).write_bytes(b"an engine of other settings")
    monkeypatch.setenv("FAKE_TRTEXEC_FAIL", "1")

    assert main(["build-engine", str(jetson), "--no-bench"]) == 2

    error = _one_error(capsys.readouterr())
    assert "exit code 1" in error and "some node failed to import" in error and "edgewise-trtexec-" in error
    assert not (jetson / ENGINE).exists()


def test_build_engine_refuses_a_generic_bundle(tiny_bundle, fake_trtexec, capsys):
    assert main(["build-engine", str(tiny_bundle), "--no-bench"]) == 2

    error = _one_error(capsys.readouterr())
    assert "a bundle for target generic, not a jetson bundle" in error and "--target jetson" in error


def test_build_engine_refuses_a_changed_bundle(jetson, fake_trtexec, capsys):
    (jetson / "labels.json").write_text("{}")

    assert main(["build-engine", str(jetson), "--no-bench"]) == 2
    assert "changed since edgewise wrote it" in _one_error(capsys.readouterr())
    assert main(["build-engine", str(jetson), "--no-bench", "--no-verify"]) == 0


@pytest.mark.skipif(_tensorrt_here(), reason="the tensorrt package and a GPU are here: the bench runs instead")
def test_build_engine_without_tensorrt_builds_then_names_what_to_install(jetson, fake_trtexec, capsys):
    assert main(["build-engine", str(jetson)]) == 2

    captured = capsys.readouterr()
    assert f"built {jetson / ENGINE}" in captured.out and (jetson / ENGINE).is_file()
    error = _one_error(captured)
    assert "the engine is built, but it cannot be timed here" in error
    if "tensorrt Python package is missing" in error:  # else torch or a GPU is what is missing here
        assert "python3-libnvinfer" in error and "pip install tensorrt" in error
    assert f"python -m edgewise.runtime bench {jetson} --backend tensorrt" in error


@pytest.mark.skipif(not (_tensorrt_here() and shutil.which("trtexec")), reason="needs trtexec, tensorrt and a GPU")
def test_build_engine_builds_and_times_a_real_engine(jetson, capsys):
    from edgewise.runtime import Predictor

    assert main(["build-engine", str(jetson)]) == 0

    assert "tensorrt: p50" in capsys.readouterr().out
    texts = ["apple banana the very", "football golf we"]
    engine, onnx = Predictor(jetson, backend="tensorrt"), Predictor(jetson)
    assert (engine.outputs(texts).argmax(-1) == onnx.outputs(texts).argmax(-1)).all()


def test_build_engine_help_lists_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["build-engine", "--help"])

    out = capsys.readouterr().out
    for option in ("--fp16, --no-fp16", "--int8, --no-int8", "--trtexec", "--no-bench", "--batch-sizes"):
        assert option in out
