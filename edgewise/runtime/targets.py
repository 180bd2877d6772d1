"""Device targets of `edgewise bench` and `edgewise evaluate`: ``local``, ``ssh://[user@]host[:port]``
and ``adb://SERIAL``.

The system's own ``ssh`` / ``scp`` and ``adb`` do the work, so ~/.ssh/config, keys, agents and ProxyJump
behave as in a terminal; edgewise never asks for or handles a password (ssh runs in BatchMode). A run:

1. checks the device: Python there (>= 3.10) with onnxruntime, tokenizers and numpy importable;
2. copies this host's edgewise package (pure Python, so the device runs exactly the code that wrote the
   job) and each model folder into a cache on the device, skipping files it already holds (sha256);
3. runs ``python -m edgewise.runtime job`` on a job file holding the texts (runtime.job) in a fresh work
   folder, then fetches the result and removes that folder (the cache stays: the next run copies only
   what changed).

Settings in the target's query string: ``python=PATH`` (default python3), ``cache=DIR`` (default
~/.cache/edgewise on ssh, /data/local/tmp/edgewise on adb), ``timeout=SECONDS`` (the job's limit,
default 3600), ``wheels=DIR`` (a folder of wheels on this machine, for a device whose Python lacks
onnxruntime / tokenizers / numpy: unpacked into the cache there, no pip or network needed on the device;
edgewise itself downloads nothing). ``EDGEWISE_SSH_OPTIONS`` adds options to every ssh and scp call
(e.g. ``-F ci_ssh_config``).

Nothing here imports onnxruntime: the host only drives the device.
"""

from __future__ import annotations

import json
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

SCHEMES = ("local", "ssh://", "adb://")
QUERY_KEYS = ("python", "cache", "timeout", "wheels")
MIN_PYTHON = (3, 10)
NEEDED = ("onnxruntime", "tokenizers", "numpy")
STEP_TIMEOUT_S = 120  # checks, copies, cleanup: anything but the job itself
CONNECT_TIMEOUT_S = 10
JOB_GRACE_S = 30  # the device stops its job at the timeout; the host waits this much longer for its answer

