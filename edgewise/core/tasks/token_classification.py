"""Token classification (named entities, PII, slots): a tag per word, scored as entities.

The head is AutoModelForTokenClassification, the output one logit per tag per token. Training and
scoring work on words: the first sub-token of a word carries the word's tag, the others are ignored in
the loss (label -100), and a model's tag for a word is the argmax at its first sub-token. The gate is
entity-level F1 with seqeval's default mode (conlleval's chunking: an I- tag after O or after another
type starts an entity, so BIO / IOB1 and IOB2 data read the same); token accuracy is shown, never the
gate, since it hides entity misses (98 % token accuracy with per-type F1 from 0.82 on CoNLL-2003).

The runtime's answer is the entities with their type, character span, text and score, grouped as
transformers' token-classification pipeline groups them (aggregation ``simple``: tokens; ``first``:
words take their first sub-token's tag), from numpy alone.

Data: CoNLL-style files (a token and its tag per line, the tag in the last column, a blank line between
sentences, ``-DOCSTART-`` lines skipped: .conll / .bio / .iob, or a folder of them by split) and JSONL
(``tokens`` + ``tags``, or ``text`` + character-span ``entities``). The tag set is read from train;
a tag validation or test uses that train lacks is refused with its line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.core.tasks import Task

CONLL_EXTENSIONS = (".conll", ".bio", ".iob", ".iob2")
TAG = re.compile(r"^(O|[BI]-\S+)$")
AGGREGATIONS = ("simple", "first")
# How a JSONL text with character-span entities is cut into words: runs of word characters and single other
# characters (BERT's pre-tokenizer splits punctuation off in the same way).
WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


# --- data --------------------------------------------------------------------------------------

@dataclass
class TaggedSplit:
    """One split of word-tagged sentences: ``words[i]`` and ``tags[i]`` are the i-th sentence's words and their
    tags (None when unlabelled); ``lines[i]`` where it starts in its file (for error messages)."""

    name: str
    words: list[list[str]]
    tags: list[list[str]] | None
    source: str = ""
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def texts(self) -> list[str]:
        """The sentences as the runtime reads them: the words joined by single spaces."""
        return [" ".join(words) for words in self.words]

    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps([self.words, self.tags], ensure_ascii=False).encode()).hexdigest()

    def subset(self, indices, name: str) -> TaggedSplit:
        indices = list(indices)
        return TaggedSplit(name, [self.words[i] for i in indices],
                           None if self.tags is None else [self.tags[i] for i in indices], self.source,
                           [self.lines[i] for i in indices] if self.lines else [])


def is_tagged(spec: str) -> bool:
    """Whether ``spec`` is word-tagged data: a CoNLL file, a folder of them, or JSONL whose first row has
    ``tokens`` or ``entities``."""
    path = Path(spec)
    if path.is_dir():
        return any(_split_file(path, split) is not None for split in ("train", "validation", "test"))
    if path.suffix.lower() in CONLL_EXTENSIONS:
        return True
    if path.suffix.lower() == ".jsonl" and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        return False
                    return isinstance(row, dict) and ("tokens" in row or "entities" in row)
    return False


def _split_file(folder: Path, split: str) -> Path | None:
    from edgewise.core.data import SPLIT_ALIASES

    for alias in SPLIT_ALIASES[split]:
        for ext in (*CONLL_EXTENSIONS, ".jsonl"):
            if (folder / f"{alias}{ext}").is_file():
                return folder / f"{alias}{ext}"
    return None


def read_conll(path: Path, name: str, encoding: str = "utf-8") -> TaggedSplit:
    """Sentences of a CoNLL-style file: whitespace-separated columns, the token first and its tag last, every
    line of the file with as many columns; a blank line ends a sentence; ``-DOCSTART-`` lines are skipped."""
    from edgewise.core.data import read_text

    text = read_text(path, encoding)
    words, tags, lines, sentence, sentence_tags, width, start = [], [], [], [], [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if sentence:
                words.append(sentence)
                tags.append(sentence_tags)
                lines.append(start)
            sentence, sentence_tags = [], []
            continue
        if width is None:
            width = len(columns)
            if width < 2:
                raise EdgewiseError(f"{path} line {number}: {line.strip()!r} has one column; a CoNLL file has a "
                                    "token and its tag per line (the tag in the last column): add the tags, or "
                                    "give untagged text as .txt")
        elif len(columns) != width:
            raise EdgewiseError(f"{path} line {number}: {len(columns)} columns where the file's first line has "
                                f"{width} ({line.strip()!r}); every line needs the token first and its tag last: "
                                "fix the line")
        if not sentence:
            start = number
        sentence.append(columns[0])
        sentence_tags.append(_check_tag(columns[-1], f"{path} line {number}"))
    if sentence:
        words.append(sentence)
        tags.append(sentence_tags)
        lines.append(start)
    if not words:
        raise EdgewiseError(f"{path} holds no sentences (only blank or -DOCSTART- lines); add token / tag lines")
    return TaggedSplit(name, words, tags, str(path), lines)


def _check_tag(tag: str, where: str) -> str:
    if not TAG.match(tag):
        raise EdgewiseError(f"{where}: tag {tag!r} is not BIO / IOB2 (O, B-TYPE or I-TYPE); convert the tags (BIOES: "
                            "S- to B-, E- to I-)")
    return tag


def read_tagged_jsonl(path: Path, name: str, encoding: str = "utf-8") -> TaggedSplit:
    """Sentences of a JSONL file: each row ``tokens`` with ``tags`` (tag names), or ``text`` with ``entities``
    (``start``, ``end``, ``label``: character spans), cut into words (runs of word characters, single other
    characters); a word inside a span takes B- (the span's first word) or I-."""
    from edgewise.core.data import read_text

    text = read_text(path, encoding)
    words, tags, lines = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise EdgewiseError(f"{where} is not JSON ({e.msg}); one object per line: fix the line") from None
        if not isinstance(row, dict):
            raise EdgewiseError(f"{where} is not a JSON object; each line needs tokens + tags or text + entities")
        if "tokens" in row:
            sentence, sentence_tags = _tokens_row(row, where)
        elif "text" in row and "entities" in row:
            sentence, sentence_tags = _spans_row(row, where)
        else:
            raise EdgewiseError(f"{where} has neither tokens + tags nor text + entities (it has "
                                f"{', '.join(map(str, row)) or 'no keys'}); a token-classification row needs one pair")
        if sentence:
            words.append(sentence)
            tags.append(sentence_tags)
            lines.append(number)
    if not words:
        raise EdgewiseError(f"{path} holds no sentences; add rows with tokens + tags or text + entities")
    return TaggedSplit(name, words, tags, str(path), lines)


def _tokens_row(row: dict, where: str) -> tuple[list[str], list[str]]:
    tokens, tags = row["tokens"], row.get("tags", row.get("ner_tags"))
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t.strip() for t in tokens):
        raise EdgewiseError(f"{where}: tokens must be a list of non-empty strings; fix the row")
    spaced = next((t for t in tokens if len(t.strip().split()) > 1), None)
    if spaced is not None:  # a sentence is its words joined by spaces: a word with a space would read as two
        raise EdgewiseError(f"{where}: token {spaced.strip()!r} holds a space; give one token per word (each with its "
                            "own tag)")
    if tags is None:
        raise EdgewiseError(f"{where} has tokens but no tags; add a tags list (tag names) of the same length")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise EdgewiseError(f"{where}: tags must be tag names such as B-PER (numbers need the data set's tag map): "
                            "write the names")
    if len(tags) != len(tokens):
        raise EdgewiseError(f"{where} has {len(tokens)} tokens but {len(tags)} tags; give one tag per token")
    return [t.strip() for t in tokens], [_check_tag(t, where) for t in tags]


