import pytest

from edgewise.core.metrics import classification_metrics


def test_classification_metrics_known_values():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], {0: "neg", 1: "pos", 2: "meh"})

    assert m["accuracy"] == 0.75
    assert m["per_class"]["neg"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["meh"]["support"] == 0  # every label the model knows has a row
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # over labels that occur
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert m["labels"] == ["neg", "pos", "meh"] and m["samples"] == 4
