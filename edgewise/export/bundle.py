"""`edgewise bundle`: a folder to copy to a device, runnable with `edgewise.runtime` alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.core.progress import console
from edgewise.core.stage import StageOutput
from edgewise.core.tasks import refuse_unless
from edgewise.export.config import PHONE_TARGETS, BundleConfig, BundleTarget

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

"""

PROVENANCE = """edgewise.json records where this model came from (`edgewise lineage {name}` on a machine with
edgewise installed), its labels and the file hashes. The runtime checks those hashes before it runs
and refuses a folder whose files changed; pass --no-verify (Predictor(..., verify=False)) if you
edited it on purpose.
"""


def bundle(src: Path, dst: Path, config: BundleConfig = BundleConfig(), *, data: str | None = None,
           overwrite: bool = False, resume: bool = False) -> Manifest:
    """Copy the model, tokenizer.json, labels and a usage text from ``src`` into the deploy folder ``dst``,
    with the device kit of ``config.target``: generic (the model as it is), jetson (model.onnx and the trtexec
    script that builds its TensorRT engine on the device), android / ios (model.ort, its operator list,
    onnxruntime's NNAPI / CoreML usability report, an optional fixed-shape model.fixed.ort, app snippets).

    ``data`` is not used (a bundle is checked on a generated text). The bundle must run with the runtime
    alone (its model.ort or model.onnx, on the CPU) before it is put in place.

    Example:
        >>> bundle(Path("runs/teacher-onnx"), Path("deploy/teacher"))  # doctest: +SKIP
        >>> bundle(Path("runs/student-int8"), Path("deploy/phone"), BundleConfig(target="android"))  # doctest: +SKIP
    """
    from edgewise.core.deps import require
    from edgewise.core.lengths import artifact_lengths
    from edgewise.runtime.predictor import Predictor, pad_token_id
    from edgewise.runtime.sessions import session as ort_session
    from edgewise.runtime.sizes import model_files

    artifact = Artifact.load(Path(src), kind=("onnx", "ort"))
    task = refuse_unless(artifact.task, ("classification", "embedding"), str(artifact.path), "bundle")
    task.labels_of(artifact)  # a labelled task's model must name its labels
    model_file = _choose_model(artifact, config)
    recorded = (artifact.manifest.data or {}) if artifact.manifest else {}
    max_length, limit = artifact_lengths(artifact.path, recorded, config.max_length, what="--max-length")
    # What a kit cannot be made from is refused before anything is written.
    summary = None
    if config.target is BundleTarget.JETSON:
        from edgewise.export.tensorrt import check_buildable

        summary = check_buildable(artifact.path / model_file)
    elif config.target in PHONE_TARGETS:
        from edgewise.export.mobile import check_source

        check_source(artifact, config, max_length)
    out = StageOutput("bundle", dst, parent=artifact, carry=False, overwrite=overwrite, resume=resume)

    with out:
        tokenizer_json = _fast_tokenizer(artifact.path, out.work / "tokenizer")
        tokenizer = require("tokenizers", "runtime").Tokenizer.from_file(str(tokenizer_json))
        pad_id = pad_token_id(artifact.path, tokenizer, {})
        shutil.copy2(tokenizer_json, out.artifact / "tokenizer.json")
        labels = {str(k): v for k, v in sorted(artifact.labels.items())}
        if task.labelled:
            (out.artifact / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
        else:
            _client_files(artifact, out.artifact, task, max_length)
        metrics, expected = {}, []
        if config.target in PHONE_TARGETS:
            from edgewise.export.mobile import write_mobile

            metrics = write_mobile(out, artifact, config, max_length, tokenizer.get_vocab_size(), pad_id)
        else:
            for file in model_files(artifact.path / model_file):
                shutil.copy2(file, out.artifact / file.name)  # the model and its external data
        if config.target is BundleTarget.JETSON:
            from edgewise.export.jetson import BUILT_ON_DEVICE, write_jetson

            metrics = write_jetson(out, summary, config, max_length, recorded)
            expected = list(BUILT_ON_DEVICE)
        session = ort_session(out.artifact / model_file)
        inputs, output = [i.name for i in session.get_inputs()], session.get_outputs()[0].name
        (out.artifact / "README.txt").write_text(_readme(
            config, out.dst.name, artifact, model_file, labels, max_length, metrics, pad_id=pad_id, inputs=inputs,
            output=output, tokenizer_json=out.artifact / "tokenizer.json"))
        settings = {"max_length": max_length, "max_positions": limit, "pad_token_id": pad_id,
                    "model_file": model_file, "inputs": inputs}
        if "fixed" in metrics:
            settings.update(fixed_model_file=metrics["fixed"]["model_file"], fixed_shape=metrics["fixed"]["shape"])
        manifest = out.seal(kind="bundle", config=config, data=settings, metrics=metrics, expected_files=expected,
                            task=task)
        # The bundle must run with the runtime alone before it is put in place.
        Predictor(out.artifact).outputs(["edgewise bundle check"])
        out.publish()
    extra = f", target {config.target.value}" if config.target is not BundleTarget.GENERIC else ""
    what = f"{len(labels)} labels" if task.labelled else task.describe()
    console().print(f"wrote {out.dst} ({model_file}, {what}, max_length {max_length}{extra})")
    return manifest


# What an embedding bundle ships besides model and tokenizer.json, so that sentence-transformers'
# ONNX backend and fastembed's custom models load it and return the runtime's vectors: config.json
# (sentence-transformers' Transformer module reads the model type), the sentence-transformers module
# files (its Pooling and Normalize rebuild the graph's pooling from last_hidden_state), and
# tokenizer_config.json with model_max_length (and max_length, when the source has one) at the bundle's
# max_length: fastembed truncates at the smaller of the two. all-MiniLM-L6-v2's says model_max_length 512 and
# max_length 128 where the model runs at 256: fastembed's vectors of the 200 BBC test documents of
# benchmarks/results/embedding_minilm_bbc_stsb.json fell to cosine 0.77 with the runtime's at worst.
CLIENT_FILES = ("config.json", "special_tokens_map.json", "tokenizer_config.json")


def _client_files(artifact: Artifact, folder: Path, task, max_length: int) -> None:
    for name in CLIENT_FILES:
        if (artifact.path / name).is_file():
            shutil.copy2(artifact.path / name, folder / name)
    settings = json.loads((folder / "tokenizer_config.json").read_text()) if (
        folder / "tokenizer_config.json").is_file() else {}
    limits = {"model_max_length": max_length, **({"max_length": max_length} if "max_length" in settings else {})}
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, **limits}, indent=2) + "\n")
    task.write_files(folder, max_length)


