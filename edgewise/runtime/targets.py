"""Device targets of `edgewise bench` and `edgewise evaluate`: ``local``, ``ssh://[user@]host[:port]``
and ``adb://SERIAL``.

The system's own ``ssh`` and ``adb`` do the work, so ~/.ssh/config, keys, agents and ProxyJump behave as
in a terminal; edgewise never asks for or handles a password (ssh runs in BatchMode). A run:

1. checks the device: Python there (>= 3.10) with onnxruntime, tokenizers and numpy importable;
2. copies this host's edgewise package (pure Python, so the device runs exactly the code that wrote the
   job) and each model folder into a cache on the device, skipping files it already holds (sha256);
3. runs ``python -m edgewise.runtime job`` on a job file holding the texts (runtime.job) in a fresh work
   folder, then fetches the result and removes that folder (the cache stays: the next run copies only
   what changed). Jobs on one device take turns (a lock in the cache), so two runs never time each other.

Every remote command ends by printing its exit status (``RC_MARK``): ssh exits 255 both when the
connection fails and when the remote process is killed by a signal, and adb before Android 7 returns 0
whatever happened, so the status line is what tells a failed command from a lost device. Files go over
ssh as ``cat`` streams (no scp: its legacy mode re-parses remote paths in a shell, its SFTP mode needs a
sftp-server that small boards often lack).

Settings in the target's query string: ``python=PATH`` (default python3), ``cache=DIR`` (default
~/.cache/edgewise on ssh, /data/local/tmp/edgewise on adb), ``timeout=SECONDS`` (the job's limit,
default 3600), ``wheels=DIR`` (a folder of wheels on this machine, for a device whose Python lacks
onnxruntime / tokenizers / numpy: unpacked into the cache there, no pip or network needed on the device;
edgewise itself downloads nothing). ``EDGEWISE_SSH_OPTIONS`` adds options to every ssh call
(e.g. ``-F ci_ssh_config``).

Nothing here imports onnxruntime: the host only drives the device.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.base import ONNX_KINDS, ORT_BACKENDS

QUERY_KEYS = ("python", "cache", "timeout", "wheels")
MIN_PYTHON = (3, 10)
NEEDED = ("onnxruntime", "tokenizers", "numpy")
STEP_TIMEOUT_S = 120  # checks and cleanup; copies get this plus COPY_S_PER_MB
COPY_S_PER_MB = 1.0  # a slow link (1 MB/s) still finishes
CONNECT_TIMEOUT_S = 10
JOB_GRACE_S = 30  # the device stops its job at the timeout; the host waits this much longer for its answer
RC_MARK = "__edgewise_rc="
DEVICE_KINDS = ONNX_KINDS  # what a device runs: no PyTorch there
DEVICE_BACKENDS = ("auto", *ORT_BACKENDS, "tensorrt")
SIGNALS = {137: "killed (SIGKILL: out of memory?)", 139: "crashed (SIGSEGV)", 134: "aborted (SIGABRT)",
           143: "terminated (SIGTERM)"}

# Run on the device with its own Python, before any edgewise code is there: what it has.
PROBE = """
import importlib.util, json, os, platform, sys
print(json.dumps({"python": list(sys.version_info[:3]), "executable": sys.executable,
                  "machine": platform.machine(), "libc": " ".join(platform.libc_ver()).strip(),
                  "missing": [m for m in %r if importlib.util.find_spec(m) is None],
                  "cache": os.path.abspath(os.path.expanduser(%r))}))
"""
# The sha256 of every file under a folder on the device, by relative path ({} when the folder is absent),
# leaving out the files the device builds itself (a jetson bundle's engine).
HASHES = """
import hashlib, json, os, sys
root, skip, out = sys.argv[1], set(json.loads(sys.argv[2])), {}
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        if os.path.relpath(path, root) in skip:
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[os.path.relpath(path, root)] = digest.hexdigest()
print(json.dumps(out))
"""
PRUNE = """
import json, os, sys
root, keep = sys.argv[1], set(json.loads(sys.argv[2]))
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        if os.path.relpath(path, root) not in keep:
            os.remove(path)
