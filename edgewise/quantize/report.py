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
