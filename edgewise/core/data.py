"""The one data loader every stage uses.

A data spec is a file (csv / tsv / jsonl / json / parquet / txt), a folder of split files
(train.* / validation.* / test.*), a `datasets.save_to_disk` folder, `hf:NAME[:CONFIG]` from
the Hugging Face Hub, or a built-in data set (`builtin:bbc-news`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgewise.core import builtin
from edgewise.core.config import setting
from edgewise.core.errors import EdgewiseError

EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}


@dataclass(frozen=True)
class DataConfig:
    """Which columns hold the text, the optional second text and the label; how to carve splits."""

    SCHEMA_VERSION = 1

    text_column: str = setting("text", "Column holding the text.")
    text_pair_column: str | None = setting(None, "Column holding a second text (sentence pairs).")
    label_column: str = setting("label", "Column holding the label.")
    validation_fraction: float = setting(
        0.1, "Share of the training data held out for validation when the data has no validation split.")
    seed: int = setting(42, "Seed of the validation carve-out and of sampling; training stages also seed "
                            "initialisation, shuffling and dropout with it.")
    encoding: str = setting(
        "utf-8", "Text encoding of csv / tsv / jsonl / json / txt files, e.g. latin-1 or cp1252 (a UTF-8 "
        "byte-order mark is skipped).")

    def __post_init__(self) -> None:
        if not 0 < self.validation_fraction < 1:
            raise EdgewiseError(
                f"validation_fraction must be between 0 and 1 (exclusive), got {self.validation_fraction}"
            )
        if self.seed < 0:
            raise EdgewiseError(f"seed must be >= 0, got {self.seed}")
        try:
            codecs.lookup(self.encoding)
            # lookup also finds bytes-to-bytes codecs such as base64, which decode refuses (not for b"").
            b"a".decode(self.encoding, "ignore")
        except (LookupError, TypeError, ValueError):
            raise EdgewiseError(
                f"encoding {self.encoding!r} is not a text encoding Python knows; accepted: a codec name such as "
                "utf-8, latin-1, cp1252 or utf-16: pass --encoding with the file's encoding"
            ) from None


@dataclass
class Split:
    """One split of a data set: texts, optional second texts, and label names (None if unlabelled)."""

    name: str
    texts: list[str]
    pairs: list[str] | None
    labels: list[str] | None
    source: str = ""
    # Why `labels` is None, said when a command needs them: labels are only required of the
    # splits a command uses (a Hub test split often has none).
    label_problem: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def sha256(self) -> str:
        payload = json.dumps([self.texts, self.pairs, self.labels], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def subset(self, indices, name: str) -> Split:
        pick = lambda xs: None if xs is None else [xs[i] for i in indices]  # noqa: E731
        return Split(name, pick(self.texts), pick(self.pairs), pick(self.labels), self.source, self.label_problem)

    def describe(self) -> dict:
        return {"rows": len(self), "sha256": self.sha256()}


# --- reading -----------------------------------------------------------------------------------

def _no_rows(path: Path) -> str:
    return (f"{path} is empty: it has no rows; accepted: a header and at least one data row (csv / tsv), one "
            "object per row (jsonl / json) or one text per line (txt): add rows or pass another file")


def _decode(path: Path, data: bytes, encoding: str) -> str:
    """The text of a data file; bytes that are not ``encoding`` are an error naming the line and the byte."""
    # utf-8-sig reads UTF-8 with or without the byte-order mark Excel and Notepad write; plain utf-8
    # would leave U+FEFF inside the first text (or header) and json.loads refuses it.
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise EdgewiseError(
            f"cannot read {path}: line {line} holds byte 0x{e.object[e.start]:02x}, which is not {encoding}; "
            f"data files are read as {encoding} (--encoding, default utf-8): pass the file's encoding, e.g. "
            "--encoding latin-1 or --encoding cp1252"
        ) from None
    return text.removeprefix("\ufeff")


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A data file's text (see ``_decode``: a byte that is not ``encoding`` is an error naming its line)."""
    return _decode(path, path.read_bytes(), encoding)


