"""Bad inputs a user can plausibly give, across commands: each ends in one `Error:` line that names the
problem and the right fix, exit code 2, no traceback, nothing written, the inputs untouched.

(The first of issue 15's sweep: the misses it listed, found by trying the CLI as a new user would.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_user_error, digest


def _untouched(tmp_path: Path, before: set[str]) -> None:
    """Nothing new in tmp_path: no output folder, no .partial work folder."""
    assert {p.name for p in tmp_path.iterdir()} == before


def test_a_truncated_weights_file_is_named_as_such(cli_run, tiny_teacher, tiny_data, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_teacher, model)
    (model / "edgewise.json").unlink()  # a folder edgewise did not write: no hashes to catch it first
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = digest(model)

    result = cli_run("evaluate", model, tiny_data)

    assert_user_error(result, f"the weights of the model in {model} cannot be read", "truncated or corrupt",
                      "copy the model again")
    assert digest(model) == before


@pytest.mark.parametrize("command", [["evaluate", "{loop}", "{data}"], ["export", "{loop}", "-o", "{out}"],
                                     ["distill", "{loop}", "{data}", "-o", "{out}"]])
def test_a_symlink_loop_as_the_model_is_one_error(cli_run, tiny_data, tmp_path, command):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    before = {p.name for p in tmp_path.iterdir()}

    result = cli_run(*[c.format(loop=tmp_path / "a", data=tiny_data, out=tmp_path / "out") for c in command])

    assert_user_error(result, "is a symlink loop", "point it at a real model folder")
    _untouched(tmp_path, before)


def test_a_symlink_loop_as_the_output_is_one_error(cli_run, tiny_onnx, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    before = {p.name for p in tmp_path.iterdir()}

    result = cli_run("bundle", tiny_onnx, "-o", tmp_path / "a")

    assert_user_error(result, "is a symlink loop", "point it at a real output folder")
    _untouched(tmp_path, before)


@pytest.mark.parametrize("command", [["evaluate", "{data}", "{model}"], ["distill", "{data}", "{model}", "-o", "{out}"],
                                     ["finetune", "{data}", "{model}", "-o", "{out}"],
                                     ["prune", "{data}", "{model}", "-o", "{out}", "--flops", "0.5"]])
def test_data_and_model_swapped_are_named_as_swapped(cli_run, tiny_teacher, tiny_data, tmp_path, command):
    before = {p.name for p in tmp_path.iterdir()}

    result = cli_run(*[c.format(data=tiny_data / "train.csv", model=tiny_teacher, out=tmp_path / "out")
                       for c in command])

    assert_user_error(result, "is a data file, not a model folder", "the model comes first", "did you swap them?")
    _untouched(tmp_path, before)


@pytest.mark.parametrize(("separator", "name", "fix"), [(";", "semicolons", "save it comma-separated"),
                                                       ("\t", "tabs", "name it .tsv")])
def test_a_csv_separated_by_something_else_is_named_as_such(cli_run, tiny_teacher, tmp_path, separator, name, fix):
    data = tmp_path / "reviews.csv"
    data.write_text(f"text{separator}label\na fine film{separator}pos\na dull film{separator}neg\n")

    result = cli_run("evaluate", tiny_teacher, data)

    assert_user_error(result, f"looks separated by {name}, not commas", fix)


def test_a_hub_id_with_hf_hub_offline_set_says_so(cli_run, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    result = cli_run("finetune", "some-org/some-model", tiny_data, "-o", tmp_path / "out")

    assert_user_error(result, "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE, or pass a local folder")
    assert "network" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["evaluate", "{model}", "{data}"], ["distill", "{model}", "{data}", "-o", "{out}"],
                                     ["prune", "{model}", "{data}", "-o", "{out}", "--flops", "0.5"],
                                     ["export", "{model}", "-o", "{out}"]])
def test_a_base_encoder_where_a_classifier_belongs_says_how_to_get_one(cli_run, tiny_encoder, tiny_data, tmp_path,
                                                                       command):
    result = cli_run(*[c.format(model=tiny_encoder, data=tiny_data, out=tmp_path / "out") for c in command])

    assert_user_error(result, "is an encoder, not a classifier", f"edgewise finetune {tiny_encoder} DATA -o TEACHER")
    assert not (tmp_path / "out").exists()


def test_bench_compare_of_a_report_whose_rows_were_all_skipped_gives_their_reasons(cli_run, tmp_path):
    import json

    row = {"artifact": "student", "backend": "ort-cpu", "batch_size": 1, "seq_len": 128, "threads": 1}
    skipped = {**row, "backend": "ort-cuda", "status": "skipped", "reason": "no CUDA here"}
    timed = {**row, "status": "ok", "latency_ms": {"p50": 1.0, "p50_ci95": [0.9, 1.1], "round_p50": [1.0] * 5}}
    environment = {"cpu": {"model": "x"}}
    (tmp_path / "now.json").write_text(json.dumps({"schema_version": 1, "results": [skipped],
                                                   "environment": environment}))
    (tmp_path / "then.json").write_text(json.dumps({"schema_version": 1, "results": [timed],
                                                    "environment": environment}))

    result = cli_run("bench", "compare", tmp_path / "now.json", tmp_path / "then.json")

    assert_user_error(result, "every row of the report was skipped", "student on ort-cuda: no CUDA here")


def test_a_file_of_the_model_folder_given_as_the_model_names_the_folder(cli_run, tiny_teacher, tiny_data):
    result = cli_run("evaluate", tiny_teacher / "config.json", tiny_data)

    assert_user_error(result, f"is a file of the model folder {tiny_teacher}; pass the folder itself")
