"""Reports for people: the tables of an evaluation result."""

from __future__ import annotations


def render(result: dict) -> None:
    """Print the headline figures, the per-class table and the confusion matrix of ``evaluate``'s result."""
    from rich.table import Table

    from edgewise.core.progress import report_console

    console = report_console()
    console.print(
        f"[bold]{result['artifact']}[/bold] on {result['data']} ({result['split']}, {result['samples']} texts, "
        f"{result['backend']}, max_length {result['max_length']}, {result['runtime_s']} s)"
    )
    console.print(f"accuracy [bold]{result['accuracy']:.4f}[/bold]   macro-F1 [bold]{result['macro_f1']:.4f}[/bold]")
    table = Table(title="per class")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, row in result["per_class"].items():
        table.add_row(label, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console.print(table)
    matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
    matrix.add_column("")
    for label in result["labels"]:
        matrix.add_column(label, justify="right")
    for label, row in zip(result["labels"], result["confusion_matrix"], strict=True):
        matrix.add_row(label, *map(str, row))
    console.print(matrix)
