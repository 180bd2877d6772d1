"""Distillation losses: soft targets at a temperature, hidden states, attention distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(student_logits, teacher_logits, temperature: float):
    """KL(teacher || student) of the temperature-softened distributions, times T^2 so that its
    gradients keep their size as T changes (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean", log_target=True) * t * t


def label_loss(student_logits, labels):
    """Cross-entropy on the labelled examples only (unlabelled ones carry label -100)."""
    if (labels >= 0).sum() == 0:
        return student_logits.sum() * 0.0
    return F.cross_entropy(student_logits, labels, ignore_index=-100)


def hidden_loss(student_hidden, teacher_hidden, layer_map, mask, projections):
    """MSE between each student layer's output and its mapped teacher layer (masked positions only).

    ``student_hidden`` / ``teacher_hidden`` are the model's hidden_states tuples (embeddings first);
    ``projections`` lift student widths to the teacher's when they differ.
    """
    weights = mask.unsqueeze(-1).float()
    total = 0.0
    for i, t in enumerate(layer_map):
        s = projections(student_hidden[i + 1])
        diff = (s - teacher_hidden[t + 1]) ** 2 * weights
        total = total + diff.sum() / (weights.sum() * s.shape[-1]).clamp(min=1)
    return total / len(layer_map)


def attention_loss(student_attentions, teacher_attentions, layer_map, mask):
    """KL between mapped layers' attention distributions, heads averaged (head counts may differ)."""
    total = 0.0
    rows = mask.float()
    for i, t in enumerate(layer_map):
        s = student_attentions[i].mean(dim=1).clamp(min=1e-12)
        q = teacher_attentions[t].mean(dim=1).clamp(min=1e-12)
        kl = (q * (q.log() - s.log())).sum(-1)  # per query position
        total = total + (kl * rows).sum() / rows.sum().clamp(min=1)
    return total / len(layer_map)


class Projection(torch.nn.Module):
    """A learned linear map from the student's hidden width to the teacher's (identity when equal)."""

    def __init__(self, student_width: int, teacher_width: int):
        super().__init__()
        self.linear = None if student_width == teacher_width else torch.nn.Linear(student_width, teacher_width)

    def forward(self, x):
        return x if self.linear is None else self.linear(x)
