"""Which compiled code edgewise agrees to load: a local seal on the native code it compiled itself.

An `inc` artifact holds an AOTInductor package (model.pt2: a shared library that loading runs) and INC's
save (torch-serialised graph and weights). The manifest's hashes catch a damaged file, not a hostile one:
they are plain sha256, so whoever edits a folder can write matching ones. Native code is therefore loaded
only when this machine's edgewise sealed it: quantize writes ``native-code.seal``, an HMAC-SHA256 of those
files' hashes under a random key that never leaves this user's cache folder (``$EDGEWISE_CACHE/native-code.key``,
mode 0600). An artifact from elsewhere (another machine, another user, a download) is refused with the way
to accept it: ``EDGEWISE_TRUST_NATIVE_CODE=1`` for a source you trust as you would a Python package.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from pathlib import Path

from edgewise.core.errors import EdgewiseError

SEAL = "native-code.seal"
KEY_NAME = "native-code.key"
KEY_BYTES = 32
TRUST_ENV = "EDGEWISE_TRUST_NATIVE_CODE"


def _read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise EdgewiseError(f"{path} is not an edgewise key ({KEY_BYTES} bytes in hex); delete it (INC artifacts "
                            "sealed with it must then be re-created or trusted with "
                            f"{TRUST_ENV}=1)")
    return key


def native_code_key(create: bool = True) -> bytes | None:
    """This user's sealing key (made on first use when ``create``; None when there is none and not ``create``).
    An EdgewiseError when the cache folder cannot hold it."""
    from edgewise.core.env import cache_dir

    path = cache_dir() / KEY_NAME
    try:
        if path.is_file():
            return _read_key(path)
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: a second process sealing at the same
        # moment reads either no key or a complete one, and the first link wins.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES))
            os.chmod(temporary, 0o600)
            with contextlib.suppress(FileExistsError):  # another process linked its key first: use that one
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
        return _read_key(path)
    except OSError as e:
        raise EdgewiseError(f"cannot keep the key that seals compiled INC code in {path.parent} ({e.strerror or e}); "
                            "set EDGEWISE_CACHE to a writable folder") from None


def _digests(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    from edgewise.core.manifest import sha256_file

    return {name: sha256_file(folder / name) for name in names if (folder / name).is_file()}


def _mac(key: bytes, digests: dict[str, str]) -> str:
    return hmac.new(key, json.dumps(digests, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def seal_native_code(folder: Path, names: tuple[str, ...]) -> None:
    """Seal the files ``names`` of ``folder`` (those present) as compiled here, by this user."""
    digests = _digests(folder, names)
    (folder / SEAL).write_text(json.dumps({"files": digests, "hmac": _mac(native_code_key(), digests)},
                                          indent=2) + "\n")


def check_native_code(folder: Path, names: tuple[str, ...]) -> None:
    """Refuse to load the native code in ``folder`` unless this user's edgewise sealed exactly these files
    here, or the user said to trust it (EDGEWISE_TRUST_NATIVE_CODE=1)."""
    if os.environ.get(TRUST_ENV, "").lower() in ("1", "true", "yes"):
        return
    digests = _digests(folder, names)
    code = ", ".join(digests) or "none found"
    fix = (f"re-create it here with edgewise quantize --method inc, or set {TRUST_ENV}=1 if you trust whoever "
           "made it as you would a Python package")
    if not (folder / SEAL).is_file():
        raise EdgewiseError(f"{folder} holds compiled code ({code}) without the {SEAL} edgewise writes beside code "
                            f"it compiled (made elsewhere, or before edgewise sealed it), and loading it runs that "
                            f"code; {fix}")
    key = native_code_key(create=False)
    try:
        seal = json.loads((folder / SEAL).read_text())
        sealed = key is not None and seal["files"] == digests and hmac.compare_digest(str(seal["hmac"]),
                                                                                       _mac(key, digests))
    except (OSError, ValueError, KeyError, TypeError):
        sealed = False
    if not sealed:
        raise EdgewiseError(f"{folder} holds compiled code ({code}) that edgewise did not make on this machine for "
                            f"this user (its {SEAL} does not match this user's key), and loading it runs that "
                            f"code; {fix}")
