"""Sentence embeddings: the encoder's token vectors pooled (mean, CLS or max) and optionally L2-normalised into
one vector per text, as a sentence-transformers model (Transformer, Pooling, Normalize) computes it.

- The model folder is a sentence-transformers folder: the encoder at its root (config.json, weights, tokenizer)
  with modules.json, 1_Pooling/config.json and sentence_bert_config.json, which edgewise reads as they are and
  writes into every embedding artifact, so sentence-transformers loads each one.
- The exported ONNX graph computes the pooling and normalisation itself: its first output is
  ``sentence_embedding`` (what edgewise's runtime returns); ``last_hidden_state`` stays an output for clients
  that pool by themselves.
- A student learns the teacher's vectors (squared distance, optionally cosine); pruning ranks heads and neurons
  by an in-batch contrastive loss against the unpruned model's vectors (a distance to them alone would have a
  zero gradient at the unpruned model); quality is cosine and top-10 neighbour agreement with the teacher, and
  STS Spearman against gold scores where scored pairs are given (the gate, as a share of the teacher's).

Torch is imported inside the functions that train or run a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgewise.core.artifact import read_json
from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import POOLING_MODES, Task

# sentence-transformers' Pooling config keys of the modes edgewise computes, and those it does not.
POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}
OTHER_POOLING_KEYS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                      "pooling_mode_lasttoken")
ST_MODULE = "sentence_transformers.models."
MODULES_FILE = "modules.json"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
ST_CONFIG = "sentence_bert_config.json"
# In-batch contrastive loss of pruning: the temperature of the cosine similarities (as in SimCSE / InfoNCE).
CONTRASTIVE_TEMPERATURE = 0.05
NEIGHBOURS = 10  # top-k of the neighbour agreement
MASKED = -1e9  # what sentence-transformers' max pooling puts at padded positions
HIDDEN, SENTENCE = "last_hidden_state", "sentence_embedding"  # the graph's token vectors and its pooled output


class Embedding(Task):
    """A sentence-embedding model: ``pooling`` (mean / cls / max), ``normalize`` (L2) and the vector's
    ``dimension``."""

    name = "embedding"
    export_task = "feature-extraction"
    output_name = "sentence_embedding"
    gate_metric = "spearman"  # with scored pairs; else neighbour_overlap (see quality)
    quality_name = "STS Spearman"
    labelled = False
    metrics = ("spearman", "neighbour_overlap", "cosine_mean", "ndcg_at_10")
    default_reference = True  # without scored pairs its quality is its agreement with the teacher
    self_targets = "the unpruned model's vectors (in-batch contrastive loss)"
    columns = (("STS Spearman", "spearman", "num"), ("of ref", "spearman_share", "pct"),
               ("cosine mean", "cosine_mean", "num"), ("cosine p1", "cosine_p1", "num"),
               ("top-10 overlap", "neighbour_overlap", "pct"), ("NDCG@10", "ndcg_at_10", "num"))
    column_notes = ("`STS Spearman`: Spearman correlation of the pairs' cosines with their gold scores; `of ref`: "
                    "as a share of the reference's. `cosine "
                    "mean` / `p1`: the cosine between this row's vector and the reference's for the same text (mean, "
                    "1st percentile). `top-10 overlap`: the share of each text's 10 nearest texts that the reference "
                    "finds too. `NDCG@10`: the retrieval set's queries answered by cosine search over its documents.")

    def __init__(self, pooling: str = "mean", normalize: bool = False, dimension: int | None = None,
                 static: bool = False):
        if pooling not in POOLING_MODES:
            raise EdgewiseError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {pooling!r}")
        self.pooling, self.normalize, self.dimension = pooling, bool(normalize), dimension
        self.static = bool(static)  # a table of token vectors (distill.static): no encoder, no sentence-transformers

    def record(self) -> dict:
        record = {"name": self.name, "pooling": self.pooling, "normalize": self.normalize, "dimension": self.dimension}
        return {**record, "static": True} if self.static else record

    def describe(self) -> str:
        if self.static:
            return "static sentence-embedding (a table of token vectors, averaged and normalised)"
        return f"sentence-embedding ({self.pooling} pooling{', normalised' if self.normalize else ''})"

    @classmethod
    def from_record(cls, record: dict, where: str) -> Embedding:
        pooling, normalize, dimension = record.get("pooling"), record.get("normalize"), record.get("dimension")
        if pooling not in POOLING_MODES or not isinstance(normalize, bool) or not (
                dimension is None or isinstance(dimension, int)) or not isinstance(record.get("static", False), bool):
            raise EdgewiseError(f"{where} records an embedding task without a valid pooling / normalize / dimension "
                                f"({record}); re-create the artifact with the stage that made it")
        return cls(pooling, normalize, dimension, record.get("static", False))

    @classmethod
    def detect(cls, folder: Path, labels: dict | None = None) -> Embedding | None:
        """The sentence-transformers folder's Transformer, Pooling and Normalize modules; None without modules.json;
        an EdgewiseError for modules or pooling modes edgewise does not compute."""
        folder = Path(folder)
        if not (folder / MODULES_FILE).is_file():
            return None
        try:
            modules = json.loads((folder / MODULES_FILE).read_text())
        except (OSError, ValueError) as e:
            raise EdgewiseError(f"{folder / MODULES_FILE} cannot be read ({e}); re-save the model with "
                                "sentence-transformers") from None
        if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
            raise EdgewiseError(f"{folder / MODULES_FILE} is not a list of modules; re-save the model with "
                                "sentence-transformers")
        kinds = [str(m.get("type", "")).removeprefix(ST_MODULE) for m in modules]
        other = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
        if other or kinds[:1] != ["Transformer"] or kinds.count("Pooling") != 1:
            raise EdgewiseError(
                f"{folder} is a sentence-transformers model of modules {', '.join(kinds) or 'none'}; edgewise "
                "compresses Transformer + Pooling (+ Normalize) models: a model with other modules (Dense, ...) "
                "is not supported")
        if (modules[0].get("path") or "") not in ("", "."):
            raise EdgewiseError(f"{folder}'s transformer lies in {modules[0]['path']}/ (an old sentence-transformers "
                                "layout); re-save the model with sentence-transformers >= 2, which keeps it at the "
                                "folder's root")
        pooling_entry = modules[kinds.index("Pooling")]
        settings = read_json(folder / str(pooling_entry.get("path") or POOLING_DIR) / "config.json")
        pooling = pooling_mode(settings, folder / str(pooling_entry.get("path") or POOLING_DIR) / "config.json")
        dimension = settings.get("word_embedding_dimension")
        return cls(pooling, "Normalize" in kinds, dimension if isinstance(dimension, int) else None)

    @classmethod
    def from_options(cls, folder: Path, config, labels: dict | None) -> Embedding:
        hidden = read_json(Path(folder) / "config.json")
        dimension = hidden.get("hidden_size") or hidden.get("dim")
        return cls(config.pooling or "mean", bool(config.normalize), dimension if isinstance(dimension, int) else None)

    def check_options(self, config, what: str) -> None:
        given = {"pooling": config.pooling, "normalize": config.normalize}
        mine = {"pooling": self.pooling, "normalize": self.normalize}
        wrong = [f"--{k} {v}" for k, v in given.items() if v is not None and v != mine[k]]
        if wrong:
            raise EdgewiseError(f"{what} pools its vectors itself ({self.describe()}, as its files say); "
                                f"{' and '.join(wrong)} would change the model: drop them")

    def quality_drop(self, value: float | None, reference: float | None) -> float | None:
        """Points below 100 % of the reference's figure (a share: 98 % of the teacher's Spearman is 2 points).
        None when the reference's figure cannot be a base (missing, NaN, not positive); infinite for a model
        whose own figure is NaN (constant vectors have no Spearman: such a model misses every bar)."""
        import math

        if value is None or reference is None or not math.isfinite(reference) or reference <= 0:
            return None
        if not math.isfinite(value):
            return math.inf
        return (1 - value / reference) * 100

    def write_files(self, folder: Path, max_length: int | None) -> list[str]:
        """modules.json, 1_Pooling/config.json and sentence_bert_config.json as sentence-transformers writes them
        (those missing), so that it loads the folder as this model."""
        if self.static:  # no transformer: sentence-transformers' files would describe another model
            return []
        folder = Path(folder)
        modules = [{"idx": 0, "name": "0", "path": "", "type": ST_MODULE + "Transformer"},
                   {"idx": 1, "name": "1", "path": POOLING_DIR, "type": ST_MODULE + "Pooling"}]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR, "type": ST_MODULE + "Normalize"})
        pooling = {"word_embedding_dimension": self.dimension, **{k: mode == self.pooling for k, mode in
                                                                  POOLING_KEYS.items()},
                   **{k: False for k in OTHER_POOLING_KEYS}, "include_prompt": True}
        written = []
        for name, content in ((MODULES_FILE, modules), (f"{POOLING_DIR}/config.json", pooling),
                              (ST_CONFIG, {"max_seq_length": max_length, "do_lower_case": False})):
            path = folder / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(content, indent=2) + "\n")
                written.append(name)
        return written

    # --- the model (torch) ------------------------------------------------------------------------

    @staticmethod
    def auto_class():
        from transformers import AutoModel

        return AutoModel

    def load(self, source, allow_pickle: bool = False, **kwargs):
        from edgewise.core.models import load_encoder

        return load_encoder(source, allow_pickle, **kwargs)

    def head(self, outputs, inputs):
        """The pooled (and normalised) vector from the encoder's token vectors."""
        return pool(outputs.last_hidden_state, inputs["attention_mask"], self.pooling, self.normalize)

    def output(self, model, inputs):
        return self.head(model(**inputs), inputs)

    def distill_loss(self, student, teacher, labels, config) -> dict:
        """Squared distance to the teacher's vector (summed over dimensions, averaged over texts), plus
        ``config.cosine_weight`` x (1 - cosine)."""
        import torch.nn.functional as F

        terms = {"mse": ((student - teacher) ** 2).sum(-1).mean()}
        weights = {"mse": 1.0}
        if config.cosine_weight > 0:
            terms["cosine"] = (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
            weights["cosine"] = config.cosine_weight
        return {"terms": terms, "weights": weights}

    best_metric = "cosine"  # what selects the checkpoint a distillation keeps

    def trainer_metrics(self, eval_pred, labels: dict | None = None) -> dict:
        """Trainer's compute_metrics on validation: the mean cosine between the student's vectors (predictions) and
        the teacher's (carried as the labels), also as ``rank_cosine``, which selects the checkpoint kept."""
        cosine = cosine_agreement(eval_pred.predictions, eval_pred.label_ids)["cosine_mean"]
        return {"cosine": cosine, "rank_cosine": cosine}

    def eval_loss(self, output, labels):
        """On validation: the squared distance to the teacher's vectors (they travel as the labels)."""
        if labels is None:
            return output.sum() * 0.0
        return ((output - labels.to(output.dtype)) ** 2).sum(-1).mean()

    def importance_loss(self, output, target):
        """In-batch contrastive loss (InfoNCE) of each text's vector against the unpruned model's vectors of the
        batch, summed: a text's vector depends only on its own mask, so each mask gradient is that text's own. A
        batch of one text has no other vectors to tell it from: its loss is 0 whatever the vector (1 - cosine would
        not help: it is at its minimum at the unpruned model), so such a batch adds no importance."""
        import torch
        import torch.nn.functional as F

        target = torch.as_tensor(target, dtype=output.dtype)
        similarity = F.normalize(output.float(), dim=-1) @ F.normalize(target.float(), dim=-1).T
        return F.cross_entropy(similarity / CONTRASTIVE_TEMPERATURE, torch.arange(len(output)), reduction="sum")

    # --- the exported graph (onnx) -----------------------------------------------------------------

    def finish_graph(self, path: Path) -> None:
        """Append the pooling and normalisation to the encoder's ONNX graph (an optimum feature-extraction export,
        output ``last_hidden_state``): its first output becomes ``sentence_embedding`` [batch, dimension], as
        sentence-transformers computes it; ``last_hidden_state`` stays an output (sentence-transformers' ONNX
        backend reads it by name and pools it itself)."""
        pool_in_graph(path, self.pooling, self.normalize)

    # --- measuring (numpy) ------------------------------------------------------------------------

    def eval_data(self, data: str | None, split: str | None, config, reference: Path, labels: dict | None = None,
                  *, pairs: str | None = None, samples: int | None = None, require_truth: bool = False,
                  retrieval: str | None = None):
        """(the EvalSet of the corpus split ``split`` of ``data``, of the scored pairs of ``pairs`` and of the
        retrieval set ``retrieval``, the record of a carved validation split). ``data`` may itself be scored pairs
        (sentence1, sentence2, score) or a retrieval set (BEIR's layout); a corpus without a validation split has
        one carved with --validation-fraction and the seed (no labels needed). ``require_truth`` is a classifier's:
        an embedding model may be scored against a reference alone."""
        from edgewise.core.data import (
            SPLIT_ALIASES,
            is_pairs,
            is_retrieval,
            load_pairs,
            load_retrieval,
            load_splits,
            select_pairs,
            select_split,
        )

        if data is not None and is_retrieval(data):  # DATA is the retrieval set (--retrieval, if given, wins)
            data, retrieval = None, retrieval or data
        if data is not None and pairs is None and is_pairs(data, config.encoding):
            data, pairs = None, data
        corpus, carved = None, None
        if data is not None:
            splits = load_splits(data, config)
            if split is not None and split.lower() in SPLIT_ALIASES["validation"]:
                from edgewise.core.lineage import carve_validation

                splits, carved = carve_validation(splits, data, reference, config, labelled=False)
            if pairs is not None and split is not None and split not in splits:
                corpus = None  # e.g. a corpus without a test split: the test pairs alone are scored
            else:
                corpus = select_split(splits, split, data)
            if corpus is not None and samples:
                corpus = corpus.subset(range(min(len(corpus), samples)), corpus.name)
        scored = select_pairs(load_pairs(pairs, config.encoding), split, pairs) if pairs is not None else None
        searched = load_retrieval(retrieval, split, config.encoding) if retrieval is not None else None
        return self.eval_set(corpus, scored, searched, name=split), carved

    def eval_set(self, corpus=None, pairs=None, retrieval=None, name: str | None = None):
        """Corpus texts (agreement with a reference), both sides of the scored pairs (Spearman), then a retrieval
        set's queries and documents (NDCG@10), as one EvalSet; its truth holds the pairs' gold scores and the
        queries' relevant documents."""
        from edgewise.core.tasks import EvalSet

        parts = [x for x in (corpus, pairs, retrieval) if x is not None]
        texts = (list(corpus.texts) if corpus is not None else []) + (
            list(pairs.first) + list(pairs.second) if pairs is not None else []) + (
            list(retrieval.queries) + list(retrieval.documents) if retrieval is not None else [])
        truth = None
        if pairs is not None or retrieval is not None:
            truth = {"scores": list(pairs.scores) if pairs is not None else None,
                     "relevant": [{str(k): v for k, v in r.items()} for r in retrieval.relevant]
                     if retrieval is not None else None}
        name = name or (parts[0].name if parts else "none")  # the split asked for: a train file of pairs serves it
        return EvalSet(name, texts, None, truth, " + ".join(x.source for x in parts),
                       {"corpus": len(corpus) if corpus is not None else 0,
                        "pairs": len(pairs) if pairs is not None else 0,
                        **({"queries": len(retrieval.queries), "documents": len(retrieval.documents)}
                           if retrieval is not None else {})})

    def score(self, eval_set, outputs, labels: dict | None = None, reference=None, full: bool = False) -> dict | None:
        """STS Spearman of the pairs' cosines against their gold scores; with the ``reference`` model's vectors
        of the same texts, cosine agreement and the top-10 neighbour overlap (over the corpus texts, else the
        pairs' sentences). None without pairs or reference."""
        import numpy as np

        corpus, count = eval_set.parts.get("corpus", 0), eval_set.parts.get("pairs", 0)
        queries, documents = eval_set.parts.get("queries", 0), eval_set.parts.get("documents", 0)
        outputs = np.asarray(outputs)
        result = {}
        if count:
            first, second = outputs[corpus:corpus + count], outputs[corpus + count:corpus + 2 * count]
            result["spearman"] = sts_spearman(first, second, eval_set.truth["scores"])
            result["pairs"] = count
        if queries:
            start = corpus + 2 * count
            searched, documents = outputs[start:start + queries], outputs[start + queries:start + queries + documents]
            relevant = [{int(k): v for k, v in r.items()} for r in eval_set.truth["relevant"]]
            result.update(retrieval_scores(searched, documents, relevant))
        if reference is not None:
            result.update(self.agreement_on(eval_set, outputs, reference))
        return result or None

    def agreement_on(self, eval_set, outputs, reference) -> dict:
        """Agreement with a reference model on an EvalSet's texts: cosine per text (all of them) and the top-10
        neighbour overlap (among the corpus texts, else the pairs' sentences)."""
        import numpy as np

        outputs, reference = np.asarray(outputs), np.asarray(reference)
        corpus = eval_set.parts.get("corpus", 0)
        part = range(0, corpus) if corpus >= 2 else range(corpus, len(eval_set.texts))  # else pairs (and queries)
        # Each distinct text once: a sentence in several pairs would be its own nearest neighbour, tied.
        first = list({eval_set.texts[i]: i for i in reversed(part)}.values())[::-1]
        found = {"neighbour_overlap": neighbour_overlap(outputs[first], reference[first]),
                 "neighbour_texts": len(first)}
        if outputs.shape == reference.shape:  # a static student's vectors live in another space: no cosine
            found = {**cosine_agreement(outputs, reference), **found}
        return found

    def compact(self, outputs) -> list:
        """What a device job sends back: the vectors themselves (float32 precision)."""
        import numpy as np

        return np.asarray(outputs, dtype=np.float32).tolist()

    def expand(self, values, labels: dict):
        import numpy as np

        return np.asarray(values, dtype=np.float32)

    def quality(self, metrics: dict | None, metric: str | None = None) -> float | None:
        """The gate: STS Spearman where scored pairs were given, else the top-10 neighbour overlap with the
        reference."""
        metrics = metrics or {}
        return metrics.get(metric) if metric else metrics.get("spearman", metrics.get("neighbour_overlap"))

    def gate_of(self, metrics: dict | None) -> str:
        """Which metric ``quality`` reads from these metrics."""
        return "spearman" if "spearman" in (metrics or {}) else "neighbour_overlap"

    def output_width(self, labels: dict) -> int:
        return self.dimension or 0

    def importance_targets(self, outputs):
        """Pruning's targets: the unpruned model's own vectors (the contrastive loss pulls towards them)."""
        return outputs

    def summary(self, metrics: dict) -> str:
        """A split's figures in one line (the end of a training stage)."""
        cosine = (f"cosine to the teacher {metrics['cosine_mean']:.4f} (p1 {metrics['cosine_p1']:.4f}), "
                  if "cosine_mean" in metrics else "")
        return f"{cosine}top-10 neighbours as the teacher's {metrics['neighbour_overlap']:.1%}"

    def check_outputs(self, outputs, labels: dict, where: str) -> None:
        if outputs.ndim != 2 or (self.dimension and outputs.shape[-1] != self.dimension):
            raise EdgewiseError(f"{where}: the model gives vectors of shape {tuple(outputs.shape[1:])}, not the "
                                f"{self.dimension} dimensions its files record; re-export it")

    def postprocess(self, outputs, labels: dict) -> list[dict]:
        return [{"embedding": [float(v) for v in row], "dimension": int(row.shape[-1])} for row in outputs]


def pooling_mode(settings: dict, where: Path) -> str:
    """The one pooling mode a sentence-transformers Pooling config turns on; an EdgewiseError otherwise."""
    on = [key for key, value in settings.items() if key.startswith("pooling_mode_") and value is True]
    if len(on) != 1 or on[0] not in POOLING_KEYS:
        shown = ", ".join(on) or "none"
        raise EdgewiseError(f"{where} turns on pooling mode(s) {shown}; edgewise computes exactly one of mean, cls "
                            "or max (pooling_mode_mean_tokens, pooling_mode_cls_token, pooling_mode_max_tokens)")
    return POOLING_KEYS[on[0]]


def pool(hidden, mask, pooling: str, normalize: bool):
    """sentence-transformers' Pooling (then Normalize) in torch: ``hidden`` [batch, tokens, width], ``mask``
    [batch, tokens]."""
    import torch
    import torch.nn.functional as F

    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        expanded = mask.unsqueeze(-1).to(hidden.dtype)
        if pooling == "mean":
            pooled = (hidden * expanded).sum(1) / torch.clamp(expanded.sum(1), min=1e-9)
        else:
            pooled = hidden.masked_fill(expanded == 0, MASKED).max(1).values
    return F.normalize(pooled, p=2, dim=1) if normalize else pooled


def normalized(vectors):
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def cosine_agreement(outputs, reference) -> dict:
    """Per-text cosine between two models' vectors: mean, 1st percentile and lowest."""
    import numpy as np

    if len(outputs) == 0:
        return {"cosine_mean": 1.0, "cosine_p1": 1.0, "cosine_min": 1.0}
    cosines = (normalized(outputs) * normalized(reference)).sum(-1)
    return {"cosine_mean": float(cosines.mean()), "cosine_p1": float(np.percentile(cosines, 1)),
            "cosine_min": float(cosines.min())}


def neighbours(vectors, k: int = NEIGHBOURS):
    """The indices of each text's ``k`` nearest other texts by cosine (itself excluded), nearest first."""
    import numpy as np

    unit = normalized(vectors)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(k, len(unit) - 1)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def neighbour_overlap(outputs, reference, k: int = NEIGHBOURS) -> float:
    """The mean share of each text's top-``k`` neighbours (among these texts) that both models find."""
    if len(outputs) < 2:
        return 1.0
    mine, theirs = neighbours(outputs, k), neighbours(reference, k)
    return float(sum(len(set(a) & set(b)) for a, b in zip(mine.tolist(), theirs.tolist(), strict=True))
                 / (mine.shape[0] * mine.shape[1]))


def sts_spearman(first, second, gold) -> float:
    """Spearman correlation of the two sides' cosines with the gold similarity scores (the STS benchmark's
    figure)."""
    import numpy as np
    from scipy.stats import spearmanr

    cosines = (normalized(first) * normalized(second)).sum(-1)
    if len(cosines) < 2 or np.ptp(np.asarray(gold, dtype=np.float64)) == 0:
        return float("nan")
    return float(spearmanr(cosines, gold).statistic)


def pool_in_graph(path: Path, pooling: str, normalize: bool) -> None:
    """The graph surgery of ``Embedding.finish_graph``, in place (see there)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    stale = [p for p in path.parent.iterdir() if p.name != path.name and p.name.startswith(path.name)]
    model = onnx.load(str(path))  # with its external data, if any (rewritten below under one name)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    outputs = {o.name: o for o in graph.output}
    inputs = {i.name for i in graph.input}
    if HIDDEN not in outputs or "attention_mask" not in inputs:
        raise EdgewiseError(f"{path} has outputs {', '.join(outputs)} and inputs {', '.join(inputs)}; pooling inside "
                            "the graph needs last_hidden_state and attention_mask (an encoder's feature-extraction "
                            "export): re-export the model with edgewise export")
    width = outputs[HIDDEN].type.tensor_type.shape.dim[-1]
    nodes, prefix = [], "edgewise_pooling/"

    def constant(name: str, value, dtype) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), prefix + name))
        return prefix + name

    def node(op: str, ins: list[str], name: str, **attributes) -> str:
        nodes.append(helper.make_node(op, ins, [prefix + name], name=prefix + name, **attributes))
        return prefix + name

    def reduce(op: str, x: str, name: str, keepdims: int) -> str:
        # Axes became an input of ReduceSum at opset 13 and of the other reductions at opset 18.
        if opset >= (13 if op == "ReduceSum" else 18):
            return node(op, [x, constant(name + "_axes", [1], np.int64)], name, keepdims=keepdims)
        return node(op, [x], name, axes=[1], keepdims=keepdims)

    if pooling == "cls":
        pooled = node("Gather", [HIDDEN, constant("first", 0, np.int64)], "cls", axis=1)
    else:
        mask = node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)
        mask = (node("Unsqueeze", [mask, constant("last_axis", [-1], np.int64)], "mask3") if opset >= 13 else
                node("Unsqueeze", [mask], "mask3", axes=[-1]))
        kept = node("Mul", [HIDDEN, mask], "masked")
        if pooling == "mean":
            count = node("Max", [reduce("ReduceSum", mask, "count", 0), constant("min_count", 1e-9, np.float32)],
                         "count_clamped")
            pooled = node("Div", [reduce("ReduceSum", kept, "summed", 0), count], "mean")
        else:  # max: padded positions at MASKED, as sentence-transformers' masked_fill
            fill = node("Mul", [node("Sub", [constant("one", 1.0, np.float32), mask], "padded"),
                                constant("padded_value", MASKED, np.float32)], "fill")
            pooled = reduce("ReduceMax", node("Add", [kept, fill], "filled"), "max", 0)
    if normalize:
        norm = node("Max", [reduce("ReduceL2", pooled, "norm", 1), constant("eps", 1e-12, np.float32)], "norm_clamped")
        pooled = node("Div", [pooled, norm], "normalized")
    nodes.append(helper.make_node("Identity", [pooled], [SENTENCE], name=prefix + "output"))
    graph.node.extend(nodes)
    first = helper.make_tensor_value_info(SENTENCE, TensorProto.FLOAT, ["batch_size", width.dim_param or
                                                                        width.dim_value])
    kept_outputs = list(graph.output)
    del graph.output[:]
    graph.output.extend([first, *kept_outputs])
    for file in stale:
        file.unlink()
    if stale:  # above 2 GB a protobuf cannot hold the weights: they stay beside it
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + "_data")
        onnx.checker.check_model(str(path))
    else:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))


def retrieval_scores(queries, documents, relevant: list[dict[int, float]], k: int = NEIGHBOURS) -> dict:
    """NDCG@k (linear gains, log2 discounts, as pytrec_eval's ndcg_cut) and recall@k of cosine search: for each
    query, its documents ranked by cosine, scored against its relevant documents' grades; averaged over queries."""
    import numpy as np

    similarity = normalized(queries) @ normalized(documents).T
    ranked = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    discounts = 1 / np.log2(np.arange(2, k + 2))
    ndcg, recall = [], []
    for top, grades in zip(ranked.tolist(), relevant, strict=True):
        gains = np.array([grades.get(doc, 0.0) for doc in top])
        ideal = np.array(sorted(grades.values(), reverse=True)[:k])
        ndcg.append(float((gains * discounts[:len(gains)]).sum() / (ideal * discounts[:len(ideal)]).sum()))
        recall.append(sum(1 for doc in top if doc in grades) / len(grades))
    return {"ndcg_at_10": float(np.mean(ndcg)), "recall_at_10": float(np.mean(recall)), "queries": len(relevant)}
