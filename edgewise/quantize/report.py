"""Reports for people and scripts: what a quantization wrote and how much accuracy it kept."""

from __future__ import annotations

from edgewise.core.manifest import Manifest


def summary(manifest: Manifest) -> dict:
    """The JSON-ready result of ``quantize``: size, accuracy per split, INT8 settings, the search table."""
    metrics = manifest.metrics
    return {"artifact": str(manifest.path), "method": metrics["quantization"]["method"], "size": metrics["size"],
            "accuracy": metrics.get("accuracy", {}), "int8": metrics["quantization"].get("int8"),
            "search": metrics["quantization"].get("search"), "warnings": metrics.get("warnings", []),
            "config": manifest.config["values"]}


def render(manifest: Manifest) -> None:
    """Print the size and, per split, agreement, macro-F1 and accuracy of source and quantized model."""
    from rich.table import Table

    from edgewise.core.progress import report_console

    result = summary(manifest)
    size = result["size"]
    ratio = f", {size['ratio']:.1%} of the source" if size.get("ratio") else ""
    if (manifest.task or {}).get("name") == "embedding":
        return _render_embedding(result, size, ratio)
    table = Table(title=f"{result['artifact']} ({result['method']}; {size['bytes'] / 1e6:.1f} MB{ratio}); "
                        "macro-F1, accuracy in %: source->quantized; drop in points")
    # Agreement and macro-F1 lead: accuracy alone hides a model that changed many labels both ways.
    for column in ("split", "agreement", "macro-F1", "accuracy", "drop", "max|diff|"):
        table.add_column(column, justify="left" if column == "split" else "right", no_wrap=True)
    for split, row in result["accuracy"].items():
        source, quantized = row["source"], row["quantized"]
        table.add_row(split, f"{quantized['agreement_with_source']:.1%}",
                      f"{source['macro_f1'] * 100:.2f}->{quantized['macro_f1'] * 100:.2f}",
                      f"{source['accuracy'] * 100:.2f}->{quantized['accuracy'] * 100:.2f}",
                      f"{row['drop_points']:.2f}", f"{quantized['max_abs_diff']:.2g}")
    if not result["accuracy"]:
        table.add_row("(no data)", "", "", "", "", "")
    report_console().print(table)


def _render_embedding(result: dict, size: dict, ratio: str) -> None:
    """An embedding model's table: the gate (STS Spearman, else neighbour agreement) source->quantized, its drop in
    points of the source's, and the agreement of the vectors (cosine mean and 1st percentile, top-10 neighbours)."""
    from rich.table import Table

    from edgewise.core.progress import report_console

    table = Table(title=f"{result['artifact']} ({result['method']}; {size['bytes'] / 1e6:.1f} MB{ratio}); the gate "
                        "source->quantized; drop in points of the source's; agreement of the vectors")
    for column in ("split", "gate", "source->quantized", "drop", "cosine mean", "cosine p1", "top-10"):
        table.add_column(column, justify="left" if column == "split" else "right", no_wrap=True)
    for split, row in result["accuracy"].items():
        source, quantized = row["source"], row["quantized"]
        gate = "spearman" if "spearman" in source else "neighbours"
        drop = "" if row["drop_points"] is None else f"{row['drop_points']:.2f}"
        table.add_row(split, gate, f"{source['quality']:.4f}->{quantized['quality']:.4f}", drop,
                      f"{quantized.get('cosine_mean', float('nan')):.4f}",
                      f"{quantized.get('cosine_p1', float('nan')):.4f}", f"{quantized['neighbour_overlap']:.1%}")
    if not result["accuracy"]:
        table.add_row("(no data)", "", "", "", "", "", "")
    report_console().print(table)
