import json

import pandas as pd
import pytest

from edgewise.core.data import (
    DataConfig,
    Split,
    encode_labels,
    label_names,
    load_splits,
    require_labels,
    select_split,
    training_splits,
)
from edgewise.core.errors import EdgewiseError
from tests.conftest import assert_user_error, make_texts, write_csv

ROWS = make_texts(12, seed=0)


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_load_splits_reads_every_file_format(tmp_path, suffix):
    frame = pd.DataFrame(ROWS, columns=["text", "label"])
    path = tmp_path / f"data.{suffix}"
    {"csv": lambda: frame.to_csv(path, index=False),
     "tsv": lambda: frame.to_csv(path, sep="\t", index=False),
     "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     "json": lambda: frame.to_json(path, orient="records"),
     "parquet": lambda: frame.to_parquet(path)}[suffix]()

    splits = load_splits(str(path))

    assert list(splits) == ["train"]
    assert splits["train"].texts == [t for t, _ in ROWS]
    assert splits["train"].labels == [y for _, y in ROWS]


def test_load_splits_reads_split_folder_with_aliases(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    write_csv(tmp_path / "dev.csv", ROWS[:4])
    write_csv(tmp_path / "test.csv", ROWS[:3])
    (tmp_path / "notes.md").write_text("ignored")

    splits = load_splits(str(tmp_path))

    assert {k: len(v) for k, v in splits.items()} == {"test": 3, "train": 12, "validation": 4}


def test_load_splits_reads_save_to_disk_folder_with_class_names(tmp_path):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["bad", "good"], "label": [0, 1]}, features=features),
        "test": datasets.Dataset.from_dict({"sentence": ["fine"], "label": [1]}, features=features),
    })
    ds.save_to_disk(str(tmp_path / "ds"))

    splits = load_splits(str(tmp_path / "ds"), DataConfig(text_column="sentence"))

    assert splits["train"].labels == ["neg", "pos"]
    assert splits["test"].texts == ["fine"]


def test_load_splits_reads_text_pairs(tmp_path):
    write_csv(tmp_path / "pairs.csv", [("a b", "c d", "yes"), ("e", "f", "no")], header=("q", "p", "y"))

    split = load_splits(str(tmp_path / "pairs.csv"), DataConfig("q", "p", "y"))["train"]

    assert split.pairs == ["c d", "f"] and split.labels == ["yes", "no"]


def test_load_splits_reads_plain_text_without_labels(tmp_path):
    (tmp_path / "more.txt").write_text("first line\n\nsecond line\n")

    split = load_splits(str(tmp_path / "more.txt"))["train"]

    assert split.texts == ["first line", "second line"] and split.labels is None
    with pytest.raises(EdgewiseError, match="no label column 'label'"):
        require_labels(split)


def test_load_splits_accepts_an_unlabelled_split_until_its_labels_are_needed(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    pd.DataFrame({"text": ["x", "y"], "label": [None, None]}).to_csv(tmp_path / "test.csv", index=False)

    splits = load_splits(str(tmp_path))

    assert splits["train"].labels and splits["test"].labels is None
    with pytest.raises(EdgewiseError, match="2 empty value"):
        encode_labels(splits["test"], {0: "fruit"})


def test_load_splits_treats_pandas_na_as_missing_and_negative_labels_as_classes(tmp_path):
    frame = pd.DataFrame({"text": pd.array(["a", "b", "c"], dtype="string"),
                          "label": pd.array([1, pd.NA, 0], dtype="Int64")})
    frame.to_parquet(tmp_path / "d.parquet")
    pd.DataFrame({"text": ["a", "b"], "label": [-1, -1]}).to_csv(tmp_path / "test.csv", index=False)

    split = load_splits(str(tmp_path / "d.parquet"))["train"]

    assert split.labels is None and "1 empty value(s)" in split.label_problem and "data rows 2," in split.label_problem
    assert load_splits(str(tmp_path / "test.csv"))["train"].labels == ["-1", "-1"]  # e.g. -1 / 0 / 1 sentiment


def test_load_splits_reads_a_header_with_trailing_unnamed_columns(tmp_path):
    (tmp_path / "d.csv").write_text("text,label,,\napple,fruit,,\nred,colour,,\n")  # as spreadsheets export

    assert load_splits(str(tmp_path / "d.csv"))["train"].labels == ["fruit", "colour"]


def test_load_splits_integer_labels_become_names(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 0, 1]}).to_csv(tmp_path / "d.csv", index=False)

    assert load_splits(str(tmp_path / "d.csv"))["train"].labels == ["1", "0", "1"]