def _refuse_duplicate_columns(path: Path, columns) -> None:
    # Unnamed columns (a header ending in commas, as spreadsheets export it) are not read by name.
    twice = sorted(str(name) for name, n in Counter(columns).items() if n > 1 and str(name).strip())
    if twice:
        raise EdgewiseError(
            f"{path} has more than one column named {', '.join(repr(c) for c in twice)}; accepted: one column per "
            "name: rename or drop the duplicate so it is clear which one to read"
        )


def _read_delimited(path: Path, text: str, sep: str):
    import pandas as pd

    # Checked here because pandas silently renames a second `label` to `label.1`.
    header = next((row for row in csv.reader(io.StringIO(text), delimiter=sep) if row), [])
    _refuse_duplicate_columns(path, header)
    # Every cell is read as the string in the file: no NA guessing, so a class named "NA", "None"
    # or "null" stays a class, and the csv module's quoting applies to tsv too.
    return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False)


class _DuplicateKeys(Exception):
    """A JSON object names a key twice (json.loads would silently keep the last value)."""


def _unique_keys(pairs):
    twice = sorted(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
    if twice:
        raise _DuplicateKeys(", ".join(repr(k) for k in twice))
    return dict(pairs)


def _read_json_lines(path: Path, text: str):
    import pandas as pd

    records = []
    # split("\n"), not splitlines(): a JSON string may hold a raw U+2028, which splitlines splits on.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            raise EdgewiseError(f"cannot read {path} as JSON lines: line {number} is not JSON ({e.msg}); "
                                "accepted: one JSON object per line: fix that line") from None
        except _DuplicateKeys as e:
            raise EdgewiseError(f"{path} line {number} names the key(s) {e} twice; accepted: each key once per "
                                "object: rename or drop the duplicate") from None
        if not isinstance(record, dict):
            raise EdgewiseError(f"cannot read {path} as JSON lines: line {number} is a {type(record).__name__}, "
                                'not an object; accepted: one object per line such as {"text": ..., "label": ...}: '
                                "rewrite that line as an object")
        records.append(record)
    # A JSON null stays missing; a string ("NA", "None") stays the string.
    return pd.DataFrame.from_records(records)


def _read_json(path: Path, text: str):
    import pandas as pd

    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError:
        return _read_json_lines(path, text)  # JSON lines saved as .json
    except _DuplicateKeys as e:
        raise EdgewiseError(f"{path} names the key(s) {e} twice in one object; accepted: each key once per "
                            "object: rename or drop the duplicate") from None
    if isinstance(document, list) and all(isinstance(row, dict) for row in document):
        return pd.DataFrame.from_records(document)
    if isinstance(document, dict) and all(isinstance(column, (dict, list)) for column in document.values()):
        return pd.DataFrame(document)  # columns, as pandas' to_json writes them by default
    raise EdgewiseError(
        f"cannot read {path} as json: it is neither a list of objects nor an object of columns; accepted: "
        '[{"text": ..., "label": ...}, ...], {"text": [...], "label": [...]} or JSON lines: rewrite it in one of them'
    )


def _read_txt(path: Path, text: str):
    import pandas as pd

    lines = [line.strip() for line in text.splitlines()]
    return pd.DataFrame({"text": [line for line in lines if line]})


def _read_parquet(path: Path):
    import pandas as pd

    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PAR1":
        raise EdgewiseError(
            f"cannot read {path} as parquet: it does not start with parquet's magic bytes PAR1 (it starts with "
            f"{head!r}); accepted: a parquet file as pandas / pyarrow write it: if it is csv / tsv / jsonl text, "
            "give it that extension"
        )
    return pd.read_parquet(path)


