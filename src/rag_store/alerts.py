"""`rag-store alerts`: source freshness plus the `alert` tests, read from dbt's artifacts.

Exit codes alone lie (`dbt source freshness` exits 0 on warn), so every verdict comes from
target/sources.json and target/run_results.json; observed values come from the failing rows
dbt stores for each alert test (`--store-failures`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import yaml

OK, WARN, ERROR = "ok", "warn", "error"
EXIT_CODES = {OK: 0, WARN: 1, ERROR: 2}
_RANK = {OK: 0, WARN: 1, ERROR: 2}
_TEST_STATUS = {"pass": OK, "warn": WARN, "fail": ERROR, "error": ERROR}
_FRESHNESS_STATUS = {"pass": OK, "warn": WARN, "error": ERROR, "runtime error": ERROR}


@dataclass
class Check:
    check: str
    status: str
    observed: float | str | None = None
    threshold: str | None = None
    message: str = ""


@dataclass
class AlertReport:
    checked_at: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=_RANK.get, default=OK)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status != OK]

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "checked_at": self.checked_at,
            "problems": [asdict(c) for c in self.problems],
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
        }


def describe(check: Check) -> str:
    observed = "-" if check.observed is None else _format_number(check.observed)
    threshold = check.threshold or "-"
    line = f"{check.status.upper():<5}  {check.check}  observed={observed}  threshold={threshold}"
    return f"{line}  ({check.message})" if check.message else line


def _format_number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def freshness_checks(sources_json: Path) -> list[Check]:
    data = json.loads(sources_json.read_text(encoding="utf-8"))
    checks = []
    for result in data.get("results", []):
        name = result["unique_id"].split(".", 2)[-1]
        status = _FRESHNESS_STATUS.get(result.get("status", ""), ERROR)
        criteria = result.get("criteria") or {}
        age = result.get("max_loaded_at_time_ago_in_s")
        limits = [
            f"{level} after {spec['count']} {spec['period']}"
            for level in ("warn", "error")
            if (spec := criteria.get(f"{level}_after") or {}).get("count") is not None
        ]
        message = result.get("error") or (
            f"newest _loaded_at {result['max_loaded_at']}" if result.get("max_loaded_at") else ""
        )
        checks.append(
            Check(
                check=f"freshness:{name}",
                status=status,
                observed=round(age / 3600, 2) if age is not None else None,
                threshold=", ".join(limits) + " (hours since newest _loaded_at)",
                message=message,
            )
        )
    return checks


def test_checks(run_results_json: Path, db_path: Path | None) -> list[Check]:
    data = json.loads(run_results_json.read_text(encoding="utf-8"))
    checks = []
    for result in data.get("results", []):
        if not result["unique_id"].startswith("test."):
            continue  # project hooks are in run_results too
        name = result["unique_id"].split(".")[2]
        status = _TEST_STATUS.get(result.get("status", ""), ERROR)
        check = Check(check=name, status=status)
        if status != OK:
            check.observed = result.get("failures")
            check.message = result.get("message") or ""
            detail = _stored_failure(db_path, result.get("relation_name"))
            if detail:
                check.message = ""
                check.observed = detail.get("observed_value", check.observed)
                if "threshold" in detail:
                    check.threshold = f"{detail.get('comparison', '')}{detail['threshold']:g}"
                check.check = detail.get("check_name", name)
        checks.append(check)
    return checks


def _stored_failure(db_path: Path | None, relation: str | None) -> dict | None:
    """The worst failing row dbt stored for a test, if it has observed/threshold columns."""
    if not db_path or not relation or not db_path.exists():
        return None
    try:
        with duckdb.connect(str(db_path), read_only=True) as conn:
            cursor = conn.execute(f"select * from {relation}")
            columns = [c[0] for c in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    except duckdb.Error:
        return None
    rows = [r for r in rows if "observed_value" in r]
    if not rows:
        return None
    return max(rows, key=lambda r: 1 if r.get("severity_level") == "error" else 0)


def run_dbt(
    arguments: list[str], project_dir: Path, target_path: Path
) -> subprocess.CompletedProcess:
    dbt = Path(sys.executable).parent / "dbt"
    command = [
        str(dbt if dbt.exists() else "dbt"),
        *arguments,
        "--project-dir",
        str(project_dir),
        "--target-path",
        str(target_path),
    ]
    env = dict(os.environ)
    env.setdefault("DBT_PROFILES_DIR", str(project_dir))
    return subprocess.run(command, cwd=project_dir, env=env, capture_output=True, text=True)


def collect(project_dir: Path, db_path: Path, dbt_vars: str | None) -> AlertReport:
    """Run freshness and the alert tests; build the report from dbt's JSON artifacts.

    The artifacts go to a directory of this run's own, so two alert runs at once (two
    stores, or a slow run overlapping the next cron tick) never read each other's results.
    """
    with tempfile.TemporaryDirectory(prefix="rag-store-alerts-") as scratch:
        return _collect(project_dir, db_path, dbt_vars, Path(scratch))


def _collect(project_dir: Path, db_path: Path, dbt_vars: str | None, target: Path) -> AlertReport:
    report = AlertReport(checked_at=datetime.now(UTC).isoformat(timespec="seconds"))
    extra = ["--vars", alert_vars(dbt_vars)]
    freshness = run_dbt(
        ["source", "freshness", "--select", "source:docs", *extra], project_dir, target
    )
    sources_json = target / "sources.json"
    if sources_json.exists():
        report.checks.extend(freshness_checks(sources_json))
    else:
        report.checks.append(
            Check("freshness", ERROR, message=_last_lines(freshness, "dbt source freshness"))
        )
    tests = run_dbt(
        ["test", "--select", "tag:alert", "--store-failures", *extra], project_dir, target
    )
    run_results = target / "run_results.json"
    if run_results.exists():
        checks = test_checks(run_results, db_path)
        report.checks.extend(checks)
        if not checks:
            report.checks.append(Check("alert tests", ERROR, message="no alert test ran"))
    else:
        report.checks.append(Check("alert tests", ERROR, message=_last_lines(tests, "dbt test")))
    report.checks.extend(watch_checks_for(project_dir, db_path, dbt_vars))
    return report


def watch_checks_for(project_dir: Path, db_path: Path, dbt_vars: str | None) -> list[Check]:
    """watch_checks with the thresholds of this project's vars (and --vars)."""
    from rag_store.watch import WatchError, project_vars

    try:
        return watch_checks(db_path, project_vars(project_dir, dbt_vars))
    except WatchError as exc:
        return [Check("watch", ERROR, message=str(exc))]


