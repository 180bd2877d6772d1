"""`edgewise distill`: a fine-tuned teacher taught into a smaller student."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.config import config_to_dict
from edgewise.core.data import DataConfig, Split, encode_labels, load_splits, training_splits
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import Manifest
from edgewise.core.progress import console
from edgewise.core.stage import StageOutput
from edgewise.distill.config import DistillConfig


def unlabeled_texts(spec: str, config: DistillConfig) -> list[str]:
    """Every text of every split of ``spec`` (a .txt file holds one text per line)."""
    splits = load_splits(spec, DataConfig(text_column=config.data.text_column if not spec.endswith(".txt") else "text",
                                          encoding=config.data.encoding))
    texts = [t for split in splits.values() for t in split.texts]
    if not texts:
        raise EdgewiseError(f"--unlabeled {spec} holds no texts")
    return texts


def distill(src: Path, dst: Path, config: DistillConfig = DistillConfig(), *, data: str | None = None,
            overwrite: bool = False, resume: bool = False) -> Manifest | None:
    """Distil the `hf` teacher in ``src`` into a student trained on ``data`` (+ ``config.unlabeled`` texts),
    written to ``dst``.

    The transfer set is the training split plus the unlabelled texts; the teacher's logits on it are
    computed once and cached unless hidden-state / attention terms (or ``cache_logits=False``) need
    the teacher every step. Work happens in ``.<dst>.partial`` with a checkpoint per epoch (``resume``).

    Example:
        >>> distill(Path("runs/teacher"), Path("runs/student-l3"), DistillConfig(layers=3),
        ...         data="builtin:bbc-news")  # doctest: +SKIP
    """
    from edgewise.core.deps import require_full

    require_full("torch", "transformers", "accelerate")
    if data is None:
        raise EdgewiseError("distillation needs labelled data: pass DATA (the teacher's training data, typically)")
    rank = int(os.environ.get("RANK", "0"))
    teacher = Artifact.load(Path(src), kind="hf")
    id2label = teacher.classifier_labels()
    out = StageOutput("distill", dst, parent=teacher, derived=False, overwrite=overwrite, resumable=True,
                      resume=resume, active=rank == 0)
    splits = load_splits(data, config.data)
    if config.trainer.train_split == "train":
        from edgewise.core.lineage import carve_validation

        # On the teacher's own data, hold out the texts the teacher held out (its fraction and seed):
        # a validation text the teacher trained on would flatter the student's checkpoint choice.
        splits, _ = carve_validation(splits, data, teacher.path, config.data)
    train, validation, test = training_splits(splits, config.data, data, config.trainer.train_split)
    labels = {s.name: encode_labels(s, id2label, config.data.label_column) for s in (train, validation)}
    if test is not None and test.labels is not None:
        labels["test"] = encode_labels(test, id2label, config.data.label_column)
    else:
        test = None
    extra = unlabeled_texts(config.unlabeled, config) if config.unlabeled else []
    if extra and train.pairs is not None:
        raise EdgewiseError("--unlabeled adds single texts; it cannot be mixed with --text-pair-column data")
    transfer = Split("transfer", train.texts + extra, train.pairs, None, source=data)

    run = {"teacher": teacher.describe(), "config": config_to_dict(config),
           "data": {s.name: s.sha256() for s in (train, validation, test) if s is not None},
           "unlabeled": Split("u", extra, None, None).sha256() if extra else None}
    out.run = run
    with out:
        return _train(teacher, out, config, data, id2label, train, validation, test, transfer, len(extra), labels,
                      resume, rank)


def transfer_dataset(tokenizer, transfer: Split, labels: list[int], unlabeled_rows: int, logits, max_length: int,
                     pad_to_max: bool, model):
    """The student's training set: its tokenization of each text, the label (-100 for unlabelled texts)
    and, when cached, the teacher's logits for that same text (row i belongs to text i)."""
    from edgewise.core.training import encode

    dataset = encode(tokenizer, transfer, labels + [-100] * unlabeled_rows, max_length, pad_to_max, model)
    if logits is not None:
        if len(logits) != len(transfer):
            raise ValueError(f"{len(logits)} teacher logit rows for {len(transfer)} texts")
        dataset.encodings["teacher_logits"] = logits.tolist()
    return dataset


