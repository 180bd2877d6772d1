"""Device kits of `edgewise bundle --target jetson|android|ios` (issue 14, items 4 and 5)."""

import json
import shutil
import subprocess

import pytest

from edgewise.core.config import config_from_manifest
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.export import BundleConfig, ExportConfig, ExportFormat, bundle, export
from edgewise.export.config import BundleTarget
from edgewise.runtime import Predictor
from edgewise.runtime.runners import onnx_scores
from edgewise.runtime.tensorrt import ENGINE, SCRIPT, TIMING_CACHE
from tests.conftest import assert_user_error

TEXTS = ["apple banana the very", "football golf we", "red orange some"]


@pytest.fixture(scope="module")
def quantized(tiny_onnx, tiny_int8, tiny_data, tmp_path_factory):
    """The tiny ONNX teacher quantized dynamically, statically to symmetric int8 (what TensorRT takes) and
    statically with the default uint8 activations (what it does not)."""
    from edgewise.quantize import quantize
    from edgewise.quantize.config import QuantizeConfig

    root = tmp_path_factory.mktemp("quantized")
    calibration = dict(method="static", samples=24, calibration_batch_size=8, calibration=str(tiny_data))
    shutil.copytree(tiny_int8, root / "dynamic")  # conftest's, under the name these tests use
    quantize(tiny_onnx, root / "static-int8", QuantizeConfig(activation_type="int8", **calibration))
    quantize(tiny_onnx, root / "static-uint8", QuantizeConfig(**calibration))
    return root


# --- the config -----------------------------------------------------------------------------------------------


def test_bundle_config_reads_a_version_1_config_as_a_generic_bundle():
    recorded = {"type": "BundleConfig", "version": 1, "values": {"model_format": "auto", "max_length": 64}}

    config = config_from_manifest(BundleConfig, recorded)

    assert config == BundleConfig(max_length=64) and config.target is BundleTarget.GENERIC


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"target": "windows"}, "target must be one of generic, jetson, android, ios"),
    ({"target": "android", "fixed_shape": "1x"}, "--fixed-shape '1x' is not BATCHxTOKENS"),
    ({"target": "ios", "fixed_shape": "0x128"}, "--fixed-shape '0x128' is not BATCHxTOKENS"),
    ({"target": "jetson", "fixed_shape": "1x128"}, "applies to --target android or ios, not jetson"),
    ({"fixed_shape": "1x128"}, "applies to --target android or ios, not generic"),
    ({"target": "android", "max_batch": 4}, "applies to --target jetson, not android"),
    ({"target": "jetson", "model_format": "ort"}, "drop --model-format ort"),
    ({"target": "ios", "model_format": "onnx"}, "drop --model-format onnx"),
])
def test_bundle_config_refuses_settings_the_target_cannot_use(settings, fragment):
    with pytest.raises(EdgewiseError, match=fragment.replace("(", r"\(")):
        BundleConfig(**settings)


def test_bundle_config_normalises_the_fixed_shape():
    assert BundleConfig(target="ios", fixed_shape=" 2X64 ").fixed_dims == (2, 64)


# --- jetson -----------------------------------------------------------------------------------------------------


