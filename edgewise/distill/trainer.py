"""Hugging Face Trainer with the distillation loss; every loss term is logged per logging step."""

from __future__ import annotations

from collections import defaultdict

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback

from edgewise.distill.losses import attention_loss, hidden_loss

TEACHER_OUTPUTS = "teacher_outputs"  # the cached teacher outputs (logits, sentence vectors) of each example


class DistillCollator:
    """Pads the student's inputs per batch and stacks the cached teacher outputs (and an embedding model's
    validation targets, vectors carried as labels) alongside."""

    def __init__(self, tokenizer):
        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict]) -> dict:
        stacked = {}
        for key in (TEACHER_OUTPUTS, "labels"):
            if key in features[0] and isinstance(features[0][key], (list, tuple)):
                stacked[key] = torch.tensor([f.pop(key) for f in features], dtype=torch.float32)
        batch = self.pad(features)
        batch.update(stacked)
        return batch


PROJECTION = "edgewise_projection"  # the student's submodule name while it trains


def attach_projection(model, projection) -> None:
    """Train the projection as part of the student: DDP syncs it, clipping sees it, checkpoints keep it."""
    if any(True for _ in projection.parameters()):
        model.add_module(PROJECTION, projection)


def detach_projection(model) -> None:
    """Drop the projection before the student is saved: it is a training aid, not part of the model."""
    if hasattr(model, PROJECTION):
        delattr(model, PROJECTION)


class EpochTimer(TrainerCallback):
    """Seconds spent in each epoch's training steps (evaluation and checkpointing excluded)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        import time

        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        import time

        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)


class DistillTrainer(Trainer):
    """Trains the student on its task's loss against the teacher's outputs (cached or live; core.tasks), plus
    hidden states and attentions."""

    def __init__(self, *args, teacher, distill, layer_map, projection, task, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.distill = distill
        self.layer_map = layer_map
        self.projection = projection
        self.task = task
        self.model_accepts_loss_kwargs = False  # our loss averages per batch itself
        self._terms: dict[str, list[float]] = defaultdict(list)
        import inspect

        accepted = inspect.signature(self.teacher.forward).parameters
        self._teacher_inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels", None)
        cached = inputs.pop(TEACHER_OUTPUTS, None)
        d, task = self.distill, self.task
        training = model.training
        want_hidden = training and d.hidden_weight > 0
        want_attention = training and d.attention_weight > 0
        outputs = model(**inputs, output_hidden_states=want_hidden, output_attentions=want_attention)
        output = task.head(outputs, inputs)
        if not training:  # evaluation: the task's plain loss (a classifier's labels, the teacher's vectors)
            loss = task.eval_loss(output, labels)
            return (loss, {"output": output}) if return_outputs else loss

        soft = needs_teacher_outputs(task, d)
        if soft and cached is None and not d.teacher_forward_each_step:
            raise RuntimeError("the batch lacks the cached teacher outputs the configuration promised")
        teacher_out = None
        if (soft and cached is None) or want_hidden or want_attention:
            with torch.no_grad():
                teacher_out = self.teacher(**{k: inputs[k] for k in self._teacher_inputs if k in inputs},
                                           output_hidden_states=want_hidden, output_attentions=want_attention)
        target = None
        if soft:
            target = cached.to(output.device) if cached is not None else task.head(teacher_out, inputs)
        parts = task.distill_loss(output, target, labels, d)
        terms = dict(parts["terms"])
        loss = output.new_zeros(())
        for name, value in terms.items():
            loss = loss + parts["weights"][name] * value
        mask = inputs.get("attention_mask", torch.ones(output.shape[0], 1, device=output.device))
        if want_hidden:
            projection = getattr(model, "module", model)  # DDP wraps the student
            projection = getattr(projection, PROJECTION, self.projection)
            terms["hidden"] = hidden_loss(outputs.hidden_states, teacher_out.hidden_states, self.layer_map, mask,
                                          projection)
            loss = loss + d.hidden_weight * terms["hidden"]
        if want_attention:
            terms["attention"] = attention_loss(outputs.attentions, teacher_out.attentions, self.layer_map, mask)
            loss = loss + d.attention_weight * terms["attention"]
        for name, value in terms.items():
            self._terms[name].append(float(value.detach()))
        return (loss, {"output": output}) if return_outputs else loss

    def log(self, logs, start_time=None):
        if "loss" in logs and self._terms:
            for name, values in self._terms.items():
                logs[f"loss_{name}"] = round(sum(values) / len(values), 6)
            self._terms.clear()
        super().log(logs, start_time)


def needs_teacher_outputs(task, config) -> bool:
    """Whether the loss reads the teacher's outputs: always for an embedding model (its vectors are the target), for
    a classifier when the soft-target term weighs (alpha > 0)."""
    return not task.labelled or config.alpha > 0
