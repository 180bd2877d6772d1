"""Reports for people: the Markdown ladder table of a bench report, printed by `edgewise bench`."""

from __future__ import annotations

from edgewise.runtime.targets import target_name


def _ms(value) -> str:
    return f"{value:.2f}" if value is not None else ""


def _pct(value) -> str:
    return f"{value * 100:.2f} %" if value is not None else ""


def device_line(target: str, env: dict) -> str:
    """Where a device report was measured: the target and what its latency depends on (runtime.targets)."""
    device = env.get("device") or {}
    facts = [f"{env.get('os')}" + (f" ({device['os_release']})" if device.get("os_release") else ""),
             f"onnxruntime {(env.get('packages') or {}).get('onnxruntime')} "
             f"({', '.join(env.get('onnxruntime_providers') or []) or 'no providers'})"]
    if device.get("cpu_governor"):
        facts.append(f"governor {device['cpu_governor']}")
    if device.get("cpu_clocks_pinned") is not None:
        facts.append("clocks pinned at max" if device["cpu_clocks_pinned"] else "clocks not pinned")
    if device.get("memory_gib"):
        facts.append(f"{device['memory_gib']} GiB")
    jetson = device.get("jetson") or {}
    if jetson:
        facts.append(f"{jetson.get('model') or 'Jetson'}, power mode {jetson.get('nvpmodel') or 'unknown'}")
    power = (env.get("power") or {}).get("mean_mw")
    if power:
        facts.append("power while timed " + ", ".join(f"{rail} {mw / 1000:.2f} W" for rail, mw in power.items()))
    return f"Measured on the device **{target_name(target)}**: " + "; ".join(facts) + "."


def markdown(report: dict) -> str:
    """A ladder table: every artifact / backend / batch size with latency, throughput, size and accuracy."""
    env = report["environment"]
    cpu = env.get("cpu", {})
    gpus = ", ".join(g["name"] for g in env.get("gpu") or []) or "none"
    artifacts = {a["name"]: a for a in report.get("artifacts", [])}
    config = report.get("config", {})
    lines = [
        f"# edgewise bench — {report['created_at']}",
        "",
        f"Machine: {cpu.get('model')} ({cpu.get('arch')}, {cpu.get('logical_cores')} logical cores; "
        f"{' '.join(cpu.get('isa', []))}); GPU: {gpus}. Threads: {config.get('threads') or 'default'}; "
        f"{config.get('rounds')} interleaved rounds, at least {config.get('min_runs')} runs and "
        f"{config.get('min_time_s')} s per row. Reference: **{report['reference']}**.",
    ]
    if report.get("target"):
        lines.append(device_line(report["target"], env))
    task = report_task(report)
    if report.get("data"):
        d = report["data"]
        scored = config.get("eval_batch_size")
        what = "Accuracy" if task.labelled else "Quality"
        pairs_of = d.get("pairs_spec") or d["spec"]
        texts = (f"{d['rows']} texts" if not d.get("pairs") else
                 f"{d.get('corpus', 0)} corpus texts and {d['pairs']} scored pairs of {pairs_of}")
        lines.append(f"{what} on {d['spec']} ({d['split']}, {texts}), through the backend timed, "
                     + (f"in batches of {scored} (--eval-batch-size) whatever the row's batch size."
                        if scored else "at each row's own batch size."))
    columns = task.columns
    lines += [
        "",
        "| artifact | backend | batch | seq | p50 ms (95 % CI) | p90 | p99 | CV | speed vs ref | items/s | "
        + " | ".join(header for header, _, _ in columns) + " | size MB | params |",
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    for row in report["results"]:
        art = artifacts.get(row["artifact"], {})
        size = f"{art['size_bytes'] / 1e6:.1f}" if art.get("size_bytes") else ""  # MB = 10^6 bytes
        params = f"{art['parameters'] / 1e6:.2f} M" if art.get("parameters") else ""
        if row["status"] != "ok":
            lines.append(f"| {row['artifact']} | {row['backend']} | {row['batch_size']} | | skipped: "
                         f"{row.get('reason', '')} | | | | | | " + "| " * len(columns) + f"{size} | {params} |")
            continue
        lat = row["latency_ms"]
        low, high = lat["p50_ci95"]
        ratio = row.get("reference", {}).get("p50_ratio")
        lines.append(
            f"| {row['artifact']} | {row['backend']} | {row['batch_size']} | {row['seq_len']} | "
            f"{lat['p50']:.2f} ({low:.2f}-{high:.2f}) | {_ms(lat['p90'])} | {_ms(lat['p99'])} | {lat['cv']:.3f} | "
            f"{speed(ratio)} | {row['throughput_items_per_s']:.1f} | "
            + " | ".join(_cell(row, key, kind, config, i == 0) for i, (_, key, kind) in enumerate(columns)) + " | "
            f"{size} | {params} |"
        )
    lines += ["", "`speed vs ref`: the reference artifact's p50 over this row's, at the same batch size, on the same "
              "backend when the reference ran there, else on its first backend. `items/s`: items over the total "
              "timed time. `size MB`: 10^6 bytes. " + task.column_notes + " `seq` data: the evaluation texts at "
              "their real length, padded per batch (its CV then includes the spread of the texts' lengths). "
              "(batch N): scored in batches of N, not at the row's "
              "batch size; dynamic INT8 outputs can change with the batch.", ""]
    return "\n".join(lines)


def report_task(report: dict):
    """The task a report's rows were scored as (a report from before tasks: a classifier's)."""
    from edgewise.core.tasks import from_record
    from edgewise.core.tasks.classification import Classification

    return from_record(report["task"], "the report") if report.get("task") else Classification()


def _cell(row: dict, key: str, kind: str, config: dict, first: bool) -> str:
    """A task column's cell: a share in % or a figure to 4 places; in the first, the batch size the outputs were
    scored at when that is not the row's (reports before ``accuracy_batch_size`` scored at ``eval_batch_size``)."""
    value = row.get(key)
    text = "" if value is None else _pct(value) if kind == "pct" else f"{value:.4f}"
    scored_at = row.get("accuracy_batch_size", config.get("eval_batch_size"))
    if first and text and scored_at is not None and scored_at != row["batch_size"]:
        text += f" (batch {scored_at})"
    return text


def speed(ratio: float | None) -> str:
    """A p50 ratio (row / reference) as people read it: "7.60x faster", "1.20x slower", "1.00x"."""
    if ratio is None:
        return ""
    if abs(ratio - 1) < 5e-3:
        return "1.00x"
    return f"{1 / ratio:.2f}x faster" if ratio < 1 else f"{ratio:.2f}x slower"


def render(report: dict) -> None:
    """Print the ladder table (Markdown) of a bench report."""
    print(markdown(report))
