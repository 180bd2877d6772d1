"""Pieces shared by the stages that train with Hugging Face's Trainer (finetune, distill)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from edgewise.core.progress import console, progress_bar


def training_arguments(config, seed: int, checkpoints: Path, train_size: int, **overrides):
    """TrainingArguments from a TrainerConfig (epochs, learning rate, batch sizes, warm-up, ...) and the
    seed: evaluation and a checkpoint every epoch, the best checkpoint kept by ``config.best_metric``."""
    from transformers import TrainingArguments

    values = dict(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        seed=seed,
        data_seed=seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=f"rank_{config.best_metric.value}",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=max(1, math.ceil(train_size / config.batch_size / 10)),
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every parameter of a classifier takes part in the loss
    )
    values.update(overrides)
    return TrainingArguments(**values)


def fit(trainer_class, description: str, *, resume: bool, say, compute_metrics, callbacks=(), **trainer_kwargs):
    """Build ``trainer_class`` (Trainer or a subclass) with the task's ``compute_metrics``, edgewise's progress
    and quiet logging, and train it, from the last checkpoint in its output folder when resuming and there is
    one. Returns the trainer and its TrainOutput."""
    from edgewise.core.stage import has_checkpoint

    trainer = trainer_class(compute_metrics=compute_metrics, callbacks=[RichProgress(description), *callbacks],
                            **trainer_kwargs)
    quiet(trainer)
    resumable = has_checkpoint(Path(trainer.args.output_dir))
    if resume and not resumable:
        say("no checkpoint was saved before the interruption; starting from the first step")
    return trainer, trainer.train(resume_from_checkpoint=True if resume and resumable else None)


def quiet(trainer) -> None:
    """Trainer's PrinterCallback prints raw log dicts to stdout; RichProgress shows them instead."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized examples (unpadded; the collator pads each batch) with their label ids."""

    def __init__(self, encodings: dict, labels: list[int] | None):
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def encode(tokenizer, split, labels: list[int] | None, max_length: int, pad_to_max: bool,
           model=None) -> EncodedDataset:
    """Tokenize a split (only the inputs ``model`` accepts, when given)."""
    from edgewise.core.models import model_inputs

    encodings = tokenizer(
        split.texts, split.pairs, truncation=True, max_length=max_length,
        padding="max_length" if pad_to_max else False,
    )
    return EncodedDataset(model_inputs(model, encodings) if model is not None else dict(encodings), labels)


class RichProgress(TrainerCallback):
    """Trainer progress: the total steps up front, a rich bar (steps, loss, eta) on a terminal, and a plain
    line every LINE_EVERY_S seconds or twentieth of the run when the output is a file or CI log (where the
    bar shows nothing), with step, s/step and eta; one line per evaluation."""

    LINE_EVERY_S = 30.0

    def __init__(self, description: str = "training", clock=None):
        import time

        self.description = description
        self.bar = None
        self.task = None
        self.clock = clock or time.monotonic
        self.plain = False
        self.loss = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        epochs = args.num_train_epochs
        per_epoch = math.ceil(state.max_steps / epochs) if epochs else state.max_steps
        resumed = f", resuming at step {state.global_step}" if state.global_step else ""
        console().print(f"{self.description}: {state.max_steps} steps = {epochs:g} epochs x {per_epoch}{resumed}")
        self.plain = not console().is_terminal
        self.started, self.first_step = self.clock(), state.global_step
        self.last_line, self.last_step = self.started, state.global_step
        if self.plain:
            return
        self.bar = progress_bar()
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)
        if not self.plain:
            return
        now, step = self.clock(), state.global_step
        every = max(1, state.max_steps // 20)
        if step - self.last_step < every and now - self.last_line < self.LINE_EVERY_S and step < state.max_steps:
            return
        per_step = (now - self.started) / max(1, step - self.first_step)
        loss = f", loss {self.loss:.4f}" if self.loss is not None else ""
        console().print(f"{self.description}: step {step}/{state.max_steps} ({step / state.max_steps:.0%}), "
                        f"{per_step:.2f} s/step, eta {_duration(per_step * (state.max_steps - step))}{loss}")
        self.last_line, self.last_step = now, step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = logs["loss"]
        if self.bar is not None and logs and "loss" in logs:
            self.bar.update(self.task, info=f"loss {logs['loss']:.4f}  epoch {state.epoch:.2f}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics:
            shown = "  ".join(
                f"{k.removeprefix('eval_')} {v:.4f}" for k, v in metrics.items()
                if k.startswith("eval_") and not k.startswith("eval_rank_") and isinstance(v, float)
                and k not in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
            )
            console().print(f"epoch {state.epoch:.2f}  validation: {shown}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _duration(seconds: float) -> str:
    """12s, 7m10s, 2h05m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
