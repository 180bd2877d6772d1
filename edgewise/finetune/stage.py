"""Fine-tune a pretrained encoder into a text or token classifier: the teacher every later stage starts from."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from edgewise.core.artifact import Artifact
from edgewise.core.config import config_to_dict
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

    task = finetune_task(config.task, data)
    say = console().print if rank == 0 else (lambda *args, **kwargs: None)
    splits, id2label = task.training_data(data, config.data, config.trainer.train_split, say)

    run = {
        "pretrained": source.describe(),
        "data": {split.name: split.sha256() for split, _ in splits.values()},
        "config": config_to_dict(config),
    }
    out.run = run
    with out:
        if out.dropped:
            console().print(f"dropped {', '.join(out.dropped)}: the kill interrupted its saving")
        return _train(source, out, config, data, task, id2label, splits, resume, rank)


def finetune_task(name: str, data: str):
    """The task a fine-tuning trains: ``name``, or with auto a token classifier for word-tagged data (CoNLL,
    JSONL with tokens / entities), else a sequence classifier."""
    from edgewise.core.tasks import task_class
    from edgewise.core.tasks.token_classification import is_tagged

    if name == "auto":
        name = "token-classification" if is_tagged(data) else "classification"
    task = task_class(name)()
    if not hasattr(task, "training_data"):
        raise EdgewiseError(f"finetune trains classification and token-classification heads; a {task.name} model "
                            "is made from an encoder as it is (pass --task embedding to the stage that uses it)")
    if task.name == "token-classification" and not is_tagged(data):
        raise EdgewiseError(f"{data} is not word-tagged data, and --task token-classification learns a tag per "
                            "word: give CoNLL files (a token and its tag per line) or JSONL with tokens + tags or "
                            "text + entities")
    if task.name == "classification" and is_tagged(data):
        raise EdgewiseError(f"{data} is word-tagged data (a tag per word), and --task classification learns a "
                            "label per text: pass --task token-classification (or leave --task auto)")
    return task


def _train(source, out, config, data, task, id2label, splits, resume, rank):
    from transformers import Trainer, set_seed

    from edgewise.core.lengths import length_stats, percentile_length, position_limit, working_length
    from edgewise.core.models import load_tokenizer
    from edgewise.core.training import fit, training_arguments

    say = console().print if rank == 0 else (lambda *args, **kwargs: None)
    tokenizer = load_tokenizer(source)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise EdgewiseError(f"the tokenizer of {source.spec} has no padding or end token; add a pad token")
        tokenizer.pad_token = tokenizer.eos_token  # GPT-style tokenizers: pad with the end token
    set_seed(config.data.seed)  # the fresh classification head is drawn from this seed
    model = task.load(
        source, config.allow_pickle, new_head=True,
        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        ignore_mismatched_sizes=True, pad_token_id=tokenizer.pad_token_id,
    )
    limit = position_limit(model.config, tokenizer.model_max_length)
    lengths = task.token_lengths(tokenizer, splits["train"][0])
    max_length = working_length(limit, requested=config.max_length
                                or percentile_length(lengths, config.length_percentile, limit))
    stats = length_stats(lengths, max_length)
    say(
        f"fine-tuning {source.spec} ({task.describe()}) on {data}: {task.describe_data(splits, id2label)}, "
        f"max_length {max_length} "
        f"(token lengths p50 {stats['p50']}, p99 {stats['p99']}, {stats['truncated_fraction']:.1%} truncated)"
    )

    pad_to_max = not config.trainer.dynamic_padding
    encoded = {name: task.encode(tokenizer, split, truth, id2label, max_length, pad_to_max, model)
               for name, (split, truth) in splits.items()}
    selection = {"metric_for_best_model": f"rank_{task.best_metric}"} if task.best_metric else {}
    args = training_arguments(config.trainer, config.data.seed, out.checkpoints, len(encoded["train"]), **selection)
    trainer, result = fit(Trainer, "fine-tuning", resume=resume, say=say,
                          compute_metrics=functools.partial(task.trainer_metrics, labels=id2label),
                          model=model, args=args,
                          train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                          data_collator=task.collator(tokenizer), processing_class=tokenizer)

    def split_metrics(name: str) -> dict:
        return task.dataset_metrics(trainer.predict(encoded[name]).predictions, encoded[name], splits[name][1],
                                    id2label)

    # Prediction is collective under torchrun: every rank runs it, only rank 0 writes.
    metrics = {
        "validation": split_metrics("validation"),
        "train": {
            "runtime_s": round(result.metrics["train_runtime"], 1),
            "samples_per_second": round(result.metrics["train_samples_per_second"], 2),
            "steps": trainer.state.global_step,
            "epochs": config.trainer.epochs,
            "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
            "selected_by": f"validation {task.best_metric or config.trainer.best_metric.value}, ties to the lower "
                           "validation loss",
            "resumed": bool(resume),
        },
    }
    if "test" in splits:
        metrics["test"] = split_metrics("test")
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
            "splits": {split.name: {"rows": len(split), "sha256": split.sha256()} for split, _ in splits.values()},
            "max_length": max_length,
            "token_lengths": stats,
        },
        metrics=metrics,
        history=trainer.state.log_history,
    )
    summary = "  ".join(f"{split} {task.summary(metrics[split])}" for split in ("validation", "test")
                        if split in metrics)
    say(f"wrote {out.dst}: {summary}")
    return manifest
