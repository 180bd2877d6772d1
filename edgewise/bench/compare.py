"""`edgewise bench compare`: the CI gate of a bench report against a committed baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgewise.bench.config import CompareConfig
from edgewise.core.errors import EdgewiseError

SUPPORTED_SCHEMA = 2  # the bench report schema (bench.stage.REPORT_SCHEMA_VERSION); 1 is read as well

# Fewest timing rounds for a usable p50 interval. The interval is built from the round medians
# (edgewise.runtime.bench.median_ci): 1 round gives a zero-width "interval" (coverage 0), 2 rounds
# cover 50 %. Judged by whether the intervals separate, two runs of the same artifact with n rounds
# each separate by chance with probability 1 / C(2n, n): 1/2 at 1 round, 1/6 at 2, 1/20 at 3.
MIN_ROUNDS_TO_JUDGE_LATENCY = 3
# Accuracy drops are compared in whole texts when both reports scored the same number of texts;
# otherwise in points, with this tolerance for float error (0.905 - 0.900 is 0.50000000000000044 points).
ACCURACY_TOLERANCE_POINTS = 1e-9


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
    for field in ("environment", "data", "config"):
        if report.get(field) is not None and not isinstance(report[field], dict):
            raise EdgewiseError(f"{path}: its {field} is not a mapping; the report is damaged: re-run edgewise bench")
    for index, row in enumerate(report["results"]):
        if not isinstance(row, dict) or not all(k in row for k in ("artifact", "backend", "batch_size", "status")):
            raise EdgewiseError(f"{path}: result {index} lacks artifact / backend / batch_size / status; the report "
                                "is damaged: re-run edgewise bench")
        problem = _row_problem(row) if row["status"] == "ok" else None
        if problem:
            raise EdgewiseError(f"{path}: result {index} {problem}; the report is damaged: re-run edgewise bench")
    keys = [_key(r) for r in report["results"]]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise EdgewiseError(f"{path} holds two rows for {twice}; a report to compare must name each row once")
    return report


def _number(value, low: float = float("-inf"), high: float = float("inf")) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and low <= value <= high


def _row_problem(row: dict) -> str | None:
    """What makes a timed row unusable for comparing (None when nothing does)."""
    lat = row.get("latency_ms")
    if not (isinstance(lat, dict) and _number(lat.get("p50"), 0) and lat["p50"] > 0
            and isinstance(lat.get("p50_ci95"), list) and len(lat["p50_ci95"]) == 2
            and all(_number(v) for v in lat["p50_ci95"])):
        return "has no latency p50 (a number > 0) and interval"
    if "round_p50" in lat and not (isinstance(lat["round_p50"], list) and all(_number(v) for v in lat["round_p50"])):
        return "has round medians that are not numbers"
    for field, low, high in (("accuracy", 0, 1), ("macro_f1", 0, 1), ("quality", -1, 1),
                             ("accuracy_batch_size", 1, float("inf"))):
        if row.get(field) is not None and not _number(row[field], low, high):
            return f"has {field} {row[field]!r}, not a number in [{low}, {high}]"
    return None


KEY_FIELDS = ("artifact", "backend", "batch_size", "seq_len", "threads")


def _key(row: dict) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def _machine(report: dict) -> str:
    cpu = (report.get("environment") or {}).get("cpu") or {}
    gpus = ", ".join(g.get("name", "?") for g in (report.get("environment") or {}).get("gpu") or [])
    return f"{cpu.get('model')} ({cpu.get('logical_cores')} cores){', ' + gpus if gpus else ''}"


def _check_comparable(current: dict, baseline: dict) -> list[str]:
    """Errors for reports that measured different things; warnings for different machines."""
    data_now, data_then = current.get("data") or {}, baseline.get("data") or {}
    if data_now.get("sha256") and data_then.get("sha256") and data_now["sha256"] != data_then["sha256"]:
        raise EdgewiseError(
            f"the report scored accuracy on other texts ({data_now.get('spec')} {data_now.get('split')}, "
            f"{data_now.get('rows')} rows) than the baseline ({data_then.get('spec')} {data_then.get('split')}, "
            f"{data_then.get('rows')} rows); bench with the baseline's data and --accuracy-samples"
        )
    metric_now, metric_then = current.get("quality_metric"), baseline.get("quality_metric")
    if metric_now and metric_then and metric_now != metric_then:
        raise EdgewiseError(
            f"the report scored {metric_now} and the baseline {metric_then}: their quality cannot be compared; "
            "bench with the baseline's data (--pairs for STS Spearman)"
        )
    if _machine(current) != _machine(baseline):
        return [f"the baseline was measured on {_machine(baseline)}, this report on {_machine(current)}: latency "
                "differences may be the machine's; refresh the baseline on this machine type"]
    return []


def compare(current: dict, baseline: dict, config: CompareConfig = CompareConfig()) -> dict:
    """Every row of ``current`` against the matching baseline row (artifact, backend, batch, seq_len).

    A row regresses in latency only when its p50 is slower by more than the threshold AND its 95 %
    interval lies wholly above the baseline's (the difference is real, not noise). Latency is not
    judged (a warning says why) when either report timed the row in fewer than
    MIN_ROUNDS_TO_JUDGE_LATENCY rounds: such a row's verdict rests on accuracy alone. A row regresses
    in accuracy when it dropped by more than ``max_accuracy_drop`` points, counted in whole texts
    when both reports scored the same number of texts (data.rows), so losing exactly the allowed
    number of texts passes. Rows only in one report are listed, not failed.
    """
    warnings = _check_comparable(current, baseline)
    base = {_key(r): r for r in baseline["results"] if r.get("status") == "ok"}
    cur = {_key(r): r for r in current["results"] if r.get("status") == "ok"}
    common = [k for k in cur if k in base]
    skipped = [r for r in current["results"] if r.get("status") != "ok"]
    if not cur and skipped:
        # Nothing ran: the rows' own reasons say why, not the matching rules.
        reasons = sorted({f"{r.get('artifact')} on {r.get('backend')}: {r.get('reason') or 'no reason given'}"
                          for r in skipped})
        raise EdgewiseError(
            f"every row of the report was skipped, so there is nothing to compare ({'; '.join(reasons[:3])}"
            + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "") + "); fix that and bench again"
        )
    if not common:
        raise EdgewiseError(
            "no row of the report matches the baseline (rows match on artifact name, backend, batch size, "
            f"sequence length and threads; report has {sorted(map(str, cur))[:3]}, baseline "
            f"{sorted(map(str, base))[:3]}); benchmark the same artifacts and settings as the baseline"
        )
    texts = _texts_scored(current, baseline)
    rows = []
    for key in common:
        now, then = cur[key]["latency_ms"], base[key]["latency_ms"]
        ratio = now["p50"] / then["p50"]
        slower = ratio > 1 + config.max_latency_regression
        row = {"artifact": key[0], "backend": key[1], "batch_size": key[2], "seq_len": key[3],
               "baseline_p50": then["p50"], "current_p50": now["p50"], "change": ratio - 1}
        unjudged = _no_interval(current, now, "report") or _no_interval(baseline, then, "baseline")
        if unjudged:
            # No interval, so no way to tell a real slow-down from noise: the verdict rests on accuracy.
            row.update(ci_separated=None, latency=f"not judged: {unjudged}")
            warnings.append(f"{key[0]} / {key[1]} / batch {key[2]}: latency not judged: {unjudged}")
        else:
            separated = now["p50_ci95"][0] > then["p50_ci95"][1]
            row.update(ci_separated=separated,
                       latency="regression" if slower and separated else ("slower, within noise" if slower else "ok"))
        if base[key].get("accuracy") is not None:
            row.update(_accuracy_verdict(cur[key], base[key], current, baseline, texts, config.max_accuracy_drop))
            if "accuracy_note" in row:
                warnings.append(f"{key[0]} / {key[1]} / batch {key[2]}: {row['accuracy_note']}")
        elif base[key].get("quality") is not None:
            # A task without labels (embeddings) gates on its own metric (STS Spearman, neighbour agreement)
            # in points of that metric: no whole-text counting, a correlation is not a count.
            row.update(_quality_verdict(cur[key], base[key], baseline.get("quality_metric"),
                                        config.max_accuracy_drop))
        failed = row["latency"] == "regression" or str(row.get("accuracy", "")).startswith("regression")
        row["verdict"] = "FAIL" if failed else "pass"
        rows.append(row)
    skipped_now = {_key(r): r.get("reason", "") for r in current["results"] if r.get("status") != "ok"}
    missing = [dict(zip(KEY_FIELDS, k, strict=True)) | {"reason": skipped_now.get(k, "not in the report")}
               for k in base if k not in cur]
    new = [dict(zip(KEY_FIELDS, k, strict=True)) for k in cur if k not in base]
    failures = sum(r["verdict"] == "FAIL" for r in rows) + (0 if config.allow_missing else len(missing))
    return {"passed": failures == 0, "failures": failures, "rows": rows, "missing": missing, "new": new,
            "warnings": warnings,
            "config": {"max_latency_regression": config.max_latency_regression,
                       "max_accuracy_drop": config.max_accuracy_drop, "allow_missing": config.allow_missing}}


def _texts_scored(current: dict, baseline: dict) -> int | None:
    """How many texts both reports scored accuracy on, when they say and agree."""
    rows_now, rows_then = (current.get("data") or {}).get("rows"), (baseline.get("data") or {}).get("rows")
    return rows_now if isinstance(rows_now, int) and rows_now > 0 and rows_now == rows_then else None


def _correct(accuracy: float, texts: int | None) -> int | None:
    """Texts scored right: accuracy x texts, when that is a whole number (it is for an accuracy over ``texts``)."""
    if texts is None:
        return None
    count = accuracy * texts
    return round(count) if abs(count - round(count)) < 1e-6 else None


def _accuracy_batch(row: dict, report: dict) -> int | None:
    """The batch size a row's accuracy was scored at; reports before accuracy_batch_size used eval_batch_size."""
    if "accuracy_batch_size" in row:
        return row["accuracy_batch_size"]
    return (report.get("config") or {}).get("eval_batch_size")


