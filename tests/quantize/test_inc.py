import shutil

import numpy as np
import pytest
import torch

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.trust import seal_native_code
from edgewise.evaluate import EvaluateConfig, evaluate
from edgewise.quantize import quantize
from edgewise.quantize.config import QuantizeConfig
from edgewise.runtime.inc import CODE_FILES, PACKAGE, QuantizedClassifier


def _vnni() -> bool:
    from edgewise.core.env import cpu_info
    from edgewise.quantize.inc import int8_kernel_problem

    return int8_kernel_problem(cpu_info()) is None


# INC's oneDNN INT8 kernels saturate without VNNI, so edgewise refuses to build them there (tested
# below with the CPU description faked). The models these tests use are built with that refusal
# lifted, as if made on a VNNI machine and copied here: on a CPU without VNNI, loading them must
# then pick INC's reference graph, whose logits are right everywhere.
AVX2_ONLY = {"model": "AMD EPYC", "arch": "x86_64", "logical_cores": 2, "isa": ["avx", "avx2", "fma"]}
RUNS_WITH = "aoti-package" if _vnni() else "inc-reference"


def _build(src, dst, config, **kwargs):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("edgewise.quantize.stage.int8_kernel_problem", lambda cpu: None)
        return quantize(src, dst, config, **kwargs)


@pytest.fixture(scope="module")
def inc_static(tiny_teacher, tiny_data, tmp_path_factory):
    dst = tmp_path_factory.mktemp("inc") / "static"
    manifest = _build(tiny_teacher, dst, QuantizeConfig(method="inc", inc_approach="static", samples=32,
                                                        calibration=str(tiny_data)))
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
    assert manifest.metrics["runs_with"] == RUNS_WITH


def test_quantized_classifier_takes_any_batch_and_length_up_to_the_limit(inc_static):
    model = QuantizedClassifier(inc_static[0])

    shapes = [tuple(model(**_inputs(b, s)).logits.shape) for b, s in ((1, 2), (5, 29), (2, 64))]

    assert shapes == [(1, 3), (5, 3), (2, 3)]


def test_evaluate_runs_an_inc_model_with_the_torch_backend(inc_static, tiny_data):
    dst, manifest = inc_static

    result = evaluate(dst, config=EvaluateConfig(split="test"), data=str(tiny_data))

    assert result["backend"] == "torch"
    assert result["accuracy"] == pytest.approx(manifest.metrics["accuracy"]["test"]["quantized"]["accuracy"])


def test_inc_model_falls_back_to_the_portable_save_when_the_package_cannot_load(inc_static, tmp_path, capfd,
                                                                                monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(inc_static[0], copy)
    (copy / PACKAGE).write_bytes(b"built for another machine")
    monkeypatch.setenv("EDGEWISE_TRUST_NATIVE_CODE", "1")  # its maker is trusted; the package still cannot load
    fast = QuantizedClassifier(inc_static[0])(**_inputs()).logits

    model = QuantizedClassifier(copy)

    assert model.runs_with == "inc-reference" and "slower than FP32" in capfd.readouterr().err
    np.testing.assert_allclose(model(**_inputs()).logits.numpy(), fast.numpy(), atol=0.05)


def test_inc_package_and_reference_graph_both_match_the_fp32_model(inc_static, tiny_teacher, tmp_path):
    from transformers import AutoModelForSequenceClassification

    copy = tmp_path / "copy"
    shutil.copytree(inc_static[0], copy)
    (copy / PACKAGE).unlink()
    seal_native_code(copy, CODE_FILES)  # as made here where the package could not be compiled
    fp32 = AutoModelForSequenceClassification.from_pretrained(tiny_teacher).eval()
    with torch.no_grad():
        expected = fp32(**_inputs()).logits.numpy()

    for folder in (inc_static[0], copy):
        logits = QuantizedClassifier(folder)(**_inputs()).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=0.1 * np.abs(expected).max())


def test_quantize_inc_is_refused_on_a_cpu_without_vnni(tiny_teacher, tmp_path, monkeypatch):
    from edgewise.core import env
    from edgewise.core.errors import EdgewiseError

    monkeypatch.setattr(env, "cpu_info", lambda *a, **k: AVX2_ONLY)
    for cap in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(cap, raising=False)

    with pytest.raises(EdgewiseError, match="no VNNI.*--method dynamic"):
        quantize(tiny_teacher, tmp_path / "inc", QuantizeConfig(method="inc"))
    assert not (tmp_path / "inc").exists()