# Run on the device with its own Python, before any edgewise code is there: what it has.
PROBE = """
import importlib.util, json, os, platform, sys
print(json.dumps({"python": list(sys.version_info[:3]), "executable": sys.executable,
                  "machine": platform.machine(), "libc": " ".join(platform.libc_ver()).strip(),
                  "missing": [m for m in %r if importlib.util.find_spec(m) is None],
                  "cache": os.path.abspath(os.path.expanduser(%r))}))
"""
# The sha256 of every file under a folder on the device, by relative path ({} when the folder is absent).
HASHES = """
import hashlib, json, os, sys
root, out = sys.argv[1], {}
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[os.path.relpath(path, root)] = digest.hexdigest()
print(json.dumps(out))
"""
UNZIP = """
import os, sys, zipfile
site = sys.argv[1]
for name in sys.argv[2:]:
    with zipfile.ZipFile(os.path.join(site, name)) as wheel:
        wheel.extractall(site)
    os.remove(os.path.join(site, name))
open(os.path.join(site, "COMPLETE"), "w").close()
"""
UNPACK = """
import os, sys, tarfile
archive, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
with tarfile.open(archive) as tar:
    tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
os.remove(archive)
open(os.path.join(dest, "COMPLETE"), "w").close()
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


@dataclass
class Result:
    code: int
    out: str
    err: str


class Target:
    """A device reached through a command-line tool. Subclasses define ``_shell_argv``, ``_push_argv``,
    ``_pull_argv``, ``check_connection`` and ``_connection_failed``."""

    tool = ""
    install_hint = ""
    default_cache = ""

    def __init__(self, url: str, settings: dict):
        self.full_url = url  # what reports record
        self.url = url.split("?")[0]  # what messages name
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

    def _call(self, argv: list[str], what: str, timeout: float | None = None) -> Result:
        if shutil.which(argv[0]) is None:
            raise EdgewiseError(f"{self.url} needs `{argv[0]}` on this machine, which has none; {self.install_hint}")
        limit = timeout or STEP_TIMEOUT_S
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise EdgewiseError(
                f"{self.url} gave no answer within {limit:g} s while {what}; check that the device is up and "
                "reachable" + (" (a longer job: add ?timeout=SECONDS to the target)" if timeout else "")
            ) from None
        result = Result(done.returncode, done.stdout, done.stderr)
        self._connection_failed(result, what)
        return result

    def shell(self, command: str, what: str, timeout: float | None = None) -> Result:
        """Run ``command`` in the device's shell."""
        return self._call(self._shell_argv(command), what, timeout)

    def python_run(self, script: str, args: list[str], what: str, env: dict | None = None,
                   timeout: float | None = None) -> Result:
        """Run a Python snippet (or ``-m module`` when ``script`` starts with -m) with the device's Python."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        code = script.split() if script.startswith("-m ") else ["-c", script]
        command = " ".join(shlex.quote(part) for part in [self.python, *code, *args])
        return self.shell(f"{prefix} {command}".strip(), what, timeout)

    def push(self, local: Path, remote: str) -> None:
        result = self._call(self._push_argv(local, remote), f"copying {local.name}")
        if result.code != 0:
            raise EdgewiseError(f"could not copy {local} to {self.url}:{remote}: {_last_line(result.err)}; check "
                                f"the free space and permissions of {self.cache} on the device (?cache=DIR)")

    def pull(self, remote: str, local: Path) -> None:
        result = self._call(self._pull_argv(remote, local), "fetching the result")
        if result.code != 0 or not local.is_file():
            raise EdgewiseError(f"could not fetch {remote} from {self.url}: {_last_line(result.err)}")

    # --- the steps ------------------------------------------------------------------------------

    def probe(self) -> dict:
        """Python and the runtime's packages on the device (with ``?wheels=DIR``, installing them from those
        wheels when missing); an Error naming the fix when one is missing."""
        self.check_connection()
        facts = self._facts()
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

    def _facts(self) -> dict:
        result = self.python_run(PROBE % (NEEDED, self.cache), [], "checking its Python",
                                 env={"PYTHONPATH": self.site} if self.site else None)
        if result.code in (126, 127) or (result.code != 0 and "not found" in result.err.lower()):
            raise EdgewiseError(
                f"{self.url} has no Python at {self.python!r} ({_last_line(result.err) or 'not found'}); install "
                f"Python >= {'.'.join(map(str, MIN_PYTHON))} there, or name the interpreter in the target: "
                f"{self._with('python', '/path/to/python3')}"
            )
        try:
            facts = json.loads(result.out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise EdgewiseError(f"{self.python!r} on {self.url} did not run as Python (exit {result.code}: "
                                f"{_last_line(result.err or result.out)}); name a Python >= 3.10 with "
                                f"{self._with('python', '/path/to/python3')}") from None
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

        wheels = sorted(folder.glob("*.whl"))
        if not folder.is_dir() or not wheels:
            raise EdgewiseError(f"?wheels={folder}: no .whl files there; download them for the device first, e.g. "
                                "pip download onnxruntime tokenizers numpy --only-binary=:all: --platform "
                                "manylinux2014_aarch64 --python-version 3.11 -d DIR")
        key = hashlib.sha256("\n".join(f"{w.name}:{w.stat().st_size}" for w in wheels).encode()).hexdigest()[:16]
        site = f"{self.home_cache}/site/{key}"
        if self.shell(f"test -f {shlex.quote(site + '/COMPLETE')}", "checking its wheels").code == 0:
            return site
        self.log(f"{self.url}: unpacking {len(wheels)} wheels from {folder} into {site}")
        self._mkdir(site)
        for wheel in wheels:
            self.push(wheel, f"{site}/{wheel.name}")
        self._python_ok(UNZIP, [site, *[w.name for w in wheels]], "unpacking the wheels")
        return site

    def install_runtime(self) -> str:
        """This host's edgewise package, copied to the device's cache once per version of its code; the
        folder to put on PYTHONPATH there."""
        import hashlib

        package = Path(__file__).resolve().parents[1]  # the edgewise package this host runs
        files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
        digest = hashlib.sha256()
        for file in files:
            digest.update(str(file.relative_to(package)).encode() + b"\0" + file.read_bytes())
        remote = f"{self.home_cache}/runtime/{digest.hexdigest()[:16]}"
        if self.shell(f"test -f {shlex.quote(remote + '/COMPLETE')}", "checking its edgewise copy").code == 0:
            return remote
        self.log(f"{self.url}: copying this edgewise's code ({len(files)} files) to {remote}")
        import tarfile

        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "edgewise-runtime.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for file in files:
                    tar.add(file, arcname=str(Path("edgewise") / file.relative_to(package)))
            self._mkdir(remote)
            self.push(archive, f"{remote}/{archive.name}")
        self._python_ok(UNPACK, [f"{remote}/edgewise-runtime.tar.gz", remote], "unpacking edgewise")
        return remote

    def sync(self, folder: Path) -> str:
        """``folder`` copied into the device's cache (only files whose sha256 differ); its path there."""
        import hashlib

        from edgewise.core.manifest import sha256_file

        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
        remote = f"{self.home_cache}/models/{folder.name}-{key}"
        local = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
        there = json.loads(self._python_ok(HASHES, [remote], f"listing {folder.name} there").out.strip() or "{}")
        changed = [name for name, digest in local.items() if there.get(name) != digest]
        if set(there) - set(local):
            self._python_ok(PRUNE, [remote, json.dumps(sorted(local))], f"removing old files of {folder.name}")
        for parent in sorted({str(Path(remote, name).parent) for name in changed}):
            self._mkdir(parent)
        sizes = sum((folder / name).stat().st_size for name in changed)
        self.log(f"{self.url}: {folder.name}: {len(changed)} of {len(local)} files copied ({sizes / 2**20:.1f} MB)"
                 if changed else f"{self.url}: {folder.name}: already there ({len(local)} files unchanged)")
        for name in changed:
            self.push(folder / name, f"{remote}/{name}")
        return remote

    def run_job(self, folders: list[Path], job: dict) -> dict:
        """Run ``job`` (runtime.job) on the device with ``folders`` as its models, in order; its result."""
        started = time.perf_counter()
        facts = self.probe()
        self.log(f"{self.url}: Python {'.'.join(map(str, facts['python']))} at {facts['executable']}")
        code = self.install_runtime()
        job = {**job, "timeout_s": self.timeout, "models": [{**m, "path": self.sync(folder)}
                                                            for m, folder in zip(job["models"], folders, strict=True)]}
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
                                         "running the job", timeout=self.timeout + JOB_GRACE_S,
                                         env={"PYTHONPATH": ":".join(filter(None, [code, self.site]))})
                if result.code != 0:
                    raise EdgewiseError(_job_failure(self.url, result))
                self.pull(f"{work}/result.json", Path(scratch) / "result.json")
                fetched = json.loads((Path(scratch) / "result.json").read_text())
        finally:
            self._cleanup(work)
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

    def _with(self, key: str, value: str) -> str:
        return f"{self.url}?{key}={value}"

    def check_connection(self) -> None:
        raise NotImplementedError

    def _connection_failed(self, result: Result, what: str) -> None:
        raise NotImplementedError

    def _shell_argv(self, command: str) -> list[str]:
        raise NotImplementedError

    def _push_argv(self, local: Path, remote: str) -> list[str]:
        raise NotImplementedError

    def _pull_argv(self, remote: str, local: Path) -> list[str]:
        raise NotImplementedError


