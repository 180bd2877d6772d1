"""`edgewise distill`: a fine-tuned teacher taught into a smaller student."""

from __future__ import annotations

import json
import os
import shutil
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
    from edgewise.core.tasks import refuse_unless

    if data is None:
        raise EdgewiseError("distillation needs texts: pass DATA (the teacher's training data, typically; labelled "
                            "for a classifier, any texts for an embedding model)")
    rank = int(os.environ.get("RANK", "0"))
    teacher = Artifact.load(Path(src), kind="hf")
    task = refuse_unless(teacher.task_for(config.task), ("classification", "embedding"), str(teacher.path),
                         "distill")
    classifier = task.labelled
    if config.static and (classifier or task.static):
        raise EdgewiseError(f"--static distils a sentence-embedding teacher into a table of token vectors; "
                            f"{teacher.path} is a {task.describe()} model: drop --static")
    id2label = task.labels_of(teacher)
    out = StageOutput("distill", dst, parent=teacher, derived=False, overwrite=overwrite, resumable=not config.static,
                      resume=resume, active=rank == 0)
    splits = load_splits(data, config.data)
    if config.trainer.train_split == "train":
        from edgewise.core.lineage import carve_validation

        # On the teacher's own data, hold out the texts the teacher held out (its fraction and seed):
        # a validation text the teacher trained on would flatter the student's checkpoint choice.
        splits, _ = carve_validation(splits, data, teacher.path, config.data, classifier)
    train, validation, test = training_splits(splits, config.data, data, config.trainer.train_split,
                                              labelled=classifier)
    labels = {}  # label ids per split: what a classifier learns besides the teacher; an embedding model has none
    if classifier:
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
        if config.static:
            return _static(teacher, task, out, config, data, validation, test)
        return _train(teacher, task, out, config, data, id2label, train, validation, test, transfer, len(extra),
                      labels, resume, rank)


def _static(teacher, task, out, config, data, validation, test):
    """A static student (distill.static): the teacher's token table as model.onnx, with the teacher's tokenizer; its
    cosine and neighbour agreement with the teacher measured on the validation and test texts."""
    import time

    from edgewise.core.artifact import TOKENIZER_FILES
    from edgewise.core.lengths import artifact_lengths
    from edgewise.core.models import ModelSource, load_tokenizer
    from edgewise.core.progress import progress_bar
    from edgewise.core.tasks.embedding import Embedding
    from edgewise.distill.cache import outputs_key, teacher_outputs
    from edgewise.distill.static import token_table, write_graph
    from edgewise.runtime.predictor import Predictor
    from edgewise.runtime.sizes import model_size

    started = time.perf_counter()
    source = ModelSource(str(teacher.path), str(teacher.path), True)
    tokenizer = load_tokenizer(source)
    model = task.load(source, config.allow_pickle).eval()
    max_length, limit = artifact_lengths(teacher.path, (teacher.manifest.data or {}) if teacher.manifest else {},
                                         config.max_length)
    with progress_bar(transient=True) as bar:
        step = bar.add_task("embedding the vocabulary", total=len(tokenizer.get_vocab()), info="")
        table, keep = token_table(model, tokenizer, task, config.static_dims, progress=lambda n: bar.advance(step, n))
    graph = write_graph(table, keep, out.artifact / "model.onnx")
    for name in TOKENIZER_FILES:
        if (teacher.path / name).is_file():
            shutil.copy2(teacher.path / name, out.artifact / name)
    static = Embedding("mean", True, graph["dimension"], static=True)
    seconds = round(time.perf_counter() - started, 1)
    console().print(f"static student: {graph['tokens_counted']} of {graph['vocabulary']} tokens, {graph['dimension']} "
                    f"dimensions, in {seconds} s")
    student = Predictor(out.artifact, max_length=max_length, verify=False, task=static)
    teacher_id = teacher.manifest.sha256 if teacher.manifest else json.dumps(teacher.describe(), sort_keys=True)
    metrics = {"static": {**graph, "seconds": seconds, "method": "model2vec's: tokens embedded alone by the teacher, "
                                                               f"PCA to {graph['dimension']}, SIF weights"}}
    for split in (validation, test):
        if split is None:
            continue
        reference, _, _ = teacher_outputs(model, tokenizer, split.texts, split.pairs, max_length,
                                          outputs_key(teacher_id, task.record(), split.texts, split.pairs, max_length),
                                          task, label=f"teacher outputs ({split.name})")
        metrics[split.name] = task.agreement_on(task.eval_set(split), student.outputs(split.texts, split.pairs),
                                                reference)
    metrics["size"] = {"file_size_ratio": model_size(out.artifact / "model.onnx")
                       / max(model_size(teacher.path, "hf"), 1)}
    manifest = out.commit(kind="onnx", config=config, labels={}, task=static,
                          source=None if teacher.manifest else {"teacher": teacher.describe()},
                          data={"spec": data, "max_length": max_length, "max_positions": limit}, metrics=metrics)
    console().print(f"wrote {out.dst}: " + "  ".join(f"{split} {task.summary(metrics[split])}"
                                                      for split in ("validation", "test") if split in metrics)
                    + f"; {metrics['size']['file_size_ratio']:.0%} of the teacher's size")
    return manifest


