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
    if "per_type" in result:
        return _render_entities(result, console)
    if "per_class" not in result:  # no labels scored: an embedding model's figures
        return _render_embedding(result, console)
    console.print(f"accuracy [bold]{result['accuracy']:.4f}[/bold]   macro-F1 [bold]{result['macro_f1']:.4f}[/bold]")
    if result.get("reference"):
        reference = result["reference"]
        console.print(f"reference {reference['path']}: accuracy {reference['accuracy']:.4f}; the labels agree on "
                      f"{reference['label_agreement']:.2%} of the texts")
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


def _render_embedding(result: dict, console) -> None:
    """An embedding model's figures: STS Spearman, NDCG@10, and its agreement with the reference model."""
    from rich.table import Table

    table = Table(title="embedding quality" + (f" (reference: {result['reference']['path']})"
                                               if result.get("reference") else ""))
    for column in ("figure", "this model", "reference", "share"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    reference = result.get("reference") or {}
    for key, name, count in (("spearman", "STS Spearman", "pairs"), ("ndcg_at_10", "NDCG@10", "queries"),
                             ("recall_at_10", "recall@10", "queries")):
        if key in result:
            theirs = reference.get(key)
            share = f"{result[key] / theirs:.2%}" if theirs else ""
            table.add_row(f"{name} ({result.get(count)} {count})", f"{result[key]:.4f}",
                          "" if theirs is None else f"{theirs:.4f}", share)
    for key, name in (("cosine_mean", "cosine to the reference, mean"), ("cosine_p1", "cosine, 1st percentile"),
                      ("neighbour_overlap", "top-10 neighbours shared")):
        if key in reference:
            table.add_row(name, f"{reference[key]:.4f}", "", "")
    console.print(table)


def _render_entities(result: dict, console) -> None:
    """A token classifier's figures: entity F1 (the gate) overall and per type, token accuracy beside it."""
    from rich.table import Table

    console.print(f"entity F1 [bold]{result['entity_f1']:.4f}[/bold] (precision {result['entity_precision']:.4f}, "
                  f"recall {result['entity_recall']:.4f}, {result['entities']} entities)   token accuracy "
                  f"{result['token_accuracy']:.4f}")
    if result.get("reference"):
        reference = result["reference"]
        console.print(f"reference {reference['path']}: entity F1 {reference['entity_f1']:.4f}; the tags agree on "
                      f"{reference['tag_agreement']:.2%} of the words")
    table = Table(title="per entity type (seqeval's default mode)")
    for column in ("type", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for kind, row in result["per_type"].items():
        table.add_row(kind, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console.print(table)