def _parse_time(text: object) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def watch_checks(db_path: Path, dbt_vars: dict, now: datetime | None = None) -> list[Check]:
    """`rag-store watch` checks, from its history and heartbeat beside the database; none
    when no watcher has ever recorded a cycle there.

    watcher_stopped: a long-running watcher keeps a heartbeat; it warns when the heartbeat
    is older than alert_watch_stopped_after_polls poll intervals (at least a minute) or the
    watcher stopped. watch_lag_seconds: the lag (newest delivery -> published) of the last
    cycle that measured one, or, when the last build failed, how long its changes have been
    waiting."""
    from rag_store.watch import read_history, watch_paths

    paths = watch_paths(db_path)
    if not paths.history.exists():
        return []
    now = now or datetime.now(UTC)
    checks = []
    try:
        heartbeat = json.loads(paths.heartbeat.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        heartbeat = None  # only `rag-store watch --once` runs here: nothing to be alive
    if isinstance(heartbeat, dict):
        polls = float(dbt_vars.get("alert_watch_stopped_after_polls", 10))
        poll_seconds = float(heartbeat.get("poll_seconds") or 5)
        limit = max(polls * poll_seconds, 60.0)
        beat_at = _parse_time(heartbeat.get("beat_at"))
        age = (now - beat_at).total_seconds() if beat_at else None
        who = f"pid {heartbeat.get('pid')} on {heartbeat.get('host')}"
        threshold = f">{limit:g} s without a heartbeat"
        if heartbeat.get("state") == "stopped":
            problem = f"rag-store watch ({who}) stopped at {heartbeat.get('beat_at')}"
        elif age is None or age > limit:
            problem = f"no heartbeat from rag-store watch ({who}) since {heartbeat.get('beat_at')}"
        else:
            problem = None
        if problem:
            observed = round(age, 1) if age is not None else None
            checks.append(Check("watcher_stopped", WARN, observed, threshold, problem))
        else:
            checks.append(Check("watcher_stopped", OK, round(age, 1), threshold))
    records = read_history(paths.history)
    if records:
        checks.append(_watch_lag_check(records, dbt_vars, now))
    return checks


def _watch_lag_check(records: list[dict], dbt_vars: dict, now: datetime) -> Check:
    warn = float(dbt_vars.get("alert_watch_lag_warn_seconds", 60))
    error = float(dbt_vars.get("alert_watch_lag_error_seconds", 600))
    threshold = f">{warn:g} warn, >{error:g} error"

    def judged(observed: float, message: str = "") -> Check:
        status = ERROR if observed > error else WARN if observed > warn else OK
        return Check("watch_lag_seconds", status, round(observed, 1), threshold, message)

    last = records[-1]
    if last.get("status") != "ok":
        waiting = _parse_time(last.get("newest_delivered_at"))
        message = (
            f"the last build failed at {last.get('failed_node') or 'dbt'} "
            f"({last.get('finished_at')}): {last.get('message') or ''} "
            f"(log: {last.get('log_path')})"
        )
        if waiting is None:
            return Check("watch_lag_seconds", WARN, None, threshold, message)
        return judged((now - waiting).total_seconds(), message)
    for record in reversed(records):
        if record.get("status") == "ok" and record.get("lag_seconds") is not None:
            return judged(float(record["lag_seconds"]), f"cycle of {record.get('finished_at')}")
    return Check("watch_lag_seconds", OK, None, threshold, "no delivery measured yet")


def history_path(database: str | os.PathLike, override: str | os.PathLike | None = None) -> Path:
    """Where `rag-store alerts` appends its reports (and `rag-store serve` reads the latest):
    `override`, else $RAG_STORE_ALERT_HISTORY, else alert_history.jsonl beside the database."""
    chosen = str(override or os.environ.get("RAG_STORE_ALERT_HISTORY", "") or "")
    if chosen and chosen != ".":
        return Path(chosen)
    return Path(database).parent / "alert_history.jsonl"


def alert_vars(dbt_vars: str | None) -> str:
    """The caller's dbt --vars (YAML or JSON text) with the alert tests enabled."""
    parsed = yaml.safe_load(dbt_vars) if dbt_vars and dbt_vars.strip() else {}
    if not isinstance(parsed, dict):
        raise ValueError(f"--vars must be a mapping, got {dbt_vars!r}")
    return json.dumps({**parsed, "alert_tests": True})


def _last_lines(completed: subprocess.CompletedProcess, what: str) -> str:
    text = (completed.stdout + completed.stderr).strip().splitlines()
    return f"{what} could not run: " + " | ".join(line.strip() for line in text[-3:])


def slack_text(report: AlertReport) -> str:
    if not report.problems:
        return f"rag-store: all {len(report.checks)} checks ok"
    lines = [f"rag-store: {report.status.upper()} ({len(report.problems)} problem(s))"]
    lines += [f"• {describe(check)}" for check in report.problems]
    return "\n".join(lines)


def post_webhook(url: str, report: AlertReport, timeout: float = 10.0) -> str | None:
    """POST the report; return None on success or a short description of the failure."""
    payload = {"text": slack_text(report), **report.as_dict()}
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status >= 300:
                return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def append_history(path: Path, report: AlertReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(report.as_dict(), ensure_ascii=False) + "\n")