def transfer_dataset(tokenizer, transfer: Split, labels: list[int] | None, unlabeled_rows: int, outputs,
                     max_length: int, pad_to_max: bool, model):
    """The student's training set: its tokenization of each text, the label (-100 for unlabelled texts; none
    for an embedding model) and, when cached, the teacher's outputs for that same text (row i belongs to text i)."""
    from edgewise.core.training import encode
    from edgewise.distill.trainer import TEACHER_OUTPUTS

    dataset = encode(tokenizer, transfer, None if labels is None else labels + [-100] * unlabeled_rows, max_length,
                     pad_to_max, model)
    if outputs is not None:
        if len(outputs) != len(transfer):
            raise ValueError(f"{len(outputs)} teacher output rows for {len(transfer)} texts")
        dataset.encodings[TEACHER_OUTPUTS] = outputs.tolist()
    return dataset


def _train(teacher, task, out, config, data, id2label, train, validation, test, transfer, unlabeled_rows, labels,
           resume, rank):
    from transformers import set_seed

    from edgewise.core.lengths import folder_length, length_stats, position_limit, working_length
    from edgewise.core.models import ModelSource, load_tokenizer, token_lengths
    from edgewise.core.training import encode, fit, training_arguments
    from edgewise.distill.cache import outputs_key, teacher_outputs
    from edgewise.distill.losses import Projection
    from edgewise.distill.students import build_student, width
    from edgewise.distill.trainer import (
        DistillCollator,
        DistillTrainer,
        EpochTimer,
        attach_projection,
        detach_projection,
        needs_teacher_outputs,
    )
    from edgewise.runtime.sizes import model_size

    say = console().print if rank == 0 else (lambda *args, **kwargs: None)
    classifier = task.labelled
    source = ModelSource(str(teacher.path), str(teacher.path), True)
    eager = {"attn_implementation": "eager"} if config.attention_weight > 0 else {}
    teacher_tokenizer = load_tokenizer(source)
    teacher_model = task.load(source, config.allow_pickle, **eager).eval()
    limit = position_limit(teacher_model.config, teacher_tokenizer.model_max_length)
    recorded = (teacher.manifest.data or {}) if teacher.manifest else {}
    max_length = working_length(limit, recorded or folder_length(teacher.path), config.max_length)
    student = build_student(teacher_model, teacher_tokenizer, config, id2label, config.data.seed, task, **eager)
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
    # remove_unused_columns would strip the cached teacher outputs (not a forward() argument) from every batch,
    # and the trainer would then quietly run the teacher each step. label_names: a bare encoder's forward takes
    # no labels, so Trainer would not pass an embedding model's validation targets to the metrics otherwise.
    selection = {} if classifier else {"metric_for_best_model": f"rank_{task.best_metric}"}
    # Grouping by length: all-MiniLM-L6-v2's 3-layer student on 40,000 sentences and 1,699 BBC documents
    # (AVX-512 EPYC, 2 cores) took 4.8 s a step of 32 texts in random batches, most of which padded to a
    # document's 256 tokens; grouped by length, 0.76 s (3 epochs: 50 min instead of 5 h).
    grouped = config.trainer.group_by_length if config.trainer.group_by_length is not None else not classifier
    args = training_arguments(config.trainer, config.data.seed, out.checkpoints, len(transfer),
                              remove_unused_columns=False, label_names=["labels"], group_by_length=grouped,
                              **selection)
    teacher_model.to(args.device)  # the one-time pass and any per-step passes run where training runs
    pad_to_max = not config.trainer.dynamic_padding

    teacher_id = teacher.manifest.sha256 if teacher.manifest else json.dumps(teacher.describe(), sort_keys=True)

    def targets(split, what: str):
        """The teacher's outputs of a split's texts (cached per teacher, task, texts and length)."""
        with args.main_process_first(desc=what):  # rank 0 computes, the others read the cache
            return teacher_outputs(teacher_model, teacher_tokenizer, split.texts, split.pairs, max_length,
                                   outputs_key(teacher_id, task.record(), split.texts, split.pairs, max_length),
                                   task, label=what)

    pass_seconds, from_cache, cached = 0.0, None, None
    needs_targets = needs_teacher_outputs(task, config) and not config.teacher_forward_each_step
    if needs_targets:
        cached, pass_seconds, from_cache = targets(transfer, "teacher outputs")
    train_ds = transfer_dataset(student.tokenizer, transfer, labels.get("train"), unlabeled_rows, cached, max_length,
                                pad_to_max, student.model)
    taught = (f"{len(train)} labelled + {unlabeled_rows} unlabelled texts" if classifier else
              f"{len(transfer)} texts ({unlabeled_rows} of them --unlabeled)")
    say(f"distilling {teacher.path.name} ({_millions(teacher_model)} parameters, {task.describe()}) into a "
        f"{student.kind} student ({_millions(student.model)}, layers {student.layer_map}) on {taught}, max_length "
        f"{max_length}; teacher outputs "
        + ("every step" if config.teacher_forward_each_step else "not needed (alpha 0)" if not needs_targets
           else "from the cache" if from_cache else f"computed once in {pass_seconds:.1f} s"))

    # Validation: a classifier's labels; an embedding model's targets are the teacher's vectors (what it learns).
    validation_targets = labels.get("validation")
    if not classifier:
        validation_targets = targets(validation, "teacher outputs (validation)")[0].tolist()
    validation_ds = encode(student.tokenizer, validation, validation_targets, max_length, pad_to_max, student.model)
    set_seed(config.data.seed)
    projection = Projection(width(student.model.config), width(teacher_model.config))
    if config.hidden_weight > 0:
        attach_projection(student.model, projection)
    timer = EpochTimer()
    trainer, result = fit(
        DistillTrainer, "distilling", resume=resume, say=say, compute_metrics=task.trainer_metrics,
        callbacks=[timer], model=student.model, args=args, train_dataset=train_ds, eval_dataset=validation_ds,
        data_collator=DistillCollator(student.tokenizer), processing_class=student.tokenizer, teacher=teacher_model,
        distill=config, layer_map=student.layer_map, projection=projection, task=task,
    )

    metrics = {}
    for split in (validation, test):
        if split is None:
            continue
        reference = targets(split, f"teacher outputs ({split.name})")[0] if split is test or not classifier else None
        # Trainer scores through the loss only when the batch carries labels: an embedding model's are the
        # teacher's vectors (without them it would return the bare encoder's token states, not sentence vectors).
        dataset = validation_ds if split is validation else encode(
            student.tokenizer, split, labels.get(split.name) if classifier else reference.tolist(), max_length,
            pad_to_max, student.model)
        predicted = trainer.predict(dataset).predictions
        if classifier:
            metrics[split.name] = task.split_metrics(predicted, labels[split.name], id2label)
        if reference is not None:
            metrics[split.name] = {**metrics.get(split.name, {}),
                                   **_against_teacher(task, split, predicted, reference, labels)}
    if not trainer.is_world_process_zero():
        return None
    detach_projection(trainer.model)
    metrics["train"] = {
        "runtime_s": round(result.metrics["train_runtime"], 2),
        "step_seconds_per_epoch": [round(s, 2) for s in timer.seconds],
        "seconds_per_epoch": round(sum(timer.seconds) / len(timer.seconds), 2) if timer.seconds else None,
        "steps": trainer.state.global_step, "epochs": config.trainer.epochs, "resumed": bool(resume),
        "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
        "selected_by": f"validation {args.metric_for_best_model.removeprefix('rank_')}",
        "teacher_pass_s": round(pass_seconds, 2), "teacher_logits_cached": needs_targets,
        "teacher_logits_from_cache": from_cache,
    }

    trainer.model.save_pretrained(out.artifact, safe_serialization=True)
    student.tokenizer.save_pretrained(out.artifact)
    metrics["size"] = {"student_parameters": _count(trainer.model), "teacher_parameters": _count(teacher_model),
                       "parameter_ratio": _count(trainer.model) / _count(teacher_model),
                       "file_size_ratio": model_size(out.artifact, "hf") / max(model_size(teacher.path, "hf"), 1),
                       "student_kind": student.kind, "layer_map": student.layer_map}
    manifest = out.commit(
        kind="hf", config=config, labels=id2label, task=task,
        source=None if teacher.manifest else {"teacher": teacher.describe()},
        data={"spec": data, "unlabeled": config.unlabeled, "unlabeled_rows": unlabeled_rows,
              "transfer_rows": len(transfer),
              "splits": {s.name: s.describe() for s in (train, validation, test) if s is not None},
              "max_length": max_length,
              # The student's own tokenization of its training texts: what a device bench times.
              "token_lengths": length_stats(token_lengths(student.tokenizer, train.texts, train.pairs), max_length)},
        metrics=metrics, history=trainer.state.log_history,
    )
    say(f"wrote {out.dst}: " + "  ".join(f"{split} {task.summary(metrics[split])}"
                                         for split in ("validation", "test") if split in metrics)
        + f"; {metrics['size']['parameter_ratio']:.0%} of the teacher's parameters "
        f"({metrics['size']['file_size_ratio']:.0%} of its size)")
    return manifest


def _against_teacher(task, split, predicted, reference, labels: dict) -> dict:
    """The student against the teacher on a split: a classifier's label agreement and the teacher's own accuracy;
    an embedding model's cosine and top-10 neighbour agreement."""
    import numpy as np

    if not task.labelled:
        return task.agreement_on(task.eval_set(split), predicted, reference)
    truth = np.asarray(labels[split.name])
    teacher_accuracy = float(np.mean(reference.argmax(-1) == truth))
    accuracy = float(np.mean(predicted.argmax(-1) == truth))
    return {"agreement_with_teacher": float(np.mean(predicted.argmax(-1) == reference.argmax(-1))),
            "teacher_accuracy": teacher_accuracy, "accuracy_vs_teacher": accuracy / max(teacher_accuracy, 1e-12)}


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _millions(model) -> str:
    return f"{_count(model) / 1e6:.2f} M"