def _train(teacher, out, config, data, id2label, train, validation, test, transfer, unlabeled_rows, labels, resume,
           rank):
    import numpy as np
    from transformers import set_seed

    from edgewise.core.lengths import length_stats, position_limit, working_length
    from edgewise.core.metrics import classification_metrics
    from edgewise.core.models import ModelSource, load_classifier, load_tokenizer, token_lengths
    from edgewise.core.training import encode, fit, split_metrics, training_arguments
    from edgewise.distill.cache import logits_key, teacher_logits
    from edgewise.distill.losses import Projection
    from edgewise.distill.students import build_student
    from edgewise.distill.trainer import (
        DistillCollator,
        DistillTrainer,
        EpochTimer,
        attach_projection,
        detach_projection,
    )
    from edgewise.runtime.sizes import model_size

    say = console().print if rank == 0 else (lambda *args, **kwargs: None)
    source = ModelSource(str(teacher.path), str(teacher.path), True)
    eager = {"attn_implementation": "eager"} if config.attention_weight > 0 else {}
    teacher_tokenizer = load_tokenizer(source)
    teacher_model = load_classifier(source, config.allow_pickle, **eager).eval()
    limit = position_limit(teacher_model.config, teacher_tokenizer.model_max_length)
    recorded = (teacher.manifest.data or {}) if teacher.manifest else {}
    max_length = working_length(limit, recorded, config.max_length)
    student = build_student(teacher_model, teacher_tokenizer, config, id2label, config.data.seed, **eager)
    student_limit = position_limit(student.model.config, student.tokenizer.model_max_length)
    if student_limit and max_length > student_limit:
        raise EdgewiseError(f"the student takes at most {student_limit} tokens, fewer than max_length {max_length}; "
                            "pass --max-length or a student with more positions")
    if student.tokenizer.pad_token is None:
        if student.tokenizer.eos_token is None:
            raise EdgewiseError("the student's tokenizer has no padding or end token; add a pad token to it")
        student.tokenizer.pad_token = student.tokenizer.eos_token
    if config.teacher_forward_each_step and not student.same_tokenizer:
        raise EdgewiseError(
            "a teacher forward pass every step (--no-cache-logits) needs the student to share the teacher's "
            "tokenizer; keep the logit cache on"
        )
    # remove_unused_columns would strip the cached teacher logits (not a forward() argument) from every
    # batch, and the trainer would then quietly run the teacher each step.
    args = training_arguments(config.trainer, config.data.seed, out.checkpoints, len(transfer),
                              remove_unused_columns=False)
    teacher_model.to(args.device)  # the one-time pass and any per-step passes run where training runs
    pad_to_max = not config.trainer.dynamic_padding

    teacher_id = teacher.manifest.sha256 if teacher.manifest else json.dumps(teacher.describe(), sort_keys=True)
    pass_seconds, from_cache, cached = 0.0, None, None
    needs_soft_targets = config.alpha > 0 and not config.teacher_forward_each_step
    if needs_soft_targets:
        with args.main_process_first(desc="teacher logits"):  # rank 0 computes, the others read the cache
            cached, pass_seconds, from_cache = teacher_logits(
                teacher_model, teacher_tokenizer, transfer.texts, transfer.pairs, max_length,
                logits_key(teacher_id, transfer.texts, transfer.pairs, max_length))
    train_ds = transfer_dataset(student.tokenizer, transfer, labels["train"], unlabeled_rows, cached, max_length,
                                pad_to_max, student.model)
    say(f"distilling {teacher.path.name} ({_millions(teacher_model)} parameters) into a "
        f"{student.kind} student ({_millions(student.model)}, layers {student.layer_map}) on "
        f"{len(train)} labelled + {unlabeled_rows} unlabelled texts, max_length {max_length}; teacher logits "
        + ("every step" if config.teacher_forward_each_step else "not needed (alpha 0)" if not needs_soft_targets
           else "from the cache" if from_cache else f"computed once in {pass_seconds:.1f} s"))

    validation_ds = encode(student.tokenizer, validation, labels["validation"], max_length, pad_to_max, student.model)
    teacher_width = getattr(teacher_model.config, "hidden_size", None) or teacher_model.config.dim
    student_width = getattr(student.model.config, "hidden_size", None) or student.model.config.dim
    set_seed(config.data.seed)
    projection = Projection(student_width, teacher_width)
    if config.hidden_weight > 0:
        attach_projection(student.model, projection)
    timer = EpochTimer()
    trainer, result = fit(
        DistillTrainer, "distilling", resume=resume, say=say, callbacks=[timer], model=student.model, args=args,
        train_dataset=train_ds, eval_dataset=validation_ds, data_collator=DistillCollator(student.tokenizer),
        processing_class=student.tokenizer, teacher=teacher_model, distill=config, layer_map=student.layer_map,
        projection=projection,
    )

    metrics = {"validation": split_metrics(trainer, validation_ds, labels["validation"], id2label)}
    if test is not None:
        test_ds = encode(student.tokenizer, test, labels["test"], max_length, pad_to_max, student.model)
        prediction = trainer.predict(test_ds).predictions.argmax(-1)
        metrics["test"] = classification_metrics(labels["test"], prediction.tolist(), id2label)
        with args.main_process_first(desc="teacher test logits"):
            test_teacher, _, _ = teacher_logits(teacher_model, teacher_tokenizer, test.texts, test.pairs, max_length,
                                                logits_key(teacher_id, test.texts, test.pairs, max_length))
        teacher_accuracy = float(np.mean(test_teacher.argmax(-1) == np.asarray(labels["test"])))
        metrics["test"].update(agreement_with_teacher=float(np.mean(prediction == test_teacher.argmax(-1))),
                               teacher_accuracy=teacher_accuracy,
                               accuracy_vs_teacher=metrics["test"]["accuracy"] / max(teacher_accuracy, 1e-12))
    if not trainer.is_world_process_zero():
        return None
    detach_projection(trainer.model)
    metrics["train"] = {
        "runtime_s": round(result.metrics["train_runtime"], 2),
        "step_seconds_per_epoch": [round(s, 2) for s in timer.seconds],
        "seconds_per_epoch": round(sum(timer.seconds) / len(timer.seconds), 2) if timer.seconds else None,
        "steps": trainer.state.global_step, "epochs": config.trainer.epochs, "resumed": bool(resume),
        "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
        "teacher_pass_s": round(pass_seconds, 2), "teacher_logits_cached": needs_soft_targets,
        "teacher_logits_from_cache": from_cache,
    }

    trainer.model.save_pretrained(out.artifact, safe_serialization=True)
    student.tokenizer.save_pretrained(out.artifact)
    metrics["size"] = {"student_parameters": _count(trainer.model), "teacher_parameters": _count(teacher_model),
                       "parameter_ratio": _count(trainer.model) / _count(teacher_model),
                       "file_size_ratio": model_size(out.artifact, "hf") / max(model_size(teacher.path, "hf"), 1),
                       "student_kind": student.kind, "layer_map": student.layer_map}
    manifest = out.commit(
        kind="hf", config=config, labels=id2label,
        source=None if teacher.manifest else {"teacher": teacher.describe()},
        data={"spec": data, "unlabeled": config.unlabeled, "unlabeled_rows": unlabeled_rows,
              "transfer_rows": len(transfer),
              "splits": {s.name: s.describe() for s in (train, validation, test) if s is not None},
              "max_length": max_length,
              # The student's own tokenization of its labelled training texts: what a device bench times.
              "token_lengths": length_stats(token_lengths(student.tokenizer, train.texts, train.pairs), max_length)},
        metrics=metrics, history=trainer.state.log_history,
    )
    say(f"wrote {out.dst}: " + "  ".join(
        f"{split} accuracy {metrics[split]['accuracy']:.4f} macro-F1 {metrics[split]['macro_f1']:.4f}"
        for split in ("validation", "test") if split in metrics)
        + f"; {metrics['size']['parameter_ratio']:.0%} of the teacher's parameters "
        f"({metrics['size']['file_size_ratio']:.0%} of its size)")
    return manifest


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _millions(model) -> str:
    return f"{_count(model) / 1e6:.2f} M"