def test_bundle_jetson_writes_the_trtexec_script_for_an_fp16_engine(tiny_onnx, tmp_path):
    manifest = bundle(tiny_onnx, tmp_path / "jetson", BundleConfig(target="jetson", max_batch=4))

    folder = tmp_path / "jetson"
    assert {"model.onnx", SCRIPT, "README.txt", "tokenizer.json", "labels.json"} <= {p.name for p in folder.iterdir()}
    trt = manifest.metrics["tensorrt"]
    median = manifest.data["token_lengths"]["p50"]  # recorded by finetune, inherited by export
    assert trt["fp16"] and not trt["int8"] and trt["batch"] == [1, 1, 4] and trt["seq"] == [2, median, 32]
    script = (folder / SCRIPT).read_text()
    shapes = "input_ids:{0},attention_mask:{0},token_type_ids:{0}"
    assert f"--minShapes={shapes.format('1x2')}" in script and f"--optShapes={shapes.format(f'1x{median}')}" in script
    assert f"--maxShapes={shapes.format('4x32')}" in script and "--fp16" in script and "--int8" not in script
    assert "edgewise bundle --target jetson" in script
    assert set(manifest.expected_files) == {ENGINE, TIMING_CACHE}
    readme = (folder / "README.txt").read_text()
    for fragment in ("pypi.jetson-ai-lab.io/jp6/cu126", "may change", "nvpmodel -q", "jetson_clocks", "tegrastats",
                     "python -m edgewise.runtime build-engine jetson", "--backend ort-tensorrt",
                     "/usr/src/tensorrt/bin/trtexec", "python3-libnvinfer", "pip install edgewise tokenizers"):
        assert fragment in readme, fragment


@pytest.mark.slow
def test_bundle_jetson_build_script_is_valid_bash(tiny_onnx, tmp_path):
    bundle(tiny_onnx, tmp_path / "jetson", BundleConfig(target="jetson"))

    assert subprocess.run(["bash", "-n", str(tmp_path / "jetson" / SCRIPT)]).returncode == 0


def test_bundle_jetson_engine_built_later_keeps_the_bundle_valid(tiny_onnx, tmp_path):
    bundle(tiny_onnx, tmp_path / "jetson", BundleConfig(target="jetson"))
    (tmp_path / "jetson" / ENGINE).write_bytes(b"built on the device")
    (tmp_path / "jetson" / TIMING_CACHE).write_bytes(b"timings")

    assert Manifest.read(tmp_path / "jetson").verify() == []
    assert Predictor(tmp_path / "jetson").predict(TEXTS)[0]["label"] == "fruit"  # ort-cpu still runs model.onnx


def test_bundle_jetson_opt_length_falls_back_to_max_length(tiny_onnx, tmp_path):
    import shutil

    from edgewise.core.manifest import MANIFEST_NAME

    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_onnx, foreign)
    (foreign / MANIFEST_NAME).unlink()  # records no token lengths

    manifest = bundle(foreign, tmp_path / "jetson", BundleConfig(target="jetson", max_length=24))

    assert manifest.metrics["tensorrt"]["seq"] == [2, 24, 24]
    assert manifest.metrics["tensorrt"]["opt_tokens_from"].startswith("max_length")


def test_bundle_jetson_builds_static_int8_in_int8(quantized, tmp_path):
    manifest = bundle(quantized / "static-int8", tmp_path / "jetson", BundleConfig(target="jetson"))

    script = (tmp_path / "jetson" / SCRIPT).read_text()
    assert manifest.metrics["tensorrt"]["int8"] and "--int8" in script and "--fp16" not in script
    assert "static INT8 (QDQ)" in (tmp_path / "jetson" / "README.txt").read_text()


@pytest.mark.parametrize(("model", "fragment"), [
    ("dynamic", "is dynamically quantized"),
    ("static-uint8", "TensorRT takes symmetric signed INT8 only"),
])
def test_bundle_jetson_refuses_models_tensorrt_cannot_build(quantized, tmp_path, cli_run, model, fragment):
    result = cli_run("bundle", quantized / model, "-o", tmp_path / "jetson", "--target", "jetson")

    assert_user_error(result, fragment, "--activation-type int8")
    assert list(tmp_path.iterdir()) == []


# --- phones -----------------------------------------------------------------------------------------------------