class SshTarget(Target):
    """``ssh://[user@]host[:port]``, through the system's ssh and scp."""

    tool = "ssh"
    install_hint = "install OpenSSH's client (apt install openssh-client)"
    default_cache = "~/.cache/edgewise"

    def __init__(self, url: str, settings: dict, user: str | None, host: str, port: int | None):
        super().__init__(url, settings)
        self.destination = f"{user}@{host}" if user else host
        self.host, self.port = host, port
        self.options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                        "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                        *shlex.split(os.environ.get("EDGEWISE_SSH_OPTIONS", ""))]

    def _shell_argv(self, command: str) -> list[str]:
        return ["ssh", *self.options, *(["-p", str(self.port)] if self.port else []), self.destination, "--", command]

    def _scp(self, remote: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.destination.rsplit('@', 1)[0]}@{host}:{remote}" if "@" in self.destination else \
            f"{host}:{remote}"

    def _push_argv(self, local: Path, remote: str) -> list[str]:
        return ["scp", "-q", *self.options, *(["-P", str(self.port)] if self.port else []), str(local),
                self._scp(remote)]

    def _pull_argv(self, remote: str, local: Path) -> list[str]:
        return ["scp", "-q", *self.options, *(["-P", str(self.port)] if self.port else []), self._scp(remote),
                str(local)]

    def check_connection(self) -> None:
        self.shell("true", "connecting")

    def _connection_failed(self, result: Result, what: str) -> None:
        # ssh and scp exit 255 when the connection fails or drops; the remote command's own codes pass through.
        if result.code != 255:
            return
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

    tool = "adb"
    install_hint = "install Android's platform tools (apt install adb, or the Android SDK's platform-tools)"
    default_cache = "/data/local/tmp/edgewise"

    def __init__(self, url: str, settings: dict, serial: str):
        super().__init__(url, settings)
        self.serial = serial

    def _shell_argv(self, command: str) -> list[str]:
        return ["adb", "-s", self.serial, "shell", command]

    def _push_argv(self, local: Path, remote: str) -> list[str]:
        return ["adb", "-s", self.serial, "push", str(local), remote]

    def _pull_argv(self, remote: str, local: Path) -> list[str]:
        return ["adb", "-s", self.serial, "pull", remote, str(local)]

    def check_connection(self) -> None:
        result = self._call(["adb", "-s", self.serial, "get-state"], "connecting")
        state = result.out.strip()
        if result.code != 0 or state != "device":
            listed = self._call(["adb", "devices"], "listing devices").out.strip().splitlines()[1:]
            attached = ", ".join(line.split()[0] for line in listed if line.strip()) or "none"
            reason = _last_line(result.err) or state or "not found"
            raise EdgewiseError(
                f"adb has no usable device {self.serial!r} ({reason}); attached: {attached}. Connect it with USB "
                "debugging on (and accept the prompt on the phone), or name one from `adb devices`"
            )

    def _connection_failed(self, result: Result, what: str) -> None:
        if what != "connecting" and result.code != 0 and ("device offline" in result.err
                                                          or "no devices" in result.err
                                                          or f"device '{self.serial}' not found" in result.err):
            raise EdgewiseError(f"lost {self.url} while {what}: {_last_line(result.err)}; reconnect the device, then "
                                "run the command again")


