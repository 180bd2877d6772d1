"""`edgewise quantize`: INT8 (dynamic, static QDQ) and FP16 ONNX models, INC INT8 PyTorch models,
and the accuracy-aware search. Every output records its size, accuracy and agreement vs its source."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.data import DataConfig, load_splits
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.core.progress import console
from edgewise.core.stage import StageOutput
from edgewise.core.tasks import refuse_unless
from edgewise.quantize.config import QuantizeConfig, QuantMethod
from edgewise.quantize.inc import int8_kernel_problem  # light: the torch / INC imports are inside its functions


def quantize(src: Path, dst: Path, config: QuantizeConfig = QuantizeConfig(), *, data: str | None = None,
             overwrite: bool = False, resume: bool = False) -> Manifest:
    """Quantize the classifier in ``src`` and write it, with edgewise.json, to ``dst``.

    Args:
        src: an `onnx` artifact (an `hf` one for ``method=inc``).
        dst: the output folder; refused if it exists unless ``overwrite``.
        config: what to do (default: dynamic INT8 with CPU-aware types).
        data: labelled data whose validation / test splits measure accuracy; default: the data the
            source (or its nearest ancestor) was trained on, if edgewise recorded it.
        (``config.calibration`` names data whose texts calibrate static INT8, train split first; default: ``data``.)

    Example:
        >>> quantize(Path("runs/student-onnx"), Path("runs/student-int8"))  # doctest: +SKIP
    """
    from edgewise.core.deps import require_full

    inc = config.method is QuantMethod.INC
    if inc:
        from edgewise.quantize.inc import quiet_inc

        with quiet_inc():  # INC logs at import time
            require_full("torch", "transformers", "neural_compressor.torch.quantization")
    else:
        require_full("onnx", "onnxruntime", "onnxruntime.quantization")
    artifact = Artifact.load(Path(src))
    wanted = "hf" if inc else "onnx"
    if artifact.kind != wanted:
        fix = ("pass the fine-tuned transformers folder (hf artifact) the ONNX model came from" if inc
               else f"export it first: edgewise export {src} -o {src}-onnx" if artifact.kind == "hf"
               else "it is INC-quantized already; quantize its hf parent's ONNX export instead"
               if artifact.kind == "inc"
               else "quantize the onnx artifact it was converted from, then convert the result")
        raise EdgewiseError(f"--method {config.method.value} needs an {wanted!r} artifact, {src} is "
                            f"{artifact.kind!r}; {fix}")
    task = refuse_unless(artifact.task_for(config.task), ("classification", "embedding") if not inc else
                         ("classification",), str(artifact.path), f"--method {config.method.value}",
                         "quantize its ONNX export (edgewise export) with --method dynamic or static" if inc else "")
    task.labels_of(artifact)  # a labelled task's model must name its labels
    if not task.labelled and config.pairs is None and config.max_accuracy_drop is not None:
        console().print("no --pairs given: the search is gated on the top-10 neighbour agreement with the source "
                        "(give scored pairs to gate on STS Spearman)")
    if inc:
        from edgewise.core.env import cpu_info
        from edgewise.core.models import check_weights

        if problem := int8_kernel_problem(cpu_info()):
            raise EdgewiseError(
                f"--method inc makes an INT8 model whose oneDNN kernels would compute wrong logits on this machine: "
                f"{problem}; quantize the ONNX export with --method dynamic instead (onnxruntime picks 7-bit weights "
                "for such CPUs), or run --method inc on a CPU with VNNI"
            )
        check_weights(artifact.path, config.allow_pickle)
        from edgewise.core.trust import native_code_key

        native_code_key()  # the key that will seal the compiled code: an unwritable cache fails now, not after
    if not inc:
        from edgewise.quantize.ort import check_source

        check_source(artifact.path / "model.onnx", config)

    evaluation = _evaluation_data(artifact, data, config, task)
    if config.max_accuracy_drop is not None and not any(s.name == "validation" for s in evaluation["splits"]):
        raise EdgewiseError(
            "--max-accuracy-drop compares candidates on " + ("labelled " if task.labelled else "")
            + "validation data, and none was found: pass --data with a validation split (or a single file, from "
            "which one is carved)"
        )
    calibration_texts = _calibration_texts(config.calibration, evaluation, config)
    out = StageOutput("quantize", dst, parent=artifact, overwrite=overwrite, resume=resume)

    with out:
        out.carry_forward()  # first: an INC model is loaded back (config.json) to score it
        with tempfile.TemporaryDirectory(prefix="edgewise-quantize-") as scratch:
            if inc:
                from edgewise.quantize.inc import quantize_inc

                metrics = quantize_inc(artifact, out.artifact, Path(scratch), config, evaluation, calibration_texts)
            else:
                metrics = _quantize_onnx(artifact, out.artifact, Path(scratch), config, evaluation,
                                         calibration_texts, task)
        if task.labelled and (warnings := agreement_warnings(metrics.get("accuracy") or {}, config)):
            metrics["warnings"] = warnings
            for warning in warnings:
                console().print(f"[yellow]warning:[/] {warning}")
        manifest = out.commit(
            kind="inc" if inc else artifact.kind,
            config=config,
            task=task,
            data={"eval_data": evaluation["spec"], "eval_data_from": evaluation["from"],
                  "carved_validation": evaluation.get("carved_validation"),
                  "calibration_data": calibration_texts["spec"] if calibration_texts else None,
                  "calibration_samples": len(calibration_texts["texts"]) if calibration_texts else 0},
            metrics=metrics,
        )
    console().print(f"wrote {out.dst}")
    return manifest


# Below this share of labels kept, a quantized model is not "the same model, smaller": say so.
# (Default dynamic INT8 with 7-bit weights changed 7.7 % of a 3-class student's labels on an
# AVX2 machine while its accuracy moved by only 0.70 points, as reported in issue 10: accuracy
# alone hides it.)
MIN_AGREEMENT = 0.98


def agreement_warnings(accuracy: dict, config: QuantizeConfig) -> list[str]:
    """One warning per split where the result changed more than 2 % of the source's labels."""
    warnings = []
    for split, row in accuracy.items():
        agreement = row["quantized"].get("agreement_with_source")
        if agreement is None or agreement >= MIN_AGREEMENT:
            continue
        f1 = (row["quantized"]["macro_f1"] - row["source"]["macro_f1"]) * 100
        fix = ("compare candidates with --max-accuracy-drop 1 (it keeps the fastest within the drop)"
               if config.max_accuracy_drop is None else
               "lower --max-accuracy-drop, or leave more layers in FP32 with --fallback-layers")
        warnings.append(
            f"the quantized model gives another label than its source on {1 - agreement:.1%} of the {split} texts "
            f"(agreement {agreement:.1%}, below {MIN_AGREEMENT:.0%}; macro-F1 {f1:+.2f} points, accuracy "
            f"{-row['drop_points']:+.2f}); {fix}"
        )
    return warnings


