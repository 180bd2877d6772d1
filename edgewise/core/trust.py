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

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from edgewise.core.errors import EdgewiseError

SEAL = "native-code.seal"
KEY_NAME = "native-code.key"
TRUST_ENV = "EDGEWISE_TRUST_NATIVE_CODE"


def _key() -> bytes:
    from edgewise.core.env import cache_dir

    path = cache_dir() / KEY_NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes sealing at once keep one key
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _digests(folder: Path, names: tuple[str, ...]) -> dict[str, str]:
    from edgewise.core.manifest import sha256_file

    return {name: sha256_file(folder / name) for name in names if (folder / name).is_file()}


def _mac(digests: dict[str, str]) -> str:
    return hmac.new(_key(), json.dumps(digests, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def seal_native_code(folder: Path, names: tuple[str, ...]) -> None:
    """Seal the files ``names`` of ``folder`` (those present) as compiled here, by this user."""
    digests = _digests(folder, names)
    (folder / SEAL).write_text(json.dumps({"files": digests, "hmac": _mac(digests)}, indent=2) + "\n")


def check_native_code(folder: Path, names: tuple[str, ...]) -> None:
    """Refuse to load the native code in ``folder`` unless this user's edgewise sealed exactly these files
    here, or the user said to trust it (EDGEWISE_TRUST_NATIVE_CODE=1)."""
    if os.environ.get(TRUST_ENV, "").lower() in ("1", "true", "yes"):
        return
    digests = _digests(folder, names)
    try:
        seal = json.loads((folder / SEAL).read_text())
        sealed = seal["files"] == digests and hmac.compare_digest(str(seal["hmac"]), _mac(digests))
    except (OSError, ValueError, KeyError, TypeError):
        sealed = False
    if not sealed:
        raise EdgewiseError(
            f"{folder} holds compiled code ({', '.join(digests) or 'none found'}) that edgewise did not make on "
            f"this machine for this user (no valid {SEAL}), and loading it runs that code; re-create it here with "
            f"edgewise quantize --method inc, or set {TRUST_ENV}=1 if you trust whoever made it as you would a "
            "Python package"
        )