def _read_table(path: Path, encoding: str = "utf-8"):
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise EdgewiseError(
            f"{path} has an unsupported extension {suffix or '(none)'}; accepted: {', '.join(EXTENSIONS)}"
        )
    try:
        if suffix == ".parquet":
            frame = _read_parquet(path) if path.stat().st_size else None
        else:
            # Decoded here, not by pandas, so a bad byte is reported with its line; Windows line
            # endings become \n so no stray \r ends up in a text or a label.
            text = _decode(path, path.read_bytes(), encoding).replace("\r\n", "\n")
            if not text.strip():
                frame = None
            elif suffix in (".csv", ".tsv"):
                frame = _read_delimited(path, text, "," if suffix == ".csv" else "\t")
            else:
                frame = {".jsonl": _read_json_lines, ".json": _read_json, ".txt": _read_txt}[suffix](path, text)
    except (ValueError, OSError, csv.Error, pd.errors.ParserError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EdgewiseError(f"cannot read {path} as {suffix[1:]}: {first}; check the file's format") from None
    if frame is None or len(frame) == 0:
        raise EdgewiseError(_no_rows(path))
    _refuse_duplicate_columns(path, list(frame.columns))
    return frame


def _frames_from_datasets(obj) -> dict:
    """pandas frames from a datasets Dataset / DatasetDict, class ids turned into names."""
    import datasets

    if isinstance(obj, datasets.Dataset):
        obj = {"train": obj}
    frames = {}
    for name, ds in obj.items():
        frame = ds.to_pandas()
        for column, feature in ds.features.items():
            if isinstance(feature, datasets.ClassLabel):
                frame[column] = [feature.int2str(int(v)) if v is not None and v >= 0 else None for v in frame[column]]
        frames[name] = frame
    return frames


def _canonical_split(name: str) -> str:
    for canonical, aliases in SPLIT_ALIASES.items():
        if name.lower() in aliases:
            return canonical
    return name


def _read_folder(path: Path, encoding: str = "utf-8") -> dict:
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        import datasets

        try:
            return _frames_from_datasets(datasets.load_from_disk(str(path)))
        except (FileNotFoundError, ValueError) as e:
            raise EdgewiseError(f"cannot load the datasets folder {path}: {e}") from None
    frames = {}
    for file in sorted(path.iterdir()):
        split = _canonical_split(file.stem)
        if file.is_file() and file.suffix.lower() in EXTENSIONS and split in SPLIT_ALIASES:
            if split in frames:
                raise EdgewiseError(f"{path} holds two files for the {split} split; keep one")
            frames[split] = _read_table(file, encoding)
    if not frames:
        raise EdgewiseError(
            f"{path} holds no data: expected split files named train / validation / test with one of "
            f"{', '.join(EXTENSIONS)}, or a datasets.save_to_disk folder"
        )
    return frames


def _read_hub(spec: str) -> dict:
    import datasets

    name, _, config = spec[len("hf:"):].partition(":")
    if not name:
        raise EdgewiseError(f"{spec!r} names no data set; use hf:NAME or hf:NAME:CONFIG")
    try:
        return _frames_from_datasets(datasets.load_dataset(name, config or None))
    except (OSError, ValueError) as e:  # offline, unknown name, missing config: all OSError/ValueError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EdgewiseError(
            f"cannot load {spec} from the Hugging Face Hub ({type(e).__name__}: {first}); "
            "check the name and the network, or pass a local file or folder"
        ) from None


