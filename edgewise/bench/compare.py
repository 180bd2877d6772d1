"""`edgewise bench compare`: the CI gate of a bench report against a committed baseline."""

from __future__ import annotations

import json
from pathlib import Path

from edgewise.bench.config import CompareConfig
from edgewise.core.errors import EdgewiseError

SUPPORTED_SCHEMA = 1


def load_report(path: Path) -> dict:
    """A bench report (edgewise bench or edgewise.runtime bench), checked enough to compare."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgewiseError(f"{path} does not exist; pass a report.json written by edgewise bench") from None
    except (OSError, ValueError) as e:
        raise EdgewiseError(f"{path} is not a readable JSON report ({e}); re-run edgewise bench") from None
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise EdgewiseError(f"{path} is not a bench report (no results list); pass a report.json of edgewise bench")
    version = report.get("schema_version")
    if not isinstance(version, int) or version > SUPPORTED_SCHEMA:
        raise EdgewiseError(f"{path} has report schema {version!r}; this edgewise reads up to {SUPPORTED_SCHEMA}: "
                            "upgrade edgewise")
    return report


def _key(row: dict) -> tuple:
    return row["artifact"], row["backend"], row["batch_size"], row.get("seq_len")


def compare(current: dict, baseline: dict, config: CompareConfig = CompareConfig()) -> dict:
    """Every row of ``current`` against the matching baseline row (artifact, backend, batch, seq_len).

    A row regresses in latency only when its p50 is slower by more than the threshold AND its 95 %
    interval lies wholly above the baseline's (the difference is real, not noise); in accuracy when
    it dropped by more than ``max_accuracy_drop`` points. Rows only in one report are listed, not failed.
    """
    base = {_key(r): r for r in baseline["results"] if r.get("status") == "ok"}
    cur = {_key(r): r for r in current["results"] if r.get("status") == "ok"}
    common = [k for k in cur if k in base]
    if not common:
        raise EdgewiseError(
            "no row of the report matches the baseline (rows match on artifact name, backend, batch size and "
            f"sequence length; report has {sorted(map(str, cur))[:4]}, baseline {sorted(map(str, base))[:4]}); "
            "benchmark the same artifacts and settings as the baseline"
        )
    rows = []
    for key in common:
        now, then = cur[key]["latency_ms"], base[key]["latency_ms"]
        ratio = now["p50"] / then["p50"]
        separated = now["p50_ci95"][0] > then["p50_ci95"][1]
        slower = ratio > 1 + config.max_latency_regression
        latency = "regression" if slower and separated else ("slower, within noise" if slower else "ok")
        row = {"artifact": key[0], "backend": key[1], "batch_size": key[2], "seq_len": key[3],
               "baseline_p50": then["p50"], "current_p50": now["p50"], "change": ratio - 1,
               "ci_separated": separated, "latency": latency}
        if cur[key].get("accuracy") is not None and base[key].get("accuracy") is not None:
            drop = (base[key]["accuracy"] - cur[key]["accuracy"]) * 100
            row.update(baseline_accuracy=base[key]["accuracy"], current_accuracy=cur[key]["accuracy"],
                       accuracy_drop_points=drop,
                       accuracy="regression" if drop > config.max_accuracy_drop else "ok")
        row["verdict"] = "FAIL" if "regression" in (row["latency"], row.get("accuracy")) else "pass"
        rows.append(row)
    fields = ("artifact", "backend", "batch_size", "seq_len")
    missing = [dict(zip(fields, k, strict=True)) for k in base if k not in cur]
    new = [dict(zip(fields, k, strict=True)) for k in cur if k not in base]
    failures = sum(r["verdict"] == "FAIL" for r in rows)
    return {"passed": failures == 0, "failures": failures, "rows": rows, "missing": missing, "new": new,
            "config": {"max_latency_regression": config.max_latency_regression,
                       "max_accuracy_drop": config.max_accuracy_drop}}


def markdown(result: dict) -> str:
    config = result["config"]
    verdict = "passed" if result["passed"] else f"FAILED ({result['failures']} regression(s))"
    lines = [
        f"## edgewise bench compare: {verdict}",
        "",
        f"Latency fails above +{config['max_latency_regression'] * 100:.0f} % when the 95 % intervals separate; "
        f"accuracy fails when it drops more than {config['max_accuracy_drop']} points.",
        "",
        "| artifact | backend | batch | baseline p50 ms | current p50 ms | change | intervals separate | "
        "accuracy (baseline -> current) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        accuracy = (f"{r['baseline_accuracy'] * 100:.2f} -> {r['current_accuracy'] * 100:.2f} %"
                    if "accuracy" in r else "")
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['batch_size']} | {r['baseline_p50']:.3f} | "
                     f"{r['current_p50']:.3f} | {r['change'] * 100:+.1f} % | {'yes' if r['ci_separated'] else 'no'} | "
                     f"{accuracy} | {r['verdict']} |")
    for title, keys in (("Only in the baseline (not compared)", result["missing"]),
                        ("Only in this report (no baseline)", result["new"])):
        if keys:
            lines += ["", f"{title}: " + ", ".join(f"{k['artifact']} / {k['backend']} / batch {k['batch_size']}"
                                                   for k in keys)]
    return "\n".join(lines) + "\n"
