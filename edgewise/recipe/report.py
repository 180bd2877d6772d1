"""The plan and the ladder of a recipe run, for people: the plan as a rich table, the ladder in Markdown
(on stdout and in ladder.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgewise.recipe.config import Recipe


def render_plan(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = "plan (dry run)" if result.get("dry_run") else "stages"
    table = Table(title=f"{title}: {result['run']}")
    for column in ("folder", "stage", "input", "status", "why", "time"):
        table.add_column(column)
    for step in result["steps"]:
        seconds = step.get("seconds")
        table.add_row(step["folder"], step["stage"], step["input"], step["status"], step["reason"],
                      "" if seconds is None else f"{seconds:.1f} s")
    Console(width=200 if not Console().is_terminal else None).print(table)


def render(result: dict) -> None:
    from rich.console import Console

    render_plan(result)
    console = Console(width=200 if not Console().is_terminal else None)
    if result.get("ladder"):
        print("\nladder (one interleaved bench; the first row is the reference)\n")
        print(ladder_table(result["ladder"]))
        console.print(f"report: {result['run']}/ladder.md (bench details and plots in {result['run']}/report/)")
    gate = result.get("gate")
    if gate is not None:
        console.print(f"gate on {gate['artifact']}: " + ("passed" if gate["passed"] else
                                                         "FAILED: " + "; ".join(gate["misses"])))


def ladder_table(ladder: list[dict]) -> str:
    """The ladder rows as a Markdown table (p50, speed against the first row, accuracy, size)."""
    def pct(value):
        return "—" if value is None else f"{value:.2%}"

    lines = ["| artifact | backend | p50 latency | speed | accuracy | macro-F1 | of reference | size | size ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in ladder:
        size = "—" if row["size_mb"] is None else f"{row['size_mb']:.1f} MB"
        ratio = "—" if row["size_ratio"] is None else f"1/{row['size_ratio']:.1f}"
        lines.append(f"| {row['artifact']} | {row['backend']} | {row['p50_ms']:.2f} ms | {row['speedup']:.2f}x faster "
                     f"| {pct(row['accuracy'])} | {pct(row['macro_f1'])} | {pct(row['accuracy_share'])} | {size} | "
                     f"{ratio} |")
    return "\n".join(lines)


def ladder_markdown(ladder: list[dict] | None, gate: dict | None, recipe: Recipe) -> str:
    """ladder.md: the table and the gate's verdict."""
    lines = [f"# edgewise ladder — {recipe.path or 'recipe'}", "",
             "One interleaved `edgewise bench` run; the first row is the reference. Details and plots: report/.", "",
             ladder_table(ladder or [])]
    if gate is not None:
        lines += ["", f"Gate on {gate['artifact']}: " + ("**passed**" if gate["passed"] else
                                                          "**failed**: " + "; ".join(gate["misses"]))]
    return "\n".join(lines) + "\n"