def _accuracy_verdict(now: dict, then: dict, current: dict, baseline: dict, texts: int | None,
                      max_drop: float) -> dict:
    """The accuracy fields of a compared row: counted in texts where both reports scored the same texts."""
    fields = {"baseline_accuracy": then["accuracy"]}
    batch_now, batch_then = _accuracy_batch(now, current), _accuracy_batch(then, baseline)
    if batch_now is not None and batch_then is not None and batch_now != batch_then:
        fields["accuracy_note"] = (f"baseline scored in batches of {batch_then}, this report in batches of "
                                   f"{batch_now}: dynamic INT8 predictions can change with the batch; refresh the "
                                   "baseline")
    if now.get("accuracy") is None:
        return fields | {"accuracy": "regression: not measured (no --data)"}
    right_now, right_then = _correct(now["accuracy"], texts), _correct(then["accuracy"], texts)
    if right_now is not None and right_then is not None:
        lost = right_then - right_now
        drop = lost * 100 / texts
        # Compare whole texts with the texts the threshold allows: 0.5 points of 200 texts is 1 text.
        failed = lost > max_drop * texts / 100 + 1e-9
        fields["accuracy_drop_texts"] = lost
    else:
        drop = (then["accuracy"] - now["accuracy"]) * 100
        failed = drop > max_drop + ACCURACY_TOLERANCE_POINTS
    return fields | {"current_accuracy": now["accuracy"], "accuracy_drop_points": drop,
                     "accuracy": "regression" if failed else "ok"}


