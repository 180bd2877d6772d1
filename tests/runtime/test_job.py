"""runtime.job: the measuring core shared by bench, evaluate and the device job."""

import json

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.job import JOB_SCHEMA_VERSION, run_job, tegrastats_power, time_interleaved


def test_time_interleaved_interleaves_artifacts_in_rounds():
    order = []

    class Runner:
        def __init__(self, name):
            self.name = name

        def run(self, feed):
            order.append(self.name.lower())  # warm-up: run, not timed

        def time_ms(self, feed):
            order.append(self.name + str(feed["i"]))
            return 1.0

    slots = [{"runner": Runner(n), "feeds": [({"i": 0}, 8), ({"i": 1}, 8)], "samples": [], "rounds": []}
             for n in "ABC"]

    time_interleaved(slots, rounds=3, min_runs=6, min_time_s=0, warmup=1)

    # One re-warm each, then rounds of two timed runs per slot, cycling through the inputs.
    assert " ".join(order) == "a b c A0 A1 B0 B1 C0 C1 A0 A1 B0 B1 C0 C1 A0 A1 B0 B1 C0 C1"
    assert [len(r) for r in slots[0]["rounds"]] == [2, 2, 2] and len(slots[0]["samples"]) == 6


def test_time_interleaved_rounds_last_at_least_min_time():
    import time

    class Runner:
        def run(self, feed):
            pass

        def time_ms(self, feed):
            time.sleep(0.002)
            return 2.0

    slot = {"runner": Runner(), "feeds": [({}, 8)], "samples": [], "rounds": []}

    time_interleaved([slot], rounds=2, min_runs=1, min_time_s=0.1, warmup=0)

    assert len(slot["samples"]) >= 20 and all(len(r) >= 10 for r in slot["rounds"])


def _job(bundle, **changes) -> dict:
    return {"schema_version": JOB_SCHEMA_VERSION, "models": [{"name": "b", "path": str(bundle)}],
            "backends": ["auto"], "batch_sizes": [1, 2], "threads": 1, "seq_len": 8, "warmup": 1, "min_runs": 2,
            "min_time_s": 0, "rounds": 2, "texts": ["a good film", "a dull film", "fine"], "pairs": None,
            "eval_batch_size": None, **changes}


def test_run_job_returns_timed_slots_and_predictions_per_batch_size(tiny_bundle):
    from edgewise.runtime import Predictor

    result = run_job(_job(tiny_bundle))

    expected = Predictor(tiny_bundle).outputs(["a good film", "a dull film", "fine"], batch_size=1).argmax(-1).tolist()
    assert [(s["batch_size"], s["backend"], s["seq_len"]) for s in result["slots"]] == [(1, "ort-cpu", 8),
                                                                                          (2, "ort-cpu", 8)]
    assert result["slots"][0]["predictions"] == expected and len(result["slots"][1]["predictions"]) == 3
    assert all(len(s["samples"]) == 2 and len(s["rounds"]) == 2 for s in result["slots"])
    assert result["environment"]["device"]["logical_cores"] >= 1 and result["power"] is None
    json.dumps(result)  # what the device sends back must be JSON


def test_run_job_without_timing_only_predicts(tiny_bundle):
    result = run_job(_job(tiny_bundle, time=False, batch_sizes=[4], eval_batch_size=4))

    assert "samples" not in result["slots"][0] and len(result["slots"][0]["predictions"]) == 3


def test_run_job_skips_a_backend_the_device_lacks_but_refuses_a_model_it_cannot_load(tiny_bundle, tmp_path):
    from tests.conftest import ort_has_cuda

    if ort_has_cuda():
        pytest.skip("this onnxruntime has CUDA: ort-cuda is not skipped here")
    result = run_job(_job(tiny_bundle, backends=["ort-cuda"]))
    assert result["slots"] == [] and result["skipped"][0]["backend"] == "ort-cuda"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not onnx")
    (broken / "tokenizer.json").write_text((tiny_bundle / "tokenizer.json").read_text())
    with pytest.raises(EdgewiseError, match="broken cannot run here: onnxruntime cannot load"):
        run_job(_job(broken, models=[{"name": "broken", "path": str(broken)}]))


@pytest.mark.parametrize("job", [{"schema_version": 99}, [], {"schema_version": JOB_SCHEMA_VERSION}])
def test_run_job_refuses_a_job_it_cannot_read(job):
    with pytest.raises(EdgewiseError, match="job"):
        run_job(job)


def test_tegrastats_power_averages_each_rail():
    lines = ["RAM 2000/7620MB CPU [5%@1510] VDD_GPU_SOC 2000mW/2000mW VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 3000mW/3000mW",
             "RAM 2000/7620MB CPU [9%@1510] VDD_GPU_SOC 3000mW/2500mW VDD_CPU_CV 600mW/500mW VIN_SYS_5V0 3500mW/3250mW",
             "RAM 1500/3964MB CPU [2%@102] POM_5V_IN 2100/2100 POM_5V_GPU 0/0 POM_5V_CPU 400/400"]

    assert tegrastats_power(lines) == {"VDD_GPU_SOC": 2500.0, "VDD_CPU_CV": 500.0, "VIN_SYS_5V0": 3250.0,
                                       "POM_5V_IN": 2100.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 400.0}


def test_run_job_samples_tegrastats_during_timing_when_present(tiny_bundle, tmp_path, monkeypatch):
    fake = tmp_path / "tegrastats"
    fake.write_text("#!/bin/sh\nwhile true; do echo 'RAM 1/2MB VDD_GPU_SOC 1200mW/1200mW VDD_CPU_CV 300mW/300mW'; "
                    "sleep 0.05; done\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")

    result = run_job(_job(tiny_bundle, min_time_s=0.3))

    assert result["power"]["tool"] == "tegrastats" and result["power"]["samples"] >= 1
    assert result["power"]["mean_mw"] == {"VDD_GPU_SOC": 1200.0, "VDD_CPU_CV": 300.0}


def test_runtime_job_command_writes_the_result_and_says_errors_in_one_line(tiny_bundle, tmp_path, capsys):
    from edgewise.runtime.__main__ import main

    (tmp_path / "job.json").write_text(json.dumps(_job(tiny_bundle)))
    assert main(["job", str(tmp_path / "job.json"), "--out", str(tmp_path / "result.json")]) == 0
    assert len(json.loads((tmp_path / "result.json").read_text())["slots"]) == 2
    capsys.readouterr()

    (tmp_path / "bad.json").write_text("{")
    assert main(["job", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r2.json")]) == 2
    assert capsys.readouterr().err.startswith("Error: cannot read the job") and not (tmp_path / "r2.json").exists()


def test_runtime_env_command_prints_the_device_fingerprint(capsys):
    from edgewise.runtime.__main__ import main

    assert main(["env"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["device"]["logical_cores"] >= 1 and "onnxruntime" in facts["packages"]


def test_run_job_of_an_embedding_bundle_returns_its_vectors(tiny_embedder_bundle):
    import numpy as np

    from edgewise.runtime import Predictor

    result = run_job(_job(tiny_embedder_bundle, time=False, batch_sizes=[2], eval_batch_size=2))

    vectors = np.asarray(result["slots"][0]["predictions"])
    expected = Predictor(tiny_embedder_bundle).embed(["a good film", "a dull film", "fine"], batch_size=2)
    assert vectors.shape == (3, 32) and np.abs(vectors - expected).max() < 1e-6
    json.dumps(result)
