import pytest
import torch

from edgewise.core.tasks.classification import label_loss, soft_target_loss


def test_soft_target_loss_is_kl_scaled_by_t_squared():
    student, teacher = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.5]])
    p = torch.softmax(teacher / 2, -1)
    expected = (p * (p.log() - torch.log_softmax(student / 2, -1))).sum() * 4

    assert soft_target_loss(student, teacher, 2.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert soft_target_loss(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_label_loss_ignores_unlabelled_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])

    both = label_loss(logits, torch.tensor([0, 1]))
    first_only = label_loss(logits, torch.tensor([0, -100]))

    assert first_only.item() == pytest.approx(both.item())
    assert label_loss(logits, torch.tensor([-100, -100])).item() == 0.0