def _quality_verdict(now: dict, then: dict, metric: str | None, max_drop: float) -> dict:
    """The gate fields of a compared row of a task scored by a metric other than accuracy."""
    fields = {"quality_metric": metric, "baseline_quality": then["quality"]}
    if now.get("quality") is None:
        return fields | {"accuracy": f"regression: {metric or 'quality'} not measured (no --data / --pairs)"}
    drop = (then["quality"] - now["quality"]) * 100
    return fields | {"current_quality": now["quality"], "quality_drop_points": drop,
                     "accuracy": "regression" if drop > max_drop + ACCURACY_TOLERANCE_POINTS else "ok"}


def _no_interval(report: dict, latency: dict, which: str) -> str | None:
    """Why a row's p50 interval cannot judge latency (too few timing rounds), or None when it can."""
    medians = latency.get("round_p50")
    low, high = latency["p50_ci95"]
    if isinstance(medians, list):
        rounds = len(medians)
        if rounds >= MIN_ROUNDS_TO_JUDGE_LATENCY:
            return None
    elif low < high:
        return None  # no round medians recorded (a hand-made or older report): trust a non-degenerate interval
    else:
        rounds = 1
    fix = ("--min-runs >= 3 (edgewise.runtime bench cuts its runs into rounds)"
           if report.get("tool") == "edgewise.runtime" else f"--rounds >= {MIN_ROUNDS_TO_JUDGE_LATENCY}")
    shape = "no interval" if rounds < 2 else "an interval of 50 % coverage"
    return (f"the {which} has {rounds} timing round{'s' if rounds != 1 else ''}: {shape}; bench with {fix} "
            "(the gate needs 3 rounds to tell a slow-down from noise)")