def read_frames(spec: str, encoding: str = "utf-8") -> dict:
    """Named pandas frames (train / validation / test / ...) of a data spec.

    ``encoding`` decodes csv / tsv / jsonl / json / txt files (default utf-8, with or without a
    byte-order mark); parquet, datasets folders, the Hub and built-in data carry their own.
    """
    from edgewise.core.deps import require_full

    require_full("pandas", "sklearn")
    import pandas as pd

    if builtin.is_builtin(spec):
        return {
            name: pd.DataFrame({"text": texts, "label": labels})
            for name, (texts, labels) in builtin.dataset_splits(spec).items()
        }
    if spec.startswith("hf:"):
        return _read_hub(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise EdgewiseError(
            f"data {spec!r} does not exist; pass a file ({', '.join(EXTENSIONS)}), a folder of split "
            "files, a datasets folder, hf:NAME[:CONFIG] or builtin:bbc-news"
        )
    frames = _read_folder(path, encoding) if path.is_dir() else {"train": _read_table(path, encoding)}
    return {_canonical_split(k): v for k, v in frames.items()}


# --- turning frames into splits ----------------------------------------------------------------

def _missing(value) -> bool:
    """None, NaN, pandas' NA / NaT: a cell with no value."""
    import pandas as pd

    return value is None or (not isinstance(value, (str, bytes)) and bool(pd.isna(value)))


def _label_name(value) -> str | None:
    if _missing(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, str):
        value = value.strip()  # " sport" is the class "sport", not a new one
        if not value:
            return None
        # csv / tsv cells are read as strings: keep the meaning pandas' number guessing gave them
        # (1.0 is the class 1) without its NA guessing. A negative number is a class too (-1 / 0 / 1
        # sentiment); only datasets' ClassLabel -1 means "no label", handled where it is read.
        if re.fullmatch(r"-?\d+\.0*", value):
            return str(int(value.partition(".")[0]))
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _missing_column(frame, column: str, what: str, spec: str, split: str, option: str) -> str | None:
    if column in frame.columns:
        return None
    columns = [str(c) for c in frame.columns]
    for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if len(columns) == 1 and separator in columns[0]:
            # One column whose name holds another separator: the file is not comma-separated.
            return (f"{spec} looks separated by {name}, not commas (its one column is {columns[0]!r}); save it "
                    "comma-separated as .csv" + (" or keep the tabs and name it .tsv" if separator == "\t" else ""))
    return (f"the {split} split of {spec} has no {what} column {column!r}; its columns are "
            f"{', '.join(columns)}: pass {option} NAME")


def _empty_rows(values) -> str | None:
    empty = [i for i, v in enumerate(values, 1) if _missing(v) or (isinstance(v, str) and not v.strip())]
    if not empty:
        return None
    rows = ", ".join(str(i) for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
    return f"{len(empty)} empty value(s) (blank or whitespace only; data rows {rows}, counted from 1, header excluded)"


def _texts(frame, column: str, what: str, spec: str, split: str, option: str) -> list[str]:
    if problem := _missing_column(frame, column, what, spec, split, option):
        raise EdgewiseError(problem)
    values = frame[column].tolist()
    if problem := _empty_rows(values):
        raise EdgewiseError(f"column {column!r} of the {split} split of {spec} has {problem}; fill or drop them")
    return [str(v) for v in values]


def _to_split(frame, name: str, spec: str, config: DataConfig) -> Split:
    if len(frame) == 0:
        raise EdgewiseError(f"the {name} split of {spec} is empty; it needs at least one row")
    texts = _texts(frame, config.text_column, "text", spec, name, "--text-column")
    pairs = None
    if config.text_pair_column:
        pairs = _texts(frame, config.text_pair_column, "text-pair", spec, name, "--text-pair-column")
    labels, problem = None, _missing_column(frame, config.label_column, "label", spec, name, "--label-column")
    if problem is None:
        labels = [_label_name(v) for v in frame[config.label_column].tolist()]
        if empty := _empty_rows(labels):
            labels, problem = None, (f"column {config.label_column!r} of the {name} split of {spec} has {empty}; "
                                     "label or drop them")
    return Split(name, texts, pairs, labels, source=spec, label_problem=problem)


def load_splits(spec: str, config: DataConfig = DataConfig()) -> dict[str, Split]:
    """Every split a data spec provides. Text columns are checked now; labels when a command needs them."""
    frames = read_frames(str(spec), config.encoding)
    return {name: _to_split(frame, name, str(spec), config) for name, frame in frames.items()}


def require_labels(split: Split) -> list[str]:
    """The split's labels, or an error that says why it has none."""
    if split.labels is None:
        raise EdgewiseError(split.label_problem or f"the {split.name} split has no labels; pass --label-column")
    return split.labels


def select_split(splits: dict[str, Split], name: str | None, spec: str) -> Split:
    """The split called ``name``; by default test, else validation, else the only one there is."""
    if name is None:
        for candidate in ("test", "validation"):
            if candidate in splits:
                return splits[candidate]
        if len(splits) == 1:
            return next(iter(splits.values()))
        raise EdgewiseError(f"{spec} has splits {', '.join(splits)}; choose one with --split")
    name = _canonical_split(name)
    if name not in splits:
        raise EdgewiseError(f"{spec} has no {name!r} split; it has {', '.join(splits)}: pick one with --split")
    return splits[name]


def training_splits(
    splits: dict[str, Split], config: DataConfig, spec: str, train_split: str = "train", labelled: bool = True
) -> tuple[Split, Split, Split | None]:
    """train, validation (carved from train with the seed when absent) and test (None if absent).

    ``labelled=False`` (an embedding model learns texts, not labels): the carve needs no labels and is not
    stratified."""
    train_split = _canonical_split(train_split)
    if train_split not in splits:
        raise EdgewiseError(
            f"{spec} has no {train_split!r} split to train on (it has {', '.join(splits)}); pick one with --split"
        )
    train = splits[train_split]
    test = splits.get("test") if train_split != "test" else None
    if "validation" in splits and train_split != "validation":
        return train, splits["validation"], test
    labels = require_labels(train) if labelled else None
    if len(train) < 2:
        raise EdgewiseError(f"the train split of {spec} has {len(train)} row(s); at least 2 are needed")
    import numpy as np
    from sklearn.model_selection import train_test_split

    n_val = max(1, round(len(train) * config.validation_fraction))
    stratify = None
    if labels is not None:
        counts = {label: labels.count(label) for label in set(labels)}
        # Stratify when every class can give one example to each side, so a rare class is not
        # carved out of the training data entirely.
        stratify = labels if min(counts.values()) >= 2 and len(counts) <= n_val <= len(train) - len(counts) else None
    keep, held = train_test_split(np.arange(len(train)), test_size=n_val, random_state=config.seed, stratify=stratify)
    return train.subset(sorted(keep.tolist()), "train"), train.subset(sorted(held.tolist()), "validation"), test


def label_names(labels: list[str]) -> list[str]:
    """The sorted label set of training data (numerically when every label is an integer)."""
    unique = set(labels)
    if all(u.lstrip("-").isdigit() for u in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def encode_labels(split: Split, id2label: dict[int, str], label_column: str = "label") -> list[int]:
    """Map a split's label names to the model's ids; an unknown label is an error that names it."""
    labels = require_labels(split)
    label2id = {name: i for i, name in id2label.items()}
    # Models saved without label names call them LABEL_0, LABEL_1, ...: accept integer labels then.
    default_names = all(name == f"LABEL_{i}" for i, name in id2label.items())
    ids, unknown = [], set()
    for label in labels:
        if label in label2id:
            ids.append(label2id[label])
        elif default_names and label.isdigit() and int(label) in id2label:
            ids.append(int(label))
        else:
            unknown.add(label)
    if unknown:
        shown = ", ".join(repr(u) for u in sorted(unknown)[:10])
        raise EdgewiseError(
            f"label(s) {shown} in column {label_column!r} of the {split.name} split are unknown to the model, "
            f"which knows {', '.join(repr(v) for v in id2label.values())}; relabel the data or use a model "
            "trained on these labels"
        )
    return ids


# --- scored sentence pairs (STS) ------------------------------------------------------------------

PAIR_COLUMNS = ("sentence1", "sentence2", "score")


@dataclass
class Pairs:
    """One split of scored sentence pairs (STS): two texts and a gold similarity score per row."""

    name: str
    first: list[str]
    second: list[str]
    scores: list[float]
    source: str = ""

    def __len__(self) -> int:
        return len(self.scores)

    def sha256(self) -> str:
        payload = json.dumps([self.first, self.second, self.scores], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def describe(self) -> dict:
        return {"spec": self.source, "split": self.name, "rows": len(self), "sha256": self.sha256()}


def _scores(values, spec: str, split: str) -> list[float]:
    import math

    scores, bad = [], []
    for row, value in enumerate(values, 1):
        try:
            number = float(str(value).strip()) if not _missing(value) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            bad.append(f"row {row} ({value!r})")
        scores.append(number)
    if bad:
        raise EdgewiseError(f"column 'score' of the {split} split of {spec} holds values that are not numbers: "
                            f"{', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}; accepted: a number per pair "
                            "(e.g. 0-5 as STS-B scores them): fix or drop those rows")
    return scores


def load_pairs(spec: str, encoding: str = "utf-8") -> dict[str, Pairs]:
    """Every split of a scored-pairs spec (a file or folder of split files with columns sentence1, sentence2,
    score, e.g. STS-B); an EdgewiseError names a missing column or a score that is not a number."""
    frames = read_frames(str(spec), encoding)
    pairs = {}
    for name, frame in frames.items():
        missing = [c for c in PAIR_COLUMNS if c not in frame.columns]
        if missing:
            raise EdgewiseError(
                f"the {name} split of {spec} has no column {', '.join(map(repr, missing))}; scored pairs need the "
                f"columns {', '.join(PAIR_COLUMNS)} (its columns are {', '.join(map(str, frame.columns))}): rename "
                "them, or pass a corpus of texts as DATA instead")
        first = _texts(frame, "sentence1", "first-sentence", str(spec), name, "a sentence1 column")
        second = _texts(frame, "sentence2", "second-sentence", str(spec), name, "a sentence2 column")
        pairs[name] = Pairs(name, first, second, _scores(frame["score"].tolist(), str(spec), name), str(spec))
    return pairs


def is_pairs(spec: str, encoding: str = "utf-8") -> bool:
    """Whether a data spec holds scored pairs (columns sentence1, sentence2 and score) rather than texts."""
    try:
        frames = read_frames(str(spec), encoding)
    except EdgewiseError:
        return False
    return bool(frames) and all(set(PAIR_COLUMNS) <= set(frame.columns) for frame in frames.values())


def select_pairs(pairs: dict[str, Pairs], name: str | None, spec: str) -> Pairs:
    """The pairs split ``name``; by default test, else validation, else the only one (as select_split)."""
    if name is None:
        for candidate in ("test", "validation"):
            if candidate in pairs:
                return pairs[candidate]
        if len(pairs) == 1:
            return next(iter(pairs.values()))
        raise EdgewiseError(f"{spec} has pair splits {', '.join(pairs)}; choose one with --split")
    name = _canonical_split(name)
    if name in pairs:
        return pairs[name]
    if len(pairs) == 1:  # one file of pairs serves every split asked for
        return next(iter(pairs.values()))
    raise EdgewiseError(f"{spec} has no {name!r} split of pairs; it has {', '.join(pairs)}: pick one with --split")


# --- retrieval sets (BEIR's layout) ---------------------------------------------------------------

@dataclass
class Retrieval:
    """A retrieval set: queries, the documents to search, and each query's relevant documents with their grade."""

    name: str
    queries: list[str]
    documents: list[str]
    relevant: list[dict[int, float]]  # per query: document index -> relevance grade (> 0)
    source: str = ""

    def __len__(self) -> int:
        return len(self.queries)

    def describe(self) -> dict:
        return {"spec": self.source, "split": self.name, "queries": len(self.queries),
                "documents": len(self.documents)}


def is_retrieval(spec) -> bool:
    """Whether a data spec is a retrieval folder in BEIR's layout (corpus.jsonl and queries.jsonl)."""
    path = Path(str(spec)).expanduser()
    return path.is_dir() and (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def _jsonl_texts(path: Path, encoding: str, join_title: bool) -> dict[str, str]:
    frame = _read_table(path, encoding)
    for column in ("_id", "text"):
        if column not in frame.columns:
            columns = ", ".join(map(str, frame.columns))
            raise EdgewiseError(f"{path} has no column {column!r} (its columns are {columns}); a retrieval set is "
                                "BEIR's layout: one JSON object per line with _id and text (and, for documents, "
                                "title)")
    texts = {}
    for row in frame.to_dict("records"):
        text = str(row["text"]) if not _missing(row["text"]) else ""
        title = row.get("title") if join_title and not _missing(row.get("title")) else ""
        texts[str(row["_id"])] = f"{title} {text}".strip() if title else text
    return texts


def load_retrieval(spec: str, split: str | None = None, encoding: str = "utf-8") -> Retrieval:
    """A retrieval set in BEIR's layout: ``corpus.jsonl`` (_id, title, text), ``queries.jsonl`` (_id, text) and
    the relevance judgements ``qrels/<split>.tsv`` (or ``qrels.tsv``; columns query-id, corpus-id, score): the
    ``split`` asked for, else test, else the only one. Queries without a relevant document are left out."""
    folder = Path(str(spec)).expanduser()
    if not is_retrieval(folder):
        raise EdgewiseError(f"{spec} is not a retrieval set: expected a folder with corpus.jsonl, queries.jsonl and "
                            "qrels/test.tsv (BEIR's layout)")
    files = sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    files += [folder / "qrels.tsv"] if (folder / "qrels.tsv").is_file() else []
    by_split = {_canonical_split(f.stem if f.parent.name == "qrels" else "test"): f for f in files}
    name = _canonical_split(split) if split else None
    chosen = by_split.get(name) or by_split.get("test") or (next(iter(by_split.values())) if len(by_split) == 1
                                                             else None)
    if chosen is None:
        raise EdgewiseError(f"{spec} has relevance judgements for {', '.join(by_split) or 'no split'} (qrels/*.tsv); "
                            f"add qrels/{name or 'test'}.tsv or choose one of those with --split")
    documents = _jsonl_texts(folder / "corpus.jsonl", encoding, join_title=True)
    queries = _jsonl_texts(folder / "queries.jsonl", encoding, join_title=False)
    frame = _read_table(chosen, encoding)
    missing = [c for c in ("query-id", "corpus-id", "score") if c not in frame.columns]
    if missing:
        raise EdgewiseError(f"{chosen} has no column {', '.join(map(repr, missing))}; relevance judgements have the "
                            "columns query-id, corpus-id and score (BEIR's qrels)")
    index = {doc: i for i, doc in enumerate(documents)}
    relevant: dict[str, dict[int, float]] = {}
    unknown = set()
    for query, doc, grade in zip(frame["query-id"], frame["corpus-id"], frame["score"], strict=True):
        query, doc = str(query), str(doc)
        if query not in queries or doc not in index:
            unknown.add(query if query not in queries else doc)
            continue
        try:
            value = float(grade)
        except ValueError:
            raise EdgewiseError(f"{chosen}: the score {grade!r} of query {query} is not a number; relevance grades "
                                "are numbers (0 for not relevant)") from None
        if value > 0:
            relevant.setdefault(query, {})[index[doc]] = value
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise EdgewiseError(f"{chosen} names ids that corpus.jsonl / queries.jsonl do not hold ({shown}); fix the "
                            "judgements or the files")
    if not relevant:
        raise EdgewiseError(f"{chosen} judges no document relevant (every score 0); a retrieval set needs at least "
                            "one relevant document per query scored")
    ids = list(relevant)
    return Retrieval(_canonical_split(chosen.stem) if chosen.parent.name == "qrels" else "test",
                     [queries[q] for q in ids], list(documents.values()), [relevant[q] for q in ids], str(spec))
