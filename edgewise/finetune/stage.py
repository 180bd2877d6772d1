"""Fine-tune a pretrained encoder into a text classifier: the teacher every later stage starts from."""

from __future__ import annotations

import os
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.config import config_to_dict
from edgewise.core.data import encode_labels, label_names, load_splits, require_labels, training_splits
from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import MANIFEST_NAME, Manifest
from edgewise.core.progress import console
from edgewise.core.stage import StageOutput
from edgewise.finetune.config import FinetuneConfig


def finetune(src: str | Path, dst: Path, config: FinetuneConfig = FinetuneConfig(), *, data: str | None = None,
             overwrite: bool = False, resume: bool = False) -> Manifest | None:
    """Fine-tune the pretrained encoder ``src`` (builtin:NAME, folder or Hub id) on ``data``; write an
    `hf` artifact to ``dst``.

    The work happens in ``.<dst>.partial`` next to ``dst`` and is renamed into place when done;
    checkpoints saved there every epoch let ``resume=True`` continue after a crash or kill.
    Returns the manifest (None on non-zero ranks of a multi-process run).

    Example:
        >>> finetune("builtin:all-minilm-l6-v2", Path("runs/teacher"),
        ...          FinetuneConfig(trainer=TrainerConfig(epochs=2), max_length=128),
        ...          data="builtin:bbc-news")  # doctest: +SKIP
    """
    from edgewise.core.deps import require_full

    require_full("torch", "transformers", "accelerate")
    from edgewise.core.models import resolve_model

    if data is None:
        raise EdgewiseError("fine-tuning needs labelled data: pass DATA (a file, a folder of splits or "
                            "builtin:bbc-news)")
    # Under torchrun every rank runs this; every rank checks the inputs (so each fails the same
    # way), only rank 0 touches the work folder and writes.
    rank = int(os.environ.get("RANK", "0"))
    source = resolve_model(str(src), allow_pickle=config.allow_pickle)
    parent = None
    if source.is_local and (Path(source.location) / MANIFEST_NAME).is_file():
        parent = Artifact.load(Path(source.location), kind="hf")  # re-tuning an edgewise artifact
    out = StageOutput("finetune", dst, parent=parent, sources=(Path(source.location),) if source.is_local else (),
                      derived=False, overwrite=overwrite, resumable=True, resume=resume, active=rank == 0)

    splits = load_splits(data, config.data)
    train, validation, test = training_splits(splits, config.data, data, config.trainer.train_split)
    names = label_names(require_labels(train))
    if len(names) < 2:
        raise EdgewiseError(
            f"the {train.name} split of {data} has a single label ({names[0]!r}); a classifier needs at least two"
        )
    for other in (validation, test):
        unseen = sorted(set(other.labels or ()) - set(names)) if other is not None else []
        if unseen:
            raise EdgewiseError(
                f"label(s) {', '.join(map(repr, unseen[:10]))} occur in the {other.name} split of {data} but never "
                f"in the {train.name} split, so the model cannot learn them; add training examples or drop those rows"
            )
    if test is not None and test.labels is None:
        if rank == 0:
            console().print(f"the test split has no labels ({test.label_problem}); skipping test metrics")
        test = None
    id2label = dict(enumerate(names))
    label_column = config.data.label_column
    train_ids = encode_labels(train, id2label, label_column)
    validation_ids = encode_labels(validation, id2label, label_column)
    test_ids = encode_labels(test, id2label, label_column) if test is not None else None

    run = {
        "pretrained": source.describe(),
        "data": {s.name: s.sha256() for s in (train, validation, test) if s is not None},
        "config": config_to_dict(config),
    }
    out.run = run
    with out:
        if out.dropped:
            console().print(f"dropped {', '.join(out.dropped)}: the kill interrupted its saving")
        return _train(source, out, config, data, id2label, (train, train_ids), (validation, validation_ids),
                      (test, test_ids), resume, rank)


