"""`rag-store watch` without dbt: stat fingerprints and their diff (hypothesis over file trees
and fingerprints), which sources a set of vars watches, the cycle bookkeeping with a stand-in
build, and the alerts' watch checks on hand-written history and heartbeat files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_store import alerts, watch
from rag_store.watch import FileStat, diff, fingerprint

# ---------------------------------------------------------------- fingerprints

names = st.text(alphabet="abcdefghij_-", min_size=1, max_size=6)
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map(tuple),
    st.binary(max_size=40),
    max_size=12,
)


def write_tree(root: Path, tree: dict) -> set[str]:
    """Write `tree` (path parts -> bytes) under root; return the files that took."""
    written = set()
    for parts, content in tree.items():
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            continue  # a name used both as a file and as a folder
        written.add(str(path))
    return {p for p in written if Path(p).is_file()}


@settings(max_examples=40, deadline=None)
@given(tree=trees, hidden=st.booleans())
def test_directory_fingerprint_lists_every_visible_file(tmp_path_factory, tree, hidden):
    root = tmp_path_factory.mktemp("docs")
    files = write_tree(root, tree)
    if hidden:
        (root / ".git").mkdir()
        (root / ".git" / "HEAD").write_text("ref")
        (root / ".DS_Store").write_bytes(b"x")
    found = fingerprint(watch.Sources(document_dir=root))
    assert set(found) == {"dir:" + path for path in files}
    for path in files:
        assert found["dir:" + path].size == os.path.getsize(path)
    assert not diff(found, fingerprint(watch.Sources(document_dir=root)))


@settings(max_examples=30, deadline=None)
@given(tree=trees.filter(bool), data=st.data())
def test_edits_additions_and_removals_are_seen(tmp_path_factory, tree, data):
    root = tmp_path_factory.mktemp("docs")
    files = sorted(write_tree(root, tree))
    if not files:
        return
    sources = watch.Sources(document_dir=root)
    before = fingerprint(sources)
    edited = data.draw(st.sampled_from(files))
    Path(edited).write_bytes(Path(edited).read_bytes() + b"more")
    removed = data.draw(st.sampled_from(files))
    if removed == edited:
        removed = None
    else:
        os.remove(removed)
    added = root / "zz_new.md"
    added.write_text("new")
    change = diff(before, fingerprint(sources))
    assert change.added == ("dir:" + str(added),)
    assert change.modified == ("dir:" + edited,)
    assert change.removed == (("dir:" + removed,) if removed else ())


def test_a_rewrite_of_the_same_size_is_seen_by_its_mtime(tmp_path):
    feed = tmp_path / "a.jsonl"
    feed.write_text("one\n")
    sources = watch.Sources(feed_glob=str(tmp_path / "*.jsonl"))
    before = fingerprint(sources)
    feed.write_text("two\n")
    stat = feed.stat()
    os.utime(feed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert diff(before, fingerprint(sources)).modified == ("feed:" + str(feed),)
    # Files outside the glob are not the feed's.
    (tmp_path / "notes.txt").write_text("x")
    assert set(fingerprint(sources)) == {"feed:" + str(feed)}


stats = st.builds(
    FileStat,
    st.integers(0, 10**9),
    st.integers(0, 2**62),
    st.integers(0, 2**62),
)
prints = st.dictionaries(st.text(min_size=1, max_size=8), stats, max_size=15)


@given(old=prints, new=prints)
def test_diff_partitions_the_paths(old, new):
    change = diff(old, new)
    assert set(change.added) == set(new) - set(old)
    assert set(change.removed) == set(old) - set(new)
    assert set(change.modified) <= set(old) & set(new)
    back = diff(new, old)
    assert (back.added, back.removed, set(back.modified)) == (
        change.removed,
        change.added,
        set(change.modified),
    )
    assert not diff(new, new)
    assert bool(change) == (old.keys() != new.keys() or bool(change.modified))


@given(fp=prints, ctime=st.integers(0, 2**62))
def test_ctime_alone_is_no_change_and_fingerprints_round_trip(fp, ctime):
    touched = {path: stat._replace(ctime_ns=ctime) for path, stat in fp.items()}
    assert not diff(fp, touched)
    assert watch.decode_fingerprint(json.loads(json.dumps(watch.encode_fingerprint(fp)))) == fp


def test_newest_delivery_takes_the_latest_arrival_and_removals_when_noticed():
    new = {"a": FileStat(1, 5_000_000_000, 7_000_000_000), "b": FileStat(1, 9_000_000_000, 0)}
    change = watch.Change(added=("a",), modified=("b",))
    assert watch.newest_delivery(new, change, noticed_at=100.0) == 9.0
    assert watch.newest_delivery(new, watch.Change(removed=("c",)), noticed_at=100.0) == 100.0
    assert watch.newest_delivery(new, watch.Change(), noticed_at=100.0) is None


# ---------------------------------------------------------------- what the vars watch


def test_sources_from_the_project_defaults_and_cli_vars(tmp_path, monkeypatch):
    defaults = watch.sources_from_vars(watch.project_vars(REPO, None), REPO)
    assert defaults.feed_glob == str(REPO / "data" / "sample_feed" / "*.jsonl")
    assert defaults.document_dir is None and not defaults.relation_polled

    monkeypatch.setenv("DOCS_ROOT", str(tmp_path))
    chosen = watch.project_vars(
        REPO,
        "{document_feed: '', document_dir: \"{{ env_var('DOCS_ROOT') }}/wiki\", "
        "document_relation: {table: \"read_parquet('exports/*.parquet')\"}}",
    )
    sources = watch.sources_from_vars(chosen, REPO)
    assert sources.feed_glob is None
    assert sources.document_dir == tmp_path / "wiki"
    assert sources.relation_globs == (str(REPO / "exports" / "*.parquet"),)
    assert "alert_watch_lag_warn_seconds" in chosen


@pytest.mark.parametrize(
    ("relation", "attach", "expected"),
    [
        ({"table": "read_parquet('/x/*.parquet')"}, [], ("/x/*.parquet",)),
        (
            {"table": "read_csv(['/a.csv', '/b/*.csv'], header = true)"},
            [],
            ("/a.csv", "/b/*.csv"),
        ),
        ({"table": "'/exports/docs.parquet'"}, [], ("/exports/docs.parquet",)),
        (
            {"table": "crm.main.articles"},
            [{"alias": "crm", "type": "sqlite", "path": "/db/crm.sqlite"}],
            tuple(f"/db/crm.sqlite{end}" for end in ("", ".wal", "-wal", "-journal")),
        ),
        (
            {"table": "crm.public.articles"},
            [{"alias": "crm", "type": "postgres", "path": "postgresql://db/crm"}],
            None,
        ),
        ({"ref": "handbook_pages"}, [], None),
        ({"source": ["crm", "articles"]}, [], None),
    ],
)
def test_relation_probe(relation, attach, expected):
    sources = watch.sources_from_vars(
        {"document_feed": "", "document_relation": relation, "document_attach": attach}, "/"
    )
    if expected is None:
        assert sources.relation_polled and not sources.relation_globs
    else:
        assert sources.relation_globs == expected and not sources.relation_polled


@pytest.mark.parametrize(
    ("pattern", "root", "recursive"),
    [
        ("/feed/*.jsonl", "/feed", False),
        ("/feed/**/*.jsonl", "/feed", True),
        ("/feed/2026-*/x.jsonl", "/feed", True),
        ("/feed/a.jsonl", "/feed", False),
    ],
)
def test_glob_root(pattern, root, recursive):
    assert watch.glob_root(pattern) == (Path(root), recursive)


def test_bad_vars_end_in_one_line():
    with pytest.raises(watch.WatchError, match="mapping"):
        watch.project_vars(REPO, "[1, 2]")
    with pytest.raises(watch.WatchError, match="--project-dir"):
        watch.project_vars(REPO / "nowhere", None)


# ---------------------------------------------------------------- cycles with a stand-in build


class FakeBuild:
    def __init__(self):
        self.calls = 0
        self.fail = False

    def __call__(self, config):
        self.calls += 1
        if self.fail:
            return watch.BuildOutcome(
                ok=False,
                seconds=0.1,
                failed_node="int_documents__latest",
                message="boom",
                log_path="/logs/dbt.log",
            )
        return watch.BuildOutcome(ok=True, seconds=0.1, chunks_embedded=3, log_path="x")


def make_watcher(tmp_path, build, out) -> watch.Watcher:
    feed = tmp_path / "feed"
    feed.mkdir(exist_ok=True)
    options = watch.WatchOptions(
        project_dir=REPO,
        database=tmp_path / "store.duckdb",
        cli_vars=json.dumps({"document_feed": f"{feed}/*.jsonl"}),
        debounce_seconds=0,
    )
    return watch.Watcher(options, out=out, build=build)


def test_once_builds_only_when_something_changed(tmp_path, capsys):
    build = FakeBuild()
    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "a.jsonl").write_text("{}\n")
    assert make_watcher(tmp_path, build, None).run_once() == 0
    assert build.calls == 1  # no state yet: catch up
    assert make_watcher(tmp_path, build, None).run_once() == 0
    assert build.calls == 1  # idle: nothing changed, nothing built
    (tmp_path / "feed" / "b.jsonl").write_text("{}\n")
    assert make_watcher(tmp_path, build, None).run_once() == 0
    assert build.calls == 2
    history = watch.read_history(watch.watch_paths(tmp_path / "store.duckdb").history)
    assert [r["status"] for r in history] == ["ok", "ok"]
    assert history[-1]["files_changed"] == 1
    assert history[-1]["lag_seconds"] is not None and history[-1]["chunks_embedded"] == 3
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("build ok" in line for line in lines)


def test_a_failed_build_is_retried_on_the_next_change_not_in_a_loop(tmp_path, capsys):
    build = FakeBuild()
    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "a.jsonl").write_text("{}\n")
    watcher = make_watcher(tmp_path, build, None)
    watcher.options.retry_seconds = 3600
    watcher.retry_wait = 3600
    build.fail = True
    current = fingerprint(watcher.sources)
    assert watcher.due(current) == "change"
    record = watcher.cycle("change", current, 0.0)
    assert record.status == "failed"
    line = capsys.readouterr().out.strip()
    assert "FAILED at int_documents__latest: boom" in line and "/logs/dbt.log" in line
    assert watcher.due(fingerprint(watcher.sources)) is None  # unchanged: wait
    (tmp_path / "feed" / "b.jsonl").write_text("{}\n")
    assert watcher.due(fingerprint(watcher.sources)) == "change"


def test_one_watcher_per_store(tmp_path):
    first = make_watcher(tmp_path, FakeBuild(), None)
    with first._locked(), pytest.raises(watch.WatchError, match="already watching"):
        make_watcher(tmp_path, FakeBuild(), None).run_once()


# ---------------------------------------------------------------- alerts on the watch files

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
VARS = {
    "alert_watch_lag_warn_seconds": 60,
    "alert_watch_lag_error_seconds": 600,
    "alert_watch_stopped_after_polls": 10,
}


def write_watch_files(db: Path, records: list[dict], heartbeat: dict | None) -> None:
    paths = watch.watch_paths(db)
    for record in records:
        watch.append_jsonl(paths.history, record)
    if heartbeat is not None:
        watch.write_json_atomic(paths.heartbeat, heartbeat)


def beat(seconds_ago: float, state: str = "idle", poll: float = 5) -> dict:
    at = (NOW - timedelta(seconds=seconds_ago)).isoformat()
    return {"beat_at": at, "state": state, "poll_seconds": poll, "pid": 1, "host": "h"}


def cycle(lag: float | None, status: str = "ok", delivered_ago: float | None = None) -> dict:
    delivered = (NOW - timedelta(seconds=delivered_ago)).isoformat() if delivered_ago else None
    return {
        "status": status,
        "lag_seconds": lag,
        "finished_at": NOW.isoformat(),
        "newest_delivered_at": delivered,
        "failed_node": "retrieval_store" if status != "ok" else None,
        "message": "boom" if status != "ok" else "",
        "log_path": "logs/dbt.log",
    }


def by_name(checks) -> dict:
    return {check.check: check for check in checks}


def test_no_watch_history_no_watch_checks(tmp_path):
    assert alerts.watch_checks(tmp_path / "store.duckdb", VARS, NOW) == []


@pytest.mark.parametrize(
    ("heartbeat", "status"),
    [
        (beat(10), alerts.OK),
        (beat(49, poll=5), alerts.OK),  # under the 60 s floor
        (beat(61, poll=5), alerts.WARN),
        (beat(3000, poll=600), alerts.OK),
        (beat(1, state="stopped"), alerts.WARN),
    ],
)
def test_watcher_stopped(tmp_path, heartbeat, status):
    write_watch_files(tmp_path / "store.duckdb", [cycle(3.0)], heartbeat)
    checks = by_name(alerts.watch_checks(tmp_path / "store.duckdb", VARS, NOW))
    assert checks["watcher_stopped"].status == status


def test_once_only_stores_have_no_heartbeat_check(tmp_path):
    write_watch_files(tmp_path / "store.duckdb", [cycle(3.0)], None)
    assert "watcher_stopped" not in by_name(
        alerts.watch_checks(tmp_path / "store.duckdb", VARS, NOW)
    )


@pytest.mark.parametrize(
    ("records", "status", "observed"),
    [
        ([cycle(12.0)], alerts.OK, 12.0),
        ([cycle(90.0)], alerts.WARN, 90.0),
        ([cycle(900.0)], alerts.ERROR, 900.0),
        ([cycle(900.0), cycle(None)], alerts.ERROR, 900.0),  # the last measured lag
        ([cycle(None)], alerts.OK, None),
        ([cycle(5.0), cycle(None, "failed", delivered_ago=700)], alerts.ERROR, 700.0),
        ([cycle(5.0), cycle(None, "failed")], alerts.WARN, None),
    ],
)
def test_watch_lag(tmp_path, records, status, observed):
    write_watch_files(tmp_path / "store.duckdb", records, beat(1))
    check = by_name(alerts.watch_checks(tmp_path / "store.duckdb", VARS, NOW))["watch_lag_seconds"]
    assert (check.status, check.observed) == (status, observed)
    if records[-1]["status"] != "ok":
        assert "retrieval_store" in check.message and "logs/dbt.log" in check.message


def test_warming_the_embedder_skips_the_hash_embedder_and_never_raises():
    import io

    from rag_store.watch import warm_embedder

    out = io.StringIO()
    warm_embedder("hash:all-MiniLM-L6-v2", out)  # the test-only embedder has no model to load
    warm_embedder("", out)
    assert out.getvalue() == ""
    warm_embedder("no-such-model-anywhere", out)  # a build would report it; warming only says so
    assert out.getvalue().startswith("rag-store watch: embedder not warmed (")
    assert "Traceback" not in out.getvalue()
