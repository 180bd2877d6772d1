"""Stand-in devices for the target tests and benchmarks/cpu_bench_targets_minilm.py: a real OpenSSH server on
127.0.0.1 (throwaway host key, one authorized key) and a fake `adb` whose "device" is this machine."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")

FAKE_ADB = '''#!{python}
"""A stand-in for adb: the "device" is this machine; serials come from FAKE_ADB_DEVICES."""
import os, shutil, subprocess, sys

args = sys.argv[1:]
devices = [d for d in os.environ.get("FAKE_ADB_DEVICES", "").split(",") if d]
if args[:1] == ["devices"]:
    print("List of devices attached")
    for d in devices:
        print(f"{{d}}\\tdevice")
    sys.exit(0)
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
if serial not in devices:
    print(f"adb: device '{{serial}}' not found", file=sys.stderr)
    sys.exit(1)
old = bool(os.environ.get("FAKE_ADB_OLD"))  # adb without the shell protocol: exit 0, stderr into stdout
if args == ["get-state"]:
    print("device")
elif args[0] == "shell":
    done = subprocess.run(["sh", "-c", " ".join(args[1:])], stderr=subprocess.STDOUT if old else None)
    sys.exit(0 if old else done.returncode)
elif args[0] in ("push", "pull"):
    shutil.copyfile(args[1], args[2])
    print(f"{{args[1]}}: 1 file pushed")
else:
    print(f"fake adb: unknown command {{args}}", file=sys.stderr)
    sys.exit(1)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_missing() -> str | None:
    """Why a loopback sshd cannot be started here, or None."""
    if not SSHD.is_file():
        return "needs openssh-server (apt install openssh-server)"
    missing = [tool for tool in ("ssh", "scp", "ssh-keygen") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)} (apt install openssh-client)" if missing else None


class LoopbackSshd:
    """An sshd on 127.0.0.1 for this user; ``options`` are the ssh/scp options that reach it
    (EDGEWISE_SSH_OPTIONS), ``url`` the target. Raises RuntimeError when it does not start."""

    def __init__(self, home: Path):
        self.home, self.port = home, free_port()
        self.url = f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}"
        self.options = f"-F {home}/ssh_config"

    def __enter__(self) -> LoopbackSshd:
        home = self.home
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / key)], check=True)
        shutil.copy(home / "client_key.pub", home / "authorized_keys")
        (home / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {home}/host_key\n"
            f"AuthorizedKeysFile {home}/authorized_keys\nPidFile {home}/sshd.pid\nUsePAM no\nStrictModes no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "LogLevel ERROR\nSubsystem sftp internal-sftp\n"
        )
        (home / "ssh_config").write_text(
            f"Host *\n  IdentityFile {home}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {home}/known_hosts\n"
            "  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        self.server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(home / "sshd_config")],
                                       stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.server.poll() is None:
            ping = subprocess.run(["ssh", *self.options.split(), "-o", "BatchMode=yes", "-p", str(self.port),
                                   f"{getpass.getuser()}@127.0.0.1", "true"], capture_output=True)
            if ping.returncode == 0:
                return self
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"sshd on port {self.port} did not start: {self.server.stderr.read().strip()[:300]}")

    def __exit__(self, *exc) -> None:
        if self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=10)


def install_fake_adb(folder: Path) -> Path:
    """Write the fake `adb` into ``folder`` (put it first on PATH; FAKE_ADB_DEVICES lists its serials)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adb").write_text(FAKE_ADB.format(python=sys.executable))
    (folder / "adb").chmod(0o755)
    return folder / "adb"