def _train(source, out, config, data, id2label, train, validation, test, resume, rank):
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from edgewise.core.lengths import length_stats, percentile_length, position_limit, working_length
    from edgewise.core.models import load_classifier, load_tokenizer, token_lengths
    from edgewise.core.tasks.classification import Classification
    from edgewise.core.training import encode, fit, training_arguments

    say = console().print if rank == 0 else (lambda *args, **kwargs: None)
    tokenizer = load_tokenizer(source)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise EdgewiseError(f"the tokenizer of {source.spec} has no padding or end token; add a pad token")
        tokenizer.pad_token = tokenizer.eos_token  # GPT-style tokenizers: pad with the end token
    set_seed(config.data.seed)  # the fresh classification head is drawn from this seed
    model = load_classifier(
        source, config.allow_pickle, new_head=True,
        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        ignore_mismatched_sizes=True, pad_token_id=tokenizer.pad_token_id,
    )
    limit = position_limit(model.config, tokenizer.model_max_length)
    lengths = token_lengths(tokenizer, train[0].texts, train[0].pairs)
    max_length = working_length(limit, requested=config.max_length
                                or percentile_length(lengths, config.length_percentile, limit))
    stats = length_stats(lengths, max_length)
    say(
        f"fine-tuning {source.spec} on {data}: {len(train[0])} train / {len(validation[0])} validation"
        + (f" / {len(test[0])} test" if test[0] is not None else "")
        + f" texts, {len(id2label)} labels, max_length {max_length} "
        f"(token lengths p50 {stats['p50']}, p99 {stats['p99']}, {stats['truncated_fraction']:.1%} truncated)"
    )

    pad_to_max = not config.trainer.dynamic_padding
    train_ds = encode(tokenizer, train[0], train[1], max_length, pad_to_max, model)
    validation_ds = encode(tokenizer, validation[0], validation[1], max_length, pad_to_max, model)
    args = training_arguments(config.trainer, config.data.seed, out.checkpoints, len(train_ds))
    task = Classification()
    trainer, result = fit(Trainer, "fine-tuning", resume=resume, say=say, compute_metrics=task.trainer_metrics,
                          model=model, args=args,
                          train_dataset=train_ds, eval_dataset=validation_ds,
                          data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)

    # Prediction is collective under torchrun: every rank runs it, only rank 0 writes.
    metrics = {
        "validation": task.split_metrics(trainer.predict(validation_ds).predictions, validation[1], id2label),
        "train": {
            "runtime_s": round(result.metrics["train_runtime"], 1),
            "samples_per_second": round(result.metrics["train_samples_per_second"], 2),
            "steps": trainer.state.global_step,
            "epochs": config.trainer.epochs,
            "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
            "selected_by": f"validation {config.trainer.best_metric.value}, ties to the lower validation loss",
            "resumed": bool(resume),
        },
    }
    if test[0] is not None:
        test_ds = encode(tokenizer, test[0], test[1], max_length, pad_to_max, model)
        metrics["test"] = task.split_metrics(trainer.predict(test_ds).predictions, test[1], id2label)
    if not trainer.is_world_process_zero():
        return None

    model = trainer.model
    model.save_pretrained(out.artifact, safe_serialization=True)
    tokenizer.save_pretrained(out.artifact)
    manifest = out.commit(
        kind="hf",
        config=config,
        task=task,
        labels=id2label,
        source=None if out.parent is not None else {"pretrained": source.describe()},
        data={
            "spec": data,
            "splits": {s.name: s.describe() for s in (train[0], validation[0], test[0]) if s is not None},
            "max_length": max_length,
            "token_lengths": stats,
        },
        metrics=metrics,
        history=trainer.state.log_history,
    )
    summary = "  ".join(
        f"{split} accuracy {metrics[split]['accuracy']:.4f} macro-F1 {metrics[split]['macro_f1']:.4f}"
        for split in ("validation", "test") if split in metrics
    )
    say(f"wrote {out.dst}: {summary}")
    return manifest