def test_inc_model_runs_its_reference_graph_on_a_cpu_without_vnni(inc_static, monkeypatch, capfd):
    from edgewise.core import env

    fast = QuantizedClassifier(inc_static[0])(**_inputs()).logits.numpy()
    monkeypatch.setattr(env, "cpu_info", lambda *a, **k: AVX2_ONLY)

    model = QuantizedClassifier(inc_static[0])

    assert model.runs_with == "inc-reference"
    assert "would give wrong logits here" in capfd.readouterr().err
    np.testing.assert_allclose(model(**_inputs()).logits.numpy(), fast, atol=0.05)


def test_inc_kernel_check_follows_the_cpu_and_the_onednn_cap(monkeypatch):
    from edgewise.quantize.inc import int8_kernel_problem

    vnni = {**AVX2_ONLY, "isa": ["avx2", "avx512f", "avx512_vnni"]}
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert int8_kernel_problem(vnni) is None and "no VNNI" in int8_kernel_problem(AVX2_ONLY)
    assert int8_kernel_problem({"arch": "aarch64", "isa": []}) is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert "capped to AVX2" in int8_kernel_problem(vnni)


def test_quantize_inc_dynamic_needs_no_calibration_data(tiny_teacher, tmp_path):
    manifest = _build(tiny_teacher, tmp_path / "dyn", QuantizeConfig(method="inc"))

    assert manifest.metrics["quantization"]["approach"] == "dynamic"
    assert "calibration" not in manifest.metrics["quantization"]
    assert manifest.metrics["accuracy"]["validation"]["quantized"]["agreement_with_source"] >= 0.95


def test_bench_times_an_inc_model_beside_its_fp32_source_on_torch(inc_static, tiny_teacher, tiny_data, tmp_path):
    from edgewise.bench import BenchConfig, bench

    config = BenchConfig(backends=("torch", "ort-cpu"), threads=1, warmup=2, min_runs=10, min_time_s=0.05, rounds=2)

    result = bench([tiny_teacher, inc_static[0]], tmp_path / "report", config, data=str(tiny_data))

    rows = {(r["artifact"], r["backend"]): r for r in result["results"]}
    assert rows[("static", "torch")]["status"] == "ok" and rows[("static", "torch")]["label_agreement"] >= 0.95
    assert rows[("static", "ort-cpu")]["status"] == "skipped" and "--backend torch" in rows[("static", "ort-cpu")][
        "reason"]
    sizes = {a["name"]: a["size_bytes"] for a in result["artifacts"]}
    assert sizes["static"] == (inc_static[0] / PACKAGE).stat().st_size


def test_inc_code_sealed_by_another_user_or_swapped_and_resealed_is_not_loaded(inc_static, tmp_path, monkeypatch,
                                                                               cli_run, tiny_data):
    """Loading an INC artifact runs its compiled code: only code this user's edgewise sealed here is loaded."""
    import json

    from edgewise.core.manifest import MANIFEST_NAME, SEAL_FIELD, content_digest, hash_files

    swapped = tmp_path / "swapped"
    shutil.copytree(inc_static[0], swapped)
    (swapped / PACKAGE).write_bytes(b"\x7fELF a library with a constructor")
    payload = json.loads((swapped / MANIFEST_NAME).read_text())  # whoever edits a folder can re-hash it too
    payload["files"] = hash_files(swapped)
    payload[SEAL_FIELD] = content_digest(payload)
    (swapped / MANIFEST_NAME).write_text(json.dumps(payload))
    assert Artifact.load(swapped).kind == "inc"  # the manifest alone does not catch it

    with pytest.raises(EdgewiseError, match="edgewise did not make on this machine for this user"):
        QuantizedClassifier(swapped)
    result = cli_run("evaluate", swapped, tiny_data)
    assert result.exit_code == 2 and "EDGEWISE_TRUST_NATIVE_CODE=1" in result.stderr

    monkeypatch.setenv("EDGEWISE_CACHE", str(tmp_path / "another-user"))  # another key: the original is foreign too
    with pytest.raises(EdgewiseError, match="does not match this user's key"):
        QuantizedClassifier(inc_static[0])
    monkeypatch.setenv("EDGEWISE_TRUST_NATIVE_CODE", "1")
    assert QuantizedClassifier(inc_static[0]).runs_with == RUNS_WITH
