"""On-device inference for edgewise bundles and ONNX artifacts.

Needs only onnxruntime, tokenizers and numpy (`pip install "edgewise[runtime]"`): nothing here, or
in what it imports, loads torch or transformers (the torch backends, runtime.pytorch, import them
when a model is opened). A folder with edgewise.json is checked against the
file hashes it records before anything runs (`--no-verify` / `verify=False` skips that).

    python -m edgewise.runtime predict deploy/teacher "a gripping, beautifully shot film"
    python -m edgewise.runtime embed deploy/embedder "a text" "another text" --json
    python -m edgewise.runtime bench deploy/teacher --threads 4 --json bench.json
"""

from edgewise.runtime.predictor import Predictor
from edgewise.runtime.runners import BACKENDS, Unavailable, open_runner

__all__ = ["BACKENDS", "Predictor", "Unavailable", "open_runner"]
