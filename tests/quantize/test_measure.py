import numpy as np
import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import EvalSet
from edgewise.core.tasks.classification import Classification
from edgewise.quantize.measure import compare_splits, score

LABELS = {0: "a", 1: "b"}
SPLIT = EvalSet("validation", ["x", "y", "z"], None, ["a", "b", "a"], "data.csv", {})
TASK = Classification()
SOURCE = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.5]], dtype=np.float32)


def test_score_counts_nan_logits_and_makes_their_difference_infinite():
    broken = SOURCE.copy()
    broken[2] = np.nan  # argmax of a NaN row is 0, the right label here: agreement alone would not notice

    result = score(TASK, broken, SPLIT, LABELS, reference=SOURCE)

    assert result["agreement_with_source"] == 1.0
    assert result["nonfinite_logits"] == 2 and result["max_abs_diff"] == np.inf


def test_compare_splits_refuses_a_quantized_model_with_nan_logits():
    broken = SOURCE.copy()
    broken[0, 1] = np.inf

    with pytest.raises(EdgewiseError, match=r"NaN or infinite logits \(1 of 6 values on the validation split\)"):
        compare_splits(TASK, [SPLIT], lambda texts, pairs: SOURCE, lambda texts, pairs: broken, LABELS)


def test_compare_splits_measures_drop_and_agreement():
    flipped = SOURCE[:, ::-1].copy()

    row = compare_splits(TASK, [SPLIT], lambda t, p: SOURCE, lambda t, p: flipped, LABELS)["validation"]

    assert row["source"]["accuracy"] == 1.0 and row["quantized"]["accuracy"] == 0.0
    assert row["drop_points"] == 100.0 and row["quantized"]["agreement_with_source"] == 0.0


def test_compare_splits_blames_the_source_when_it_is_the_one_with_nan():
    broken = SOURCE.copy()
    broken[1, 0] = np.nan

    with pytest.raises(EdgewiseError, match="the source model itself produces NaN"):
        compare_splits(TASK, [SPLIT], lambda texts, pairs: broken, lambda texts, pairs: broken, LABELS)