BOM = b"\xef\xbb\xbf"


def rows(texts, labels=None) -> dict:
    return {"texts": texts, "labels": labels}


def fails(*fragments) -> dict:
    return {"error": fragments}


# (file name, bytes on disk, config, what load_splits gives: rows(...) or fails(fragments of the error))
FILE_CASES = {
    "bom-csv": ("d.csv", BOM + "text,label\ncafé,fruit\n".encode(), DataConfig(), rows(["café"], ["fruit"])),
    "bom-tsv": ("d.tsv", BOM + "text\tlabel\ncafé\tfruit\n".encode(), DataConfig(), rows(["café"], ["fruit"])),
    "bom-jsonl": ("d.jsonl", BOM + '{"text": "café", "label": "fruit"}\n'.encode(), DataConfig(),
                  rows(["café"], ["fruit"])),
    "bom-txt": ("d.txt", BOM + "café\nthé\n".encode(), DataConfig(), rows(["café", "thé"])),
    "latin1-txt-without-encoding": ("d.txt", "ok\ncafé\n".encode("latin-1"), DataConfig(),
                                    fails("d.txt", "line 2", "byte 0xe9", "--encoding latin-1")),
    "latin1-csv-without-encoding": ("d.csv", "text,label\nok,a\ncafé,b\n".encode("latin-1"), DataConfig(),
                                    fails("d.csv", "line 3", "byte 0xe9", "--encoding latin-1")),
    "latin1-txt": ("d.txt", "ok\ncafé\n".encode("latin-1"), DataConfig(encoding="latin-1"), rows(["ok", "café"])),
    "latin1-csv": ("d.csv", "text,label\nok,a\ncafé,b\n".encode("latin-1"), DataConfig(encoding="latin-1"),
                   rows(["ok", "café"], ["a", "b"])),
    "crlf-csv": ("d.csv", b"text,label\r\nred sky,colour\r\ngolf,sport\r\n", DataConfig(),
                 rows(["red sky", "golf"], ["colour", "sport"])),
    "crlf-tsv": ("d.tsv", b"text\tlabel\r\nred sky\tcolour\r\ngolf\tsport\r\n", DataConfig(),
                 rows(["red sky", "golf"], ["colour", "sport"])),
    "crlf-quoted-csv": ("d.csv", b'text,label\r\n"two\r\nlines",x\r\n', DataConfig(), rows(["two\nlines"], ["x"])),
    "crlf-txt": ("d.txt", b"red sky\r\ngolf\r\n", DataConfig(), rows(["red sky", "golf"])),
    "quoted-csv": ("d.csv", b'text,label\n"a\tb\nc, d",x\nplain,y\n', DataConfig(),
                   rows(["a\tb\nc, d", "plain"], ["x", "y"])),
    "quoted-tsv": ("d.tsv", b'text\tlabel\n"a\tb\nc"\tx\nplain\ty\n', DataConfig(),
                   rows(["a\tb\nc", "plain"], ["x", "y"])),
    "whitespace-texts": ("d.csv", b'text,label\nok,a\n"   ",b\n,c\n', DataConfig(),
                         fails("column 'text'", "2 empty value(s)", "whitespace", "data rows 2, 3", "counted from 1")),
    "padded-labels": ("d.csv", b'text,label\na, sport\nb,sport \nc,"\tsport  "\n', DataConfig(),
                      rows(["a", "b", "c"], ["sport", "sport", "sport"])),
    "duplicate-columns": ("d.csv", b"text,label,label\na,x,y\n", DataConfig(),
                          fails("d.csv", "more than one column named 'label'", "rename or drop")),
    "parquet-that-is-text": ("d.parquet", b"text,label\na,x\n", DataConfig(),
                             fails("cannot read", "d.parquet", "magic bytes PAR1", "give it that extension")),
    "empty-file": ("d.csv", b"", DataConfig(), fails("d.csv is empty", "no rows")),
    "empty-jsonl": ("d.jsonl", b"\n\n", DataConfig(), fails("d.jsonl is empty", "no rows")),
    "header-only": ("d.csv", b"text,label\n", DataConfig(), fails("d.csv is empty", "no rows")),
    "na-classes-csv": ("d.csv", b"text,label\nNA,None\nb,NA\nc,null\nd,N/A\ne,nan\n", DataConfig(),
                       rows(["NA", "b", "c", "d", "e"], ["None", "NA", "null", "N/A", "nan"])),
    "na-classes-jsonl": ("d.jsonl", b'{"text": "NaN", "label": "NA"}\n{"text": "null", "label": "None"}\n',
                         DataConfig(), rows(["NaN", "null"], ["NA", "None"])),
    "json-null-is-missing": ("d.jsonl", b'{"text": "a", "label": null}\n', DataConfig(), rows(["a"], None)),
    "integer-labels-csv": ("d.csv", b"text,label\na,0\nb,1\nc,1.0\n", DataConfig(),
                           rows(["a", "b", "c"], ["0", "1", "1"])),
    "integer-labels-jsonl": ("d.jsonl", b'{"text": "a", "label": 0}\n{"text": "b", "label": 1.0}\n', DataConfig(),
                             rows(["a", "b"], ["0", "1"])),
}