def _evaluation_data(artifact: Artifact, data: str | None, config: QuantizeConfig, task) -> dict:
    """The splits quality is measured on: --data, else the data the model was trained on (labelled for a
    classifier; texts, with --pairs' scored pairs, for an embedding model).

    Data without a validation split (one labelled file, or train + test files) gets the one
    training carved from its train split (see core.lineage.carve_validation; an embedding model's texts are
    carved without labels).
    """
    from edgewise.core.lineage import carve_validation, training_data
    from edgewise.quantize.measure import eval_sets

    spec, data_config, origin = data, config.data, "--data"
    if spec is None:
        found = training_data(artifact.path)
        if found is not None:
            from edgewise.core.config import config_from_dict

            spec, origin = found[0], "lineage"
            data_config = config_from_dict(DataConfig, found[1], "recorded data settings")
    pairs = None
    if config.pairs is not None:
        from edgewise.core.data import load_pairs

        pairs = load_pairs(config.pairs, data_config.encoding)
        if config.max_accuracy_drop is not None and len(pairs) == 1:
            raise EdgewiseError(f"--pairs {config.pairs} has one split; the search chooses on validation pairs and "
                                "reports on test pairs: give a folder with validation.csv and test.csv")
    if spec is None and pairs is None:
        return {"spec": None, "from": None, "splits": [], "config": data_config, "all": {}}
    splits, carved = {}, None
    if spec is not None:
        try:
            splits = load_splits(spec, data_config)
        except EdgewiseError as e:
            if origin == "lineage":
                raise EdgewiseError(f"the data the model was trained on ({spec}) cannot be read any more ({e}); "
                                    "pass --data with labelled data to measure accuracy on") from None
            raise
        splits, carved = carve_validation(splits, spec, artifact.path, data_config, task.labelled)
    chosen = eval_sets(task, splits, artifact.labels, data_config, limit=config.max_eval_samples, pairs=pairs)
    if not chosen:
        raise EdgewiseError(f"{spec} has no {'labelled ' if task.labelled else ''}validation or test "
                            f"split to measure {task.quality_name} on (it has {', '.join(splits) or 'no splits'}); "
                            "pass --data with " + ("labelled texts" if task.labelled else "texts"))
    return {"spec": spec, "from": origin, "splits": chosen, "config": data_config, "all": splits,
            "carved_validation": carved}


