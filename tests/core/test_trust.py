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
    with pytest.raises(EdgewiseError, match="does not match this user's key"):
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


def test_an_unwritable_cache_or_a_damaged_key_is_one_clear_error(tmp_path, monkeypatch):
    from edgewise.core.trust import native_code_key

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("EDGEWISE_CACHE", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(EdgewiseError, match="set EDGEWISE_CACHE to a writable folder"):
        native_code_key()

    monkeypatch.setenv("EDGEWISE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / KEY_NAME).write_text("")  # e.g. cut off by a full disk
    with pytest.raises(EdgewiseError, match="is not an edgewise key"):
        native_code_key()


def test_checking_never_makes_a_key_and_an_unsealed_folder_says_so(tmp_path, monkeypatch):
    from edgewise.core.env import cache_dir

    monkeypatch.setenv("EDGEWISE_CACHE", str(tmp_path / "fresh-user"))
    folder = _code(tmp_path / "inc")

    with pytest.raises(EdgewiseError, match=f"without the {SEAL} edgewise writes"):
        check_native_code(folder, ("model.pt2",))
    (folder / SEAL).write_text(json.dumps({"files": {}, "hmac": "0"}))
    with pytest.raises(EdgewiseError, match="does not match this user's key"):
        check_native_code(folder, ("model.pt2",))
    assert not (cache_dir() / KEY_NAME).exists()


def test_processes_sealing_at_once_share_one_complete_key(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from edgewise.core.trust import native_code_key

    monkeypatch.setenv("EDGEWISE_CACHE", str(tmp_path / "cache"))
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: native_code_key(), range(32)))

    assert len(keys) == 1 and len(next(iter(keys))) == 32
