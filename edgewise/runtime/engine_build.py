"""`python -m edgewise.runtime build-engine BUNDLE`: the TensorRT engine of a jetson bundle, built on the
device with trtexec, then timed on the `tensorrt` backend.

The command is the bundle's build_engine.sh (both come from runtime.tensorrt.trtexec_args with the
profile and precision its edgewise.json records), run from Python so that precision can be changed
per flag and the engine timed at once. model.engine and timing.cache are written into the bundle:
its edgewise.json expects them there (they are not hashed), the `tensorrt` backend loads them from
there, and an engine belongs to the device the bundle was copied to, as the folder does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.runtime.base import read_manifest, verify_folder
from edgewise.runtime.bench import row_line
from edgewise.runtime.tensorrt import ENGINE, TRTEXEC_DEFAULT, trtexec_args


def find_trtexec(given: str | None = None) -> Path:
    """``given``, else $TRTEXEC, else trtexec on PATH, else JetPack's /usr/src/tensorrt/bin/trtexec: the order
    build_engine.sh (runtime.tensorrt.build_script) looks in, so both build with the same binary."""
    given = given or os.environ.get("TRTEXEC")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise EdgewiseError(f"trtexec {path} (--trtexec or $TRTEXEC) does not exist; pass the path of the "
                                f"trtexec binary (JetPack puts it at {TRTEXEC_DEFAULT})")
        return path
    found = shutil.which("trtexec")
    if found:
        return Path(found)
    if Path(TRTEXEC_DEFAULT).is_file():
        return Path(TRTEXEC_DEFAULT)
    raise EdgewiseError(
        f"trtexec was found neither on PATH nor at {TRTEXEC_DEFAULT}; install TensorRT (on a Jetson it comes with "
        "JetPack: sudo apt install nvidia-jetpack) or pass --trtexec PATH"
    )


def build_settings(folder: Path) -> dict:
    """The TensorRT build settings a jetson bundle's edgewise.json records (metrics.tensorrt)."""
    manifest = read_manifest(folder)
    settings = (manifest.get("metrics") or {}).get("tensorrt") or {}
    target = (((manifest.get("config") or {}).get("values")) or {}).get("target")
    if manifest.get("kind") != "bundle" or target != "jetson" or not settings.get("seq"):
        what = f"a {manifest.get('kind')!r} artifact" if manifest.get("kind") else "no edgewise folder"
        if manifest.get("kind") == "bundle":
            what = f"a bundle for target {target or 'generic'}"
        raise EdgewiseError(
            f"{folder} is {what}, not a jetson bundle, so it records no TensorRT build settings; make one with "
            "edgewise bundle SRC -o DST --target jetson (a tensorrt artifact from edgewise export builds with bash "
            "build_engine.sh)"
        )
    return settings


def build(folder: Path, *, fp16: bool | None = None, int8: bool | None = None, trtexec: str | None = None,
          verify: bool = True) -> dict:
    """Build ``folder``/model.engine with trtexec as the bundle records it (``fp16`` / ``int8`` override its
    precision); returns the command, the engine's size and the build time.

    Example:
        >>> build(Path("deploy/jetson"))["size_bytes"]  # doctest: +SKIP
        9437184
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise EdgewiseError(f"{folder} is not a folder; pass a jetson bundle (edgewise bundle --target jetson)")
    settings = build_settings(folder)
    if verify:
        verify_folder(folder)  # the engine must come from the model the bundle checked
    binary = find_trtexec(trtexec)
    command = trtexec_args(settings["inputs"], tuple(settings["batch"]), tuple(settings["seq"]),
                           workspace_mb=settings["workspace_mb"],
                           fp16=settings["fp16"] if fp16 is None else fp16,
                           int8=settings["int8"] if int8 is None else int8)
    command[0] = str(binary)
    engine = folder / ENGINE
    engine.unlink(missing_ok=True)  # an engine of other settings must not survive a failed build
    # A fresh file of our own (mkstemp: O_EXCL, 0600), not a fixed name another user could have linked elsewhere.
    descriptor, name = tempfile.mkstemp(prefix=f"edgewise-trtexec-{folder.name}-", suffix=".log")
    log = Path(name)
    started = time.perf_counter()
    try:
        with open(descriptor, "w") as handle:
            result = subprocess.run(command, cwd=folder, stdout=handle, stderr=subprocess.STDOUT, check=False)
    except OSError as e:
        raise EdgewiseError(f"cannot run {binary} ({e.strerror}); pass a working trtexec with --trtexec PATH") from None
    seconds = time.perf_counter() - started
    if result.returncode != 0 or not engine.is_file():
        engine.unlink(missing_ok=True)
        raise EdgewiseError(
            f"trtexec failed to build {engine} (exit code {result.returncode}; {_last_error(log)}); its whole log is "
            f"in {log}; check the TensorRT version parses this model (JetPack 6's TensorRT 10 takes opset 17)"
        )
    return {"command": command, "engine": str(engine), "size_bytes": engine.stat().st_size, "seconds": seconds,
            "log": str(log)}


def _last_error(log: Path) -> str:
    """The last line of trtexec's log that reports an error, else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fail" in line.lower()]
    return ((errors or lines or ["no output"])[-1])[:300]


def bench_engine(folder: Path, *, batch_sizes=(1,), verify: bool = True) -> dict:
    """The runtime's bench of ``folder``'s engine on the `tensorrt` backend; an EdgewiseError naming what to
    install when the tensorrt module (or torch, or a GPU) is missing here (runtime.tensorrt.probe's reason)."""
    from edgewise.runtime.base import Unavailable
    from edgewise.runtime.bench import bench

    try:
        return bench(folder, backend="tensorrt", batch_sizes=batch_sizes, verify=verify)
    except Unavailable as e:
        raise EdgewiseError(f"the engine is built, but it cannot be timed here: {e}; then run python -m "
                            f"edgewise.runtime bench {folder} --backend tensorrt") from None


def run(args) -> int:
    """The build-engine subcommand: build, say so, then time the engine (unless --no-bench)."""
    built = build(args.bundle, fp16=args.fp16, int8=args.int8, trtexec=args.trtexec, verify=args.verify)
    precision = ", ".join(flag for flag in ("--fp16", "--int8") if flag in built["command"]) or "FP32"
    print(f"built {built['engine']} ({built['size_bytes'] / 2**20:.1f} MiB, {precision}) in {built['seconds']:.0f} s "
          f"with {built['command'][0]}")
    if not args.bench:
        return 0
    # The bundle was verified before the build, and the engine is not hashed: no second verification.
    report = bench_engine(Path(args.bundle).expanduser().resolve(), batch_sizes=args.batch_sizes, verify=False)
    for row in report["results"]:
        print(row_line(row))
    return 0