def _calibration_texts(calibration: str | None, evaluation: dict, config: QuantizeConfig) -> dict | None:
    """``config.samples`` texts for calibration (train split first), drawn with the data seed."""
    if not config.needs_calibration:
        return None
    spec = calibration or evaluation["spec"]
    if spec is None:
        raise EdgewiseError(
            f"--method {config.method.value} calibrates on real texts and none were given: pass --calibration DATA "
            "(e.g. the training data; labels are not needed)"
        )
    splits = evaluation["all"] if spec == evaluation["spec"] else load_splits(spec, config.data)
    order = [n for n in ("train", "validation", "test") if n in splits] + [n for n in splits if n not in
                                                                              ("train", "validation", "test")]
    split = next((splits[n] for n in order if len(splits[n])), None)
    if split is None:
        raise EdgewiseError(f"the calibration data {spec} holds no texts; pass data with at least one text")
    picked = sorted(random.Random(config.data.seed).sample(range(len(split)), min(config.samples, len(split))))
    return {"spec": spec, "split": split.name, "texts": [split.texts[i] for i in picked],
            "pairs": [split.pairs[i] for i in picked] if split.pairs else None}


def _quantize_onnx(artifact: Artifact, out: Path, scratch: Path, config: QuantizeConfig, evaluation: dict,
                   calibration: dict | None, task) -> dict:
    from edgewise.core.env import cpu_info
    from edgewise.quantize.ort import TextBatches, contrib_ops, int8_settings, preprocess, quantize_static
    from edgewise.runtime.predictor import Predictor
    from edgewise.runtime.sizes import model_size

    src_model = artifact.path / "model.onnx"
    target = out / "model.onnx"
    settings = int8_settings(config, cpu_info())
    source = Predictor(artifact.path, model=src_model, task=task)  # encodes calibration texts, scores the source
    record: dict = {"method": config.method.value}
    batches = None
    if calibration is not None:
        batches = TextBatches(source.encode, calibration["texts"], calibration["pairs"],
                              config.calibration_batch_size)
        record["calibration"] = {"data": calibration["spec"], "split": calibration["split"],
                                 "samples": len(calibration["texts"]), "batches": len(batches),
                                 "batch_size": config.calibration_batch_size}

    if config.method is QuantMethod.FP16:
        from edgewise.quantize.fp16 import convert_fp16

        with console().status("converting to FP16"):
            record.update(convert_fp16(src_model, target, config))
    else:
        pre = scratch / "preprocessed.onnx"
        with console().status("pre-processing the model for quantization"):
            record.update(preprocess(src_model, pre))
        record.update({"int8": settings, "optimized_graph_ops": contrib_ops(src_model)})
        if config.max_accuracy_drop is not None:
            from edgewise.quantize.search import candidate_table, search

            validation = next(s for s in evaluation["splits"] if s.name == "validation")
            chosen, record["search"] = search(pre, src_model, scratch, artifact.path, settings, config, batches,
                                              validation, artifact.labels, task)
            console().print(candidate_table(record["search"]))
            shutil.move(chosen, target)
            picked = record["search"]["picked"]
            # Record what was kept, not what the command line said.
            record.update({"method": picked["method"], "picked": picked["name"],
                           "int8": {**settings, "per_channel": picked["per_channel"]},
                           "fp32_nodes": picked["fp32_nodes"]})
            if picked["method"] == "static":
                record["calibration"]["method"] = picked["calibration"]
            else:
                record.pop("calibration", None)
        elif config.method is QuantMethod.DYNAMIC:
            from edgewise.quantize.ort import quantize_dynamic

            with console().status("quantizing (dynamic INT8)"):
                quantize_dynamic(pre, target, settings, config)
        else:
            with console().status(f"calibrating ({config.calibration_method.value}, {len(batches)} batches) and "
                                  "quantizing (static INT8, QDQ)"):
                quantize_static(pre, target, settings, config, batches, scratch / "calibration.json")
            record["calibration"]["method"] = config.calibration_method.value
    metrics = {"quantization": record,
               "size": {"source_bytes": model_size(src_model), "bytes": model_size(target),
                        "ratio": model_size(target) / model_size(src_model)}}
    metrics.update(_accuracy(source, artifact.path, artifact.labels, target, config, evaluation, task))
    if config.method is QuantMethod.FP16:
        _check_fp16(metrics, config)
    return metrics


