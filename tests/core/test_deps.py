import pytest

from edgewise.core.deps import dist_version, require
from edgewise.core.errors import EdgewiseError


def test_require_names_the_extra_when_missing():
    with pytest.raises(EdgewiseError, match=r"pip install 'edgewise\[tensorrt\]'"):
        require("edgewise_no_such_module", "tensorrt")


def test_require_returns_the_module():
    assert require("json", "dev").dumps([1]) == "[1]"


def test_dist_version_probes_alternative_distribution_names():
    assert dist_version("onnxruntime")  # onnxruntime or onnxruntime-gpu
    assert dist_version("edgewise-no-such-dist") is None
