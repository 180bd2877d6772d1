"""Sequence classification (single texts or pairs): the head is AutoModelForSequenceClassification, the
output one logit per label, the gate accuracy (or macro-F1), the runtime's answer a label and its
probabilities. Torch is imported inside the functions that train or run a model."""

from __future__ import annotations

from pathlib import Path

from edgewise.core.artifact import read_json
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import Task


class Classification(Task):
    """A classifier; its label map lives in the manifest's ``labels`` (and config.json's id2label)."""

    name = "classification"
    export_task = "text-classification"
    output_name = "logits"
    gate_metric = "accuracy"
    quality_name = "accuracy"
    labelled = True
    metrics = ("accuracy", "macro_f1")
    self_targets = "the model's own predictions"
    columns = (("accuracy", "accuracy", "pct"), ("macro-F1", "macro_f1", "pct"),
               ("agreement", "label_agreement", "pct"))
    column_notes = "`agreement`: share of evaluation texts labelled as the reference labels them."

    @classmethod
    def from_record(cls, record: dict, where: str) -> Classification:
        return cls()

    @classmethod
    def detect(cls, folder: Path, labels: dict | None = None) -> Classification | None:
        """A classifier when its config names a classification head, or the folder names labels of its own
        (transformers' placeholder map LABEL_0, LABEL_1, ... in a headless encoder's config is not one)."""
        placeholders = bool(labels) and all(str(v) == f"LABEL_{k}" for k, v in labels.items())
        if "ForSequenceClassification" in architectures(folder) or (labels and not placeholders):
            return cls()
        return None

    @classmethod
    def from_options(cls, folder: Path, config, labels: dict | None) -> Classification:
        return cls()

    def check_options(self, config, what: str) -> None:
        if config.pooling is not None or config.normalize is not None:
            raise EdgewiseError(f"{what} is a classifier; --pooling and --normalize describe an embedding model: "
                                "drop them")

    def quality_drop(self, value: float | None, reference: float | None) -> float | None:
        """Accuracy points below the reference (a difference of percentages)."""
        if value is None or reference is None:
            return None
        return (reference - value) * 100

    # --- the model (torch) ------------------------------------------------------------------------

    @staticmethod
    def auto_class():
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def load(self, source, allow_pickle: bool = False, **kwargs):
        from edgewise.core.models import load_classifier

        return load_classifier(source, allow_pickle, **kwargs)

    best_metric = None  # the checkpoint a training keeps: TrainerConfig.best_metric (accuracy or macro-F1)

    def head(self, outputs, inputs):
        """The task's output from the model's forward outputs: the logits."""
        return outputs.logits

    def output(self, model, inputs):
        return self.head(model(**inputs), inputs)

    def distill_loss(self, student, teacher, labels, config) -> dict:
        """The loss terms of a student's batch: KL to the teacher's soft targets (``teacher``: its logits, cached
        or live; None when alpha is 0) and the label cross-entropy; weights from ``config`` (DistillConfig)."""
        terms, weights = {}, {}
        if config.alpha > 0:
            terms["kd"], weights["kd"] = soft_target_loss(student, teacher, config.temperature), config.alpha
        if config.alpha < 1 and labels is not None and bool((labels >= 0).any()):  # unlabelled-only batches: no CE
            terms["ce"], weights["ce"] = label_loss(student, labels), 1 - config.alpha
        return {"terms": terms, "weights": weights}

    def eval_loss(self, output, labels):
        """The plain classification loss Trainer reports on validation."""
        return label_loss(output, labels) if labels is not None else output.sum() * 0.0

    def importance_loss(self, output, target):
        """Summed cross-entropy against each text's label (data or the model's own prediction): its mask
        gradients are per text (prune.importance)."""
        import torch
        import torch.nn.functional as F

        return F.cross_entropy(output.float(), torch.as_tensor(target), reduction="sum")


    def trainer_metrics(self, eval_pred, labels: dict | None = None) -> dict:
        """Trainer's compute_metrics (checkpoint selection): see the module's ``trainer_metrics``."""
        return trainer_metrics(eval_pred)

    def split_metrics(self, outputs, truth, labels: dict) -> dict:
        """Full classification metrics of a split's logits against its label ids."""
        from edgewise.core.metrics import classification_metrics

        return classification_metrics(truth, self.predictions(outputs).tolist(), labels)

    # --- training (finetune) ------------------------------------------------------------------------

    def training_data(self, data: str, config, train_split: str = "train", say=None) -> tuple[dict, dict]:
        """({"train" | "validation" | "test": (Split, label ids)}, id -> label) of labelled ``data`` (validation
        carved from train when the data has none; an unlabelled test split is left out, said through ``say``:
        the console by default)."""
        from edgewise.core.data import encode_labels, label_names, load_splits, require_labels, training_splits
        from edgewise.core.progress import console

        splits = load_splits(data, config)
        train, validation, test = training_splits(splits, config, data, train_split)
        names = label_names(require_labels(train))
        if len(names) < 2:
            raise EdgewiseError(
                f"the {train.name} split of {data} has a single label ({names[0]!r}); a classifier needs at least two"
            )
        for other in (validation, test):
            unseen = sorted(set(other.labels or ()) - set(names)) if other is not None else []
            if unseen:
                raise EdgewiseError(
                    f"label(s) {', '.join(map(repr, unseen[:10]))} occur in the {other.name} split of {data} but "
                    f"never in the {train.name} split, so the model cannot learn them; add training examples or "
                    "drop those rows")
        if test is not None and test.labels is None:
            (say or console().print)(f"the test split has no labels ({test.label_problem}); skipping test metrics")
            test = None
        id2label = dict(enumerate(names))
        chosen = {"train": train, "validation": validation, "test": test}
        return ({k: (v, encode_labels(v, id2label, config.label_column)) for k, v in chosen.items() if v is not None},
                id2label)

    def token_lengths(self, tokenizer, split) -> list[int]:
        from edgewise.core.models import token_lengths

        return token_lengths(tokenizer, split.texts, split.pairs)

    def describe_data(self, splits: dict, labels: dict) -> str:
        counts = " / ".join(f"{len(split)} {name}" for name, (split, _) in splits.items())
        return f"{counts} texts, {len(labels)} labels"

    def encode(self, tokenizer, split, truth, labels: dict, max_length: int, pad_to_max: bool, model=None):
        from edgewise.core.training import encode

        return encode(tokenizer, split, truth, max_length, pad_to_max, model)

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def dataset_metrics(self, predictions, dataset, truth, labels: dict) -> dict:
        """Full classification metrics of Trainer's logits over a dataset against its label ids."""
        return self.split_metrics(predictions, truth, labels)

    # --- measuring (numpy) ------------------------------------------------------------------------

    def eval_data(self, data: str, split: str | None, config, reference: Path, labels: dict, *,
                  pairs: str | None = None, samples: int | None = None, require_truth: bool = False):
        """(the EvalSet of ``data``'s split ``split`` with its label ids, the record of a carved validation split):
        test, else validation, else the only split by default; validation carved from train as training carved it
        when the data has none (core.lineage); its first ``samples`` texts when given."""
        from edgewise.core.data import SPLIT_ALIASES, load_splits, select_split

        if pairs is not None:
            raise EdgewiseError("--pairs scores sentence-embedding models against gold similarity scores; a "
                                "classifier is scored on labelled DATA: drop --pairs")
        splits, carved = load_splits(data, config), None
        if split is not None and split.lower() in SPLIT_ALIASES["validation"]:
            from edgewise.core.lineage import carve_validation

            splits, carved = carve_validation(splits, data, reference, config)
        chosen = select_split(splits, split, data)
        if samples:
            chosen = chosen.subset(range(min(len(chosen), samples)), chosen.name)
        return self.eval_set(chosen, labels, config.label_column, require_truth), carved

    def eval_set(self, split, labels: dict, label_column: str = "label", require_truth: bool = False):
        """A split as an EvalSet whose truth is its label names (each model's ``score`` maps them through its own
        label map), checked against ``labels`` now: a label the model does not know is an error that names it. An
        unlabelled split has no truth, unless ``require_truth``: then the error that says why it has none."""
        from edgewise.core.data import encode_labels
        from edgewise.core.tasks import EvalSet

        truth = None
        if split.labels is not None or require_truth:
            encode_labels(split, labels, label_column)
            truth = list(split.labels)
        return EvalSet(split.name, split.texts, split.pairs, truth, split.source, {}, split.sha256())

    @staticmethod
    def truth_ids(eval_set, labels: dict) -> list[int]:
        """An EvalSet's label names as the ids of a model whose label map is ``labels``."""
        from edgewise.core.data import Split, encode_labels

        return encode_labels(Split(eval_set.name, eval_set.texts, eval_set.pairs, eval_set.truth), labels)

    def score(self, eval_set, outputs, labels: dict, reference=None, full: bool = False) -> dict | None:
        """Accuracy and macro-F1 of the logits (``full``: per class and the confusion matrix too); with the
        ``reference`` model's logits, how often the labels agree. None without truth or reference."""
        from edgewise.core.metrics import classification_metrics

        result = {}
        if eval_set.truth is not None:
            metrics = classification_metrics(self.truth_ids(eval_set, labels), self.predictions(outputs).tolist(),
                                             labels)
            result = metrics if full else {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
        if reference is not None:
            result.update(self.agreement(outputs, reference))
        return result or None

    def quality(self, metrics: dict | None, metric: str | None = None) -> float | None:
        """The gate metric's value (accuracy, or ``metric``: macro_f1) of ``score``'s result."""
        return (metrics or {}).get(metric or self.gate_metric)

    def output_width(self, labels: dict) -> int:
        return len(labels)

    def importance_targets(self, outputs):
        """Pruning's targets for unlabelled texts: the model's own predicted labels."""
        return self.predictions(outputs).tolist()

    def summary(self, metrics: dict) -> str:
        """A split's figures in one line (the end of a training stage)."""
        return f"accuracy {metrics['accuracy']:.4f} macro-F1 {metrics['macro_f1']:.4f}"

    def check_outputs(self, outputs, labels: dict, where: str) -> None:
        """One output per label named: a head of another size means a broken label map, whoever scores it."""
        if labels and outputs.shape[-1] != len(labels):
            raise EdgewiseError(f"{where}: the model has {outputs.shape[-1]} outputs but names {len(labels)} labels; "
                                "fix its label map")

    @staticmethod
    def predictions(outputs):
        """The label id of every row."""
        import numpy as np

        return np.asarray(outputs).argmax(-1)

    def agreement(self, outputs, reference) -> dict:
        """How often two models give the same label."""
        import numpy as np

        same = self.predictions(outputs) == self.predictions(reference)
        return {"label_agreement": float(np.mean(same)) if len(same) else 1.0}

    def agreement_on(self, eval_set, outputs, reference) -> dict:
        """Agreement with a reference model on an EvalSet's texts: how often the labels are the same."""
        return self.agreement(outputs, reference)

    def compact(self, outputs) -> list:
        """What a device job sends back of its outputs: the label ids (the host scores them)."""
        return self.predictions(outputs).astype(int).tolist()

    def expand(self, values, labels: dict):
        """A device job's label ids as one-hot logits, which score and agreement read as the ids they are."""
        import numpy as np

        ids = np.asarray(values, dtype=np.int64)
        count = max(len(labels), int(ids.max(initial=-1)) + 1)
        return np.eye(count, dtype=np.float32)[ids]

    def postprocess(self, outputs, labels: dict) -> list[dict]:
        """Label, its probability and every label's probability per row (the runtime's answer)."""
        import numpy as np

        shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
        probs = shifted / shifted.sum(axis=-1, keepdims=True)
        results = []
        for row in probs:
            best = int(row.argmax())
            results.append({"label": labels.get(best, str(best)), "score": float(row[best]),
                            "scores": {labels.get(i, str(i)): float(p) for i, p in enumerate(row)}})
        return results


def architectures(folder: Path) -> str:
    """The model classes a folder's config.json names (``architectures``), joined by spaces: what a classifier
    task's ``detect`` reads its head from ("BertForTokenClassification")."""
    config = read_json(Path(folder) / "config.json")
    return " ".join(a for a in config.get("architectures") or [] if isinstance(a, str))


def soft_target_loss(student_logits, teacher_logits, temperature: float):
    """KL(teacher || student) of the temperature-softened distributions, times T^2 so that its
    gradients keep their size as T changes (Hinton et al.)."""
    import torch.nn.functional as F

    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean", log_target=True) * t * t


def label_loss(student_logits, labels):
    """Cross-entropy on the labelled examples only (unlabelled ones carry label -100)."""
    import torch.nn.functional as F

    if (labels >= 0).sum() == 0:
        return student_logits.sum() * 0.0
    return F.cross_entropy(student_logits, labels, ignore_index=-100)


# The checkpoint kept is the best by `rank_<metric>`: the metric, ties broken by the lower validation
# cross-entropy. On small validation sets many epochs tie (e.g. at 100 %), and keeping the first of
# them keeps the least confident model, whose near-ties a distilled student then copies.
TIE_BREAK = 1e-4


def trainer_metrics(eval_pred) -> dict:
    """Trainer's compute_metrics: accuracy and macro-F1 of the logits, each also as ``rank_<metric>`` (the
    metric, ties broken by the lower validation cross-entropy) which selects the checkpoint kept."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    logits = np.asarray(eval_pred.predictions, dtype=np.float64)
    labels = np.asarray(eval_pred.label_ids)
    predictions = logits.argmax(-1)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    cross_entropy = float(-log_probs[np.arange(len(labels)), labels].mean())
    metrics = {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }
    metrics.update({f"rank_{k}": v - TIE_BREAK * min(cross_entropy, 100.0) for k, v in list(metrics.items())})
    return metrics
