import pytest

from edgewise.core.deps import dist_version, require
from edgewise.core.errors import EdgewiseError


def test_require_names_the_extra_when_missing():
    with pytest.raises(EdgewiseError, match=r"pip install 'edgewise\[tensorrt\]'"):
        require("edgewise_no_such_module", "tensorrt")


def test_require_returns_the_module():
    assert require("json", "dev").dumps([1]) == "[1]"


def test_dist_version_probes_alternative_distribution_names(monkeypatch):
    import importlib.metadata

    installed = {"onnxruntime-gpu": "1.99.0", "tensorrt-cu12": "10.3.0"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)

    assert dist_version("onnxruntime") == "1.99.0"
    assert dist_version("tensorrt") == "10.3.0"
    assert dist_version("edgewise-no-such-dist") is None


def test_require_full_names_the_extra_without_importing(monkeypatch):
    import sys

    import pytest

    from edgewise.core.deps import require_full
    from edgewise.core.errors import EdgewiseError

    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    require_full("colorsys")
    assert "colorsys" not in sys.modules  # found, not imported: the import waits for its use

    with pytest.raises(EdgewiseError, match=r"`no_such_module_xyz` is needed here .* pip install 'edgewise\[full\]'"):
        require_full("no_such_module_xyz")
