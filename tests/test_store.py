"""tenax.store on real SQLite files: migrations, journal semantics, concurrency, durability."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tenax.core.errors import ConfigError, ModelSwitchRefused, TenaxError
from tenax.core.messages import Attempt, ToolSpec, Usage
from tenax.core.protocols import Store, UsageEntry
from tenax.store import GoalRecord, NotFound, SqlStore, StepRecord, open_store
from tenax.store.engine import make_engine
from tenax.store.migrate import MIGRATIONS_DIR, ensure_schema, script_head
from tenax.store.models import Base

REPO = Path(__file__).resolve().parents[1]
ALEMBIC_INI = REPO / "tenax/store/migrations/alembic.ini"
HEAD_REVISION = script_head()
TABLES = {"goals", "sessions", "steps", "usage", "alembic_version"}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tenax.db"


@pytest.fixture
def store(db: Path):
    st = open_store(f"sqlite:///{db}")
    yield st
    st.close()


def _goal(st: SqlStore, **kw) -> str:
    args = dict(objective="make the tests pass", model="claude-test", workspace="/tmp/ws")
    args.update(kw)
    return st.create_goal(**args)


def _session(st: SqlStore, goal_id: str, **kw) -> str:
    args = dict(model="claude-test", system="you are tenax", tools=[{"name": "bash", "description": "run", "parameters": {"type": "object"}}])
    args.update(kw)
    return st.create_session(goal_id, **args)


# -- engine, pragmas, migrations --------------------------------------------------------


def test_sqlite_pragmas_wal_and_friends(store: SqlStore, db: Path):
    assert isinstance(store, Store)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    # WAL is a property of the file, visible to a plain sqlite3 connection too.
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_migrations_create_all_tables_and_reopen_is_idempotent(db: Path):
    st = open_store(str(db))
    gid = _goal(st)
    st.close()
    raw = sqlite3.connect(db)
    try:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert TABLES <= names
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
        idx = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "ix_steps_session_seq" in idx
    finally:
        raw.close()
    for _ in range(2):
        st = open_store(str(db))
        assert st.get_goal(gid).objective == "make the tests pass"
        st.close()
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    finally:
        raw.close()


def _schema_diff(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            from tenax.store.memory import include_name  # FTS5 virtual/shadow tables are not models

            opts = {"compare_type": True, "include_name": include_name}
            return compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
    finally:
        eng.dispose()


def test_migrations_ship_in_the_package_and_match_the_models(db: Path):
    import tenax.store

    assert MIGRATIONS_DIR == Path(tenax.store.__file__).parent / "migrations"
    assert not (REPO / "alembic").exists() and not (REPO / "alembic.ini").exists()
    open_store(str(db)).close()
    assert _schema_diff(f"sqlite:///{db}") == []


def test_alembic_cli_upgrade_head_from_empty_db(tmp_path: Path):
    alembic_bin = Path(sys.executable).parent / "alembic"
    target = tmp_path / "cli.db"
    r = subprocess.run(
        [str(alembic_bin), "-c", str(ALEMBIC_INI), "-x", f"db=sqlite:///{target}", "upgrade", "head"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert _schema_diff(f"sqlite:///{target}") == []
    # Via TENAX_DB, without -x: "current" reports the head, downgrade drops everything.
    env = dict(os.environ, TENAX_DB=str(target))
    r = subprocess.run([str(alembic_bin), "-c", str(ALEMBIC_INI), "current"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert HEAD_REVISION in r.stdout
    r = subprocess.run([str(alembic_bin), "-c", str(ALEMBIC_INI), "downgrade", "base"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    eng = create_engine(f"sqlite:///{target}")
    try:
        assert set(inspect(eng).get_table_names()) == {"alembic_version"}
    finally:
        eng.dispose()
    # open_store upgrades it again.
    st = open_store(str(target))
    assert st.list_goals() == []
    st.close()


# -- URLs and TENAX_DB ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "notaurl",
        "postgres//x",
        "postgres//user:hunter2@host/db",
        "postgres://user@127.0.0.1:1/db",
        "nosuchdb://x/y",
        "sqlite+nosuchdriver:///x.db",
        "://x",
        "sqlite:x.db",
    ],
)
def test_malformed_tenax_db_is_a_config_error(bad: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TENAX_DB", bad)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as ei:
        open_store()
    msg = str(ei.value)
    assert "TENAX_DB" in msg
    assert "sqlite:////abs/path/tenax.db" in msg and "postgresql+psycopg://user@host/db" in msg
    assert "hunter2" not in msg
    assert list(tmp_path.iterdir()) == []  # nothing got created


def test_missing_or_unreachable_postgres_driver_is_a_config_error():
    # psycopg is not a dependency: either the driver is missing or nothing listens on port 1.
    with pytest.raises(ConfigError, match="postgresql"):
        open_store("postgresql+psycopg://user@127.0.0.1:1/db")


def test_explicit_empty_url_is_rejected():
    with pytest.raises(ConfigError, match="empty"):
        open_store("   ")


def test_bare_paths_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TENAX_DB", raising=False)
    st = open_store()
    assert (home / ".local/share/tenax/tenax.db").is_file()
    st.close()
    st = open_store("relative.db")
    assert Path(st.url.database) == tmp_path / "relative.db"
    st.close()
    monkeypatch.setenv("TENAX_DB", "~/nested/dir/x.db")
    st = open_store()
    _goal(st)
    st.close()
    assert (home / "nested/dir/x.db").is_file()


# -- goals -----------------------------------------------------------------------------


def test_goal_crud(store: SqlStore):
    gid = _goal(store, check_cmd="pytest -q", budgets={"max_turns": 10, "max_usd": 2.5},
                network="bridge", config={"k": [1, 2]})
    assert len(gid) == 12 and int(gid, 16) >= 0
    g = store.get_goal(gid)
    assert isinstance(g, GoalRecord)
    assert (g.status, g.strategy, g.network, g.check_cmd) == ("pending", "continuous", "bridge", "pytest -q")
    assert g.budgets == {"max_turns": 10, "max_usd": 2.5, "max_tokens": None, "max_minutes": None}
    assert g.config == {"k": [1, 2]}
    assert g.created_at.tzinfo == timezone.utc and g.finished_at is None

    store.update_goal(gid, status="running")
    assert store.get_goal(gid).status == "running"
    store.update_goal(gid, status="stopped", summary="half way")
    g2 = store.get_goal(gid)
    assert g2.status == "stopped" and g2.summary == "half way" and g2.is_terminal
    assert g2.finished_at is not None and g2.updated_at >= g.updated_at
    store.update_goal(gid, status="running")  # resumed
    assert store.get_goal(gid).finished_at is None

    with pytest.raises(ConfigError, match="invalid goal status 'done'"):
        store.update_goal(gid, status="done")
    with pytest.raises(ConfigError, match="cannot update goal field"):
        store.update_goal(gid, id="x")
    with pytest.raises(ConfigError, match="bogus"):
        store.update_goal(gid, bogus=1)
    with pytest.raises(NotFound):
        store.update_goal("000000000000", status="failed")
    with pytest.raises(ConfigError, match="unknown budget"):
        _goal(store, budgets={"max_dollars": 3})
    with pytest.raises(ConfigError, match="max_turns"):
        _goal(store, budgets={"max_turns": -1})
    with pytest.raises(ConfigError, match="invalid goal status"):
        _goal(store, status="weird")
    with pytest.raises(ConfigError, match="objective"):
        _goal(store, objective="  ")
    assert store.get_goal(gid).status == "running"  # failed calls changed nothing


def test_goal_prefix_lookup_and_ambiguity(store: SqlStore):
    ids = [_goal(store, objective=f"g{i}") for i in range(17)]
    # 17 ids over 16 hex digits: some first character is shared (pigeonhole).
    by_first: dict[str, list[str]] = {}
    for i in ids:
        by_first.setdefault(i[0], []).append(i)
    shared = next(v for v in by_first.values() if len(v) > 1)
    with pytest.raises(NotFound, match=rf"ambiguous prefix '{shared[0][0]}' matches {len(shared)} goals"):
        store.get_goal(shared[0][0])
    for i in ids:
        assert store.get_goal(i).id == i
        assert store.get_goal(i[:8]).id == i
        assert store.get_goal(i.upper()).id == i
    missing = next(p for p in (f"{a:x}{b:x}{c:x}" for a in range(16) for b in range(16) for c in range(16))
                   if not any(i.startswith(p) for i in ids))
    with pytest.raises(NotFound, match=f"no goal matches '{missing}'"):
        store.get_goal(missing)
    for weird in ("", "%", "_", "zz", "a%"):
        with pytest.raises(NotFound, match="no goal matches"):
            store.get_goal(weird)
    assert isinstance(NotFound("x"), TenaxError)


def test_list_goals_newest_first_and_filters(store: SqlStore):
    ids = [_goal(store, objective=f"g{i}") for i in range(5)]
    store.update_goal(ids[1], status="failed")
    store.update_goal(ids[3], status="failed")
    assert [g.id for g in store.list_goals()] == ids[::-1]
    assert [g.id for g in store.list_goals(limit=2)] == [ids[4], ids[3]]
    assert [g.id for g in store.list_goals(status="failed")] == [ids[3], ids[1]]
    assert {g.id for g in store.list_goals(status=["failed", "pending"])} == set(ids)
    with pytest.raises(ConfigError):
        store.list_goals(status="nope")


def test_goal_totals_increment_atomically(store: SqlStore):
    gid = _goal(store)

    def bump():
        for _ in range(25):
            store.add_to_goal_totals(gid, turns=1, input_tokens=10, output_tokens=3, cache_read_tokens=100,
                                     cache_write_tokens=7, cost_usd=0.25, uncached_cost_usd=0.5, elapsed_s=0.5)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    g = store.get_goal(gid)
    assert (g.turns, g.input_tokens, g.output_tokens, g.cache_read_tokens, g.cache_write_tokens) == (100, 1000, 300, 10000, 700)
    assert (g.cost_usd, g.uncached_cost_usd, g.elapsed_s) == (25.0, 50.0, 50.0)
    with pytest.raises(NotFound):
        store.add_to_goal_totals("ffffffffffff", turns=1)


# -- sessions and the journal -----------------------------------------------------------


def test_sessions(store: SqlStore):
    gid = _goal(store)
    spec = ToolSpec(name="bash", description="run a command", parameters={"type": "object", "properties": {}})
    main = store.create_session(gid, model="claude-test", system="sys", tools=[spec])
    sub = store.create_session(gid, role="subagent", model="claude-small", system="sub", tools=[], parent_session_id=main)
    s = store.get_session(main)
    assert (s.goal_id, s.role, s.status, s.system) == (gid, "main", "active", "sys")
    assert s.tools == [spec.model_dump()]
    assert store.get_session(sub).parent_session_id == main
    assert [x.id for x in store.sessions_for_goal(gid)] == [main, sub]

    store.update_session(sub, status="finished")
    assert store.get_session(sub).status == "finished"
    store.update_session(main, model="claude-test")  # same model: fine
    with pytest.raises(ModelSwitchRefused):
        store.update_session(main, model="gpt-other")
    with pytest.raises(ConfigError, match="frozen"):
        store.update_session(main, system="changed")
    with pytest.raises(ConfigError, match="cannot update session field"):
        store.update_session(main, goal_id="x")
    with pytest.raises(NotFound):
        store.create_session("000000000000", model="m", system="s", tools=[])
    with pytest.raises(NotFound):
        store.get_session("nope")
    with pytest.raises(NotFound):
        store.create_session(gid, model="m", system="s", tools=[], parent_session_id="nope")


def test_append_and_read_steps(store: SqlStore):
    gid = _goal(store)
    a = _session(store, gid)
    b = _session(store, gid, role="subagent")
    payloads = [{"text": "héllo ✓", "n": 1}, {"calls": [{"id": "t1", "args": {"cmd": "ls"}}]}, {"ok": True, "x": None}]
    kinds = ["user", "assistant", "tool_result"]
    seqs = [store.append_step(a, k, p) for k, p in zip(kinds, payloads)]
    assert seqs == [1, 2, 3]
    assert store.append_step(b, "user", {"text": "sub"}) == 1  # seq is per session
    steps = store.steps(a)
    assert all(isinstance(s, StepRecord) for s in steps)
    assert [(s.seq, s.kind, s.payload, s.session_id) for s in steps] == [(i + 1, k, p, a) for i, (k, p) in enumerate(zip(kinds, payloads))]
    assert [s.seq for s in store.steps(a, after_seq=1)] == [2, 3]
    assert [s.seq for s in store.steps(a, kinds=["assistant", "tool_result"])] == [2, 3]
    assert [s.seq for s in store.steps(a, kinds=["user"])] == [1]
    assert store.steps(a, after_seq=3) == []
    assert store.last_seq(a) == 3 and store.last_seq(b) == 1
    assert steps[0].created_at.tzinfo == timezone.utc

    store.append_step(a, "event", {"e": "late"})
    recent = store.recent_steps(gid, limit=3)
    assert [(r.session_id, r.seq) for r in recent] == [(a, 3), (b, 1), (a, 4)]  # newest last
    assert len(store.recent_steps(gid)) == 5
    assert store.recent_steps(gid, limit=0) == []

    with pytest.raises(NotFound):
        store.append_step("nope", "user", {})
    with pytest.raises(ConfigError, match="JSON"):
        store.append_step(a, "user", {"obj": object()})
    with pytest.raises(ConfigError):
        store.append_step(a, "", {})
    assert store.last_seq(a) == 4  # rejected appends left no trace


def test_foreign_keys_are_enforced(store: SqlStore):
    with store.engine.begin() as conn:
        with pytest.raises(Exception, match="FOREIGN KEY"):
            conn.execute(text("INSERT INTO steps (id, session_id, seq, kind, payload, created_at) "
                              "VALUES ('x', 'nosuchsession', 1, 'user', '{}', '2024-01-01')"))


def test_append_step_concurrent_threads(store: SqlStore):
    sid = _session(store, _goal(store))
    got: dict[int, list[int]] = {}

    def worker(n: int):
        got[n] = [store.append_step(sid, "event", {"worker": n, "i": i}) for i in range(25)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_seqs = sorted(s for v in got.values() for s in v)
    assert all_seqs == list(range(1, 201))
    for v in got.values():
        assert v == sorted(v)
    steps = store.steps(sid)
    assert [s.seq for s in steps] == list(range(1, 201))
    # each worker's payloads appear in its own order
    for n in range(8):
        assert [s.payload["i"] for s in steps if s.payload["worker"] == n] == list(range(25))


def _open_fds_on(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd).startswith(str(path)))


def test_each_thread_keeps_one_connection_and_close_closes_them(db: Path):
    st = open_store(f"sqlite:///{db}")
    sid = _session(st, _goal(st))
    st.append_step(sid, "event", {})
    done = threading.Event()

    def worker() -> None:
        for _ in range(20):
            st.append_step(sid, "event", {})
        done.wait(30)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    while len(st.steps(sid)) < 81:
        time.sleep(0.01)
    assert st._connections.held_count() == 5  # this thread's and each live worker's
    done.set()
    for t in threads:
        t.join()
    gc.collect()
    assert st._connections.held_count() == 1  # a thread that ended took its connection with it
    assert [s.seq for s in st.steps(sid)] == list(range(1, 82))
    st.close()
    assert _open_fds_on(db) == 0  # none left open after close()


def test_append_after_another_process_deleted_the_goal_is_not_found(db: Path, store: SqlStore):
    gid = _goal(store)
    sid = _session(store, gid)
    assert store.append_step(sid, "user", {"text": "hi"}) == 1  # the session's goal is now known (cached)
    raw = sqlite3.connect(db)  # another process removes the goal (tenax rm --purge), cascading
    try:
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("DELETE FROM goals WHERE id = ?", (gid,))
        raw.commit()
    finally:
        raw.close()
    with pytest.raises(NotFound, match=sid):
        store.append_step(sid, "assistant", {"text": "too late"})
    with pytest.raises(NotFound, match=sid):
        store.record_usage(sid, step_seq=None, provider="p", model="m", usage=Usage(), cost_usd=0.0)


def test_a_reply_its_usage_and_the_totals_are_one_write(store: SqlStore):
    gid = _goal(store)
    sid = _session(store, gid)
    before = store.writes
    entry = UsageEntry(provider="anthropic", model="claude-test", usage=Usage(input_tokens=10, output_tokens=3),
                       cost_usd=0.25, turns=1, elapsed_s=1.5, attempts=[{"ok": True}])
    assert store.append_step(sid, "assistant", {"text": "done"}, usage=entry) == 1
    assert store.writes == before + 1
    g = store.get_goal(gid)
    assert (g.turns, g.input_tokens, g.output_tokens, g.cost_usd, g.elapsed_s) == (1, 10, 3, 0.25, 1.5)
    assert [(u.step_seq, u.attempts_json) for u in store.usage_for_goal(gid)] == [(1, [{"ok": True}])]
    with pytest.raises(ConfigError, match="JSON"):  # strict JSON: no NaN, and nothing written
        store.append_step(sid, "event", {"x": float("nan")})
    assert store.last_seq(sid) == 1 and store.writes == before + 1


def test_goal_control_is_read_alone(store: SqlStore):
    gid = _goal(store)
    assert store.goal_control(gid) is None
    store.update_goal(gid, control="stop")
    assert store.goal_control(gid) == "stop" == store.get_goal(gid).control
    with pytest.raises(NotFound, match="nope"):
        store.goal_control("nope")


def test_fast_reads_match_the_orm_reads(store: SqlStore, db: Path):
    gid = _goal(store, budgets={"max_turns": 5})
    sid = _session(store, gid)
    for kind in ("user", "assistant", "tool_result"):
        store.append_step(sid, kind, {"kind": kind, "nested": {"list": [1, 2.5, None]}})
    fast, orm = store.steps(sid), store.steps(sid, kinds=["user", "assistant", "tool_result"])
    assert fast == orm and fast[0].created_at.tzinfo == timezone.utc
    assert store.get_goal(gid) == store.get_goal(gid[:8])  # by id (fast) and by prefix (ORM)
    raw = sqlite3.connect(db)  # one text format for timestamps whoever wrote them, so they sort
    try:
        stamps = [r[0] for r in raw.execute("SELECT created_at FROM steps UNION ALL SELECT created_at FROM goals")]
    finally:
        raw.close()
    assert all(len(t) == 26 and t[10] == " " for t in stamps), stamps


def _proc_append(url: str, sid: str, n: int, tag: str, out) -> None:
    st = open_store(url)
    try:
        out.put((tag, [st.append_step(sid, "event", {"proc": tag, "i": i}) for i in range(n)]))
    finally:
        st.close()


def _proc_open_fresh(url: str, tag: str, start, out) -> None:
    start.wait(30)
    st = open_store(url)
    try:
        out.put((tag, st.create_goal(objective=tag, model="m", workspace="/w")))
    finally:
        st.close()


def test_two_processes_append_to_one_session(db: Path, store: SqlStore):
    url = f"sqlite:///{db}"
    sid = _session(store, _goal(store))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_proc_append, args=(url, sid, 40, t, out)) for t in ("p1", "p2")]
    for p in procs:
        p.start()
    for _ in range(20):  # the parent writes too
        store.append_step(sid, "event", {"proc": "parent"})
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(results["p1"] + results["p2"] + [s.seq for s in store.steps(sid, kinds=["event"]) if s.payload["proc"] == "parent"]) == list(range(1, 101))
    assert [s.seq for s in store.steps(sid)] == list(range(1, 101))


def test_concurrent_first_open_of_a_fresh_database(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    ctx = multiprocessing.get_context("spawn")
    out, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_proc_open_fresh, args=(url, f"p{i}", start, out)) for i in range(3)]
    for p in procs:
        p.start()
    start.set()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    st = open_store(url)
    try:
        assert {g.objective for g in st.list_goals()} == {"p0", "p1", "p2"}
        assert {g.id for g in st.list_goals()} == set(results.values())
    finally:
        st.close()
    raw = sqlite3.connect(tmp_path / "race.db")
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
    finally:
        raw.close()


_CHILD = textwrap.dedent(
    """
    import sys
    from tenax.store import open_store
    st = open_store(sys.argv[1])
    sid = sys.argv[2]
    i = 0
    while True:
        i += 1
        seq = st.append_step(sid, "tool_result", {"i": i, "blob": "x" * 2000})
        print(seq, flush=True)
    """
)


def test_sigkill_mid_journal_loses_no_committed_step(db: Path, store: SqlStore):
    sid = _session(store, _goal(store))
    acked: list[int] = []
    with subprocess.Popen([sys.executable, "-c", _CHILD, f"sqlite:///{db}", sid],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stderr is not None
            while len(acked) < 60:
                line = child.stdout.readline()
                assert line, child.stderr.read() or "child died"
                acked.append(int(line))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert acked == list(range(1, len(acked) + 1))
    store.close()
    st = open_store(f"sqlite:///{db}")  # fresh engine, as after a crash
    try:
        steps = st.steps(sid)
        seqs = [s.seq for s in steps]
        assert seqs[: len(acked)] == acked  # every acknowledged step survived
        assert seqs == list(range(1, len(seqs) + 1))  # and nothing half-written or out of order
        assert all(s.payload == {"i": s.seq, "blob": "x" * 2000} for s in steps)
        assert st.append_step(sid, "event", {"resumed": True}) == len(seqs) + 1
        with st.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        st.close()


# -- usage ------------------------------------------------------------------------------


def test_usage_records_and_totals(store: SqlStore):
    gid = _goal(store)
    other = _goal(store)
    main = _session(store, gid)
    sub = _session(store, gid, role="subagent", model="claude-small")
    store.record_usage(main, step_seq=2, provider="anthropic", model="claude-test",
                       usage=Usage(input_tokens=100, output_tokens=50, cache_read_tokens=1000, cache_write_tokens=200),
                       cost_usd=0.01, uncached_cost_usd=0.04,
                       attempts=[Attempt(number=1, ok=False, status=529, error="overloaded", retry_after_s=1.0),
                                 Attempt(number=2, ok=True, status=200, duration_s=1.5)],
                       duration_s=2.5)
    store.record_usage(sub, step_seq=1, provider="anthropic", model="claude-small",
                       usage=Usage(input_tokens=10, output_tokens=5), cost_usd=0.001, add_to_totals=True)
    store.record_usage(main, step_seq=4, provider="anthropic", model="claude-test",
                       usage={"input_tokens": 1, "output_tokens": 2}, cost_usd=0.002)
    recs = store.usage_for_goal(gid)
    assert [r.step_seq for r in recs] == [2, 1, 4]
    assert recs[0].attempts == 2 and recs[0].attempts_json[0]["status"] == 529
    assert recs[0].usage.total_input == 1300 and recs[0].goal_id == gid
    assert recs[1].attempts == 1 and recs[1].session_id == sub
    t = store.goal_usage_totals(gid)
    assert (t["calls"], t["attempts"], t["input_tokens"], t["output_tokens"]) == (3, 4, 111, 57)
    assert (t["cache_read_tokens"], t["cache_write_tokens"]) == (1000, 200)
    assert t["cost_usd"] == pytest.approx(0.013) and t["uncached_cost_usd"] == pytest.approx(0.04)
    assert t["duration_s"] == pytest.approx(2.5)
    assert t["by_model"]["claude-small"]["input_tokens"] == 10 and t["by_model"]["claude-test"]["calls"] == 2
    # only the add_to_totals call reached the goal's running totals
    g = store.get_goal(gid)
    assert (g.input_tokens, g.output_tokens, g.cost_usd, g.turns) == (10, 5, 0.001, 0)
    # a main turn: its usage row, totals and turn count land in one write
    store.record_usage(main, step_seq=6, provider="anthropic", model="claude-test",
                       usage=Usage(input_tokens=3, output_tokens=4), cost_usd=0.002, add_to_totals=True, turns=1)
    g = store.get_goal(gid)
    assert (g.input_tokens, g.output_tokens, g.turns) == (13, 9, 1) and g.cost_usd == pytest.approx(0.003)
    assert len(store.usage_for_goal(gid)) == 4
    assert store.goal_usage_totals(other)["calls"] == 0 and store.usage_for_goal(other) == []
    with pytest.raises(NotFound):
        store.record_usage("nope", step_seq=None, provider="p", model="m", usage=Usage(), cost_usd=0.0)


def _proc_fork_child(store: SqlStore, sid: str, out) -> None:
    inherited = store.engine.pool.checkedin()  # connections the child could wrongly reuse
    out.put((inherited, [store.append_step(sid, "event", {"from": "forked"}) for _ in range(5)]))


def test_store_survives_fork(store: SqlStore):
    """A store opened (with pooled connections) before a fork keeps working in the child."""
    sid = _session(store, _goal(store))
    store.append_step(sid, "event", {"from": "parent"})
    assert store.engine.pool.checkedin() >= 1
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_proc_fork_child, args=(store, sid, out))
    p.start()
    assert out.get(timeout=30) == (0, [2, 3, 4, 5, 6])
    p.join(30)
    assert p.exitcode == 0
    assert store.append_step(sid, "event", {"from": "parent"}) == 7


# -- PostgreSQL (opt-in: TENAX_TEST_PG_URL names a *disposable* database) -----------------

PG_URL = os.environ.get("TENAX_TEST_PG_URL")


@pytest.mark.skipif(not PG_URL, reason="set TENAX_TEST_PG_URL=postgresql+psycopg://... (a disposable database)")
def test_postgresql_backend():
    def wipe():
        eng = create_engine(PG_URL)
        try:
            with eng.begin() as conn:
                Base.metadata.drop_all(conn)
                conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        finally:
            eng.dispose()

    wipe()
    try:
        ctx = multiprocessing.get_context("spawn")
        out, start = ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_proc_open_fresh, args=(PG_URL, f"p{i}", start, out)) for i in range(3)]
        for p in procs:
            p.start()
        start.set()
        results = dict(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        assert _schema_diff(PG_URL) == []
        st = open_store(PG_URL)
        try:
            assert {g.id for g in st.list_goals()} == set(results.values())
            gid = results["p0"]
            assert st.get_goal(gid[:10]).objective == "p0"
            sid = _session(st, gid)
            got: list[int] = []

            def worker():
                got.extend(st.append_step(sid, "event", {"i": i}) for i in range(20))

            threads = [threading.Thread(target=worker) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(got) == list(range(1, 81))
            assert [s.seq for s in st.steps(sid)] == list(range(1, 81))
            st.record_usage(sid, step_seq=1, provider="anthropic", model="m", usage=Usage(input_tokens=7),
                            cost_usd=0.5, add_to_totals=True)
            st.add_to_goal_totals(gid, turns=1)
            g = st.get_goal(gid)
            assert (g.turns, g.input_tokens, g.cost_usd) == (1, 7, 0.5)
            assert g.created_at.tzinfo == timezone.utc
        finally:
            st.close()
    finally:
        wipe()


def test_database_from_a_newer_tenax_is_a_clear_error(db: Path):
    open_store(str(db)).close()
    raw = sqlite3.connect(db)
    try:
        raw.execute("UPDATE alembic_version SET version_num = '9999_future'")
        raw.commit()
    finally:
        raw.close()
    with pytest.raises(ConfigError) as ei:
        open_store(str(db))
    msg = str(ei.value)
    assert str(db) in msg and "9999_future" in msg and "newer tenax" in msg and "Upgrade tenax" in msg
    eng = make_engine(f"sqlite:///{db}")
    try:
        with pytest.raises(ConfigError, match="9999_future"):
            ensure_schema(eng)
    finally:
        eng.dispose()
    raw = sqlite3.connect(db)  # refused, not touched
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999_future",)]
    finally:
        raw.close()


def test_prepare_compiles_every_hot_statement_and_a_turns_writes_then_compile_nothing(store: SqlStore):
    """A daemon's spare worker calls ``prepare()`` before it has a goal (35 ms of statement compiles
    otherwise land on the goal's start). Every statement a goal's lease, journal, usage and steering
    use must be among those it compiles: none is compiled after it."""
    from tenax.store.prepared import HOT_PATHS

    gid = _goal(store)
    sid = _session(store, gid)
    store.prepare()
    compiled = dict(store._statements)
    assert set(compiled) == set(HOT_PATHS) and len(HOT_PATHS) >= 10
    with store.hold_lease(gid):
        store.get_goal(gid)
        store.goal_control(gid)
        seq = store.append_step(sid, "assistant", {"text": "hi"})
        store.record_usage(sid, step_seq=seq, provider="anthropic", model="claude-test",
                           usage=Usage(input_tokens=1, output_tokens=1), cost_usd=0.001, add_to_totals=True)
        store.steps(sid)
        store.pending_steering(gid)
    assert store._statements == compiled  # the same statements, none new
