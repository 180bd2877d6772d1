"""Device targets end to end: a real OpenSSH server on 127.0.0.1 and a fake `adb` that runs locally.

Both drive the real code path (probe, copy, `python -m edgewise.runtime job`, fetch, cleanup) and the
rows they return are compared with a local bench of the same bundle. The SSH tests need Debian's
openssh-server (/usr/sbin/sshd); they skip without it, except in CI (.ci/run sets EDGEWISE_REQUIRE_SSHD=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.targets import AdbTarget, SshTarget, parse_target
from tests.conftest import assert_user_error
from tests.fake_devices import LoopbackSshd, free_port, install_fake_adb, sshd_missing

pytestmark = pytest.mark.slow  # they start servers and processes

FAST = ["--warmup", "1", "--min-runs", "4", "--min-time", "0", "--rounds", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd on 127.0.0.1 with a throwaway host key and one authorized key."""
    why = sshd_missing()
    if why:
        if os.environ.get("EDGEWISE_REQUIRE_SSHD"):
            pytest.fail(f"EDGEWISE_REQUIRE_SSHD is set but the loopback sshd {why}")
        pytest.skip(why)
    try:
        with LoopbackSshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server
    except RuntimeError as e:
        if os.environ.get("EDGEWISE_REQUIRE_SSHD"):
            pytest.fail(str(e))
        pytest.skip(str(e))


@pytest.fixture
def ssh_env(sshd, monkeypatch, tmp_path):
    """EDGEWISE_SSH_OPTIONS pointing at the test's client config; the target URL, its settings for this test's
    cache, and the cache."""
    monkeypatch.setenv("EDGEWISE_SSH_OPTIONS", sshd.options)
    cache = tmp_path / "device cache"  # a space: every remote path must be quoted
    return sshd.url, f"python={sys.executable}&cache={cache}", cache


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """`adb` on PATH that runs everything here, with one attached device R58M123; the device cache to use."""
    folder = install_fake_adb(tmp_path / "bin").parent
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R58M123")
    return tmp_path / "phone-cache"