def _spans_row(row: dict, where: str) -> tuple[list[str], list[str]]:
    text, entities = row["text"], row["entities"]
    if not isinstance(text, str) or not isinstance(entities, list):
        raise EdgewiseError(f"{where}: text must be a string and entities a list of {{start, end, label}}; fix the row")
    spans = []
    for entity in entities:
        label = entity.get("label", entity.get("type")) if isinstance(entity, dict) else None
        start, end = (entity.get("start"), entity.get("end")) if isinstance(entity, dict) else (None, None)
        if not isinstance(label, str) or not label or not isinstance(start, int) or not isinstance(end, int):
            raise EdgewiseError(f"{where}: entity {entity!r} needs an integer start and end and a label; fix the row")
        if not 0 <= start < end <= len(text):
            raise EdgewiseError(f"{where}: entity {label} spans characters {start}..{end}, outside the text's "
                                f"{len(text)} characters (or empty); fix its offsets")
        if re.match(r"^[BI]-", label) or label == "O":
            raise EdgewiseError(f"{where}: entity label {label!r} is a tag; a span's label is its type (PER, not "
                                "B-PER): drop the prefix")
        spans.append((start, end, label))
    spans.sort()
    for (s1, e1, l1), (s2, e2, l2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            raise EdgewiseError(f"{where}: entities {l1} ({s1}..{e1}) and {l2} ({s2}..{e2}) overlap; a word takes one "
                                "tag: keep one of them")
    words, tags, previous = [], [], None
    for match in WORD.finditer(text):
        words.append(match.group())
        inside = next((span for span in spans if span[0] < match.end() and match.start() < span[1]), None)
        if inside is None:
            tags.append("O")
        else:  # the span's first word opens it (B-), the words after it in the same span continue it (I-)
            tags.append(("I-" if inside == previous else "B-") + inside[2])
        previous = inside
    return words, tags


def load_tagged(spec: str, encoding: str = "utf-8") -> dict[str, TaggedSplit]:
    """The splits of word-tagged data: a CoNLL / JSONL file (one split: train) or a folder of train / validation
    / test files. Tags of validation and test must be among train's: another is refused with its line."""
    from edgewise.core.data import SPLIT_ALIASES

    path = Path(spec)
    if not path.exists():
        raise EdgewiseError(f"data {spec} does not exist; pass a CoNLL file (.conll), a JSONL file or a folder of "
                            "train / validation / test files")
    files = ({split: _split_file(path, split) for split in SPLIT_ALIASES} if path.is_dir() else {"train": path})
    files = {split: f for split, f in files.items() if f is not None}
    if not files:
        raise EdgewiseError(f"{spec} holds no train / validation / test file of word-tagged data (.conll, .bio, .iob "
                            "or .jsonl); add them")
    splits = {}
    for split, file in files.items():
        if file.suffix.lower() == ".jsonl":
            splits[split] = read_tagged_jsonl(file, split, encoding)
        else:
            splits[split] = read_conll(file, split, encoding)
    if "train" in splits:
        known = tag_set(splits["train"].tags)
        for split in ("validation", "test"):
            if split in splits:
                _refuse_unknown(splits[split], known, "train")
    return splits


def tag_set(tags: list[list[str]]) -> list[str]:
    """The tags in a fixed order: O first, then each type's B- and I- (types sorted); both tags of every type
    seen, so a model can predict an I- that the data only shows after a B-."""
    types = sorted({t[2:] for sentence in tags for t in sentence if t != "O"})
    return ["O", *(f"{prefix}-{kind}" for kind in types for prefix in "BI")]


def _refuse_unknown(split: TaggedSplit, known, of: str, fix: str | None = None) -> None:
    known = set(known)
    for i, sentence in enumerate(split.tags or []):
        for tag in sentence:
            if tag not in known:
                line = split.lines[i] if split.lines else None
                raise EdgewiseError(
                    f"{split.source}{f' (sentence at line {line})' if line else ''}: tag {tag!r} is not among the "
                    f"{of} tags ({', '.join(sorted(known))}); "
                    + (fix or f"a model cannot learn or predict it: fix the tag or add examples of it to {of}"))


# --- entities and their scores (seqeval's default mode) ----------------------------------------

def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) of each entity in a tag sequence, chunked as conlleval / seqeval's
    default mode: B- starts an entity; I- continues one of its type, or starts one after O or another type."""
    found, kind, start = [], None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, this = (tag[0], tag[2:]) if tag != "O" else ("O", None)
        ends = kind is not None and (prefix in ("B", "O") or this != kind)
        if ends:
            found.append((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            kind, start = this, i
    return found


def entity_scores(truth: list[list[str]], predicted: list[list[str]]) -> dict:
    """Entity-level precision, recall and F1 (micro over all entities, and per type) and token accuracy of
    word-tag sequences (seqeval's classification_report numbers, default mode)."""
    per_type: dict[str, list[int]] = {}  # type -> [true positives, predicted, true]
    correct = total = 0
    for gold, guess in zip(truth, predicted, strict=True):
        if len(gold) != len(guess):
            raise ValueError(f"a sentence has {len(gold)} gold tags but {len(guess)} predicted")
        correct += sum(g == p for g, p in zip(gold, guess, strict=True))
        total += len(gold)
        gold_entities, guess_entities = set(entities(gold)), set(entities(guess))
        for kind, *_ in gold_entities:
            per_type.setdefault(kind, [0, 0, 0])[2] += 1
        for entity in guess_entities:
            counts = per_type.setdefault(entity[0], [0, 0, 0])
            counts[1] += 1
            counts[0] += entity in gold_entities

    def prf(tp: int, predicted_count: int, true_count: int) -> dict:
        precision = tp / predicted_count if predicted_count else 0.0
        recall = tp / true_count if true_count else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": true_count}

    overall = prf(*(sum(c[i] for c in per_type.values()) for i in range(3)))
    return {"entity_f1": overall["f1"], "entity_precision": overall["precision"],
            "entity_recall": overall["recall"], "entities": overall["support"],
            "token_accuracy": correct / total if total else 0.0,
            "per_type": {kind: prf(*counts) for kind, counts in sorted(per_type.items())}}


# --- words and sub-tokens ----------------------------------------------------------------------

def align_labels(word_ids: list[int | None], tags: list[str], tag2id: dict[str, int]) -> list[int]:
    """The training labels of one tokenized sentence: the word's tag id at its first sub-token, -100 at the
    others and at special tokens (ignored by the loss)."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(-100 if word is None or word == previous else tag2id[tags[word]])
        previous = word
    return labels


def word_spans(words: list[str]) -> list[tuple[int, int]]:
    """Each word's (start, end) characters in the sentence the runtime reads (the words joined by spaces)."""
    spans, at = [], 0
    for word in words:
        spans.append((at, at + len(word)))
        at += len(word) + 1
    return spans


def token_words(offsets, special, spans: list[tuple[int, int]]) -> list[int | None]:
    """The word each token belongs to (None: a special or empty token), from the tokens' character offsets in
    the joined sentence: training reads words exactly as the runtime tokenizes the text, whatever the tokenizer
    (a BPE tokenizer given pre-split words would see other tokens)."""
    import bisect

    starts = [start for start, _ in spans]
    found = []
    for (start, end), is_special in zip(offsets, special, strict=True):
        if is_special or end <= start:
            found.append(None)
            continue
        word = bisect.bisect_right(starts, start) - 1
        found.append(word if word >= 0 and start < spans[word][1] else None)
    return found


def tokenize_words(tokenizer, sentences: list[list[str]], max_length: int, pad_to_max: bool = False):
    """(encodings, word ids per sentence) of word-split sentences, tokenized as the runtime tokenizes their
    joined text."""
    encodings = tokenizer([" ".join(words) for words in sentences], truncation=True, max_length=max_length,
                          padding="max_length" if pad_to_max else False, return_offsets_mapping=True,
                          return_special_tokens_mask=True)
    word_ids = [token_words(offsets, special, word_spans(words)) for offsets, special, words in
                zip(encodings.pop("offset_mapping"), encodings.pop("special_tokens_mask"), sentences, strict=True)]
    return encodings, word_ids


def word_rows(scores, word_ids: list[int | None], words: int):
    """A sentence's per-token rows ([tokens, tags]) as per-word rows ([words, tags]): each word's first sub-token's
    row; NaN for a word the tokenizer truncated away (scored as O, a miss, never dropped)."""
    import numpy as np

    out = np.full((words, np.shape(scores)[-1]), np.nan, dtype=np.float32)
    previous = None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous and word < words:
            out[word] = scores[position]
        previous = word
    return out


# --- the runtime's entities (transformers' pipeline grouping) -----------------------------------

def _tag_parts(name: str) -> tuple[str, str]:
    """("B" | "I", type) as the pipeline reads a tag name; a name without a prefix continues (I)."""
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name


def group_entities(text: str, logits, offsets, special, id2label: dict, aggregation: str = "simple",
                   subword=None) -> list[dict]:
    """The entities of one text from its tokens' logits, as transformers' token-classification pipeline groups
    them: ``simple`` takes each token's argmax, ``first`` each word's first sub-token's (a word = a token and the
    sub-word tokens after it, ``subword[i]``); adjacent tokens / words of one type join unless the next is B-;
    O is dropped. Each entity: type, start, end (characters), text, score (the mean of its parts' scores)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    scores = shifted / shifted.sum(-1, keepdims=True)
    parts = []  # (tag, score, start, end)
    for i, row in enumerate(scores):
        if special[i]:
            continue
        if aggregation == "first" and parts and subword is not None and subword[i]:
            parts[-1] = (*parts[-1][:3], int(offsets[i][1]))
            continue
        best = int(row.argmax())
        parts.append((id2label[best], float(row[best]), int(offsets[i][0]), int(offsets[i][1])))
    groups: list[list[tuple]] = []
    for part in parts:
        if groups:
            bi, kind = _tag_parts(part[0])
            _, last_kind = _tag_parts(groups[-1][-1][0])
            if kind == last_kind and bi != "B":
                groups[-1].append(part)
                continue
        groups.append([part])
    found = []
    for group in groups:
        kind = group[0][0].split("-", 1)[-1]
        if kind == "O" or group[0][0] == "O":
            continue
        start, end = group[0][2], group[-1][3]
        found.append({"type": kind, "start": start, "end": end, "text": text[start:end],
                      "score": float(np.mean([p[1] for p in group]))})
    return found


def merge_windows(found: list[dict]) -> list[dict]:
    """The entities of a text read in overlapping windows, as the pipeline merges them: by start; of entities that
    overlap, the longer (at equal length the higher-scored) one stays."""
    if not found:
        return found
    ordered = sorted(found, key=lambda e: e["start"])
    merged, previous = [], ordered[0]
    for entity in ordered:
        if previous["start"] <= entity["start"] < previous["end"]:
            longer = entity["end"] - entity["start"] - (previous["end"] - previous["start"])
            if longer > 0 or (longer == 0 and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


def subword_flags(text: str, tokens: list[str], offsets, ids, unk_id: int | None, prefix: str | None) -> list[bool]:
    """Which tokens continue the word before them, as the pipeline decides: a WordPiece-style tokenizer (its
    model has a continuing-subword prefix such as ##) by the token's length against its span; others by
    whether the character before it is not a space; an unknown token always starts a word."""
    flags = []
    for token, (start, end), token_id in zip(tokens, offsets, ids, strict=True):
        flag = len(token) != end - start if prefix else start > 0 and " " not in text[start - 1:start + 1]
        flags.append(False if unk_id is not None and token_id == unk_id else flag)
    return flags


# --- the task ----------------------------------------------------------------------------------

class TokenClassification(Task):
    """A token classifier; its tag map lives in the manifest's ``labels`` (and config.json's id2label)."""

    name = "token-classification"
    export_task = "token-classification"
    output_name = "logits"
    gate_metric = "entity_f1"
    quality_name = "entity F1"
    labelled = True
    metrics = ("entity_f1", "token_accuracy")
    self_targets = "the model's own tags"
    columns = (("entity F1", "entity_f1", "pct"), ("token acc", "token_accuracy", "pct"))
    column_notes = ("`entity F1`: entity-level F1 (seqeval's default mode: conlleval's chunking), the gate; "
                    "`token acc`: share of words tagged right, shown, never the gate.")
    # What the task protocol still lacks here (issue 24): until these exist, every stage after finetune
    # (distill, prune, quantize, export, evaluate, bench, compress, the runtime) refuses the task in one Error
    # line (their refuse_unless names the tasks they serve). The registry's tests hold this list to the code.
    pending = ("distill_loss", "importance_loss", "importance_targets", "compact", "expand", "postprocess")

    @classmethod
    def from_record(cls, record: dict, where: str) -> TokenClassification:
        return cls()

    @classmethod
    def detect(cls, folder: Path, labels: dict | None = None) -> TokenClassification | None:
        """A token classifier when its config names a token-classification head."""
        from edgewise.core.tasks.classification import architectures

        return cls() if "ForTokenClassification" in architectures(folder) else None

    @classmethod
    def from_options(cls, folder: Path, config, labels: dict | None) -> TokenClassification:
        return cls()

    def check_options(self, config, what: str) -> None:
        if config.pooling is not None or config.normalize is not None:
            raise EdgewiseError(f"{what} is a token classifier; --pooling and --normalize describe an embedding "
                                "model: drop them")

    def quality_drop(self, value: float | None, reference: float | None) -> float | None:
        """Entity F1 points below the reference."""
        if value is None or reference is None:
            return None
        return (reference - value) * 100

    def output_width(self, labels: dict) -> int:
        return len(labels)

    # --- the model (torch) ------------------------------------------------------------------------

    @staticmethod
    def auto_class():
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def load(self, source, allow_pickle: bool = False, **kwargs):
        from edgewise.core.models import load_classifier

        return load_classifier(source, allow_pickle, auto_class=self.auto_class(), **kwargs)

    best_metric = "entity_f1"  # what selects the checkpoint a training keeps (TrainerConfig.best_metric is a
    # classifier's choice)

    def head(self, outputs, inputs):
        return outputs.logits

    def output(self, model, inputs):
        return self.head(model(**inputs), inputs)

    def eval_loss(self, output, labels):
        import torch.nn.functional as F

        if labels is None or not bool((labels >= 0).any()):
            return output.sum() * 0.0
        return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)

    def trainer_metrics(self, eval_pred, labels: dict) -> dict:
        """Trainer's compute_metrics (checkpoint selection): entity F1 and token accuracy of the word-initial
        positions (labels != -100), each also as ``rank_<metric>`` (ties broken by the lower cross-entropy)."""
        return trainer_metrics(eval_pred, labels)

    # --- measuring (numpy) ------------------------------------------------------------------------

    @staticmethod
    def word_outputs(scores, texts: list[str], offsets) -> object:
        """A batch's per-token logits ([texts, tokens, tags]) as per-word logits ([texts, words, tags]): each word's
        row is its first sub-token's; NaN for a word truncation cut away and for the padding after a text's words.
        The texts are words joined by single spaces (an EvalSet's), each token placed by its character offsets."""
        import numpy as np

        rows = [text.split(" ") for text in texts]
        out = np.full((len(texts), max((len(w) for w in rows), default=0), scores.shape[-1]), np.nan, dtype=np.float32)
        for i, (words, (token_offsets, special)) in enumerate(zip(rows, offsets, strict=True)):
            out[i, :len(words)] = word_rows(scores[i], token_words(token_offsets, special, word_spans(words)),
                                            len(words))
        return out

    def eval_data(self, data: str, split: str | None, config, reference: Path, labels: dict, *,
                  pairs: str | None = None, samples: int | None = None, require_truth: bool = False):
        """(the EvalSet of word-tagged ``data``'s split ``split`` (test, else validation, else the only one), the
        record of a carved validation split): validation carved from train as finetune carves it when the data has
        none. A tag the model does not know is an error that names its line."""
        from edgewise.core.data import SPLIT_ALIASES, select_split

        if pairs is not None:
            raise EdgewiseError("--pairs scores sentence-embedding models; a token classifier is scored on word-tagged "
                                "DATA: drop --pairs")
        if not is_tagged(data):
            raise EdgewiseError(f"{data} is not word-tagged data, and a token classifier is scored on a tag per word: "
                                "give CoNLL files (a token and its tag per line) or JSONL with tokens + tags or text + "
                                "entities")
        splits, carved = load_tagged(data, config.encoding), None
        if split is not None and split.lower() in SPLIT_ALIASES["validation"] and "validation" not in splits:
            splits = {"validation": self.training_data(data, config)[0]["validation"][0]}
            carved = {"from": "train", "fraction": config.validation_fraction, "seed": config.seed}
        chosen = select_split(splits, split, data)
        if samples:
            chosen = chosen.subset(range(min(len(chosen), samples)), chosen.name)
        _refuse_unknown(chosen, labels.values(), "model's", "the model cannot predict it: score it on data of its "
                        "own tags, or fine-tune a model on data that has this one")
        return self.eval_set(chosen), carved

    def eval_set(self, split):
        """A TaggedSplit as an EvalSet: its sentences (words joined by spaces) and their tags."""
        from edgewise.core.tasks import EvalSet

        return EvalSet(split.name, split.texts, None, split.tags, split.source, {}, split.sha256())

    @staticmethod
    def word_predictions(outputs, counts: list[int]) -> list[list[int]]:
        """Per text, the tag id of each of its ``counts[i]`` words from per-word logits (-1 where a row is NaN: a word
        the model never saw, which scores as O)."""
        import numpy as np

        found = []
        for row, count in zip(outputs, counts, strict=True):
            row = np.asarray(row[:count])
            seen = ~np.isnan(row).any(-1)
            found.append(np.where(seen, np.nan_to_num(row).argmax(-1), -1).tolist())
        return found

    def word_tags_of(self, outputs, counts: list[int], labels: dict) -> list[list[str]]:
        return [[labels[i] if i >= 0 else "O" for i in ids] for ids in self.word_predictions(outputs, counts)]

    def score(self, eval_set, outputs, labels: dict, reference=None, full: bool = False) -> dict | None:
        """Entity precision / recall / F1 and token accuracy of the per-word logits (``full``: per entity type too);
        with the ``reference`` model's, the agreement with it (and this model's entity F1 taking the reference's
        tags as the truth). None without truth or reference."""
        result = {}
        counts = [len(text.split(" ")) for text in eval_set.texts]
        if eval_set.truth is not None:
            scores = entity_scores(eval_set.truth, self.word_tags_of(outputs, counts, labels))
            result = scores if full else {k: v for k, v in scores.items() if k != "per_type"}
        if reference is not None:
            result.update(self.agreement_on(eval_set, outputs, reference))
            result["entity_f1_vs_reference"] = entity_scores(self.word_tags_of(reference, counts, labels),
                                                             self.word_tags_of(outputs, counts, labels))["entity_f1"]
        return result or None

    def agreement_on(self, eval_set, outputs, reference) -> dict:
        """Agreement with a reference model on an EvalSet's words: the share of words given the same tag."""
        counts = [len(text.split(" ")) for text in eval_set.texts]
        ours, theirs = self.word_predictions(outputs, counts), self.word_predictions(reference, counts)
        same = sum(a == b for x, y in zip(ours, theirs, strict=True) for a, b in zip(x, y, strict=True))
        return {"tag_agreement": same / max(1, sum(counts))}

    # --- training (finetune) -------------------------------------------------------------------------

    def training_data(self, data: str, config, train_split: str = "train", say=None) -> tuple[dict, dict]:
        """({"train" | "validation" | "test": (TaggedSplit, its tags)}, id -> tag) of word-tagged ``data``;
        validation carved from train (``config.validation_fraction``, ``config.seed``) when the data has none."""
        import random

        splits = load_tagged(data, config.encoding)
        if train_split not in splits:
            raise EdgewiseError(f"{data} has no {train_split} split (it has {', '.join(splits)}); add a "
                                f"{train_split}.conll / .jsonl file")
        train = splits[train_split]
        names = tag_set(train.tags)
        if len(names) < 3:
            raise EdgewiseError(f"the {train_split} split of {data} tags no entity (every word is O); a token "
                                "classifier needs B- / I- tags to learn")
        if "validation" not in splits:
            order = list(range(len(train)))
            random.Random(config.seed).shuffle(order)
            held = max(1, round(len(train) * config.validation_fraction))
            if len(train) - held < 1:
                raise EdgewiseError(f"the {train_split} split of {data} has {len(train)} sentence(s): too few to "
                                    "carve a validation split from; add a validation.conll file or more sentences")
            splits["validation"] = train.subset(sorted(order[:held]), "validation")
            train = train.subset(sorted(order[held:]), train_split)
        chosen = {"train": train, "validation": splits["validation"], "test": splits.get("test")}
        return {k: (v, v.tags) for k, v in chosen.items() if v is not None}, dict(enumerate(names))

    def token_lengths(self, tokenizer, split) -> list[int]:
        from edgewise.core.models import token_lengths

        return token_lengths(tokenizer, split.texts, None)

    def describe_data(self, splits: dict, labels: dict) -> str:
        kinds = sorted({tag[2:] for tag in labels.values() if tag != "O"})
        return (" / ".join(f"{len(split)} {name}" for name, (split, _) in splits.items()) + " sentences, "
                f"{len(kinds)} entity types ({', '.join(kinds)})")

    def encode(self, tokenizer, split, tags, labels: dict, max_length: int, pad_to_max: bool, model=None):
        """A training / evaluation dataset: the joined sentences' tokens, each word's tag id at its first
        sub-token (-100 elsewhere); ``word_ids`` kept on the dataset for scoring words."""
        from edgewise.core.models import model_inputs
        from edgewise.core.training import EncodedDataset

        encodings, word_ids = tokenize_words(tokenizer, split.words, max_length, pad_to_max)
        tag2id = {tag: i for i, tag in labels.items()}
        targets = None if tags is None else [align_labels(w, t, tag2id) for w, t in zip(word_ids, tags, strict=True)]
        dataset = EncodedDataset(model_inputs(model, encodings) if model is not None else dict(encodings), targets)
        dataset.word_ids = word_ids
        dataset.word_counts = [len(words) for words in split.words]
        return dataset

    def collator(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def dataset_metrics(self, predictions, dataset, truth, labels: dict) -> dict:
        """Entity scores of Trainer's padded predictions over ``dataset``: each word's tag from its first
        sub-token, O for the words truncation cut (they count as misses)."""
        rows = [word_rows(row, ids, count)
                for row, ids, count in zip(predictions, dataset.word_ids, dataset.word_counts, strict=True)]
        return entity_scores(truth, self.word_tags_of(rows, dataset.word_counts, labels))

    def summary(self, metrics: dict) -> str:
        return (f"entity F1 {metrics['entity_f1']:.4f} (P {metrics['entity_precision']:.4f} R "
                f"{metrics['entity_recall']:.4f}) token accuracy {metrics['token_accuracy']:.4f}")

    def quality(self, metrics: dict | None, metric: str | None = None) -> float | None:
        return (metrics or {}).get(metric or self.gate_metric)

    def check_outputs(self, outputs, labels: dict, where: str) -> None:
        if labels and outputs.shape[-1] != len(labels):
            raise EdgewiseError(f"{where}: the model has {outputs.shape[-1]} outputs per token but names "
                                f"{len(labels)} tags; fix its label map")


def trainer_metrics(eval_pred, id2label: dict) -> dict:
    """Entity F1 / token accuracy of Trainer's padded predictions: the positions whose label is not -100 are
    the words, in order; ``rank_`` variants break ties by the lower cross-entropy (as classification's do)."""
    import numpy as np

    from edgewise.core.tasks.classification import TIE_BREAK

    logits = np.asarray(eval_pred.predictions, dtype=np.float64)
    labels = np.asarray(eval_pred.label_ids)
    truth, guess, losses = [], [], []
    for row_logits, row_labels in zip(logits, labels, strict=True):
        keep = row_labels != -100
        picked, gold = row_logits[keep], row_labels[keep]
        shifted = picked - picked.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        losses.extend(-log_probs[np.arange(len(gold)), gold])
        truth.append([id2label[int(i)] for i in gold])
        guess.append([id2label[int(i)] for i in picked.argmax(-1)])
    scores = entity_scores(truth, guess)
    cross_entropy = float(np.mean(losses)) if losses else 0.0
    metrics = {"entity_f1": scores["entity_f1"], "token_accuracy": scores["token_accuracy"]}
    metrics.update({f"rank_{k}": v - TIE_BREAK * min(cross_entropy, 100.0) for k, v in list(metrics.items())})
    return metrics