def parse_target(text: str | None) -> Target | None:
    """The Target ``text`` names, or None for ``local`` (and None / empty)."""
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
            if float(settings["timeout"]) <= 0:
                raise ValueError
        except ValueError:
            raise EdgewiseError(f"target {text!r}: timeout must be a number of seconds > 0, "
                                f"got {settings['timeout']!r}") from None
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
        return SshTarget(text, settings, parts.username, parts.hostname, port)
    if parts.scheme == "adb":
        serial = parts.netloc or parts.path.strip("/")
        if not serial:
            raise EdgewiseError(f"target {text!r} names no device; write adb://SERIAL with a serial from `adb devices`")
        return AdbTarget(text, settings, serial)
    raise EdgewiseError(f"unknown target {text!r}; use local, ssh://[user@]host[:port] or adb://SERIAL")


DEVICE_KINDS = ("onnx", "ort", "bundle", "tensorrt")
DEVICE_BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt")


def check_device_inputs(target: Target, artifacts, backends) -> None:
    """A device runs what the runtime runs (onnxruntime, TensorRT): refuse the rest before anything is copied."""
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


def _version(facts: dict) -> str:
    return ".".join(map(str, facts["python"]))


def _download_hint(facts: dict) -> str:
    """The pip command that fetches the runtime's wheels for the device the probe described."""
    machine = {"arm64": "aarch64", "amd64": "x86_64"}.get(facts["machine"].lower(), facts["machine"])
    glibc = facts.get("libc", "").startswith("glibc")
    platform = f"manylinux2014_{machine}" if glibc else f"<the wheel tag of {machine}>"
    major, minor = facts["python"][:2]
    return (f"pip download onnxruntime tokenizers numpy --only-binary=:all: --platform {platform} "
            f"--python-version {major}.{minor} -d DIR")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _job_failure(url: str, result: Result) -> str:
    """The device's own `Error:` line when the runtime raised one, else the end of what it printed."""
    errors = [line for line in result.err.splitlines() if line.startswith("Error: ")]
    if errors:
        return f"on {url}: {errors[-1].removeprefix('Error: ')}"
    tail = " | ".join(line.strip() for line in result.err.strip().splitlines()[-3:])
    return (f"the job failed on {url} (exit {result.code}): {tail or 'no message'}; rerun with --debug, or run "
            "`python -m edgewise.runtime bench BUNDLE` on the device to see the problem there")