def markdown(result: dict) -> str:
    config = result["config"]
    verdict = "passed" if result["passed"] else f"FAILED ({result['failures']} regression(s))"
    lines = [
        f"## edgewise bench compare: {verdict}",
        "",
        f"Latency fails above +{config['max_latency_regression'] * 100:.0f} % when the 95 % intervals separate "
        f"(not judged when either report has fewer than {MIN_ROUNDS_TO_JUDGE_LATENCY} timing rounds); "
        f"accuracy (or an embedding model's quality metric) fails when it drops more than "
        f"{config['max_accuracy_drop']} points (in whole texts where the "
        "reports give their count)"
        + ("." if config.get("allow_missing") else "; a baseline row missing or skipped in the report fails."),
        *[f"\n**Warning:** {w}" for w in result.get("warnings", [])],
        "",
        "| artifact | backend | batch | baseline p50 ms | current p50 ms | change | intervals separate | "
        "accuracy (baseline -> current) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "current_accuracy" in r:
            accuracy = f"{r['baseline_accuracy'] * 100:.2f} -> {r['current_accuracy'] * 100:.2f} %"
        elif "current_quality" in r:
            accuracy = f"{r['quality_metric'] or 'quality'} {r['baseline_quality']:.4f} -> {r['current_quality']:.4f}"
        else:
            accuracy = r.get("accuracy", "")
        if r.get("accuracy_drop_texts"):
            accuracy += f" ({-r['accuracy_drop_texts']:+d} texts)"
        separated = {True: "yes", False: "no", None: "not judged (too few rounds)"}[r["ci_separated"]]
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['batch_size']} | {r['baseline_p50']:.3f} | "
                     f"{r['current_p50']:.3f} | {r['change'] * 100:+.1f} % | {separated} | "
                     f"{accuracy} | {r['verdict']} |")
    if result["missing"]:
        verdict = "allowed" if config.get("allow_missing") else "FAIL"
        lines += ["", f"Missing or skipped in this report ({verdict}): " + "; ".join(
            f"{k['artifact']} / {k['backend']} / batch {k['batch_size']} ({k['reason']})" for k in result["missing"])]
    if result["new"]:
        lines += ["", "Only in this report (no baseline): " + ", ".join(
            f"{k['artifact']} / {k['backend']} / batch {k['batch_size']}" for k in result["new"])]
    return "\n".join(lines) + "\n"
