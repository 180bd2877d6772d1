"""Property-based checks (hypothesis) of what reads user files: the data loader, the recipe schema and bench
compare. Whatever columns, encodings, shapes or numbers they get, they give a valid result or an
EdgewiseError (one `Error:` line at the CLI), never another exception.
"""

from __future__ import annotations

import json
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgewise.core.errors import EdgewiseError  # noqa: E402

# 150 examples per property in the suite; EDGEWISE_HYPOTHESIS_EXAMPLES=5000 for a deeper search by hand.
EXAMPLES = settings(max_examples=int(os.environ.get("EDGEWISE_HYPOTHESIS_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

def mostly(usual, *odd):
    """``usual`` nine times in ten, else one of ``odd``: valid inputs and broken ones both get exercised."""
    return st.integers(0, 9).flatmap(lambda n: usual if n else st.one_of(*odd))


cells = st.one_of(st.text(max_size=20), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                  st.none(), st.booleans())
# Mostly what users give (text and label columns, a few classes), sometimes anything: both paths get exercised.
column_names = st.one_of(st.just(["text", "label"]), st.just(["label", "text", "id"]),
                         st.lists(st.one_of(st.sampled_from(["text", "label", "sentence", "Text", "label ", ""]),
                                            st.text(max_size=8)), min_size=1, max_size=4))
texts = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(["a fine film", "dull", "é — 中文 🙂", " "]))
labels = st.one_of(st.sampled_from(["pos", "neg", "neutral", 0, 1, "1.0", -1]), cells)
rows_of = st.lists(st.tuples(texts, labels, cells, cells), max_size=10)


@EXAMPLES
@given(columns=column_names, rows=rows_of,
       suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt"]), encoding=st.sampled_from(["utf-8",
                                                                                                    "latin-1",
                                                                                                    "utf-16"]))
def test_the_data_loader_gives_splits_or_an_edgewise_error(tmp_path_factory, columns, rows, suffix, encoding):
    from edgewise.core.data import load_splits

    path = tmp_path_factory.mktemp("data") / f"train{suffix}"
    if suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        lines = [sep.join(columns)] + [sep.join("" if c is None else str(c) for c in row[: len(columns)])
                                       for row in rows]
        text = "\n".join(lines) + "\n"
    elif suffix == ".jsonl":
        text = "\n".join(json.dumps(dict(zip(columns, row, strict=False))) for row in rows) + "\n"
    elif suffix == ".json":
        text = json.dumps([dict(zip(columns, row, strict=False)) for row in rows])
    else:
        text = "\n".join(str(row[0]) for row in rows) + "\n"
    path.write_bytes(text.encode(encoding, errors="replace"))  # utf-16 and latin-1 files must be refused cleanly

    try:
        splits = load_splits(str(path))
    except EdgewiseError:
        hypothesis.event("refused")
        return
    hypothesis.event("loaded")
    for split in splits.values():
        assert all(isinstance(t, str) for t in split.texts)
        assert split.labels is None or len(split.labels) == len(split.texts)


good_stages = st.lists(st.sampled_from([{"export": {}}, {"quantize": {"method": "dynamic"}}, {"bundle": {}},
                                        {"prune": {"flops": 0.5}}, {"distill": {"layers": 2}}]), min_size=1, max_size=4)
stage_options = st.dictionaries(st.sampled_from(["flops", "method", "layers", "bogus", "trainer"]),
                                st.one_of(cells, st.dictionaries(st.text(max_size=6), cells, max_size=2)), max_size=3)
any_stages = st.lists(st.dictionaries(st.sampled_from(["prune", "export", "quantize", "distill", "bundle", "nope", "id",
                                                       "input"]),
                                      st.one_of(stage_options, st.text(max_size=6), st.none()), min_size=1, max_size=2),
                      max_size=4)


@EXAMPLES
@given(raw=st.fixed_dictionaries(
    {"version": mostly(st.just(1), st.integers(-1, 3), st.text(max_size=3)),
     "model": mostly(st.just("runs/teacher"), st.text(max_size=10), st.integers()),
     "stages": mostly(good_stages, any_stages)},
    optional={"data": mostly(st.just("builtin:bbc-news"), st.text(max_size=10), st.none()),
              "bench": mostly(st.just({"threads": 1}), st.dictionaries(
                  st.sampled_from(["threads", "rounds", "batch_sizes", "x"]), cells, max_size=3)),
              "gate": mostly(st.just({"min_speedup": 2}), st.dictionaries(
                  st.sampled_from(["min_speedup", "max_accuracy_drop", "y"]), cells, max_size=2)),
              "targets": st.lists(st.sampled_from(["local", "ssh://pi", "adb://X", "ftp://z", "ssh://-x"]),
                                  max_size=3)}))
def test_the_recipe_schema_gives_a_recipe_or_an_edgewise_error(raw):
    from edgewise.recipe.config import recipe_from_dict

    try:
        recipe = recipe_from_dict(raw)
    except EdgewiseError:
        hypothesis.event("refused")
        return
    hypothesis.event("accepted")
    assert recipe.steps and all(step.folder for step in recipe.steps)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 10**6), st.none(),
                    st.text(max_size=3))
positive = st.floats(min_value=0.1, max_value=100)
good_latency = st.builds(lambda p50, spread: {"p50": p50, "p50_ci95": [p50 * 0.95, p50 * (1 + spread)],
                                              "round_p50": [p50] * 5}, positive, st.floats(0, 0.5))
rows = st.fixed_dictionaries(
    {"artifact": st.sampled_from(["a", "b"]), "backend": st.sampled_from(["ort-cpu", "torch"]),
     "batch_size": st.sampled_from([1, 8]), "status": st.sampled_from(["ok", "ok", "ok", "skipped", None]),
     "seq_len": st.one_of(st.sampled_from([128, "data"]), numbers), "threads": st.sampled_from([1, None, 4]),
     "latency_ms": mostly(good_latency, st.fixed_dictionaries(
         {"p50": numbers}, optional={"p50_ci95": st.lists(numbers, max_size=3),
                                     "round_p50": st.lists(numbers, max_size=6)}), numbers)},
    optional={"accuracy": st.one_of(st.floats(0, 1), numbers), "accuracy_batch_size": numbers,
              "reason": st.text(max_size=5)})
reports = st.fixed_dictionaries(
    {"schema_version": mostly(st.just(1), numbers),
     "results": mostly(st.lists(rows, min_size=1, max_size=4), numbers),
     "environment": mostly(st.just({"cpu": {"model": "EPYC"}}), numbers)},
    optional={"data": st.one_of(st.none(), st.fixed_dictionaries({"rows": st.one_of(st.just(200), numbers),
                                                                   "sha256": st.just("s")})),
              "config": mostly(st.fixed_dictionaries({"rounds": mostly(st.just(5), numbers)}), numbers)})


@EXAMPLES
@given(current=reports, baseline=reports)
def test_bench_compare_gives_a_verdict_or_an_edgewise_error(tmp_path_factory, current, baseline):
    from edgewise.bench.compare import compare, load_report

    folder = tmp_path_factory.mktemp("reports")
    (folder / "now.json").write_text(json.dumps(current))
    (folder / "then.json").write_text(json.dumps(baseline))
    try:
        result = compare(load_report(folder / "now.json"), load_report(folder / "then.json"))
    except EdgewiseError:
        hypothesis.event("refused")
        return
    hypothesis.event("compared")
    assert isinstance(result["passed"], bool)
