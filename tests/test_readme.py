"""The README's headline benchmark tables are generated from benchmarks/results, never typed."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_benchmark_tables_are_what_the_committed_results_give():
    generator = _generator()

    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    assert generator.generated() in readme, "run: python benchmarks/readme_table.py"


def test_the_generated_tables_follow_the_results(tmp_path):
    import json
    import shutil

    generator = _generator()
    for name in ("compress_minilm_bbc.json", "optimum_sidebyside_minilm_bbc.json"):
        shutil.copy2(ROOT / "benchmarks" / "results" / name, tmp_path / name)
    run = json.loads((tmp_path / "compress_minilm_bbc.json").read_text())
    run["result"]["test"][1]["speedup"] = 123.4
    (tmp_path / "compress_minilm_bbc.json").write_text(json.dumps(run))

    assert "**123.4x faster**" in generator.generated(tmp_path)


def test_the_embedding_docs_measured_section_is_what_the_committed_results_give():
    generator = _generator()

    docs = (ROOT / "docs" / "embeddings.md").read_text(encoding="utf-8")

    assert generator.generated_embeddings() in docs, "run: python benchmarks/readme_table.py"