@pytest.mark.parametrize(("name", "content", "config", "expected"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_load_splits_reads_real_world_files(tmp_path, name, content, config, expected):
    path = tmp_path / name
    path.write_bytes(content)

    if "error" in expected:
        with pytest.raises(EdgewiseError) as info:
            load_splits(str(path), config)
        for fragment in expected["error"]:
            assert fragment in str(info.value), (fragment, str(info.value))
        return
    split = load_splits(str(path), config)["train"]

    assert split.texts == expected["texts"]
    assert split.labels == expected["labels"]


DATA_COMMANDS = [("finetune",), ("distill",), ("evaluate",), ("export",), ("quantize",), ("bench", "run")]


@pytest.mark.parametrize("command", DATA_COMMANDS, ids=" ".join)
def test_data_commands_take_an_encoding(cli_run, command):
    result = cli_run(*command, "--help")

    assert result.exit_code == 0
    assert "--encoding" in result.output and "latin-1" in result.output


def test_data_commands_pass_the_encoding_and_refuse_an_unknown_one(cli_run, tmp_path, monkeypatch):
    import edgewise.evaluate.stage

    data = write_csv(tmp_path / "d.csv", ROWS)
    received = []

    def fake(src, dst, config, *, data=None, overwrite=False, resume=False):
        received.append(config)
        return {}

    monkeypatch.setattr(edgewise.evaluate.stage, "evaluate", fake)

    good = cli_run("evaluate", tmp_path / "model", data, "--encoding", "latin-1", "--json")
    bad = cli_run("evaluate", tmp_path / "model", data, "--encoding", "klingon")

    assert good.exit_code == 0, good.output
    assert [config.data.encoding for config in received] == ["latin-1"]
    assert_user_error(bad, "encoding 'klingon' is not a text encoding", "latin-1", "--encoding")


@pytest.mark.parametrize(
    ("setup", "config", "fragments"),
    [
        (lambda p: write_csv(p / "d.csv", ROWS), DataConfig(text_column="sentence"),
         ["no text column 'sentence'", "text, label", "--text-column"]),
        (lambda p: write_csv(p / "d.csv", []), DataConfig(), ["is empty"]),
        (lambda p: write_csv(p / "d.csv", [("", "fruit"), ("x", "fruit")]), DataConfig(),
         ["1 empty value", "data rows 1,"]),
        (lambda p: write_csv(p / "d.csv", ROWS), DataConfig(text_pair_column="q"), ["no text-pair column 'q'"]),
        (lambda p: (p / "d.xlsx").write_text("x"), DataConfig(), ["unsupported extension .xlsx"]),
        (lambda p: (p / "d.parquet").write_bytes(b"not parquet"), DataConfig(), ["cannot read"]),
        (lambda p: (p / "d.json").write_text("{broken"), DataConfig(), ["cannot read"]),
    ],
    ids=["text-column", "empty", "null-text", "pair-column", "extension", "corrupt-parquet", "corrupt-json"],
)
def test_load_splits_rejects_bad_data_with_a_fix(tmp_path, setup, config, fragments):
    setup(tmp_path)
    spec = str(next(tmp_path.iterdir()))

    with pytest.raises(EdgewiseError) as info:
        load_splits(spec, config)

    for fragment in fragments:
        assert fragment in str(info.value)


def test_load_splits_rejects_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(EdgewiseError, match="does not exist"):
        load_splits(str(tmp_path / "nope.csv"))
    with pytest.raises(EdgewiseError, match="holds no data"):
        load_splits(str(tmp_path))


def test_load_splits_hub_failure_is_a_user_error(monkeypatch):
    import datasets

    def offline(name, config=None):
        # What load_dataset raises with no network (the real call retries for ~20 s first).
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)

    with pytest.raises(EdgewiseError, match="cannot load hf:edgewise-no-such/dataset-xyz"):
        load_splits("hf:edgewise-no-such/dataset-xyz")


def test_training_splits_carves_validation_with_a_fixed_seed_and_strata():
    split = Split("train", [f"t{i}" for i in range(100)], None, ["a"] * 90 + ["rare"] * 10)
    config = DataConfig(validation_fraction=0.2, seed=7)

    train, validation, test = training_splits({"train": split}, config, "x")
    again = training_splits({"train": split}, config, "x")

    assert (len(train), len(validation), test) == (80, 20, None)
    assert set(train.texts).isdisjoint(validation.texts)
    assert validation.texts == again[1].texts
    assert validation.labels.count("rare") == 2 and train.labels.count("rare") == 8


def test_training_splits_trains_on_the_chosen_split():
    make = lambda name, n: Split(name, [f"{name}{i}" for i in range(n)], None, ["a", "b"] * (n // 2))  # noqa: E731
    splits = {"train": make("train", 10), "validation": make("validation", 4), "test": make("test", 6)}

    train, validation, test = training_splits(splits, DataConfig(), "d", train_split="test")

    assert (train.name, validation.name, test) == ("test", "validation", None)
    with pytest.raises(EdgewiseError, match="no 'extra' split to train on"):
        training_splits(splits, DataConfig(), "d", train_split="extra")


def test_select_split_defaults_to_test_then_validation_then_only():
    make = lambda name: Split(name, ["x"], None, ["a"])  # noqa: E731
    assert select_split({"train": make("train"), "test": make("test")}, None, "d").name == "test"
    assert select_split({"train": make("train"), "validation": make("validation")}, None, "d").name == "validation"
    assert select_split({"train": make("train")}, None, "d").name == "train"
    with pytest.raises(EdgewiseError, match="no 'test' split; it has train"):
        select_split({"train": make("train")}, "test", "d")


def test_encode_labels_names_unknown_labels():
    split = Split("test", ["a", "b", "c"], None, ["pos", "neg", "meh"])

    with pytest.raises(EdgewiseError) as info:
        encode_labels(split, {0: "neg", 1: "pos"})

    assert "'meh'" in str(info.value) and "'neg', 'pos'" in str(info.value)


def test_encode_labels_maps_integers_to_default_label_names():
    split = Split("test", ["a", "b"], None, ["1", "0"])

    assert encode_labels(split, {0: "LABEL_0", 1: "LABEL_1"}) == [1, 0]
    assert encode_labels(Split("t", ["a"], None, ["neg"]), {0: "neg", 1: "pos"}) == [0]


def test_label_names_sorts_integers_numerically():
    assert label_names(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert label_names(["b", "a"]) == ["a", "b"]


def test_split_sha256_changes_with_content():
    a = Split("t", ["x"], None, ["1"])
    assert a.sha256() == Split("t", ["x"], None, ["1"]).sha256()
    assert a.sha256() != Split("t", ["x"], None, ["2"]).sha256()
    assert json.loads(json.dumps(a.describe()))["rows"] == 1


def test_data_config_rejects_bad_values():
    with pytest.raises(EdgewiseError, match="between 0 and 1"):
        DataConfig(validation_fraction=1.5)
    with pytest.raises(EdgewiseError, match="seed must be >= 0"):
        DataConfig(seed=-1)
    for name in ("klingon", "base64"):  # base64 is a codec, but not a text encoding
        with pytest.raises(EdgewiseError, match=f"encoding '{name}' is not a text encoding.*latin-1.*--encoding"):
            DataConfig(encoding=name)
