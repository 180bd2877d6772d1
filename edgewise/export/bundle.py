"""`edgewise bundle`: a folder to copy to a device, runnable with `edgewise.runtime` alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgewise.core.artifact import Artifact, OutputDir
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest, now
from edgewise.core.progress import console
from edgewise.export.config import BundleConfig

USAGE = """edgewise bundle: {name}
Model {model_file} ({kind}, from {source}); labels {labels}; up to {max_length} tokens per text.

On the device, with only the runtime installed (onnxruntime + tokenizers + numpy):

    pip install "edgewise[runtime]"
    python -m edgewise.runtime predict {name} "some text to classify"
    python -m edgewise.runtime bench {name} --threads 4 --json bench.json

From Python:

    from edgewise.runtime import Predictor
    predictor = Predictor("{name}")            # backend="ort-cuda" on a GPU
    predictor.predict(["some text to classify"])  # [{{"label": ..., "score": ..., "scores": {{...}}}}]

edgewise.json records where this model came from (`edgewise lineage {name}` on a machine with
edgewise installed), its labels and the file hashes.
"""


def bundle(src: Path, dst: Path, config: BundleConfig = BundleConfig(), *, overwrite: bool = False) -> Manifest:
    """Copy the model, tokenizer.json, labels and a usage text from ``src`` into the deploy folder ``dst``.

    Example:
        >>> bundle(Path("runs/teacher-onnx"), Path("deploy/teacher"))  # doctest: +SKIP
    """
    from edgewise.runtime.predictor import Predictor, _pad_id, _require

    started = now()
    artifact = Artifact.load(Path(src), kind=("onnx", "ort"))
    if not artifact.labels:
        raise EdgewiseError(f"{artifact.path} names no labels; it is not a classifier")
    model_file = _choose_model(artifact, config)
    if not (artifact.path / "tokenizer.json").is_file():
        raise EdgewiseError(
            f"{artifact.path} has no tokenizer.json (the runtime needs a fast tokenizer); re-export it from a "
            "model whose tokenizer has a fast version"
        )
    recorded = (artifact.manifest.data or {}).get("max_length") if artifact.manifest else None
    max_length = int(config.max_length or recorded or 512)
    out = OutputDir.prepare(Path(dst), sources=(artifact.path,), overwrite=overwrite)
    tokenizer = _require("tokenizers").Tokenizer.from_file(str(artifact.path / "tokenizer.json"))

    out.begin()
    try:
        for file in artifact.path.iterdir():
            if file.name == model_file or file.name.startswith(model_file + "."):
                shutil.copy2(file, out.artifact / file.name)  # the model and its external data
        shutil.copy2(artifact.path / "tokenizer.json", out.artifact / "tokenizer.json")
        labels = {str(k): v for k, v in sorted(artifact.labels.items())}
        (out.artifact / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
        (out.artifact / "README.txt").write_text(USAGE.format(
            name=out.dst.name, model_file=model_file, kind=artifact.kind, source=artifact.path,
            labels=", ".join(labels.values()), max_length=max_length))
        import onnxruntime as ort

        session = ort.InferenceSession(str(out.artifact / model_file), providers=["CPUExecutionProvider"])
        manifest = Manifest.write(
            out.artifact, kind="bundle", stage="bundle", config=config, labels=artifact.labels, started_at=started,
            parent=artifact.manifest, source=None if artifact.manifest else {"model": artifact.describe()},
            data={"max_length": max_length, "pad_token_id": _pad_id(artifact.path, tokenizer, {}),
                  "model_file": model_file, "inputs": [i.name for i in session.get_inputs()]},
        )
        # The bundle must run with the runtime alone before it is put in place.
        Predictor(out.artifact).predict(["edgewise bundle check"])
        out.commit()
    except BaseException:
        out.abort()
        raise
    manifest.path = out.dst
    console().print(f"wrote {out.dst} ({model_file}, {len(labels)} labels, max_length {max_length})")
    return manifest


def _choose_model(artifact: Artifact, config: BundleConfig) -> str:
    available = [name for name in ("model.ort", "model.onnx") if (artifact.path / name).is_file()]
    if config.model_format != "auto":
        wanted = f"model.{config.model_format}"
        if wanted not in available:
            raise EdgewiseError(f"{artifact.path} has no {wanted}; it has {', '.join(available) or 'no model'}")
        return wanted
    if not available:
        raise EdgewiseError(f"{artifact.path} holds no model.onnx or model.ort")
    return available[0]
