"""Classification metrics (scikit-learn), one shape for every stage and report."""

from __future__ import annotations


def classification_metrics(y_true, y_pred, id2label: dict[int, str]) -> dict:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion matrix.

    Every label the model knows gets a per-class row, including labels absent from this split;
    macro-F1 averages over the labels that occur in the truth or the predictions (scikit-learn's rule).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = sorted(id2label)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "samples": int(len(y_true)),
        "per_class": {
            id2label[i]: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, i in enumerate(ids)
        },
        "labels": [id2label[i] for i in ids],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }
