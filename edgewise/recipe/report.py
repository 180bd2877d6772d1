"""The plan and the ladder of a recipe run, for people: the plan as a rich table, the ladder in Markdown
(on stdout and in ladder.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgewise.recipe.config import report_dir
from edgewise.runtime.targets import target_name

if TYPE_CHECKING:
    from edgewise.recipe.config import Recipe


def render_plan(result: dict) -> None:
    from rich.table import Table

    from edgewise.core.progress import report_console

    title = "plan (dry run)" if result.get("dry_run") else "stages"
    table = Table(title=f"{title}: {result['run']}")
    for column in ("folder", "stage", "input", "status", "why", "time"):
        table.add_column(column)
    for step in result["steps"]:
        seconds = step.get("seconds")
        table.add_row(step["folder"], step["stage"], step["input"], step["status"], step["reason"],
                      "" if seconds is None else f"{seconds:.1f} s")
    report_console().print(table)


def render(result: dict) -> None:
    from edgewise.core.progress import report_console

    render_plan(result)
    console = report_console()
    if result.get("ladder"):
        print("\nladder (one interleaved bench; the first row is the reference)\n")
        print(ladder_table(result["ladder"]))
        console.print(f"report: {result['run']}/ladder.md (bench details and plots in {result['run']}/"
                      f"{result.get('report', 'report')}/)")
    gate = result.get("gate")
    if gate is not None:
        console.print(f"gate on {gate['artifact']}: " + ("passed" if gate["passed"] else
                                                         "FAILED: " + "; ".join(gate["misses"])))


def _pct(value) -> str:
    return "—" if value is None else f"{value:.2%}"


def _num(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def _embedding(rows: list[dict]) -> bool:
    """Whether ladder rows are an embedding model's (their quality is not accuracy)."""
    return any(r.get("quality_metric") not in (None, "accuracy", "macro_f1") for r in rows)


def _quality_cells(row: dict) -> str:
    """An embedding row's cells: STS Spearman, its share of the reference's, mean cosine and top-10 overlap."""
    share = "—" if row.get("quality_drop_points") is None else f"{100 - row['quality_drop_points']:.2f} %"
    return (f"{_num(row.get('spearman'))} | {share} | {_num(row.get('cosine_mean'))} | "
            f"{_pct(row.get('neighbour_overlap'))}")


def ladder_table(ladder: list[dict]) -> str:
    """The ladder rows as a Markdown table (p50, speed against the first row, accuracy, size)."""
    if _embedding(ladder):
        lines = ["| artifact | backend | p50 latency | speed | STS Spearman | of reference's gate | cosine to ref | "
                 "top-10 overlap | size | size ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in ladder:
            size = "—" if row["size_mb"] is None else f"{row['size_mb']:.1f} MB"
            ratio = "—" if row["size_ratio"] is None else f"1/{row['size_ratio']:.1f}"
            speed = "reference" if row is ladder[0] else f"{row['speedup']:.2f}x faster"
            lines.append(f"| {row['artifact']} | {row['backend']} | {row['p50_ms']:.2f} ms | {speed} | "
                         f"{_quality_cells(row)} | {size} | {ratio} |")
        return "\n".join(lines)
    lines = ["| artifact | backend | p50 latency | speed | accuracy | macro-F1 | of reference | size | size ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in ladder:
        size = "—" if row["size_mb"] is None else f"{row['size_mb']:.1f} MB"
        ratio = "—" if row["size_ratio"] is None else f"1/{row['size_ratio']:.1f}"
        speed = "reference" if row is ladder[0] else f"{row['speedup']:.2f}x faster"
        lines.append(f"| {row['artifact']} | {row['backend']} | {row['p50_ms']:.2f} ms | {speed} "
                     f"| {_pct(row['accuracy'])} | {_pct(row['macro_f1'])} | {_pct(row['accuracy_share'])} | {size} | "
                     f"{ratio} |")
    return "\n".join(lines)


def ladder_markdown(ladders: dict[str, list[dict]], gate: dict | None, recipe: Recipe) -> str:
    """ladder.md: the table of the recipe's first target, the gate's verdict, then a table per further target
    measured (``ladders``: target -> rows)."""
    first = recipe.targets[0]
    where = "" if first == "local" else f" on {target_name(first)}"
    lines = [f"# edgewise ladder — {recipe.path or 'recipe'}", "",
             f"One interleaved `edgewise bench` run{where}; the first row is the reference. Details and plots: "
             f"{report_dir(first)}/.", "", ladder_table(ladders.get(first) or [])]
    if gate is not None:
        lines += ["", f"Gate on {gate['artifact']}: " + ("**passed**" if gate["passed"] else
                                                          "**failed**: " + "; ".join(gate["misses"]))]
    for target in [t for t in recipe.targets[1:] if t in ladders]:
        rows, name = ladders[target], "this machine" if target == "local" else target_name(target)
        lines += ["", f"## On {name}", "", f"One interleaved `edgewise bench` run there; the first row is the "
                  f"reference (the first model it can run). Details: {report_dir(target)}/.", "", ladder_table(rows)]
    return "\n".join(lines) + "\n"


# --- edgewise compress --------------------------------------------------------------------------


def _size(mb) -> str:
    return "—" if mb is None else f"{mb:.1f} MB"


def candidates_table(result: dict) -> str:
    """Every candidate with its validation figures (Markdown), the chosen one in bold."""
    def mark(flag):
        return "" if flag is None else ("yes" if flag else "no")

    reference = result["reference"]
    if _embedding([reference, *result["candidates"]]):
        return _embedding_candidates(result, mark)
    lines = ["| candidate | what | p50 latency | speed | accuracy | macro-F1 | vs teacher | size | size ratio "
             "| within the drop | within the budget |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines.append(f"| teacher | {reference['what']} | {reference['p50_ms']:.2f} ms | reference | "
                 f"{_pct(reference['accuracy'])} | {_pct(reference['macro_f1'])} | — | {_size(reference['size_mb'])} | "
                 "1/1.0 | | |")
    for row in result["candidates"]:
        name = f"**{row['candidate']}** (chosen)" if row["chosen"] else row["candidate"]
        # The change in points, signed as a reader expects: -0.94 is 0.94 points below the teacher.
        drop = "—" if row["accuracy_drop_points"] is None else f"{-row['accuracy_drop_points'] + 0.0:+.2f} points"
        ratio = "—" if row["size_ratio"] is None else f"1/{row['size_ratio']:.1f}"
        lines.append(f"| {name} | {row['what']} | {row['p50_ms']:.2f} ms | {row['speedup']:.2f}x faster | "
                     f"{_pct(row['accuracy'])} | {_pct(row['macro_f1'])} | {drop} | {_size(row['size_mb'])} | "
                     f"{ratio} | {mark(row['accurate'])} | {mark(row['fast'])} |")
    return "\n".join(lines)


def _embedding_candidates(result: dict, mark) -> str:
    """candidates_table for an embedding teacher: STS Spearman (or the neighbour overlap) and its drop in points
    of the teacher's figure."""
    reference = result["reference"]
    lines = ["| candidate | what | p50 latency | speed | STS Spearman | of teacher's gate | cosine to teacher | "
             "top-10 overlap | size | size ratio | within the drop | within the budget |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines.append(f"| teacher | {reference['what']} | {reference['p50_ms']:.2f} ms | reference | "
                 f"{_quality_cells(reference)} | {_size(reference['size_mb'])} | 1/1.0 | | |")
    for row in result["candidates"]:
        name = f"**{row['candidate']}** (chosen)" if row["chosen"] else row["candidate"]
        ratio = "—" if row["size_ratio"] is None else f"1/{row['size_ratio']:.1f}"
        lines.append(f"| {name} | {row['what']} | {row['p50_ms']:.2f} ms | {row['speedup']:.2f}x faster | "
                     f"{_quality_cells(row)} | {_size(row['size_mb'])} | {ratio} | "
                     f"{mark(row['accurate'])} | {mark(row['fast'])} |")
    return "\n".join(lines)


def compress_markdown(result: dict) -> str:
    """compress.md: the verdict, the chosen bundle on the test split, every candidate, the search."""
    chosen = result["chosen"]
    verdict = "**met**" if result["goal_met"] else "**missed**"
    lines = [f"# edgewise compress — {result['teacher']}", "",
             f"Goal: {result['goal']} — {verdict}. Chosen: **{chosen['candidate']}** ({chosen['what']}): "
             f"{chosen['reason']}. Bundle: `{chosen['bundle']}`.", ""]
    if result.get("test"):
        lines += ["## The chosen bundle on the test split", "",
                  "One interleaved `edgewise bench` of the teacher (PyTorch fp32) and the bundle; details in "
                  "report-test/.", "", ladder_table(result["test"]), ""]
    else:
        lines += ["The data has no test split: the figures below are the validation split's, which chose.", ""]
    if _embedding([result["reference"]]):
        gate = result["reference"].get("quality_metric")
        explain = ("`of teacher's gate` is the candidate's " + ("STS Spearman" if gate == "spearman" else
                                                               "top-10 neighbour overlap with the teacher")
                   + " as a share of the teacher's; the goal's points are 100 minus that share. `cosine to "
                   "teacher`: the mean cosine between the candidate's and the teacher's vector of a text (none for "
                   "a static student, whose vectors live in another space).")
    else:
        explain = ("`vs teacher` is the change in accuracy points against the teacher's (one text of the split is "
                   f"{_one_text(result)}).")
    lines += ["## Every candidate (validation split: the choice is made here)", "",
              "One interleaved `edgewise bench` of the teacher and every candidate; details in report/. " + explain,
              "", candidates_table(result), "", "## The search", ""]
    for phase in result["phases"]:
        lines.append(f"- phase {phase['phase']}: {', '.join(phase['families'])} ({phase['seconds']:.0f} s)"
                     + ("; the goal was met here" if phase["goal_met"] else ""))
    if result.get("stopped_after"):
        lines.append(f"- stopped after phase {result['stopped_after']}: the goal was met, the later (more expensive) "
                     "phases were not needed")
    for skipped in result["skipped"]:
        lines.append(f"- skipped {skipped['family']} ({skipped['phase']}): {skipped['reason']}")
    for failed in result["failed"]:
        lines.append(f"- failed {failed['step']} ({failed['family']}): {failed['error']}")
    for unmeasured in result.get("unmeasured") or []:
        lines.append(f"- not timed here, so not a candidate: {unmeasured['candidate']} ({unmeasured['reason']})")
    for note in result.get("notes") or []:
        lines.append(f"- {note}")
    if result.get("optimize") is not None:
        lines.append("- ONNX Runtime's transformer optimiser: " + (
            "faster on the teacher's dynamic INT8, so later candidates use it" if result["optimize"] else
            "not faster on the teacher's dynamic INT8, so later candidates do without it"))
    lines += [f"- {result['seconds'] / 60:.1f} min in all; the recipe that ran: `{result['recipe']}` (`edgewise run` "
              "it into the same folder to reproduce the ladder; finished steps are skipped)"]
    return "\n".join(lines) + "\n"


def _one_text(result: dict) -> str:
    rows = result.get("validation_rows")
    return f"{100 / rows:.2f} points" if rows else "100 / the number of texts points"


def render_compress(result: dict) -> None:
    """The verdict and the tables on stdout (Markdown, readable in a terminal and in a CI log)."""
    text = compress_markdown(result)
    print(text.split("\n## The search")[0].rstrip())
    print(f"\nreport: {result['run']}/compress.md (bench details in {result['run']}/report/)")