"""
# Unpack an archive (a tar of edgewise's code, or wheels, which are zips) into a fresh folder, then rename
# it into place: a run that finds the folder finds it whole, and two runs unpacking at once do not mix.
UNPACK = """
import os, shutil, sys, tarfile, zipfile
dest, archives = sys.argv[1], sys.argv[2:]
work = dest + ".unpacking-%d" % os.getpid()
os.makedirs(work)
for archive in archives:
    if archive.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(work)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(work, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    os.remove(archive)
try:
    os.rename(work, dest)
except OSError:  # another run put it in place first: theirs is as good
    shutil.rmtree(work, ignore_errors=True)
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


class Target:
    """A device reached through a command-line tool. Subclasses define ``_shell_argv``, ``push``,
    ``check_connection`` and ``_lost``."""

    install_hint = ""
    default_cache = ""

    def __init__(self, url: str, settings: dict):
        self.full_url = url  # what reports record
        self.url = target_name(url)  # what messages name
        self.python = settings.get("python", "python3")
        self.cache = settings.get("cache", self.default_cache)
        self.timeout = float(settings.get("timeout", 3600))
        self.wheels = Path(settings["wheels"]).expanduser() if settings.get("wheels") else None
        self.home_cache: str | None = None  # the cache's absolute path on the device, from the probe
        self.site: str | None = None  # where the wheels were unpacked there
        self.log = lambda line: None

    def __str__(self) -> str:
        return self.full_url

    # --- the tool -------------------------------------------------------------------------------

    def _run(self, argv: list[str], what: str, timeout: float | None = None, stdin: Path | None = None,
             keep_stdin: bool = False, stream=None) -> Result:
        """Run a local command (ssh, adb); an Error naming the target when it is missing or times out.
        ``stdin``: a file fed to it; ``keep_stdin``: a pipe left open until it ends, so that the remote
        side sees end-of-file when this process stops (the job then stops too); ``stream(line)``: each
        line of its stderr as it comes (the job's progress), besides keeping it."""
        import threading

        if shutil.which(argv[0]) is None:
            raise EdgewiseError(f"{self.url} needs `{argv[0]}` on this machine, which has none; {self.install_hint}")
        limit = timeout or STEP_TIMEOUT_S
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                (open(stdin, "rb") if stdin else open(os.devnull, "rb")) as feed:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE if keep_stdin else feed, stdout=out,
                                       stderr=subprocess.PIPE if stream else err)
            reader = None
            if stream is not None:
                def forward():
                    for raw in process.stderr:
                        err.write(raw)
                        stream(raw.decode(errors="replace").rstrip("\n"))

                reader = threading.Thread(target=forward, daemon=True)
                reader.start()
            try:
                process.wait(timeout=limit)
                if reader is not None:
                    reader.join(timeout=10)
            except subprocess.TimeoutExpired:
                raise EdgewiseError(
                    f"{self.url} gave no answer within {limit:g} s while {what}; check that the device is up and "
                    "reachable" + (" (a longer job: add ?timeout=SECONDS to the target)" if keep_stdin else "")
                ) from None
            finally:  # also on Ctrl-C: the local ssh / adb goes, and with it the remote command's input
                if process.poll() is None:
                    process.kill()
                    process.wait()
                if keep_stdin:
                    process.stdin.close()
            out.seek(0)
            err.seek(0)
            return Result(process.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))

    def shell(self, command: str, what: str, timeout: float | None = None, stdin: Path | None = None,
              keep_stdin: bool = False, stream=None) -> Result:
        """Run ``command`` in the device's shell; its own exit status, read from the line it prints last."""
        result = self._run(self._shell_argv(f"{command}; echo {RC_MARK}$?"), what, timeout, stdin, keep_stdin,
                           stream)
        output, mark, status = result.out.rpartition(RC_MARK)
        if not mark or not status.strip().isdigit():
            self._lost(result, what)  # the command never finished: no connection, or it dropped
            raise EdgewiseError(f"{self.url} did not finish {what} ({_last_line(result.err) or 'no message'}); check "
                                "the device, then run the command again")
        return Result(int(status.strip()), output.removesuffix("\n"), result.err)

    def python_run(self, script: str, args: list[str], what: str, pythonpath: list[str] = (),
                   timeout: float | None = None, keep_stdin: bool = False, stream=None) -> Result:
        """Run a Python snippet (or ``-m module`` when ``script`` starts with -m) with the device's Python,
        ``pythonpath`` before the device's own PYTHONPATH."""
        code = script.split() if script.startswith("-m ") else ["-c", script]
        command = " ".join([_remote_path(self.python), *(shlex.quote(part) for part in [*code, *args])])
        if pythonpath:
            command = f"PYTHONPATH={shlex.quote(':'.join(pythonpath))}${{PYTHONPATH:+:$PYTHONPATH}} {command}"
        return self.shell(command, what, timeout, keep_stdin=keep_stdin, stream=stream)

    def pull_text(self, remote: str, what: str) -> str:
        result = self.shell(f"cat {shlex.quote(remote)}", what)
        if result.code != 0:
            raise EdgewiseError(f"could not fetch {remote} from {self.url}: {_last_line(result.err)}")
        return result.out

    def _copy_timeout(self, local: Path) -> float:
        return STEP_TIMEOUT_S + COPY_S_PER_MB * local.stat().st_size / 2**20

    # --- the steps ------------------------------------------------------------------------------

    def probe(self) -> dict:
        """Python and the runtime's packages on the device (with ``?wheels=DIR``, installing them from those
        wheels when missing); an Error naming the fix when one is missing."""
        self.check_connection()
        facts = self._facts("connecting")  # ssh's first contact: its failure reads "cannot reach"
        self.home_cache = facts["cache"]
        if facts["missing"] and self.wheels is not None:
            self.site = self.install_wheels(self.wheels)
            facts = self._facts()
            if facts["missing"]:
                raise EdgewiseError(
                    f"the wheels in {self.wheels} did not give {', '.join(facts['missing'])} to Python "
                    f"{_version(facts)} on {self.url} ({facts['machine']}, {facts['libc'] or 'no glibc'}); download "
                    f"them for it: {_download_hint(facts)}"
                )
        if facts["missing"]:
            raise EdgewiseError(
                f"Python {_version(facts)} at {facts['executable']} on {self.url} lacks "
                f"{', '.join(facts['missing'])}, which edgewise's runtime needs: on the device run "
                f"`{facts['executable']} -m pip install \"edgewise[runtime]\"` (on a Jetson take onnxruntime-gpu "
                "from NVIDIA's Jetson index: see README.txt of `edgewise bundle --target jetson`), or copy wheels "
                f"along with {self._with('wheels', 'DIR')} after `{_download_hint(facts)}` here"
            )
        return facts

    def _facts(self, what: str = "checking its Python") -> dict:
        result = self.python_run(PROBE % (NEEDED, self.cache), [], what, pythonpath=[self.site] if self.site else [])
        if result.code in (126, 127) or (result.code != 0 and "not found" in result.err.lower()):
            raise EdgewiseError(
                f"{self.url} has no Python at {self.python!r} ({_last_line(result.err) or 'not found'}); install "
                f"Python >= {'.'.join(map(str, MIN_PYTHON))} there, or name the interpreter in the target: "
                f"{self._with('python', '/path/to/python3')}"
            )
        facts = _json_line(result, f"{self.python!r} on {self.url} did not run as Python", "name a Python >= 3.10 "
                           f"with {self._with('python', '/path/to/python3')}")
        if tuple(facts["python"][:2]) < MIN_PYTHON:
            raise EdgewiseError(
                f"{self.url} runs Python {_version(facts)} at {facts['executable']}; the runtime needs "
                f">= {'.'.join(map(str, MIN_PYTHON))}: install a newer one and name it with "
                f"{self._with('python', '/path/to/python3')}"
            )
        return facts

    def install_wheels(self, folder: Path) -> str:
        """The wheels in ``folder`` unpacked into the device's cache (a wheel is a zip of what goes on sys.path,
        so the device needs no pip and no network); the folder to put on PYTHONPATH there."""
        import hashlib

        wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
        if not wheels:
            raise EdgewiseError(f"?wheels={folder}: no .whl files there; download them for the device first, e.g. "
                                "pip download onnxruntime tokenizers numpy --no-deps --only-binary=:all: "
                                f"{platform_flags('aarch64', 'glibc 2.36')} --python-version 3.11 -d DIR")
        key = hashlib.sha256("\n".join(f"{w.name}:{w.stat().st_size}" for w in wheels).encode()).hexdigest()[:16]
        return self._install_once(f"{self.home_cache}/site/{key}", f"{len(wheels)} wheels from {folder}",
                                  lambda scratch: wheels)

    def install_runtime(self) -> str:
        """This host's edgewise package, copied to the device's cache once per version of its code; the
        folder to put on PYTHONPATH there."""
        import hashlib
        import tarfile

        package = Path(__file__).resolve().parents[1]  # the edgewise package this host runs
        files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
        digest = hashlib.sha256()
        for file in files:
            digest.update(str(file.relative_to(package)).encode() + b"\0" + file.read_bytes())
        def archive(scratch: Path) -> list[Path]:
            packed = scratch / "edgewise-runtime.tar.gz"
            with tarfile.open(packed, "w:gz") as tar:
                for file in files:
                    tar.add(file, arcname=str(Path("edgewise") / file.relative_to(package)))
            return [packed]

        return self._install_once(f"{self.home_cache}/runtime/{digest.hexdigest()[:16]}",
                                  f"this edgewise's code ({len(files)} files)", archive)

    def _install_once(self, remote: str, what: str, archives) -> str:
        """``archives(scratch)`` (the files to send, made only when needed) unpacked into ``remote`` on the
        device unless it is there already; ``remote``."""
        if self.shell(f"test -d {shlex.quote(remote)}", f"looking for {remote}").code == 0:
            return remote
        self.log(f"{self.url}: copying {what} to {remote}")
        staging = f"{remote}.upload-{os.getpid()}"
        self._mkdir(staging)
        with tempfile.TemporaryDirectory() as scratch:
            files = archives(Path(scratch))
            names = [f"{staging}/{f.name}" for f in files]
            for file, name in zip(files, names, strict=True):
                self.push(file, name)
        try:
            self._python_ok(UNPACK, [remote, *names], f"unpacking {what}")
        finally:
            self.shell(f"rm -rf {shlex.quote(staging)}", "removing the uploaded archives")
        return remote

    def sync(self, folder: Path) -> str:
        """``folder`` copied into the device's cache (only files whose sha256 differ, files the device built
        itself kept); its path there."""
        import hashlib
        import socket

        from edgewise.core.manifest import MANIFEST_NAME, hash_files, sha256_file
        from edgewise.runtime.base import read_manifest

        # Keyed by this host and folder: two hosts (CI runners) sharing a device never share a copy.
        key = hashlib.sha256(f"{socket.gethostname()}:{folder.resolve()}".encode()).hexdigest()[:8]
        remote = f"{self.home_cache}/models/{folder.name}-{key}"
        built_there = [str(f) for f in read_manifest(folder).get("expected_files") or []]
        # hash_files remembers what Artifact.load already hashed in this process: no second pass over the model.
        local = {name: d for name, d in hash_files(folder).items() if name not in built_there}
        if (folder / MANIFEST_NAME).is_file():
            local[MANIFEST_NAME] = sha256_file(folder / MANIFEST_NAME)
        there = _json_line(self._python_ok(HASHES, [remote, json.dumps(built_there)], f"listing {folder.name} there"),
                           f"listing {folder.name} on {self.url} gave no list", "check the device's Python")
        changed = [name for name, digest in local.items() if there.get(name) != digest]
        if set(there) - set(local):
            self._python_ok(PRUNE, [remote, json.dumps(sorted(local) + built_there)],
                            f"removing old files of {folder.name}")
        sizes = sum((folder / name).stat().st_size for name in changed)
        self.log(f"{self.url}: {folder.name}: {len(changed)} of {len(local)} files copied ({sizes / 2**20:.1f} MB)"
                 if changed else f"{self.url}: {folder.name}: already there ({len(local)} files unchanged)")
        for name in changed:
            self.push(folder / name, f"{remote}/{name}")
        return remote

    def run_job(self, folders: list[Path], job: dict, log=None) -> dict:
        """Run ``job`` (runtime.job) on the device with ``folders`` as its models, in order; its result.
        ``log(line)`` receives a line per step."""
        if log is not None:
            self.log = log
        started = time.perf_counter()
        facts = self.probe()
        self.log(f"{self.url}: Python {_version(facts)} at {facts['executable']}")
        code = self.install_runtime()
        job = {**job, "timeout_s": self.timeout, "stop_on_eof": True, "lock": f"{self.home_cache}/job.lock",
               "models": [{**m, "path": self.sync(folder)} for m, folder in zip(job["models"], folders, strict=True)]}
        work = f"{self.home_cache}/jobs/{os.getpid()}-{int(time.time() * 1000)}"
        self._mkdir(work)
        try:
            with tempfile.TemporaryDirectory() as scratch:
                job_file = Path(scratch) / "job.json"
                job_file.write_text(json.dumps(job))
                self.push(job_file, f"{work}/job.json")
                self.log(f"{self.url}: running the job ({len(job['models'])} model(s), {len(job['texts'])} texts)")
                result = self.python_run("-m edgewise.runtime", ["job", f"{work}/job.json", "--out",
                                                                 f"{work}/result.json"],
                                         "running the job", pythonpath=[code, *([self.site] if self.site else [])],
                                         timeout=self.timeout + JOB_GRACE_S, keep_stdin=True,
                                         stream=self._progress)
            if result.code != 0:
                raise EdgewiseError(_job_failure(self, result, job))
            text = self.pull_text(f"{work}/result.json", "fetching the result")
        finally:
            self._cleanup(work)
        try:
            fetched = json.loads(text)
        except ValueError:
            raise EdgewiseError(f"the result fetched from {self.url} is not JSON ({text[:80]!r}); run the command "
                                "again, and check the device's free space") from None
        self.log(f"{self.url}: done in {time.perf_counter() - started:.1f} s")
        return fetched

    # --- helpers --------------------------------------------------------------------------------

    def _python_ok(self, script: str, args: list[str], what: str) -> Result:
        result = self.python_run(script, args, what)
        if result.code != 0:
            raise EdgewiseError(f"{what} on {self.url} failed (exit {result.code}): {_last_line(result.err)}; check "
                                f"the free space and permissions of {self.cache} there (?cache=DIR)")
        return result

    def _mkdir(self, remote: str) -> None:
        result = self.shell(f"mkdir -p {shlex.quote(remote)}", f"creating {remote}")
        if result.code != 0:
            raise EdgewiseError(f"cannot create {remote} on {self.url}: {_last_line(result.err)}; choose a writable "
                                f"cache folder with {self._with('cache', '/a/writable/folder')}")

    def _cleanup(self, work: str) -> None:
        try:
            result = self.shell(f"rm -rf {shlex.quote(work)}", "removing the job's work folder")
        except EdgewiseError as e:  # the job's own error (or result) matters more than a failed cleanup
            self.log(f"{self.url}: could not remove {work} there: {e}")
            return
        if result.code != 0:
            self.log(f"{self.url}: could not remove {work} there: {_last_line(result.err)}")

    def _progress(self, line: str) -> None:
        """A line the job printed, shown as it comes; its `Error:` line is relayed once, as this run's error."""
        if line.strip() and not line.startswith("Error: "):
            self.log(f"{self.url}: {line}")

    def _with(self, key: str, value: str) -> str:
        return f"{self.url}?{key}={value}"

    def check_connection(self) -> None:
        """Anything to check before the first command (adb: the device is attached); ssh has nothing: its
        first command (the probe) says when the host cannot be reached."""

    def push(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def _lost(self, result: Result, what: str) -> None:
        raise NotImplementedError

    def _shell_argv(self, command: str) -> list[str]:
        raise NotImplementedError


class SshTarget(Target):
    """``ssh://[user@]host[:port]``, through the system's ssh."""

    install_hint = "install OpenSSH's client (apt install openssh-client)"
    default_cache = "~/.cache/edgewise"

    def __init__(self, url: str, settings: dict, user: str | None, host: str, port: int | None):
        super().__init__(url, settings)
        self.destination = f"{user}@{host}" if user else host
        self.host, self.port = host, port

    def _options(self) -> list[str]:
        extra = os.environ.get("EDGEWISE_SSH_OPTIONS", "")
        try:
            extra = shlex.split(extra)
        except ValueError as e:
            raise EdgewiseError(f"EDGEWISE_SSH_OPTIONS={extra!r} cannot be read ({e}); quote it as a shell would, "
                                "e.g. EDGEWISE_SSH_OPTIONS='-F ci_ssh_config'") from None
        return ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", *extra, *(["-p", str(self.port)] if self.port else [])]

    def _shell_argv(self, command: str) -> list[str]:
        # `--` ends ssh's options: nothing after it is read as one, whatever the destination holds.
        return ["ssh", *self._options(), "--", self.destination, command]

    def push(self, local: Path, remote: str) -> None:
        """``local`` streamed into ``remote`` (written to a temporary name, then renamed: never half a file)."""
        quoted, partial = shlex.quote(remote), shlex.quote(remote + ".partial")
        parent = shlex.quote(str(Path(remote).parent))
        result = self.shell(f"mkdir -p {parent} && cat > {partial} && mv -f {partial} {quoted}", f"copying "
                            f"{local.name}", timeout=self._copy_timeout(local), stdin=local)
        if result.code != 0:
            raise EdgewiseError(f"could not copy {local} to {self.url}:{remote}: {_last_line(result.err)}; check "
                                f"the free space and permissions of {self.cache} on the device (?cache=DIR)")

    def _lost(self, result: Result, what: str) -> None:
        line = _last_line(result.err) or "no message"
        port = f" -p {self.port}" if self.port else ""
        if what == "connecting":
            raise EdgewiseError(
                f"cannot reach {self.url}: {line}; check the host name and port, and that "
                f"`ssh{port} {self.destination} true` works here without a password prompt (a key: ssh-copy-id)"
            )
        raise EdgewiseError(f"lost the connection to {self.url} while {what}: {line}; check the device and the "
                            "network, then run the command again (copied files are kept and not sent again)")


class AdbTarget(Target):
    """``adb://SERIAL``: an Android device (or any adb-reachable board) through the system's adb."""

    install_hint = "install Android's platform tools (apt install adb, or the Android SDK's platform-tools)"
    default_cache = "/data/local/tmp/edgewise"

    def __init__(self, url: str, settings: dict, serial: str):
        super().__init__(url, settings)
        self.serial = serial

    def _shell_argv(self, command: str) -> list[str]:
        return ["adb", "-s", self.serial, "shell", command]

    def push(self, local: Path, remote: str) -> None:
        self._mkdir(str(Path(remote).parent))
        result = self._run(["adb", "-s", self.serial, "push", str(local), remote], f"copying {local.name}",
                           timeout=self._copy_timeout(local))
        if result.code != 0:
            raise EdgewiseError(f"could not copy {local} to {self.url}:{remote}: {_last_line(result.err)}; check "
                                f"the free space and permissions of {self.cache} on the device (?cache=DIR)")

    def check_connection(self) -> None:
        result = self._run(["adb", "-s", self.serial, "get-state"], "connecting")
        state = result.out.strip()
        if result.code != 0 or state != "device":
            listed = self._run(["adb", "devices"], "listing devices").out.strip().splitlines()[1:]
            attached = ", ".join(line.split()[0] for line in listed if line.strip()) or "none"
            reason = _last_line(result.err) or state or "not found"
            raise EdgewiseError(
                f"adb has no usable device {self.serial!r} ({reason}); attached: {attached}. Connect it with USB "
                "debugging on (and accept the prompt on the phone), or name one from `adb devices`"
            )

    def _lost(self, result: Result, what: str) -> None:
        raise EdgewiseError(f"lost {self.url} while {what}: {_last_line(result.err) or 'no message'}; reconnect the "
                            "device (adb devices should list it), then run the command again")


def parse_target(text: str | None) -> Target | None:
    """The Target ``text`` names, or None for ``local`` (and None / empty). Reads nothing, runs nothing."""
    if not text or text == "local":
        return None
    parts = urlsplit(text)
    raw = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(raw) - set(QUERY_KEYS))
    if unknown:
        raise EdgewiseError(f"target {text!r}: unknown setting(s) {', '.join(unknown)}; known: "
                            f"{', '.join(QUERY_KEYS)}")
    settings = {k: v[-1] for k, v in raw.items()}
    if "timeout" in settings:
        try:
            seconds = float(settings["timeout"])
        except ValueError:
            seconds = -1.0
        if not (math.isfinite(seconds) and seconds > 0):
            raise EdgewiseError(f"target {text!r}: timeout must be a number of seconds > 0, "
                                f"got {settings['timeout']!r}")
    if any(not settings.get(k, "x") for k in ("python", "cache", "wheels")):
        raise EdgewiseError(f"target {text!r}: python=, cache= and wheels= need a value")
    if parts.scheme == "ssh":
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port == -1 or parts.path not in ("", "/"):
            raise EdgewiseError(f"target {text!r} is not ssh://[user@]host[:port]; e.g. ssh://nvidia@jetson.local or "
                                "ssh://pi@192.168.1.20:2222")
        if port == 0:  # urllib takes :0; ssh would say "Bad port"
            raise EdgewiseError(f"target {text!r}: port must be 1..65535, got 0; write ssh://[user@]host[:port]")
        if parts.hostname.startswith("-") or (parts.username or "").startswith("-"):
            raise EdgewiseError(f"target {text!r}: a host or user name cannot start with '-' (ssh would read it as "
                                "an option); write the name of the device")
        return SshTarget(text, settings, parts.username, parts.hostname, port)
    if parts.scheme == "adb":
        serial = parts.netloc or parts.path.strip("/")
        if not serial or serial.startswith("-"):
            raise EdgewiseError(f"target {text!r} names no device; write adb://SERIAL with a serial from `adb devices`")
        return AdbTarget(text, settings, serial)
    raise EdgewiseError(f"unknown target {text!r}; use local, ssh://[user@]host[:port] or adb://SERIAL")