def assert_ends_in_error(result, *fragments: str) -> None:
    """Exit 2, no traceback, and one `Error:` line, the last on stderr (progress lines of the steps before it
    may precede it)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Error: ")] == lines[-1:], result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


def _bench_rows(report: dict) -> dict:
    return {(r["artifact"], r["backend"], r["batch_size"]): r for r in report["results"]}


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind", "where"), [
    ("ssh://nvidia@jetson.local", SshTarget, "nvidia@jetson.local"),
    ("ssh://pi@10.0.0.7:2222?python=/opt/venv/bin/python3", SshTarget, "pi@10.0.0.7"),
    ("ssh://jetson", SshTarget, "jetson"),
    ("adb://R58M123", AdbTarget, "R58M123"),
])
def test_parse_target_reads_user_host_port_and_settings(text, kind, where):
    target = parse_target(text)

    assert isinstance(target, kind) and str(target) == text
    assert (target.destination if kind is SshTarget else target.serial) == where
    if "2222" in text:
        assert target.port == 2222 and target.python == "/opt/venv/bin/python3"


def test_parse_target_local_is_no_target():
    assert parse_target("local") is None and parse_target(None) is None


@pytest.mark.parametrize(("text", "message"), [
    ("ftp://host", "unknown target 'ftp://host'; use local, ssh://[user@]host[:port] or adb://SERIAL"),
    ("jetson.local", "unknown target"),
    ("ssh://", "is not ssh://[user@]host[:port]"),
    ("ssh://host:port", "is not ssh://[user@]host[:port]"),
    ("ssh://host/some/path", "is not ssh://[user@]host[:port]"),
    ("adb://", "names no device"),
    ("ssh://host?pyhton=/usr/bin/python3", "unknown setting(s) pyhton; known: python, cache, timeout"),
    ("ssh://host?timeout=-5", "timeout must be a number of seconds > 0"),
    ("ssh://host?python=", "python=, cache= and wheels= need a value"),
    ("ssh://host?timeout=inf", "timeout must be a number of seconds > 0"),
    ("ssh://host?timeout=nan", "timeout must be a number of seconds > 0"),
    ("ssh://-oProxyCommand=id", "cannot start with '-'"),
    ("ssh://-l@host", "cannot start with '-'"),
    ("adb://-s", "names no device"),
])
def test_parse_target_refuses_malformed_targets(text, message):
    with pytest.raises(EdgewiseError, match=None) as e:
        parse_target(text)

    assert message in str(e.value)


def test_bench_with_a_malformed_target_is_one_error_line(cli_run, tiny_bundle):
    result = cli_run(*["bench", str(tiny_bundle), "--target", "ssh://host:port"])

    assert_user_error(result, "is not ssh://[user@]host[:port]")


# --- ssh, end to end ---------------------------------------------------------------------------


def test_bench_over_ssh_matches_a_local_bench_of_the_same_bundle(cli_run, ssh_env, tiny_bundle, tiny_data, tmp_path):
    url, settings, cache = ssh_env
    local = cli_run(*["bench", str(tiny_bundle), "--data", str(tiny_data), "--batch-sizes", "1,2", *FAST, "--json"])
    remote = cli_run(*["bench", str(tiny_bundle), "--data", str(tiny_data), "--batch-sizes", "1,2", *FAST,
                      "--target", f"{url}?{settings}", "-o", str(tmp_path / "report"), "--json"])

    assert local.exit_code == 0 and remote.exit_code == 0, remote.stderr
    here, there = json.loads(local.stdout), json.loads(remote.stdout)
    assert there["target"] == f"{url}?{settings}"
    assert there["environment"]["device"]["logical_cores"] >= 1 and "onnxruntime_providers" in there["environment"]
    for key, row in _bench_rows(here).items():
        device = _bench_rows(there)[key]
        assert device["status"] == "ok" and device["accuracy"] == row["accuracy"]
        assert device["label_agreement"] == 1.0 and device["latency_ms"]["p50"] > 0
        assert set(device) == set(row)
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["target"] == there["target"]
    assert f"Measured on the device **{url}**" in (tmp_path / "report" / "report.md").read_text()
    # The job's work folder is gone; the cache keeps the runtime code and the bundle for the next run.
    assert sorted(p.name for p in cache.iterdir()) == ["job.lock", "jobs", "models", "runtime"]
    assert list((cache / "jobs").iterdir()) == []


def test_a_second_run_copies_only_changed_files(ssh_env, tiny_bundle, tiny_data, tmp_path):
    from edgewise.bench import BenchConfig, bench

    url, settings, cache = ssh_env
    lines: list[str] = []
    target = parse_target(f"{url}?{settings}")
    config = BenchConfig(target=f"{url}?{settings}", warmup=1, min_runs=2, min_time_s=0, rounds=1)
    bench([tiny_bundle], config=config, data=str(tiny_data))
    copied = next((cache / "models").iterdir())
    (copied / "labels.json").write_text("{}")  # a file changed on the device since

    target.log = lines.append
    target.probe()
    target.sync(tiny_bundle)

    assert lines == [f"{url}: {tiny_bundle.name}: 1 of {len(list(tiny_bundle.iterdir()))} files copied "
                     f"(0.0 MB)"]
    assert (copied / "labels.json").read_text() == (tiny_bundle / "labels.json").read_text()


def test_evaluate_over_ssh_gives_the_local_metrics(cli_run, ssh_env, tiny_bundle, tiny_data):
    url, settings, _ = ssh_env
    local = cli_run(*["evaluate", str(tiny_bundle), str(tiny_data), "--json"])
    remote = cli_run(*["evaluate", str(tiny_bundle), str(tiny_data), "--target", f"{url}?{settings}", "--json"])

    assert remote.exit_code == 0, remote.stderr
    here, there = json.loads(local.stdout), json.loads(remote.stdout)
    assert there["accuracy"] == here["accuracy"] and there["macro_f1"] == here["macro_f1"]
    assert there["target"] == f"{url}?{settings}" and there["environment"]["device"]["memory_gib"] > 0


def test_ssh_wrong_port_is_one_error_line(cli_run, ssh_env, tiny_bundle):
    url, settings, _ = ssh_env
    wrong = url.rsplit(":", 1)[0] + f":{free_port()}"

    result = cli_run(*["bench", str(tiny_bundle), "--target", f"{wrong}?{settings}"])

    assert_user_error(result, f"cannot reach {wrong}:", "Connection refused", "check the host name and port")


def test_ssh_unreachable_host_is_one_error_line(cli_run, ssh_env, tiny_bundle):
    _, settings, _ = ssh_env

    result = cli_run(*["bench", str(tiny_bundle), "--target", f"ssh://nobody@no-such-host.invalid?{settings}"])

    assert_user_error(result, "cannot reach ssh://nobody@no-such-host.invalid", "check the host name and port")


def test_ssh_host_without_that_python_is_one_error_line(cli_run, ssh_env, tiny_bundle, tmp_path):
    url, _, _ = ssh_env

    result = cli_run(*["bench", str(tiny_bundle), "--target", f"{url}?python={tmp_path}/no/python3"])

    assert_user_error(result, f"has no Python at '{tmp_path}/no/python3'", "name the interpreter in the target")


def test_ssh_host_without_the_runtime_packages_is_one_error_line(cli_run, ssh_env, tiny_bundle, tmp_path):
    url, _, _ = ssh_env
    bare = tmp_path / "bare"  # a Python with nothing installed
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)

    result = cli_run(*["bench", str(tiny_bundle), "--target", f"{url}?python={bare}/bin/python"])

    assert_user_error(result, "lacks onnxruntime, tokenizers, numpy", "-m pip install \"edgewise[runtime]\"")


def test_ssh_bundle_the_device_cannot_load_is_one_error_line(cli_run, ssh_env, tiny_bundle, tmp_path):
    import onnx

    from edgewise.core.manifest import Manifest

    url, settings, _ = ssh_env
    bundle = tmp_path / "future-bundle"
    shutil.copytree(tiny_bundle, bundle)
    model = onnx.load(str(bundle / "model.onnx"))
    model.opset_import[0].version = 99  # an opset no onnxruntime knows yet: what an older device sees
    onnx.save(model, str(bundle / "model.onnx"))
    manifest = json.loads((bundle / "edgewise.json").read_text())
    from edgewise.core.manifest import content_digest, sha256_file

    manifest["files"]["model.onnx"] = sha256_file(bundle / "model.onnx")
    manifest["content_sha256"] = content_digest(manifest)
    (bundle / "edgewise.json").write_text(json.dumps(manifest))
    assert Manifest.read(bundle).verify() == []

    result = cli_run(*["bench", str(bundle), "--target", f"{url}?{settings}"])

    assert_ends_in_error(result, f"on {url}: future-bundle cannot run here", "opset")
    assert list((ssh_env[2] / "jobs").iterdir()) == []  # the failed job's folder is removed too


@pytest.mark.parametrize(("url", "what", "message"), [
    ("ssh://h", "running the job", "lost the connection to ssh://h while running the job: Connection reset by peer; "
                                   "check the device and the network"),
    ("ssh://h", "connecting", "cannot reach ssh://h: Connection reset by peer; check the host name and port"),
    ("adb://X1", "running the job", "lost adb://X1 while running the job: Connection reset by peer; reconnect"),
])
def test_a_command_that_never_printed_its_status_is_a_lost_device_named_by_its_step(url, what, message, monkeypatch):
    from edgewise.runtime.targets import Result

    target = parse_target(url)
    monkeypatch.setattr(target, "_run", lambda *a, **k: Result(255, "", "Connection reset by peer\n"))

    with pytest.raises(EdgewiseError) as e:
        target.shell("true", what)

    assert str(e.value).startswith(message)


@pytest.mark.parametrize("tool_code", [0, 255])
def test_the_remote_status_line_is_the_exit_code_whatever_the_tool_returns(tool_code, monkeypatch):
    """adb before Android 7 exits 0 whatever ran; ssh exits 255 when the remote process died of a signal."""
    from edgewise.runtime.targets import RC_MARK, Result

    target = parse_target("adb://X1")
    monkeypatch.setattr(target, "_run", lambda *a, **k: Result(tool_code, f"partial output{RC_MARK}137\n", "oom"))

    result = target.shell("python3 -m edgewise.runtime job", "running the job")

    assert (result.code, result.out) == (137, "partial output")


def test_a_torch_model_is_refused_before_connecting(cli_run, tiny_teacher):
    result = cli_run(*["bench", str(tiny_teacher), "--target", "ssh://nobody@no-such-host.invalid"])

    assert_user_error(result, "runs the runtime (onnxruntime / TensorRT), not PyTorch", "edgewise bundle")


# --- adb, end to end ---------------------------------------------------------------------------


def test_bench_over_adb_matches_a_local_bench(cli_run, fake_adb, tiny_bundle, tiny_data):
    target = f"adb://R58M123?python={sys.executable}&cache={fake_adb}"
    local = cli_run(*["bench", str(tiny_bundle), "--data", str(tiny_data), *FAST, "--json"])
    remote = cli_run(*["bench", str(tiny_bundle), "--data", str(tiny_data), *FAST, "--target", target, "--json"])

    assert remote.exit_code == 0, remote.stderr
    here, there = _bench_rows(json.loads(local.stdout)), _bench_rows(json.loads(remote.stdout))
    assert here.keys() == there.keys()
    assert all(there[k]["accuracy"] == here[k]["accuracy"] and there[k]["label_agreement"] == 1.0 for k in here)
    assert list((fake_adb / "jobs").iterdir()) == []
    # The job's progress reaches the host's log as it runs, a line per step.
    assert "adb://R58M123: teacher on ort-cpu: loaded" in remote.stderr
    assert "adb://R58M123: timing round 2/2" in remote.stderr


def test_adb_without_that_device_is_one_error_line(cli_run, fake_adb, tiny_bundle):
    result = cli_run(*["bench", str(tiny_bundle), "--target", "adb://PIXEL9"])

    assert_user_error(result, "adb has no usable device 'PIXEL9'", "attached: R58M123", "USB debugging")


def test_adb_with_no_device_attached_is_one_error_line(cli_run, fake_adb, tiny_bundle, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")

    result = cli_run(*["bench", str(tiny_bundle), "--target", "adb://R58M123"])

    assert_user_error(result, "adb has no usable device 'R58M123'", "attached: none")


def test_adb_not_installed_is_one_error_line(cli_run, tiny_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb anywhere

    result = cli_run(*["bench", str(tiny_bundle), "--target", "adb://R58M123"])

    assert_user_error(result, "needs `adb` on this machine", "apt install adb")


def test_ssh_not_installed_is_one_error_line(cli_run, tiny_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh anywhere

    result = cli_run(*["bench", str(tiny_bundle), "--target", "ssh://pi@raspberrypi"])

    assert_user_error(result, "needs `ssh` on this machine", "apt install openssh-client")


def test_ssh_with_a_key_the_device_refuses_is_one_error_line(cli_run, sshd, tiny_bundle, tmp_path, monkeypatch):
    stranger = tmp_path / "stranger_key"  # a key the server's authorized_keys does not hold
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    config = tmp_path / "ssh_config"
    config.write_text((sshd.home / "ssh_config").read_text().replace(str(sshd.home / "client_key"), str(stranger)))
    monkeypatch.setenv("EDGEWISE_SSH_OPTIONS", f"-F {config}")

    result = cli_run(*["bench", str(tiny_bundle), "--target", sshd.url])

    assert_user_error(result, f"cannot reach {sshd.url}", "Permission denied", "without a password prompt",
                      "ssh-copy-id")


def test_a_backend_the_device_lacks_is_a_skipped_row_with_the_reason(cli_run, fake_adb, tiny_bundle, tiny_data):
    from tests.conftest import ort_has_cuda

    if ort_has_cuda():
        pytest.skip("this onnxruntime has CUDA: ort-cuda is not skipped here")
    target = f"adb://R58M123?python={sys.executable}&cache={fake_adb}"

    result = cli_run(*["bench", str(tiny_bundle), "--data", str(tiny_data), *FAST, "--backend", "ort-cpu",
                       "--backend", "ort-cuda", "--target", target, "--json"])

    assert result.exit_code == 0, result.stderr
    rows = {r["backend"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["ort-cpu"]["status"] == "ok" and rows["ort-cuda"]["status"] == "skipped"
    assert rows["ort-cuda"]["reason"].startswith("on adb://R58M123: ") and "CUDA" in rows["ort-cuda"]["reason"]


def test_the_download_hint_names_every_manylinux_tag_the_device_takes():
    from edgewise.runtime.targets import platform_flags

    assert platform_flags("arm64", "glibc 2.35") == (
        "--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_24_aarch64 "
        "--platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64")
    assert platform_flags("aarch64", "glibc 2.24") == ("--platform manylinux_2_24_aarch64 --platform "
                                                       "manylinux_2_17_aarch64 --platform manylinux2014_aarch64")
    assert "<the wheel tag of aarch64" in platform_flags("aarch64", "")  # musl, Android: no manylinux tag


def test_a_job_that_outlives_its_timeout_is_one_error_line(cli_run, fake_adb, tiny_bundle, tiny_data):
    target = f"adb://R58M123?python={sys.executable}&cache={fake_adb}&timeout=0.5"
    slow = [arg if arg != "0" else "30" for arg in FAST]  # --min-time 30: the device stops the job after 1 s

    result = cli_run(*["bench", str(tiny_bundle), "--data", str(tiny_data), *slow, "--target", target])

    assert_ends_in_error(result, "on adb://R58M123: the job ran past its timeout of 0.5 s and was stopped",
                         "?timeout=SECONDS")
    assert list((fake_adb / "jobs").iterdir()) == []


def _wheel_of(package_dirs: list[str], wheel: Path) -> Path:
    """A wheel-shaped zip of installed package folders (what pip download would fetch, built offline)."""
    import zipfile

    import numpy

    site = Path(numpy.__file__).parents[1]
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for name in package_dirs:
            for file in (site / name).rglob("*"):
                if file.is_file() and "__pycache__" not in file.parts and "tests" not in file.parts:
                    archive.write(file, str(file.relative_to(site)))
    return wheel


def test_wheels_copied_along_make_a_bare_python_run_the_job(cli_run, ssh_env, tiny_bundle, tiny_data, tmp_path):
    url, _, cache = ssh_env
    bare = tmp_path / "bare"  # a Python with nothing installed, as on a fresh board
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel_of(["numpy", "numpy.libs"], wheels / "numpy-0-cp311-cp311-linux_x86_64.whl")
    _wheel_of(["onnxruntime"], wheels / "onnxruntime-0-cp311-cp311-linux_x86_64.whl")
    _wheel_of(["tokenizers"], wheels / "tokenizers-0-cp311-cp311-linux_x86_64.whl")
    target = f"{url}?python={bare}/bin/python&cache={cache}&wheels={wheels}"

    result = cli_run(*["evaluate", str(tiny_bundle), str(tiny_data), "--target", target, "--json"])
    local = cli_run(*["evaluate", str(tiny_bundle), str(tiny_data), "--json"])

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["accuracy"] == json.loads(local.stdout)["accuracy"]
    site = next((cache / "site").iterdir())
    assert (site / "numpy").is_dir() and not list(site.glob("*.whl"))  # unpacked once, wheels removed
    assert sorted(p.name for p in (cache / "site").iterdir()) == [site.name]  # no staging folders left


def test_wheels_that_do_not_fit_the_device_are_one_error_line(cli_run, ssh_env, tiny_bundle, tmp_path):
    url, _, cache = ssh_env
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel_of(["tokenizers"], wheels / "tokenizers-0-cp311-cp311-linux_x86_64.whl")  # numpy, onnxruntime lacking

    result = cli_run(*["bench", str(tiny_bundle), "--target", f"{url}?python={bare}/bin/python&cache={cache}"
                                                               f"&wheels={wheels}"])

    assert_ends_in_error(result, f"the wheels in {wheels} did not give onnxruntime, numpy", "pip download onnxruntime",
                         "--platform manylinux2014_x86_64 --python-version 3.11")


def test_the_device_runs_the_edgewise_code_sent_along(ssh_env, tiny_bundle):
    from edgewise.runtime.job import new_job

    url, settings, cache = ssh_env
    target = parse_target(f"{url}?{settings}")

    result = target.run_job([tiny_bundle], new_job(["b"], ["a good film"], None, time=False))

    # Not the editable install of this venv (which the device's Python here could also import).
    assert result["edgewise_code"].startswith(str(cache / "runtime")) and result["slots"][0]["predictions"]


def test_files_the_device_built_into_a_bundle_survive_the_next_copy(ssh_env, tiny_onnx, tmp_path):
    from edgewise.export import BundleConfig, bundle

    url, settings, cache = ssh_env
    jetson = tmp_path / "jetson"
    bundle(tiny_onnx, jetson, BundleConfig(target="jetson"))
    target = parse_target(f"{url}?{settings}")
    target.probe()
    remote = Path(target.sync(jetson))
    (remote / "model.engine").write_bytes(b"an engine build_engine.sh made on the device")
    (remote / "stale.txt").write_text("a file the bundle no longer has")

    target.sync(jetson)

    assert (remote / "model.engine").read_bytes().startswith(b"an engine") and not (remote / "stale.txt").exists()


def test_an_old_adb_that_always_exits_0_still_reports_the_failure(cli_run, fake_adb, tiny_bundle, monkeypatch,
                                                                  tmp_path):
    monkeypatch.setenv("FAKE_ADB_OLD", "1")  # no shell protocol: exit code 0, stderr mixed into stdout

    result = cli_run(*["bench", str(tiny_bundle), "--target", f"adb://R58M123?python={tmp_path}/no/python3"
                                                              f"&cache={fake_adb}"])

    assert_user_error(result, f"has no Python at '{tmp_path}/no/python3'")


def _job_process(tiny_bundle, tmp_path, **changes):
    from edgewise.runtime.job import new_job

    job = new_job(["b"], ["a good film", "a dull one"], None, **{"min_time_s": 20, "rounds": 2, **changes})
    job["models"][0]["path"] = str(tiny_bundle)
    (tmp_path / "job.json").write_text(json.dumps(job))
    return subprocess.Popen([sys.executable, "-m", "edgewise.runtime", "job", str(tmp_path / "job.json"), "--out",
                             str(tmp_path / "result.json")], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_job_stops_when_the_host_goes_away(tiny_bundle, tmp_path):
    process = _job_process(tiny_bundle, tmp_path, stop_on_eof=True)

    process.stdin.close()  # what the device sees when the host's ssh / adb ends (Ctrl-C, a lost connection)

    assert process.wait(timeout=60) == 130 and not (tmp_path / "result.json").exists()


def test_jobs_on_one_device_take_turns(tiny_bundle, tmp_path):
    import fcntl

    lock = tmp_path / "job.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another job is running
        process = _job_process(tiny_bundle, tmp_path, lock=str(lock), min_time_s=0)
        waiting = process.stderr.readline()
        assert "waiting for another edgewise job on this device" in waiting
        assert process.poll() is None  # still waiting: the lock is held
    assert process.wait(timeout=120) == 0 and (tmp_path / "result.json").is_file()


@pytest.mark.slow
def test_an_embedding_bundle_is_benched_and_evaluated_over_adb_as_here(cli_run, fake_adb, tiny_embedder_bundle,
                                                                       tiny_embedder, tiny_corpus, tiny_pairs):
    target = f"adb://R58M123?python={sys.executable}&cache={fake_adb}"
    scored = ["--data", str(tiny_corpus), "--pairs", str(tiny_pairs), "--split", "test"]
    local = cli_run("bench", tiny_embedder_bundle, *scored, *FAST, "--json")
    remote = cli_run("bench", tiny_embedder_bundle, *scored, *FAST, "--target", target, "--json")
    evaluated = cli_run("evaluate", tiny_embedder_bundle, tiny_pairs / "test.csv", "--target", target, "--json")

    assert remote.exit_code == 0 and evaluated.exit_code == 0, remote.stderr + evaluated.stderr
    here, there = _bench_rows(json.loads(local.stdout)), _bench_rows(json.loads(remote.stdout))
    assert all(there[k]["spearman"] == pytest.approx(here[k]["spearman"], abs=1e-6) for k in here)
    result = json.loads(evaluated.stdout)
    assert result["target"].startswith("adb://R58M123") and result["pairs"] == 40
    assert result["reference"]["path"] == str(tiny_embedder) and result["reference"]["cosine_min"] > 0.9999
