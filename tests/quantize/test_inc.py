import shutil

import numpy as np
import pytest
import torch

from edgewise.core.artifact import Artifact
from edgewise.evaluate import EvaluateConfig, evaluate
from edgewise.quantize import quantize
from edgewise.quantize.config import QuantizeConfig
from edgewise.quantize.inc import PACKAGE, QuantizedClassifier


@pytest.fixture(scope="module")
def inc_static(tiny_teacher, tiny_data, tmp_path_factory):
    dst = tmp_path_factory.mktemp("inc") / "static"
    manifest = quantize(tiny_teacher, dst, QuantizeConfig(method="inc", inc_approach="static", samples=32),
                        calibration=str(tiny_data))
    return dst, manifest


def _inputs(batch=3, seq=11):
    ids = torch.randint(5, 35, (batch, seq), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def test_quantize_inc_static_writes_a_compiled_int8_model_with_accuracy(inc_static, tiny_teacher):
    dst, manifest = inc_static

    assert manifest.kind == "inc" and Artifact.load(dst).kind == "inc"
    for name in (PACKAGE, "quantized_weight.pt", "qconfig.json", "inc_model.json", "tokenizer.json", "config.json"):
        assert (dst / name).is_file(), name
    record = manifest.metrics["quantization"]
    assert record["package"]["built"] and record["approach"] == "static" and record["calibration"]["samples"] == 32
    test = manifest.metrics["accuracy"]["test"]
    assert test["quantized"]["agreement_with_source"] >= 0.95 and abs(test["drop_points"]) <= 5
    assert manifest.metrics["runs_with"] == "aoti-package"


def test_quantized_classifier_takes_any_batch_and_length_up_to_the_limit(inc_static):
    model = QuantizedClassifier(inc_static[0])

    shapes = [tuple(model(**_inputs(b, s)).logits.shape) for b, s in ((1, 2), (5, 29), (2, 64))]

    assert shapes == [(1, 3), (5, 3), (2, 3)]


def test_evaluate_runs_an_inc_model_with_the_torch_backend(inc_static, tiny_data):
    dst, manifest = inc_static

    result = evaluate(dst, str(tiny_data), EvaluateConfig(split="test"))

    assert result["backend"] == "torch-cpu"
    assert result["accuracy"] == pytest.approx(manifest.metrics["accuracy"]["test"]["quantized"]["accuracy"])


def test_inc_model_falls_back_to_the_portable_save_when_the_package_cannot_load(inc_static, tmp_path, capfd):
    copy = tmp_path / "copy"
    shutil.copytree(inc_static[0], copy)
    (copy / PACKAGE).write_bytes(b"built for another machine")
    fast = QuantizedClassifier(inc_static[0])(**_inputs()).logits

    model = QuantizedClassifier(copy)

    assert model.runs_with == "inc-reference" and "slower than FP32" in capfd.readouterr().err
    np.testing.assert_allclose(model(**_inputs()).logits.numpy(), fast.numpy(), atol=0.05)


def test_quantize_inc_dynamic_needs_no_calibration_data(tiny_teacher, tmp_path):
    manifest = quantize(tiny_teacher, tmp_path / "dyn", QuantizeConfig(method="inc"))

    assert manifest.metrics["quantization"]["approach"] == "dynamic"
    assert "calibration" not in manifest.metrics["quantization"]
    assert manifest.metrics["accuracy"]["validation"]["quantized"]["agreement_with_source"] >= 0.95


def test_bench_times_an_inc_model_beside_its_fp32_source_on_torch(inc_static, tiny_teacher, tiny_data, tmp_path):
    from edgewise.bench import BenchConfig, bench

    config = BenchConfig(backends=("torch", "ort-cpu"), threads=1, warmup=2, min_runs=10, min_time_s=0.05, rounds=2)

    result = bench([tiny_teacher, inc_static[0]], config, data=str(tiny_data), output=tmp_path / "report")

    rows = {(r["artifact"], r["backend"]): r for r in result["results"]}
    assert rows[("static", "torch")]["status"] == "ok" and rows[("static", "torch")]["label_agreement"] >= 0.95
    assert rows[("static", "ort-cpu")]["status"] == "skipped" and "--backend torch" in rows[("static", "ort-cpu")][
        "reason"]
    sizes = {a["name"]: a["size_bytes"] for a in result["artifacts"]}
    assert sizes["static"] == (inc_static[0] / PACKAGE).stat().st_size