def target_name(text: str) -> str:
    """A target as messages name it: without its settings."""
    return text.split("?")[0]


def check_device_inputs(target: Target, artifacts, backends) -> None:
    """A device runs what the runtime runs (onnxruntime, TensorRT): refuse the rest before anything is copied."""
    from edgewise.runtime.runners import check_runs

    wrong = [f"{a.path} ({a.kind})" for a in artifacts if a.kind not in DEVICE_KINDS]
    if wrong:
        raise EdgewiseError(
            f"{target.url} runs the runtime (onnxruntime / TensorRT), not PyTorch; {', '.join(wrong)} cannot run "
            "there: export it (edgewise export) or bundle it (edgewise bundle) and pass that folder"
        )
    torch = [b for b in backends if b not in DEVICE_BACKENDS]
    if torch:
        raise EdgewiseError(f"backend(s) {', '.join(torch)} cannot run on {target.url}; choose from "
                            f"{', '.join(DEVICE_BACKENDS)}")
    for artifact in artifacts:  # a backend that can never run the kind (tensorrt on onnx) before copying anything
        for backend in backends:
            if backend != "auto":
                check_runs(backend, artifact.kind)


def _remote_path(path: str) -> str:
    """A path for the device's shell: quoted, with a leading ~/ left to the shell ($HOME)."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _json_line(result: Result, what: str, fix: str) -> dict:
    """The JSON a device-side snippet printed last; an Error (``what``; ``fix``) when there is none."""
    lines = [line for line in result.out.strip().splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (ValueError, IndexError):
        raise EdgewiseError(f"{what} (exit {result.code}: {_last_line(result.err or result.out) or 'no output'}); "
                            f"{fix}") from None


def _version(facts: dict) -> str:
    return ".".join(map(str, facts["python"]))


# The manylinux tags the runtime's wheels are built for (onnxruntime 1.32: 2_28; numpy 2.4: 2_27/2_28; tokenizers:
# 2014 = 2_17). pip's --platform takes exactly the tags named (manylinux_2_28 does not admit 2_17), so all are named.
MANYLINUX_GLIBC = (28, 27, 24, 17)


def platform_flags(machine: str, libc: str) -> str:
    """pip download's --platform flags for a Linux device with ``libc`` (e.g. "glibc 2.36")."""
    machine = {"arm64": "aarch64", "amd64": "x86_64"}.get(machine.lower(), machine)
    version = libc.split()[-1] if libc.startswith("glibc") else ""
    minor = int(version.split(".")[1]) if version.count(".") >= 1 and version.split(".")[1].isdigit() else None
    if minor is None:
        return f"--platform <the wheel tag of {machine} with this C library>"
    tags = [f"manylinux_2_{y}_{machine}" for y in MANYLINUX_GLIBC if y <= minor]
    tags += [f"manylinux2014_{machine}"] if minor >= 17 else []
    return " ".join(f"--platform {tag}" for tag in tags)


