"""PNG plots of a bench report (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and accuracy (higher)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for j, (l2, a2) in enumerate(points)
                        if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _smallest_batch_rows(report: dict) -> list[dict]:
    ok = [r for r in report["results"] if r["status"] == "ok"]
    if not ok:
        return []
    smallest = min(r["batch_size"] for r in ok)
    return [r for r in ok if r["batch_size"] == smallest]


# How the axis names each metric a bench row can carry (all plotted x 100).
METRIC_NAMES = {"accuracy": "accuracy (%)", "macro_f1": "macro-F1 (%)", "spearman": "STS Spearman (x 100)",
                "neighbour_overlap": "top-10 neighbour overlap (%)", "cosine_mean": "mean cosine to ref (x 100)",
                "ndcg_at_10": "NDCG@10 (x 100)"}


def plot_pareto(report: dict, path: Path, metric: str = "accuracy") -> None:
    """pareto.png: see pareto_figure."""
    plt = _pyplot()
    fig = pareto_figure(report, metric)
    fig.savefig(path)
    plt.close(fig)


def pareto_figure(report: dict, metric: str = "accuracy"):
    """Latency (p50, smallest batch) against ``metric`` (a key of METRIC_NAMES), the Pareto frontier marked.

    Labels sit beside their own points, inside the axes (never over the title), over no other label
    nor the legend; with more than six points only the frontier and the reference are labelled (a label
    that finds no free place beside its point is left out: report.md names every row)."""
    plt = _pyplot()
    rows = [r for r in _smallest_batch_rows(report) if r.get(metric) is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    axis = METRIC_NAMES.get(metric, metric)
    name = axis.rsplit(" (", 1)[0]
    batch = rows[0]["batch_size"] if rows else 1
    ax.set_xlabel(f"p50 latency, batch {batch} (ms)")
    ax.set_ylabel(axis)
    ax.set_title(f"latency vs {name}")
    ax.grid(alpha=0.3)
    if not rows:
        ax.text(0.5, 0.5, f"no {name} measured (run with --data)", ha="center", va="center",
                transform=ax.transAxes)
        low, high = ax.get_ylim()
        ax.set_ylim(low, min(high, 100.5))  # accuracy never exceeds 100 %
        fig.tight_layout()
        return fig
    points = [(r["latency_ms"]["p50"], r[metric] * 100) for r in rows]
    front = pareto_front(points)
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", s=30, zorder=3,
               label="artifact / backend")
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:red", lw=1.5,
            marker="o", markersize=9, markerfacecolor="none", markeredgewidth=1.8, zorder=4,
            label="Pareto frontier")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_span, y_span = (max(xs) - min(xs)) or max(xs) or 1.0, (max(ys) - min(ys)) or 1.0
    # Room for the labels inside the axes: a margin on both sides, above and below.
    ax.set_xlim(min(xs) - 0.08 * x_span, max(xs) + 0.08 * x_span)
    ax.set_ylim(min(ys) - 0.25 * y_span, max(ys) + 0.25 * y_span)
    legend = ax.legend(loc="lower right" if ys[0] > min(ys) + y_span / 2 else "upper right", fontsize=8)
    fig.tight_layout()  # before placing labels: it moves the axes
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = [legend.get_window_extent(renderer)]
    # Every point when there are few, else the frontier and the reference; coinciding points share a label.
    labelled = range(len(rows)) if len(rows) <= 6 else sorted({0, *front})
    groups: dict[tuple, list[int]] = {}
    for i in labelled:
        key = (round((points[i][0] - min(xs)) / x_span * 200), round((points[i][1] - min(ys)) / y_span * 200))
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        x, y = points[members[0]]
        text = "\n".join(f"{rows[i]['artifact']} ({rows[i]['backend']})" for i in members)
        # Right, left, below, above, then a step further: the first free place inside the axes wins.
        for dx, dy, ha, va in ((6, 4, "left", "bottom"), (-6, 4, "right", "bottom"), (6, -4, "left", "top"),
                               (-6, -4, "right", "top"), (6, 14, "left", "bottom"), (-6, 14, "right", "bottom"),
                               (6, -14, "left", "top"), (-6, -14, "right", "top")):
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=7)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()
    return fig


def plot_latency_cdf(report: dict, path: Path) -> None:
    """Empirical CDF of every row's raw latencies (smallest batch)."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    rows = _smallest_batch_rows(report)
    lowest, highest = np.inf, 0.0
    for row in rows:
        samples = np.sort(np.asarray(row["latency_ms"]["samples"]))
        lowest, highest = min(lowest, samples[0]), max(highest, samples[-1])
        ax.step(samples, np.arange(1, samples.size + 1) / samples.size, where="post",
                label=f"{row['artifact']} ({row['backend']})")
    log = bool(rows) and highest / lowest > 20  # a log axis only when the rows span orders of magnitude
    if rows:
        ax.legend(fontsize=8, loc="lower right")
    if log:
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel(f"latency, batch {rows[0]['batch_size'] if rows else 1} (ms{', log scale' if log else ''})")
    ax.set_ylabel("share of runs at or below")
    ax.set_title("latency distribution")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
