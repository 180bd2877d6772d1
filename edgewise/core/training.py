"""Pieces shared by the stages that train with Hugging Face's Trainer (finetune, distill)."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from edgewise.core.progress import console, progress_bar


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


def compute_metrics(eval_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    predictions = eval_pred.predictions.argmax(-1)
    return {
        "accuracy": float(accuracy_score(eval_pred.label_ids, predictions)),
        "macro_f1": float(f1_score(eval_pred.label_ids, predictions, average="macro", zero_division=0)),
    }


class RichProgress(TrainerCallback):
    """Trainer progress as a rich bar (steps, loss, eta) and one line per evaluation."""

    def __init__(self, description: str = "training"):
        self.description = description
        self.bar = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.bar = progress_bar()
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.update(self.task, info=f"loss {logs['loss']:.4f}  epoch {state.epoch:.2f}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics:
            shown = "  ".join(
                f"{k.removeprefix('eval_')} {v:.4f}" for k, v in metrics.items()
                if k in ("eval_loss", "eval_accuracy", "eval_macro_f1")
            )
            console().print(f"epoch {state.epoch:.2f}  validation: {shown}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