EMBEDDING_USAGE = """edgewise bundle: {name}
Model {model_file} ({kind}, from {source}); a {task} model: one {dimension}-dimension vector per text, up to
{max_length} tokens per text, pooled and normalised inside the graph (output sentence_embedding).

On the device, with only the runtime installed (onnxruntime + tokenizers + numpy):

    pip install "edgewise[runtime]"
    python -m edgewise.runtime embed {name} "some text" "another text" --json
    python -m edgewise.runtime bench {name} --threads 4 --json bench.json

From Python:

    from edgewise.runtime import Predictor
    Predictor("{name}").embed(["some text", "another text"])   # numpy array [texts, {dimension}]

{clients}

"""

# sentence-transformers and fastembed read an encoder's folder; a static model has no transformer for them.
ENCODER_CLIENTS = """The folder is also a sentence-transformers model (it pools last_hidden_state itself, as its
modules say):

    SentenceTransformer("{name}", backend="onnx")

and a fastembed custom model (TextEmbedding.add_custom_model(..., model_file="{model_file}",
output_name="sentence_embedding", pooling=PoolingType.DISABLED, normalization=False), then
TextEmbedding(model_name=..., specific_model_path="{name}"))."""
STATIC_CLIENTS = """A static model has no transformer layers: sentence-transformers and fastembed do not load this
folder. Any ONNX runtime does: feed the tokenizer's input_ids and attention_mask, read sentence_embedding."""


def _readme(config: BundleConfig, name: str, artifact: Artifact, model_file: str, labels: dict, max_length: int,
            metrics: dict, **phone) -> str:
    if config.target is BundleTarget.JETSON:
        from edgewise.export.jetson import readme

        return readme(name, metrics, artifact.path, ", ".join(labels.values()), max_length, artifact.task
                      ) + "\n" + PROVENANCE.format(name=name)
    if config.target in PHONE_TARGETS:
        from edgewise.export.mobile import readme

        return readme(name, config, metrics, source=artifact.path, labels=list(labels.values()),
                      max_length=max_length, task=artifact.task, **phone) + "\n" + PROVENANCE.format(name=name)
    task = artifact.task
    if not task.labelled:
        clients = (STATIC_CLIENTS if task.static else ENCODER_CLIENTS).format(name=name, model_file=model_file)
        return EMBEDDING_USAGE.format(name=name, model_file=model_file, kind=artifact.kind, source=artifact.path,
                                      task=task.describe(), dimension=task.dimension, max_length=max_length,
                                      clients=clients) + PROVENANCE.format(name=name)
    return USAGE.format(name=name, model_file=model_file, kind=artifact.kind, source=artifact.path,
                        labels=", ".join(labels.values()), max_length=max_length) + PROVENANCE.format(name=name)


def _fast_tokenizer(folder: Path, scratch: Path) -> Path:
    """tokenizer.json of the artifact, converted from its slow tokenizer files when it has none."""
    if (folder / "tokenizer.json").is_file():
        return folder / "tokenizer.json"
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=False)
    except (ImportError, OSError, ValueError, TypeError):
        tokenizer = None
    if tokenizer is None or not tokenizer.is_fast:
        raise EdgewiseError(
            f"{folder} has no tokenizer.json and its tokenizer files cannot be converted to one; the runtime "
            "needs a fast (tokenizers) tokenizer: save one into the model folder with tokenizer.save_pretrained"
        )
    scratch.mkdir(parents=True, exist_ok=True)
    tokenizer.backend_tokenizer.save(str(scratch / "tokenizer.json"))
    return scratch / "tokenizer.json"


def _choose_model(artifact: Artifact, config: BundleConfig) -> str:
    """The model file to ship (phones: model.ort, the source's or made from its model.onnx)."""
    available = [name for name in ("model.ort", "model.onnx") if (artifact.path / name).is_file()]
    if not available:
        raise EdgewiseError(f"{artifact.path} holds no model.onnx or model.ort")
    if config.target is BundleTarget.JETSON:
        if "model.onnx" not in available:
            raise EdgewiseError(f"{artifact.path} has no model.onnx; --target jetson ships the ONNX model TensorRT "
                                "builds its engine from: bundle the ONNX artifact the model.ort came from")
        return "model.onnx"
    if config.target in PHONE_TARGETS:
        return "model.ort"  # the source's, or made from its model.onnx (export.mobile)
    if config.model_format != "auto":
        wanted = f"model.{config.model_format}"
        if wanted not in available:
            raise EdgewiseError(f"{artifact.path} has no {wanted}; it has {', '.join(available) or 'no model'}")
        return wanted
    return available[0]