def test_bundle_android_converts_to_ort_and_reports_nnapi(tiny_onnx, tmp_path):
    manifest = bundle(tiny_onnx, tmp_path / "android", BundleConfig(target="android"))

    folder = tmp_path / "android"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.txt", "edgewise.json", "labels.json", "model.ort", "required_operators.config", "tokenizer.json"]
    assert manifest.data["model_file"] == "model.ort" and manifest.metrics["ort"]["converted"]
    assert manifest.metrics["parity"]["max_abs_diff"] < 1e-4
    report = manifest.metrics["mobile_usability"]
    nnapi = report["providers"]["NNAPI"]
    assert list(report["providers"]) == ["NNAPI"] and report["dynamic_inputs"] == [
        "input_ids", "attention_mask", "token_type_ids"]
    assert 0 < nnapi["as_is"]["supported_nodes"] <= nnapi["as_is"]["nodes"] and nnapi["verdict"] in (
        "YES", "MAYBE", "NO")
    assert "if_fixed" in nnapi and report["recommendation"]
    readme = (folder / "README.txt").read_text()
    for fragment in ("onnxruntime-android", "OrtEnvironment.getEnvironment()", "OrtSession.SessionOptions()",
                     '"input_ids" to OnnxTensor.createTensor', "NNAPIFlags", "(WordLevel model, no normalizer)",
                     '"[CLS] text [SEP]", cut to 32 tokens', "NNAPI: ", "Recommendation: ", "--include_ops_by_config"):
        assert fragment in readme, fragment
    assert abs(Predictor(folder).outputs(TEXTS) - Predictor(tiny_onnx).outputs(TEXTS)).max() < 1e-4


