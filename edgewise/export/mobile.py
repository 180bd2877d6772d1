"""`edgewise bundle --target android|ios`: ONNX Runtime Mobile's model.ort, its operator list for a reduced
build, onnxruntime's NNAPI / CoreML usability report, an optional fixed-shape model and app snippets.

The conversion is export.ort_mobile's (the same converter, arm target and parity check as
`edgewise export --format ort`); the report is onnxruntime.tools' usability checker, read as data.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.export.config import BundleTarget
from edgewise.export.ort_mobile import OPERATORS_FILE, verify

MODEL = "model.ort"
FIXED_MODEL = "model.fixed.ort"
# The execution providers each phone has, as the usability checker names them, with its check.
PROVIDERS = {
    BundleTarget.ANDROID: ("NNAPI",),
    # MLProgram (iOS 15+) first: the format ONNX Runtime's CoreML EP recommends; NeuralNetwork for older iOS.
    BundleTarget.IOS: ("CoreML MLProgram", "CoreML NeuralNetwork"),
}


def check_source(artifact, config, max_length: int) -> None:
    """Refuse, before anything is written, what a phone kit cannot be made from."""
    has_onnx = (artifact.path / "model.onnx").is_file()
    has_ort = (artifact.path / MODEL).is_file()  # one of the two: bundle's _choose_model refused neither
    if config.fixed_dims:
        batch, tokens = config.fixed_dims
        if tokens > max_length:
            raise EdgewiseError(
                f"--fixed-shape {config.fixed_shape} asks for {tokens} tokens, more than the bundle's max_length "
                f"{max_length}; use at most {batch}x{max_length} (or raise --max-length up to the model's limit)"
            )
        if not has_onnx:
            raise EdgewiseError(
                f"--fixed-shape rewrites model.onnx's input shapes, and {artifact.path} has only model.ort; bundle "
                "the ONNX artifact it was converted from"
            )
    if has_ort and artifact.manifest is not None:
        values = (artifact.manifest.config or {}).get("values") or {}
        if values.get("ort_target") == "amd64":
            raise EdgewiseError(
                f"{artifact.path / MODEL} was optimised for amd64 (export --ort-target amd64); phones need arm: "
                "re-export it with --ort-target arm, or bundle the ONNX artifact (the bundle converts it for arm)"
            )


def write_mobile(out, artifact, config, max_length: int, vocab_size: int, pad_id: int) -> dict:
    """model.ort (copied, or converted from model.onnx and checked against it), required_operators.config,
    the usability report and, with ``config.fixed_shape``, model.fixed.ort; returns what the manifest records."""
    from edgewise.export.config import ExportConfig
    from edgewise.export.onnx import graph_summary
    from edgewise.export.ort_mobile import convert_ort
    from edgewise.export.parity import generated_batches
    from edgewise.runtime.runners import onnx_scores

    metrics: dict = {}
    if (artifact.path / MODEL).is_file():  # the source's model.ort, as it is
        shutil.copy2(artifact.path / MODEL, out.artifact / MODEL)
        if (artifact.path / OPERATORS_FILE).is_file():
            shutil.copy2(artifact.path / OPERATORS_FILE, out.artifact / OPERATORS_FILE)
        metrics["ort"] = {"converted": False, "size_bytes": (out.artifact / MODEL).stat().st_size}
    onnx_model = artifact.path / "model.onnx"
    if not onnx_model.is_file():  # an ORT artifact (check_source refused --fixed-shape for it)
        metrics["mobile_usability"] = {"error": "not checked: the source has no model.onnx to analyse"}
        return metrics
    providers = PROVIDERS[config.target]
    metrics["mobile_usability"] = usability(onnx_model, providers, out.work / "usability")
    if "ort" in metrics and not config.fixed_dims:  # the source's model.ort ships as it is: nothing to check
        return metrics
    # export --format ort's converter, arm target, tolerance and check (ort_mobile.verify, which knows INT8).
    defaults = ExportConfig()
    summary = graph_summary(onnx_model)
    source = Source(onnx_model, list(summary["inputs"]), summary["qdq"] or summary["dynamic_int8"],
                    onnx_scores(onnx_model), defaults.ort_target.value, defaults.atol)
    if "ort" not in metrics:
        batches = generated_batches(source.inputs, vocab_size, max_length, pad_id)
        metrics["ort"] = {**convert_ort(onnx_model, out.artifact, out.work, source.target), "converted": True}
        metrics["parity"] = source.verify(out.artifact / MODEL, batches, "model.ort vs model.onnx")
    if config.fixed_dims:
        metrics["fixed"] = _write_fixed(out, source, config, vocab_size, pad_id, providers)
    return metrics


@dataclass(frozen=True)
class Source:
    """The model.onnx a phone kit is made from, read once: its inputs, whether it is INT8, its scorer."""

    path: Path
    inputs: list[str]
    int8: bool
    scores: object  # feed -> logits
    target: str  # the ORT format's optimisation target
    atol: float

    def verify(self, candidate: Path, batches: list[dict], what: str) -> dict:
        return verify(self.scores, candidate, batches, what, self.atol, self.int8)


def _write_fixed(out, source: Source, config, vocab_size: int, pad_id: int, providers) -> dict:
    """model.fixed.ort: model.onnx with every input fixed to batch x tokens, converted like model.ort and
    checked against the dynamic model on inputs of that shape; its operators join the reduced-build list."""
    from edgewise.export.ort_mobile import convert_ort

    batch, tokens = config.fixed_dims
    fixed_onnx = out.work / "fixed" / "model.onnx"  # named model.onnx: the converter names its output after it
    fix_shapes(source.path, fixed_onnx, source.inputs, batch, tokens)
    staging = out.work / "fixed-ort"
    staging.mkdir(parents=True)
    ort = convert_ort(fixed_onnx, staging, out.work / "fixed-work", source.target)
    shutil.move(staging / MODEL, out.artifact / FIXED_MODEL)
    merge_operators(out.artifact / OPERATORS_FILE, staging / OPERATORS_FILE)
    # Against the dynamic ONNX model, not the fixed one: fixing shapes rewrites the graph's shape values,
    # and the fixed model must still be the same classifier.
    batches = fixed_batches(source.inputs, vocab_size, pad_id, batch, tokens)
    parity = source.verify(out.artifact / FIXED_MODEL, batches, f"{FIXED_MODEL} vs model.onnx at {batch}x{tokens}")
    return {"shape": [batch, tokens], "model_file": FIXED_MODEL, "ort": ort, "parity": parity,
            "mobile_usability": usability(fixed_onnx, providers, out.work / "usability-fixed")}


def fix_shapes(src: Path, dst: Path, inputs: list[str], batch: int, tokens: int) -> None:
    """``src`` with every input's shape fixed to (batch, tokens) and the output shapes inferred from them
    (onnxruntime.tools.make_dynamic_shape_fixed's steps)."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(src))
    try:
        for name in inputs:
            make_input_shape_fixed(model.graph, name, [batch, tokens])
        fix_output_shapes(model)
    except (ValueError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise EdgewiseError(
            f"cannot fix the input shapes of {src} to {batch}x{tokens} ({type(e).__name__}: {str(e)[:200]}); "
            "export the model with dynamic batch and sequence axes (edgewise export does)"
        ) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))