def _accuracy(source, folder: Path, id2label: dict[int, str], target: Path, config: QuantizeConfig,
              evaluation: dict, task) -> dict:
    """The task's figures of source and result per split, their agreement and output differences; without data,
    the output differences on generated inputs. ``source`` is the source model's Predictor."""
    from edgewise.quantize.measure import compare_splits
    from edgewise.runtime.predictor import Predictor

    result = Predictor(folder, model=target, task=task)
    if evaluation["splits"]:
        outputs = lambda p: lambda texts, pairs: p.outputs(texts, pairs, batch_size=config.eval_batch_size)  # noqa: E731
        return {"accuracy": compare_splits(task, evaluation["splits"], outputs(source), outputs(result), id2label),
                "data": evaluation["spec"], "pairs": config.pairs}
    parity = _generated_parity(source, result)
    from edgewise.export.parity import check

    check(parity, float("inf"), "the quantized model")  # no tolerance without data, but never NaN / inf logits
    return {"accuracy": {}, "data": None, "parity_generated": parity}


def _generated_parity(source, result) -> dict:
    from edgewise.export.parity import compare, generated_batches

    batches = generated_batches(list(source.inputs), source.tokenizer.get_vocab_size(), source.max_length,
                                source.pad_id)
    batches = [{k: v.astype(source.inputs[k]) for k, v in b.items()} for b in batches]
    return compare(source.run, result.run, batches)


def _check_fp16(metrics: dict, config: QuantizeConfig) -> None:
    """A classifier's FP16 logits within --atol of the FP32 model's; an embedding model's vectors (whose elements
    are a few hundredths each, so an absolute tolerance says little) at a cosine of at least FP16_COSINE to them."""
    from edgewise.quantize.fp16 import DEFAULT_ATOL, FP16_COSINE

    rows = [v["quantized"] for v in metrics["accuracy"].values()] + (
        [metrics["parity_generated"]] if "parity_generated" in metrics else [])
    if any("cosine_min" in row for row in rows):
        lowest = min(row["cosine_min"] for row in rows if "cosine_min" in row)
        metrics["fp16_check"] = {"cosine_min": lowest, "required": FP16_COSINE, "passed": lowest >= FP16_COSINE}
        if lowest < FP16_COSINE:
            raise EdgewiseError(
                f"the FP16 model's vectors fall to a cosine of {lowest:.5f} to the FP32 model's (at least "
                f"{FP16_COSINE} expected); keep more operators in FP32 with --exclude-op")
        return
    atol = config.atol or DEFAULT_ATOL
    worst = max((row["max_abs_diff"] for row in rows), default=0.0)
    metrics["fp16_check"] = {"atol": atol, "max_abs_diff": worst, "passed": worst <= atol}
    if worst > atol:
        raise EdgewiseError(
            f"the FP16 model's logits differ from the FP32 model's by up to {worst:.3g} (> atol {atol:g}); keep more "
            "operators in FP32 with --exclude-op, or raise --atol if that is acceptable"
        )