def _download_hint(facts: dict) -> str:
    """The pip command that fetches the runtime's wheels for the device the probe described (checked here for
    an aarch64 glibc 2.28+ device: onnxruntime 1.32.0, numpy 2.4.6 and tokenizers came down)."""
    major, minor = facts["python"][:2]
    return (f"pip download onnxruntime tokenizers numpy --no-deps --only-binary=:all: "
            f"{platform_flags(facts['machine'], facts.get('libc', ''))} --python-version {major}.{minor} -d DIR")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _job_failure(target: Target, result: Result, job: dict) -> str:
    """The device's own `Error:` line when the runtime raised one; a signal's name when the job was killed;
    else the end of what it printed."""
    errors = [line for line in result.err.splitlines() if line.startswith("Error: ")]
    if errors:
        return f"on {target.url}: {errors[-1].removeprefix('Error: ')}"
    tail = " | ".join(line.strip() for line in result.err.strip().splitlines()[-3:]) or "no message"
    first = job["models"][0]["path"]
    if result.code in SIGNALS:
        return (f"the job on {target.url} was {SIGNALS[result.code]} after: {tail}; on the device, try one model "
                f"with python -m edgewise.runtime bench {first} (fewer or smaller models, smaller batches)")
    return (f"the job failed on {target.url} (exit {result.code}): {tail}; run python -m edgewise.runtime bench "
            f"{first} on the device to see the problem there")