def fixed_batches(inputs: list[str], vocab_size: int, pad_id: int, batch: int, tokens: int) -> list[dict]:
    """Two batches of exactly batch x tokens: full texts, and texts padded after half their tokens (an app
    pads every text to the fixed length)."""
    import numpy as np

    from edgewise.export.parity import token_batch

    rng = np.random.default_rng(0)
    return [token_batch(rng, inputs, vocab_size, pad_id, tokens, [keep] * batch)
            for keep in (tokens, max(2, tokens // 2))]


def merge_operators(path: Path, other: Path) -> None:
    """Add the operators ``other`` lists to the reduced-build list at ``path`` (lines domain;opset;A,B,...)."""
    merged: dict[tuple[str, str], set[str]] = {}
    header = []
    for file in (path, other):
        for line in file.read_text().splitlines():
            if line.startswith("#") or not line.strip():
                if file == path:
                    header.append(line)
                continue
            domain, opset, ops = line.split(";", 2)
            merged.setdefault((domain, opset), set()).update(op for op in ops.split(",") if op)
    lines = [f"{domain};{opset};{','.join(sorted(ops))}" for (domain, opset), ops in sorted(merged.items())]
    path.write_text("\n".join(header + lines) + "\n")


# --- onnxruntime's usability checker, as data ----------------------------------------------------------------


def usability(model: Path, providers, work: Path) -> dict:
    """What onnxruntime's `check_onnx_model_mobile_usability` says of ``model`` for each of ``providers``:
    per provider the nodes it would take and in how many partitions, as the model is and (when that is
    not a clear yes and inputs are dynamic) with fixed input shapes, the unsupported operators, the
    checker's verdict (YES / MAYBE / NO) and a recommendation. The model is first optimised at the BASIC
    level, as the ORT-format conversion does (and the checker's command line).
    """
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    quiet = logging.getLogger("edgewise.usability")
    quiet.setLevel(logging.ERROR)
    checks = {
        "NNAPI": checker.check_nnapi_partitions,
        "CoreML MLProgram": lambda m, fixed: checker.check_coreml_partitions(m, fixed,
                                                                            "coreml_supported_mlprogram_ops.md"),
        "CoreML NeuralNetwork": lambda m, fixed: checker.check_coreml_partitions(
            m, fixed, "coreml_supported_neuralnetwork_ops.md"),
    }
    work.mkdir(parents=True, exist_ok=True)
    try:
        optimized = work / model.name
        optimize_model(model, optimized, use_external_initializers=True)
        graph = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        dynamic_inputs, _ = checker.check_shapes(graph.graph, quiet)
        report = {"dynamic_inputs": [i.name for i in dynamic_inputs], "providers": {}}
        for name in providers:
            as_is = checks[name](graph, True)
            entry = {"as_is": _partitions(as_is)}
            verdict = as_is.suitability()
            if verdict != checker.PartitioningInfo.TryWithEP.YES and dynamic_inputs:
                fixed = checks[name](graph, False)
                entry["if_fixed"] = _partitions(fixed)
                verdict = max(verdict, fixed.suitability())
            entry["verdict"] = verdict.name
            report["providers"][name] = entry
    except (ValueError, RuntimeError, OSError) as e:
        # The report is advice; a model the checker cannot read is still bundled (it ran above).
        return {"error": f"onnxruntime's usability checker failed ({type(e).__name__}: {str(e)[:200]})"}
    report["recommendation"] = recommendation(report)
    return report


def _partitions(info) -> dict:
    sizes = sorted((len(group) for group in info.supported_groups), reverse=True)
    return {
        "nodes": info.num_nodes, "supported_nodes": info.num_supported_nodes, "partitions": info.num_partitions,
        "largest_partitions": sizes[:5], "unsupported_ops": sorted(info.unsupported_ops),
        "unsupported_due_to_dynamic_shapes": info.nodes_unsupported_due_to_dynamic_input,
        "verdict": info.suitability().name, "caveats": info.supported_ops_checker.get_caveats(),
    }


def recommendation(report: dict) -> str:
    """One sentence per report: which execution provider to use, after the checker's verdicts."""
    verdicts = {name: entry["verdict"] for name, entry in report["providers"].items()}
    best = max(verdicts, key=lambda name: ("NO", "MAYBE", "YES").index(verdicts[name]))
    fixed_helps = any("if_fixed" in e and e["if_fixed"]["verdict"] != "NO" and e["as_is"]["verdict"] == "NO"
                      for e in report["providers"].values())
    if verdicts[best] == "NO":
        return ("use the CPU execution provider (the default): " + " and ".join(verdicts) + " would split the "
                "model into too many pieces or take too little of it to pay for the copies between them")
    shape = " with fixed input shapes (--fixed-shape)" if fixed_helps else ""
    if verdicts[best] == "YES":
        return f"try {best}{shape}: it should take most of the model in one piece; compare it with the CPU EP"
    return f"{best} may help{shape}: time it against the CPU execution provider before choosing it"


def summary_lines(report: dict) -> list[str]:
    """The report as README lines."""
    if "error" in report:
        return [report["error"]]
    lines = []
    for name, entry in report["providers"].items():
        as_is = entry["as_is"]
        line = (f"{name}: {as_is['supported_nodes']} of {as_is['nodes']} nodes in {as_is['partitions']} "
                f"partitions as is ({as_is['verdict']})")
        if "if_fixed" in entry:
            fixed = entry["if_fixed"]
            line += (f"; with fixed shapes {fixed['supported_nodes']} in {fixed['partitions']} partitions "
                     f"({fixed['verdict']})")
        unsupported = entry.get("if_fixed", as_is)["unsupported_ops"]
        if unsupported:
            line += "; unsupported: " + ", ".join(op.split(":")[-1] for op in unsupported)
        lines.append(line)
    lines.append("Recommendation: " + report["recommendation"])
    return lines


# --- README.txt -----------------------------------------------------------------------------------------------


def tokenizer_facts(tokenizer_json: Path) -> tuple[str, str]:
    """What an app's tokenizer must reproduce, read from tokenizer.json: its model and normalizer, and the
    special tokens around a text."""
    spec = json.loads(tokenizer_json.read_text())
    model = (spec.get("model") or {}).get("type", "unknown")
    normalizer = spec.get("normalizer") or {}
    lower = ", lowercasing" if normalizer.get("lowercase") else ""
    described = f"{model} model, {normalizer.get('type') or 'no'} normalizer{lower}"
    post = spec.get("post_processor") or {}
    if post.get("type") == "TemplateProcessing":
        pieces = [next(iter(item.values()))["id"] for item in post.get("single") or []]
        template = " ".join("text" if piece == "A" else piece for piece in pieces)
    elif post.get("cls") and post.get("sep"):  # BertProcessing, RobertaProcessing
        template = f"{post['cls'][0]} text {post['sep'][0]}"
    else:
        template = "the special tokens tokenizer.json adds around text"
    return described, template


README_HEAD = """edgewise bundle for {platform}: {name}
Model {model}: ONNX Runtime Mobile's ORT format{converted},
from {source}.
{what}
Inputs: {inputs} (int64, batch x tokens, up to {max_length} tokens).
Output: {output} (float32, batch x {width}); {row}.

Files
  model.ort                   the model; runs on the CPU execution provider at any input length
{fixed_file}  required_operators.config   the operators it needs: build a smaller onnxruntime with
                              --include_ops_by_config required_operators.config (ONNX Runtime's
                              "custom build" docs; add --minimal_build extended and --use_{ep_flag}
                              to keep {ep_short})
  tokenizer.json, {labels_file}edgewise.json (lineage, hashes, the usability report in "metrics")

Tokenization: the model is only as good as its inputs, so tokenize with tokenizer.json itself
({tokenizer}) through Hugging Face tokenizers bindings, or with a port
that gives the same ids: "{template}", cut to {max_length} tokens; attention_mask 1 per token;
token_type_ids 0; padding id {pad_id} (mask 0) when several texts share a batch.{fixed_tokens}

{ep_short} usability (onnxruntime's check_onnx_model_mobile_usability, on model.onnx):
{usability}
"""

FIXED_FILE = ("  model.fixed.ort             the same model with static shapes {shape}, for {ep_short}, which\n"
              "                              takes static shapes only\n")
FIXED_TOKENS = ("\nmodel.fixed.ort takes exactly {batch} x {tokens}: cut every text to {tokens} tokens and pad it to "
                "{tokens}\n(ids {pad_id}, mask 0), also when it is shorter.")
FIXED_USABILITY = "\n{ep_short} usability of model.fixed.ort (its ONNX form, {shape}):\n{usability}\n"

ANDROID = """Android (Kotlin; Gradle: implementation("com.microsoft.onnxruntime:onnxruntime-android:VERSION"),
or your reduced build's AAR). Put {model} in assets/.

    import ai.onnxruntime.OnnxTensor
    import ai.onnxruntime.OrtEnvironment
    import ai.onnxruntime.OrtSession
    import ai.onnxruntime.providers.NNAPIFlags
    import java.nio.LongBuffer
    import java.util.EnumSet

    val env = OrtEnvironment.getEnvironment()
    val options = OrtSession.SessionOptions()
    // NNAPI (static shapes only: load model.fixed.ort): options.addNnapi(EnumSet.of(NNAPIFlags.USE_FP16))
    // NNAPI is deprecated from Android 15: time it against the CPU EP (the default) and XNNPACK,
    // options.addXnnpack(mapOf<String, String>()).
    val session = env.createSession(context.assets.open("{model}").readBytes(), options)

    // ids, mask, types: LongArray of one text from tokenizer.json, as described above{kotlin_labels}
    val shape = longArrayOf(1, ids.size.toLong())
    val inputs = mapOf(
{kotlin_inputs}
    )
    session.run(inputs).use {{ result ->
{kotlin_answer}
    }}
    inputs.values.forEach {{ it.close() }}
"""

IOS = """iOS (Swift; CocoaPods: pod 'onnxruntime-objc' (C / C++ API: pod 'onnxruntime-c'), or your reduced
build). Add {model} to the app bundle.

    import onnxruntime_objc

    let env = try ORTEnv(loggingLevel: .warning)
    let options = try ORTSessionOptions()
    // CoreML (static shapes: load model.fixed.ort):
    // try options.appendCoreMLExecutionProvider(withOptionsV2: ["ModelFormat": "MLProgram"])
    let path = Bundle.main.path(forResource: "{stem}", ofType: "ort")!
    let session = try ORTSession(env: env, modelPath: path, sessionOptions: options)

    // ids, mask, types: [Int64] of one text from tokenizer.json, as described above{swift_labels}
    func tensor(_ values: [Int64]) throws -> ORTValue {{
        let data = NSMutableData(bytes: values, length: values.count * MemoryLayout<Int64>.size)
        return try ORTValue(tensorData: data, elementType: .int64, shape: [1, NSNumber(value: values.count)])
    }}
    let outputs = try session.run(
        withInputs: [{swift_inputs}],
        outputNames: ["{output}"], runOptions: nil)
    let values = try outputs["{output}"]!.tensorData() as Data
    let scores = values.withUnsafeBytes {{ Array($0.bindMemory(to: Float.self)) }}
{swift_answer}
"""

CHECK = """Check the bundle on a computer first (pip install "edgewise[runtime]"; the ORT format runs there too):

    python -m edgewise.runtime {check} {name} "some text"
    python -m edgewise.runtime bench {name} --threads 4
"""

# What the README says of a model's answer, per task (core.tasks): a classifier's label, an embedding's vector.
ANSWERS = {
    "classification": {
        "what": "Labels: {labels}.", "row": "a row's label is labels.json[argmax]", "labels_file": "labels.json, ",
        "kotlin_labels": ";\n    // labels: the values of labels.json in id order",
        "kotlin_answer": "        val logits = (result[0].value as Array<FloatArray>)[0]\n"
                         "        val label = labels[logits.indices.maxByOrNull {{ logits[it] }}!!]",
        "swift_labels": ";\n    // labels: the values of labels.json in id order",
        "swift_answer": "    let label = labels[scores.indices.max {{ scores[$0] < scores[$1] }}!]",
        "check": "predict"},
    "embedding": {
        "what": "A {task} model: one vector per text, pooled and normalised inside the graph.",
        "row": "a row is its text's sentence vector", "labels_file": "",
        "kotlin_labels": "", "kotlin_answer": "        val vector = (result[0].value as Array<FloatArray>)[0]  "
                                              "// the text's sentence vector",
        "swift_labels": "", "swift_answer": "    let vector = scores  // the text's sentence vector",
        "check": "embed"},
}

def _indented(lines: list[str]) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width=100, initial_indent="  ", subsequent_indent="    ") for line in lines)


VARIABLES = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "types"}