def test_bundle_ios_with_fixed_shape_writes_a_static_model_for_coreml(tiny_onnx, tmp_path):
    import numpy as np

    manifest = bundle(tiny_onnx, tmp_path / "ios", BundleConfig(target="ios", fixed_shape="1x16"))

    folder = tmp_path / "ios"
    fixed = manifest.metrics["fixed"]
    assert (folder / "model.fixed.ort").is_file() and manifest.data["fixed_shape"] == [1, 16]
    assert fixed["parity"]["max_abs_diff"] < 1e-4
    assert list(fixed["mobile_usability"]["providers"]) == ["CoreML MLProgram", "CoreML NeuralNetwork"]
    assert fixed["mobile_usability"]["dynamic_inputs"] == []  # nothing left to fix
    static = fixed["mobile_usability"]["providers"]["CoreML MLProgram"]["as_is"]
    dynamic = manifest.metrics["mobile_usability"]["providers"]["CoreML MLProgram"]["as_is"]
    assert static["supported_nodes"] >= dynamic["supported_nodes"] and static["unsupported_due_to_dynamic_shapes"] == 0
    session = onnx_scores(folder / "model.fixed.ort")
    ids = np.zeros((1, 16), dtype=np.int64)
    assert session({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": ids}).shape == (1, 3)
    readme = (folder / "README.txt").read_text()
    for fragment in ("pod 'onnxruntime-objc'", "ORTSession(env: env", "appendCoreMLExecutionProvider",
                     "model.fixed.ort takes exactly 1 x 16", '"input_ids": tensor(ids)',
                     "CoreML usability of model.fixed.ort (its ONNX form, 1x16)"):
        assert fragment in readme, fragment
    operators = (folder / "required_operators.config").read_text()
    assert operators.startswith("# Operators") and "ai.onnx;" in operators


def test_bundle_phone_ships_the_model_ort_of_an_ort_artifact(tiny_onnx, tmp_path):
    export(tiny_onnx, tmp_path / "ort", ExportConfig(format=ExportFormat.ORT))

    manifest = bundle(tmp_path / "ort", tmp_path / "android", BundleConfig(target="android"))

    assert not manifest.metrics["ort"]["converted"]
    assert (tmp_path / "android" / "model.ort").read_bytes() == (tmp_path / "ort" / "model.ort").read_bytes()
    assert (tmp_path / "android" / "required_operators.config").is_file()
    assert "not checked" in manifest.metrics["mobile_usability"]["error"]


def test_bundle_phone_refuses_an_ort_model_optimised_for_amd64(tiny_onnx, tmp_path):
    export(tiny_onnx, tmp_path / "ort", ExportConfig(format=ExportFormat.ORT, ort_target="amd64"))

    with pytest.raises(EdgewiseError, match="was optimised for amd64"):
        bundle(tmp_path / "ort", tmp_path / "android", BundleConfig(target="android"))
    assert not (tmp_path / "android").exists()


def test_bundle_phone_bundles_dynamic_int8_and_the_report_names_its_integer_ops(quantized, tmp_path):
    manifest = bundle(quantized / "dynamic", tmp_path / "android", BundleConfig(target="android"))

    unsupported = manifest.metrics["mobile_usability"]["providers"]["NNAPI"]["as_is"]["unsupported_ops"]
    assert "ai.onnx:MatMulInteger" in unsupported
    assert Predictor(tmp_path / "android").predict(TEXTS)[0]["label"] == "fruit"


# --- bad inputs from the command line: one Error line, exit 2, nothing written ---------------------------------


@pytest.mark.parametrize(("args", "fragments"), [
    (["--target", "windows"], ["Invalid value for '--target'", "'windows' is not one of"]),
    (["--target", "android", "--fixed-shape", "1x"], ["--fixed-shape '1x' is not BATCHxTOKENS"]),
    (["--target", "ios", "--fixed-shape", "0x128"], ["--fixed-shape '0x128' is not BATCHxTOKENS"]),
    (["--target", "android", "--fixed-shape", "1x100000"], ["asks for 100000 tokens", "max_length 32"]),
    (["--fixed-shape", "1x16"], ["applies to --target android or ios, not generic"]),
    (["--target", "jetson", "--fixed-shape", "1x16"], ["applies to --target android or ios, not jetson"]),
    (["--target", "android", "--max-batch", "4"], ["applies to --target jetson, not android"]),
])
def test_bundle_cli_refuses_bad_kit_options(cli_run, tiny_onnx, tmp_path, args, fragments):
    result = cli_run("bundle", tiny_onnx, "-o", tmp_path / "deploy", *args)

    assert_user_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_bundle_cli_offers_the_kit_options(cli_run):
    result = cli_run("bundle", "--help")

    assert result.exit_code == 0
    for option in ("--target [generic|jetson|android|ios]", "--max-batch", "--fixed-shape"):
        assert option in result.output


def test_bundle_manifest_records_the_target(tiny_onnx, tmp_path):
    bundle(tiny_onnx, tmp_path / "android", BundleConfig(target="android"))

    recorded = json.loads((tmp_path / "android" / "edgewise.json").read_text())["config"]
    assert recorded["version"] == BundleConfig.SCHEMA_VERSION == 2 and recorded["values"]["target"] == "android"


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"target": "jetson"}, "--target jetson ships the ONNX model"),
    ({"target": "android", "fixed_shape": "1x16"}, "has only model.ort"),
])
def test_bundle_kits_needing_model_onnx_refuse_an_ort_artifact(tiny_onnx, tmp_path, settings, fragment):
    export(tiny_onnx, tmp_path / "ort", ExportConfig(format=ExportFormat.ORT))

    with pytest.raises(EdgewiseError, match=fragment):
        bundle(tmp_path / "ort", tmp_path / "kit", BundleConfig(**settings))
    assert not (tmp_path / "kit").exists()


@pytest.mark.parametrize("target", ["android", "jetson"])
def test_device_kits_of_an_embedding_model_say_vectors_not_labels(tiny_embedder_onnx, tmp_path, target):
    bundle(tiny_embedder_onnx, tmp_path / target, BundleConfig(target=target))

    readme = (tmp_path / target / "README.txt").read_text()
    assert "labels.json" not in readme and "Labels:" not in readme
    assert f"python -m edgewise.runtime embed {target}" in readme and "vector per text" in readme
    assert not (tmp_path / target / "labels.json").exists()
    assert Predictor(tmp_path / target).embed(["apple"]).shape == (1, 32)  # the kit runs with the runtime alone
