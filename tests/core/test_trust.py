import json

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.trust import KEY_NAME, SEAL, TRUST_ENV, check_native_code, seal_native_code


def _code(folder):
    folder.mkdir()
    (folder / "model.pt2").write_bytes(b"compiled code")
    (folder / "qconfig.json").write_text("{}")
    return folder


def test_code_sealed_here_is_accepted_and_any_change_is_not(tmp_path):
    folder = _code(tmp_path / "inc")
    seal_native_code(folder, ("model.pt2", "qconfig.json", "quantized_weight.pt"))

    check_native_code(folder, ("model.pt2", "qconfig.json", "quantized_weight.pt"))
    (folder / "model.pt2").write_bytes(b"other code")
    with pytest.raises(EdgewiseError, match=f"no valid {SEAL}"):
        check_native_code(folder, ("model.pt2", "qconfig.json", "quantized_weight.pt"))


def test_a_seal_written_with_plain_hashes_or_another_key_is_refused(tmp_path, monkeypatch):
    folder = _code(tmp_path / "inc")
    seal_native_code(folder, ("model.pt2",))
    forged = json.loads((folder / SEAL).read_text())
    forged["hmac"] = forged["files"]["model.pt2"]
    (tmp_path / "forged").mkdir()
    for name in ("model.pt2", "qconfig.json"):
        (tmp_path / "forged" / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "forged" / SEAL).write_text(json.dumps(forged))

    with pytest.raises(EdgewiseError, match="did not make on this machine for this user"):
        check_native_code(tmp_path / "forged", ("model.pt2",))
    monkeypatch.setenv("EDGEWISE_CACHE", str(tmp_path / "other-user"))
    with pytest.raises(EdgewiseError, match=f"{TRUST_ENV}=1 if you trust whoever made it"):
        check_native_code(folder, ("model.pt2",))
    monkeypatch.setenv(TRUST_ENV, "1")
    check_native_code(folder, ("model.pt2",))


def test_the_key_is_private_to_its_user(tmp_path):
    import os
    import stat

    from edgewise.core.env import cache_dir

    seal_native_code(_code(tmp_path / "inc"), ("model.pt2",))

    mode = stat.S_IMODE(os.stat(cache_dir() / KEY_NAME).st_mode)
    assert mode == 0o600
