"""Distillation losses every task shares: hidden states and attention distributions (a task's own loss on its
outputs, soft targets or sentence vectors, is the task's: core.tasks)."""

from __future__ import annotations

import torch


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