def readme(name: str, config, metrics: dict, *, source: Path, labels: list[str], max_length: int, pad_id: int,
           inputs: list[str], output: str, tokenizer_json: Path, task=None) -> str:
    android = config.target is BundleTarget.ANDROID
    kind = task.name if task is not None else "classification"
    answer = {k: v.format(labels=", ".join(labels), task=task.describe() if task else "") if k == "what" else v
              for k, v in ANSWERS[kind].items()}
    width = len(labels) if kind == "classification" else task.dimension
    ep_short = "NNAPI" if android else "CoreML"
    fixed = metrics.get("fixed")
    described, template = tokenizer_facts(tokenizer_json)
    shape = f"{fixed['shape'][0]}x{fixed['shape'][1]}" if fixed else ""
    text = README_HEAD.format(
        platform="Android" if android else "iOS", name=name, model=MODEL, source=source,
        converted=" (converted from model.onnx for arm)" if metrics["ort"].get("converted") else "",
        what=answer["what"], row=answer["row"], labels_file=answer["labels_file"], max_length=max_length,
        inputs=", ".join(inputs), output=output, width=width, ep_flag="nnapi" if android else "coreml",
        ep_short=ep_short,
        fixed_file=FIXED_FILE.format(shape=shape, ep_short=ep_short) if fixed else "",
        tokenizer=described, template=template, pad_id=pad_id,
        fixed_tokens=FIXED_TOKENS.format(batch=fixed["shape"][0], tokens=fixed["shape"][1], pad_id=pad_id)
        if fixed else "",
        usability=_indented(summary_lines(metrics["mobile_usability"])),
    )
    if fixed:
        text += FIXED_USABILITY.format(ep_short=ep_short, shape=shape,
                                       usability=_indented(summary_lines(fixed["mobile_usability"])))
    if android:
        kotlin = "\n".join(f'        "{n}" to OnnxTensor.createTensor(env, LongBuffer.wrap({VARIABLES[n]}), shape),'
                           for n in inputs)
        text += "\n" + ANDROID.format(model=MODEL, kotlin_inputs=kotlin, kotlin_labels=answer["kotlin_labels"],
                                      kotlin_answer=answer["kotlin_answer"].replace("{{", "{").replace("}}", "}"))
    else:
        swift = ", ".join(f'"{n}": tensor({VARIABLES[n]})' for n in inputs)
        text += "\n" + IOS.format(model=MODEL, stem=Path(MODEL).stem, swift_inputs=swift, output=output,
                                  swift_labels=answer["swift_labels"],
                                  swift_answer=answer["swift_answer"].replace("{{", "{").replace("}}", "}"))
    return text + "\n" + CHECK.format(name=name, check=answer["check"])
